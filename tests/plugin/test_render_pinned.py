"""Renders pinned to the pixels the render wrote before the frame path was reworked for 4K
(issue 33): the same plates, model and options must give the same output, channel by channel,
value for value (each part's pixels as stored, hashed). The checksums were made by the code
before that change (main at fca5960 on one machine; at ce06455, before the half output buffer
and the half reading, on this project's CI machine), with the machine and package versions
recorded beside each; the networks' arithmetic differs between CPU instruction sets and library
versions, so on a machine with no pin of its own the test says so and skips. After an intended change of output: FACERESTORE_UPDATE_GOLDEN=1 pytest -k pinned."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from facerestore.nodes.exr_io import Part, write_parts
from facerestore.plugin.render import RenderOptions, render

from helpers import TESTS, faces_plate, write_exr

GOLDEN = TESTS / "golden" / "render" / "pinned_pixels.json"


def numeric_environment() -> dict:
    """What the networks' floating-point results depend on besides the code."""
    flags = (
        Path("/proc/cpuinfo").read_text().split("flags", 1)[-1].split("\n", 1)[0].split()
        if Path("/proc/cpuinfo").is_file()
        else []
    )
    return {
        "machine": platform.machine(),
        "isa": sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "fma")),
        **{name: importlib.metadata.version(name) for name in ("onnxruntime", "torch", "OpenImageIO", "numpy")},
    }


def pixel_record(path: Path) -> dict:
    """Per part: data and display windows, channel names and types, compression, and a digest of
    each channel's stored values (read in its own type, so half stays half)."""
    record = []
    inp = oiio.ImageInput.open(str(path))
    assert inp is not None, oiio.geterror()
    try:
        subimage = 0
        while inp.seek_subimage(subimage, 0):
            spec = inp.spec()
            formats = [str(f) for f in spec.channelformats] or [str(spec.format)] * spec.nchannels
            channels = {}
            for index, (name, kind) in enumerate(zip(spec.channelnames, formats)):
                values = np.ascontiguousarray(inp.read_image(subimage, 0, index, index + 1, kind))
                channels[name] = f"{kind} {hashlib.sha256(values.tobytes()).hexdigest()[:24]}"
            record.append(
                {
                    "window": [spec.x, spec.y, spec.width, spec.height],
                    "display": [spec.full_x, spec.full_y, spec.full_width, spec.full_height],
                    "compression": spec.get_string_attribute("compression"),
                    "channels": channels,
                }
            )
            subimage += 1
    finally:
        inp.close()
    return {"parts": record}


def two_faces_shot(folder: Path, colour) -> str:
    """Five 320x240 frames, half ZIP, with alpha and float depth: one face drifting right, a
    second one still."""
    rng = np.random.default_rng(7)
    for t in range(1, 6):
        plate = faces_plate(colour, positions=((30 + 4 * t, 40), (190, 70)), face_width=80, seed=t)
        extra = {
            "A": np.ones(plate.shape[:2], np.float32),
            "Z": rng.uniform(0, 1e4, plate.shape[:2]).astype(np.float32),
        }
        write_exr(folder / f"two.{t:04d}.exr", plate, extra=extra, compression="zip")
    return str(folder / "two.####.exr")


def wide_shot(folder: Path, colour) -> str:
    """Three 2304x240 float frames (wider than the detector sees: reduced for it) with NaN and inf
    pixels, one on the face."""
    for t in range(1, 4):
        plate = faces_plate(colour, width=2304, height=240, face_width=100, positions=((1100 + 5 * t, 50),), seed=t)
        plate[3:6, 10:14] = np.nan
        plate[110:112, 1150 + 5 * t] = np.inf
        write_exr(folder / f"wide.{t:04d}.exr", plate, half=False, compression="zip")
    return str(folder / "wide.####.exr")


def multipart_frame(folder: Path, colour) -> str:
    """One frame of two parts (the second passed through), with an offset data window, DWAA."""
    plate = faces_plate(colour, width=300, height=220, positions=((100, 40),))
    spec = oiio.ImageSpec(300, 220, 3, "half")
    spec.x, spec.y = -10, -6
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, 280, 208
    spec.attribute("compression", "dwaa")
    spec.attribute("name", "beauty")
    other = oiio.ImageSpec(64, 32, 2, "float")
    other.x, other.y = -10, -6
    other.full_x, other.full_y, other.full_width, other.full_height = 0, 0, 280, 208
    other.channelnames = ("u", "v")
    other.attribute("compression", "piz")
    other.attribute("name", "uv")
    uv = np.random.default_rng(2).uniform(-1, 1, (32, 64, 2)).astype(np.float32)
    path = folder / "multi.exr"
    write_parts(str(path), [Part(spec, plate), Part(other, uv)])
    return str(path)


def empty_frame(folder: Path) -> str:
    plate = np.random.default_rng(0).uniform(-0.5, 20, (120, 160, 3)).astype(np.float32)
    return write_exr(folder / "empty.exr", plate, compression="zip")


# name -> (plates, render options)
CASES = {
    "two_faces_both_track_mattes": ("two", {"track_mattes": True}),
    "two_faces_restored": ("two", {"output_mode": "restored"}),
    "two_faces_mask": ("two", {"output_mode": "mask"}),
    "wide_nonfinite": ("wide", {}),
    "multipart_dwaa": ("multi", {}),
    "no_face": ("empty", {}),
}


@pytest.fixture(scope="module")
def renders(tmp_path_factory, node, colour) -> dict:
    # The pins hold the frame path: node spec 1.6's model and crop sampling, as when they were made.
    node = node.with_params(model="facerestore-face-x4-faithful", crop_sampling="linear")
    folder = tmp_path_factory.mktemp("pinned")
    plates = {
        "two": two_faces_shot(folder, colour),
        "wide": wide_shot(folder, colour),
        "multi": multipart_frame(folder, colour),
        "empty": empty_frame(folder),
    }
    records = {}
    for name, (plates_name, options) in CASES.items():
        out, plate = folder / name, plates[plates_name]
        single = "#" not in plate
        report = render(
            RenderOptions(plate, str(out / ("out.exr" if single else "out.####.exr")), progress=False, **options),
            node=node,
        )
        records[name] = {
            str(job.frame): {"faces": report.faces_per_frame[job.frame], **pixel_record(Path(job.target))}
            for job in sorted(report.jobs, key=lambda j: j.frame or 0)
        }
    return records


@pytest.mark.slow
def test_renders_equal_the_pinned_pixels(renders):
    here = numeric_environment()
    pins = json.loads(GOLDEN.read_text())["pins"] if GOLDEN.is_file() else []
    if os.environ.get("FACERESTORE_UPDATE_GOLDEN"):
        pins = [p for p in pins if p["environment"] != here] + [{"environment": here, "renders": renders}]
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps({"pins": pins}, indent=1) + "\n")
    golden = next((p for p in pins if p["environment"] == here), None)
    if golden is None:
        pytest.skip(f"pinned on {[p['environment'] for p in pins]}, this machine is {here}")
    assert sorted(renders) == sorted(golden["renders"])
    for name, frames in renders.items():
        assert frames == golden["renders"][name], name
    # The pin covers faces, not only empty frames: two faces per frame, one on the wide plates.
    assert {f["faces"] for f in renders["two_faces_both_track_mattes"].values()} == {2}
    assert {f["faces"] for f in renders["wide_nonfinite"].values()} == {1}
