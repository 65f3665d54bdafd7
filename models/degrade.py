"""The video face restoration degradation protocol (as in KEEP / VFHQ evaluations):

    blur (isotropic or anisotropic Gaussian) -> noise -> downscale x2..x4 -> noise
    -> H.264 at CRF 18..25 -> upscale back

applied in the display encoding, with one set of parameters per clip (a real shot is degraded
consistently), drawn from a seeded generator so every run is reproducible.
"""

from __future__ import annotations

import os
import subprocess
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


# ---------------------------------------------------------------------------------------------
# The training degradations: drawn afresh for every training sample, over the range real plates
# carry rather than one protocol. Applied to a face-space crop at the face's own resolution
# (the plate's pixel grid, up to the small rotation of the alignment), in the display encoding
# the restorer sees. Order (the field's, widened): exposure -> blur -> noise -> downscale ->
# noise -> codec at the low-resolution grid -> upscale back.


@dataclass(frozen=True)
class CropDegradation:
    exposure: float  # linear-light gain before the display encoding (dark and bright plates)
    blur: str  # none | iso | aniso | motion
    sigma_x: float
    sigma_y: float
    angle: float
    motion_length: float  # pixels, for motion blur
    scale: float  # 1 = no downscale (a plate at full resolution with codec damage only)
    down_kernel: int  # OpenCV interpolation flag
    gaussian_noise: float  # standard deviation in 8-bit code values
    poisson_peak: float  # photons at white; 0 = none (lower is noisier)
    noise_after: float
    gray_noise: bool  # luminance-only noise (sensor-like) or per channel
    codec: str  # none | jpeg | h264 | h265
    quality: int  # JPEG quality (15-90) or CRF (18-35)
    chroma_420: bool  # chroma subsampled 2x2, as in every delivery codec
    grid_phase: tuple[int, int]  # offset of the 8x8 / macroblock grid from the crop's corner
    up_kernel: int

    @classmethod
    def sample(cls, rng: np.random.Generator, video_codecs: bool = True) -> CropDegradation:
        kernels = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC)
        up_kernels = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)
        blur = str(rng.choice(["none", "iso", "aniso", "motion"], p=[0.2, 0.4, 0.3, 0.1]))
        sigma_x = float(rng.uniform(0.4, 2.5))
        sigma_y = sigma_x if blur == "iso" else float(rng.uniform(0.4, 2.5))
        codecs = ["none", "jpeg", "h264", "h265"] if video_codecs else ["none", "jpeg"]
        weights = [0.1, 0.45, 0.3, 0.15] if video_codecs else [0.15, 0.85]
        codec = str(rng.choice(codecs, p=weights))
        quality = int(rng.integers(15, 91)) if codec == "jpeg" else int(rng.integers(18, 36))
        # Scale: a third of samples at full resolution (codec and noise only), the rest up to x4.
        scale = 1.0 if rng.random() < 0.3 else float(np.exp(rng.uniform(np.log(1.2), np.log(4.0))))
        return cls(
            exposure=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))) if rng.random() < 0.5 else 1.0,
            blur=blur,
            sigma_x=sigma_x,
            sigma_y=sigma_y,
            angle=float(rng.uniform(0, np.pi)),
            motion_length=float(rng.uniform(2, 9)),
            scale=scale,
            down_kernel=int(rng.choice(kernels)),
            gaussian_noise=float(rng.uniform(0, 12)) if rng.random() < 0.7 else 0.0,
            poisson_peak=float(np.exp(rng.uniform(np.log(40), np.log(2000)))) if rng.random() < 0.4 else 0.0,
            noise_after=float(rng.uniform(0, 4)),
            gray_noise=bool(rng.random() < 0.4),
            codec=codec,
            quality=quality,
            chroma_420=bool(rng.random() < 0.8),
            grid_phase=(int(rng.integers(0, 16)), int(rng.integers(0, 16))),
            up_kernel=int(rng.choice(up_kernels)),
        )

    @classmethod
    def light(cls, rng: np.random.Generator, video_codecs: bool = True) -> CropDegradation:
        """A plate that is nearly clean: full resolution, at most a slight lens blur, noise up
        to 3/255 (and up to 1/255 after the codec), a high-quality codec. What a restorer must
        hardly change (the broad draws above seldom give it: most of them blur, shrink or
        compress hard)."""
        codecs = ["none", "jpeg", "h264", "h265"] if video_codecs else ["none", "jpeg"]
        weights = [0.25, 0.35, 0.25, 0.15] if video_codecs else [0.35, 0.65]
        codec = str(rng.choice(codecs, p=weights))
        blur = "iso" if rng.random() < 0.6 else "none"
        sigma = float(rng.uniform(0.3, 0.7))
        return cls(
            exposure=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))) if rng.random() < 0.5 else 1.0,
            blur=blur,
            sigma_x=sigma,
            sigma_y=sigma,
            angle=0.0,
            motion_length=1.0,
            scale=1.0,
            down_kernel=cv2.INTER_AREA,
            gaussian_noise=float(rng.uniform(0, 3)),
            poisson_peak=0.0,
            noise_after=float(rng.uniform(0, 1)),
            gray_noise=bool(rng.random() < 0.4),
            codec=codec,
            quality=int(rng.integers(75, 96)) if codec == "jpeg" else int(rng.integers(18, 25)),
            chroma_420=bool(rng.random() < 0.5),
            grid_phase=(int(rng.integers(0, 16)), int(rng.integers(0, 16))),
            up_kernel=cv2.INTER_CUBIC,
        )


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)


def expose(frames: list[np.ndarray], gain: float) -> list[np.ndarray]:
    """The same frames `gain` times brighter in linear light (clipped as a camera would)."""
    if gain == 1.0:
        return frames
    return [linear_to_srgb(srgb_to_linear(f) * gain) for f in frames]


def motion_kernel(length: float, angle: float) -> np.ndarray:
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = np.cos(angle) * (length - 1) / 2, np.sin(angle) * (length - 1) / 2
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    return kernel / kernel.sum()


def _noise(shape: tuple, sigma: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    if sigma <= 0:
        return np.zeros(shape, np.float32)
    if gray:
        return np.repeat(rng.normal(0, sigma / 255.0, shape[:2] + (1,)), 3, axis=2).astype(np.float32)
    return rng.normal(0, sigma / 255.0, shape).astype(np.float32)


def _jpeg(frame: np.ndarray, quality: int, chroma_420: bool) -> np.ndarray:
    sampling = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420 if chroma_420 else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
    _, data = cv2.imencode(".jpg", (frame[..., ::-1] * 255 + 0.5).astype(np.uint8), params)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0


def _video(frames: list[np.ndarray], codec: str, crf: int, chroma_420: bool) -> list[np.ndarray]:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    encoder = {"h264": "libx264", "h265": "libx265"}[codec]
    pix_fmt = "yuv420p" if chroma_420 else "yuv444p"
    extra = ["-x265-params", "log-level=none"] if codec == "h265" else []
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{w}x{h}", "-r", "25", "-i", "-", "-c:v", encoder, "-crf", str(crf), "-preset", "veryfast",
        "-pix_fmt", pix_fmt, *extra, "-f", "matroska", "-",
    ]  # fmt: skip
    raw = b"".join(np.ascontiguousarray((f * 255.0 + 0.5).astype(np.uint8)).tobytes() for f in frames)
    encoded = subprocess.run(command, input=raw, capture_output=True, check=True).stdout
    decode = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", "-", "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]  # fmt: skip
    decoded = subprocess.run(decode, input=encoded, capture_output=True, check=True).stdout
    out = np.frombuffer(decoded, np.uint8).reshape(-1, h, w, 3)
    if len(out) != len(frames):
        raise RuntimeError(f"{codec} round trip returned {len(out)} frames for {len(frames)}")
    return [f.astype(np.float32) / 255.0 for f in out]


def degrade_crops(frames: list[np.ndarray], d: CropDegradation, rng: np.random.Generator) -> list[np.ndarray]:
    """Degrade display-encoded frames of one face (a short clip, all the same size, [0, 1]) with
    one draw `d`; new noise for every frame. Returns the same size."""
    h, w = frames[0].shape[:2]
    if d.blur == "motion":
        kernel = motion_kernel(d.motion_length, d.angle)
    elif d.blur != "none":
        kernel = gaussian_kernel(d.sigma_x, d.sigma_y, d.angle if d.blur == "aniso" else 0.0)
    lw, lh = max(8, round(w / d.scale)), max(8, round(h / d.scale))
    small = []
    for frame in frames:
        if d.blur != "none":
            frame = cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT)
        if d.poisson_peak > 0:
            linear = srgb_to_linear(frame)
            frame = linear_to_srgb(rng.poisson(linear * d.poisson_peak) / d.poisson_peak)
        frame = np.clip(frame + _noise(frame.shape, d.gaussian_noise, d.gray_noise, rng), 0, 1)
        if (lw, lh) != (w, h):
            frame = cv2.resize(frame, (lw, lh), interpolation=d.down_kernel)
        small.append(np.clip(frame + _noise(frame.shape, d.noise_after, d.gray_noise, rng), 0, 1))
    if d.codec != "none":
        # The codec's block grid sits at a random phase: pad by the phase, code, cut it off.
        py, px = d.grid_phase
        padded = [cv2.copyMakeBorder(f, py, (-(lh + py)) % 16, px, (-(lw + px)) % 16, cv2.BORDER_REFLECT) for f in small]
        if d.codec == "jpeg":
            coded = [_jpeg(f, d.quality, d.chroma_420) for f in padded]
        else:
            coded = _video(padded, d.codec, d.quality, d.chroma_420)
        small = [f[py : py + lh, px : px + lw] for f in coded]
    if (lw, lh) == (w, h):
        return [np.ascontiguousarray(f) for f in small]
    return [np.clip(cv2.resize(f, (w, h), interpolation=d.up_kernel), 0, 1) for f in small]
