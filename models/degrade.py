"""The video face restoration degradation protocol (as in KEEP / VFHQ evaluations):

    blur (isotropic or anisotropic Gaussian) -> noise -> downscale x2..x4 -> noise
    -> H.264 at CRF 18..25 -> upscale back

applied in the display encoding, with one set of parameters per clip (a real shot is degraded
consistently), drawn from a seeded generator so every run is reproducible.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Degradation:
    sigma_x: float
    sigma_y: float
    angle: float
    noise_before: float  # standard deviation, in 8-bit code values
    scale: float
    noise_after: float
    crf: int
    codec: str  # "h264" or "jpeg" (fallback where no ffmpeg is available)

    @classmethod
    def sample(cls, seed: int, codec: str = "h264") -> Degradation:
        rng = np.random.default_rng(seed)
        sigma_x = float(rng.uniform(0.6, 2.0))
        isotropic = rng.random() < 0.5
        sigma_y = sigma_x if isotropic else float(rng.uniform(0.6, 2.0))
        return cls(
            sigma_x=sigma_x,
            sigma_y=sigma_y,
            angle=0.0 if isotropic else float(rng.uniform(0, np.pi)),
            noise_before=float(rng.uniform(0, 5)),
            scale=float(rng.uniform(2, 4)),
            noise_after=float(rng.uniform(0, 3)),
            crf=int(rng.integers(18, 26)),
            codec=codec,
        )

    def as_dict(self) -> dict:
        return asdict(self)


def gaussian_kernel(sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    radius = int(np.ceil(3 * max(sigma_x, sigma_y)))
    ys, xs = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * xs + s * ys, -s * xs + c * ys
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


def _h264_round_trip(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "clip.mp4")
        writer = imageio_ffmpeg.write_frames(
            path,
            (w, h),
            codec="libx264",
            pix_fmt_out="yuv420p",
            fps=25,
            quality=None,
            macro_block_size=1,
            output_params=["-crf", str(crf), "-preset", "medium"],
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray((frame * 255.0 + 0.5).astype(np.uint8)))
        writer.close()
        reader = imageio_ffmpeg.read_frames(path)
        meta = next(reader)
        width, height = meta["size"]
        out = [np.frombuffer(f, np.uint8).reshape(height, width, 3).astype(np.float32) / 255.0 for f in reader]
    if len(out) != len(frames):
        raise RuntimeError(f"H.264 round trip returned {len(out)} frames for {len(frames)}")
    return out


def _jpeg_round_trip(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    quality = int(np.interp(crf, [18, 25], [85, 55]))
    out = []
    for frame in frames:
        _, data = cv2.imencode(
            ".jpg", (frame[..., ::-1] * 255 + 0.5).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        out.append(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0)
    return out


def degrade_clip(frames: list[np.ndarray], params: Degradation, seed: int) -> list[np.ndarray]:
    """Degrade display-encoded RGB frames in [0, 1] (all the same size); returns the same size."""
    rng = np.random.default_rng(seed + 1)
    h, w = frames[0].shape[:2]
    # Even low-resolution dimensions: H.264 with 4:2:0 chroma needs them.
    lw, lh = max(2, int(round(w / params.scale / 2)) * 2), max(2, int(round(h / params.scale / 2)) * 2)
    kernel = gaussian_kernel(params.sigma_x, params.sigma_y, params.angle)
    small = []
    for frame in frames:
        blurred = cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT)
        noisy = blurred + rng.normal(0, params.noise_before / 255.0, blurred.shape).astype(np.float32)
        reduced = cv2.resize(np.clip(noisy, 0, 1), (lw, lh), interpolation=cv2.INTER_AREA)
        reduced = reduced + rng.normal(0, params.noise_after / 255.0, reduced.shape).astype(np.float32)
        small.append(np.clip(reduced, 0, 1))
    compress = _h264_round_trip if params.codec == "h264" else _jpeg_round_trip
    return [np.clip(cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1) for f in compress(small, params.crf)]


def h264_available() -> bool:
    try:
        import imageio_ffmpeg

        return os.path.isfile(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception:
        return False
