"""The benchmark's degradation settings and shot cases.

Settings (one draw per clip, as a real shot is degraded consistently):
- `protocol`: the field's video face restoration protocol (blur, noise, x2-x4, noise, H.264
  CRF 18-25, upscale), drawn from the seed: `models.degrade.Degradation`.
- `block`: a still / proxy look: mild blur, x2, JPEG quality 30 with 4:2:0 chroma at the low
  resolution grid: block artefacts and chroma bleed.
- `strong-x4`: blur 1.5, x4, noise 6/255, H.264 CRF 30.
- `dark`: the plate 2.5 stops under (x0.18 in linear light), photon noise, x2, H.264 CRF 26.
- `mild`: a nearly clean plate: full resolution, a slight lens blur, noise 1.5/255 (and 1/255
  after the codec), H.264 CRF 20 with 4:2:0 chroma. Little to restore; what a restorer must not
  make worse.

Cases:
- `clip`: the clip as it is (cap13: a ~95x140 px face box; franck: ~125x190).
- `large-face`: the clip zoomed 2.6x about its face (face box ~250x360 px on cap13; the ground
  truth is the zoomed clean clip), for restorers that shrink large faces.
- `small-face`: the clip reduced to 0.4x (face box ~37x51 px on cap13, ~51x74 on franck: about the
  40 px faces the detection goal covers), before the setting's own degradation.
- `group`: franck, cap13 and a small dark copy of cap13 (face box ~45x60 px, 1.8 stops under)
  side by side on one canvas: several faces, one small and dark.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facerestore.models.degrade import (
    CropDegradation,
    Degradation,
    degrade_clip,
    degrade_crops,
    expose,
    h264_available,
)

SETTINGS = ("protocol", "block", "strong-x4", "dark", "mild")
CASES = ("clip", "large-face", "small-face", "group")


def _fixed(**changes) -> CropDegradation:
    base = dict(
        exposure=1.0,
        blur="iso",
        sigma_x=0.8,
        sigma_y=0.8,
        angle=0.0,
        motion_length=1.0,
        scale=2.0,
        down_kernel=cv2.INTER_AREA,
        gaussian_noise=2.0,
        poisson_peak=0.0,
        noise_after=1.0,
        gray_noise=False,
        codec="jpeg",
        quality=30,
        chroma_420=True,
        grid_phase=(3, 5),
        up_kernel=cv2.INTER_CUBIC,
    )
    return CropDegradation(**(base | changes))


FIXED_SETTINGS = {
    "block": _fixed(),
    "strong-x4": _fixed(sigma_x=1.5, sigma_y=1.5, scale=4.0, gaussian_noise=6.0, codec="h264", quality=30),
    "dark": _fixed(
        exposure=0.18, sigma_x=0.6, sigma_y=0.6, poisson_peak=300.0, gaussian_noise=1.0, codec="h264", quality=26
    ),
    "mild": _fixed(sigma_x=0.5, sigma_y=0.5, scale=1.0, gaussian_noise=1.5, codec="h264", quality=20),
}


def degrade(truth: list[np.ndarray], setting: str, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """(ground truth, degraded frames, description). The `dark` setting darkens the ground
    truth too: the restorer must not brighten the shot, only restore it."""
    if setting == "protocol":
        params = Degradation.sample(seed, "h264" if h264_available() else "jpeg")
        return truth, degrade_clip(truth, params, seed), {"setting": setting} | params.as_dict()
    if setting not in FIXED_SETTINGS:
        raise ValueError(f"unknown degradation setting {setting!r}; choose from {', '.join(SETTINGS)}")
    draw = FIXED_SETTINGS[setting]
    if draw.codec in ("h264", "h265") and not h264_available():
        # JPEG stands in without ffmpeg; a nearly clean plate keeps a high quality.
        draw = CropDegradation(**(draw.__dict__ | {"codec": "jpeg", "quality": 90 if setting == "mild" else 40}))
    truth = expose(truth, draw.exposure)
    degraded = degrade_crops(truth, draw, np.random.default_rng(seed))
    description = {"setting": setting} | {
        k: (v if not isinstance(v, tuple) else list(v)) for k, v in draw.__dict__.items()
    }
    return truth, degraded, description


def large_face(frames: list[np.ndarray], detector, zoom: float = 2.6) -> list[np.ndarray]:
    """The clip zoomed about its first frame's face, cut to 1.6x the zoomed face box."""
    faces = detector.detect(frames[0])
    if not faces:
        raise ValueError("the large-face case needs a face in the clip's first frame")
    box = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])).box * zoom
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = 0.8 * (box[2] - box[0]) * 1.6, 0.8 * (box[3] - box[1]) * 1.3
    out = []
    for frame in frames:
        big = cv2.resize(frame, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
        h, w = big.shape[:2]
        x0, y0 = int(max(0, cx - half_w)) // 2 * 2, int(max(0, cy - half_h)) // 2 * 2
        x1, y1 = int(min(w, cx + half_w)) // 2 * 2, int(min(h, cy + half_h)) // 2 * 2
        out.append(np.ascontiguousarray(np.clip(big[y0:y1, x0:x1], 0, 1)))
    return out


def small_face(frames: list[np.ndarray], reduction: float = 0.4) -> list[np.ndarray]:
    """The clip area-reduced to `reduction` of its size (even sides, as the codecs need)."""
    h, w = frames[0].shape[:2]
    size = (max(2, round(w * reduction / 2) * 2), max(2, round(h * reduction / 2) * 2))
    return [np.ascontiguousarray(cv2.resize(f, size, interpolation=cv2.INTER_AREA)) for f in frames]


@dataclass
class KnownFace:
    """A face whose position is known from how the shot was made (the detector may miss it)."""

    box: np.ndarray
    landmarks: np.ndarray


def group_shot(franck: list[np.ndarray], cap13: list[np.ndarray], detector) -> tuple[list, list[list[KnownFace]]]:
    """franck | a small, dark cap13 | cap13, on one grey canvas; and each frame's faces, found
    on the bright source frames and placed where they were pasted."""
    out, faces = [], []
    for left, right in zip(franck, cap13):
        here = []
        for source, scale, (x, y) in ((left, 1.0, (0, 6)), (right, 0.45, (370, 140)), (right, 1.0, (560, 0))):
            for f in detector.detect(source):
                offset = np.array([x, y], np.float32)
                here.append(KnownFace(f.box * scale + np.tile(offset, 2), f.landmarks * scale + offset))
        faces.append(here)
        canvas = np.full((300, 960, 3), 0.32, np.float32)
        canvas[6 : 6 + left.shape[0], : left.shape[1]] = left
        canvas[: right.shape[0], 560 : 560 + right.shape[1]] = right
        small = cv2.resize(right, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
        small = expose([small], 0.3)[0]
        canvas[140 : 140 + small.shape[0], 370 : 370 + small.shape[1]] = small
        out.append(canvas)
    return out, faces
