"""Hostile input to `facerestore render`: every case asserts the inputs are unchanged (hashes)
and nothing is written that should not be (astronaut, NASA, public domain)."""

import hashlib

import numpy as np
import pytest

from facerestore.nodes.errors import FaceRestoreError
from facerestore.plugin.render import RenderOptions, render

from helpers import faces_plate, read_buf, run_cli, write_exr


def hashes(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def plates(tmp_path, colour):
    folder = tmp_path / "plates"
    folder.mkdir()
    for t in (1, 2, 3):
        plate = faces_plate(colour, 240, 180, face_width=80, positions=((80 + 2 * t, 30),), seed=t)
        write_exr(folder / f"p.{t:04d}.exr", plate, extra={"A": np.ones(plate.shape[:2], np.float32)})
    return folder


def options(plates, out, **kwargs) -> RenderOptions:
    return RenderOptions(input=str(plates / "p.####.exr"), output=str(out / "r.####.exr"), progress=False, **kwargs)


def test_the_sidecar_may_not_be_an_input_plate(plates, tmp_path, node):
    before = hashes(plates)
    with pytest.raises(FaceRestoreError, match="refusing to overwrite input file .*p.0002.exr with the analysis"):
        render(options(plates, tmp_path / "out", analysis=str(plates / "p.0002.exr"), reanalyse=True), node=node)
    assert hashes(plates) == before and not (tmp_path / "out").exists()


def test_the_cli_refuses_a_sidecar_over_an_input_with_one_line(plates, tmp_path):
    before = hashes(plates)
    proc = run_cli("render", plates / "p.####.exr", "-o", tmp_path / "out/r.####.exr", "--analysis",
                   plates / "p.0001.exr", "--reanalyse", "-q")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "analysis sidecar" in proc.stderr
    assert hashes(plates) == before


@pytest.mark.parametrize("what", ["sidecar", "frame"])
def test_a_folder_where_a_file_would_go_is_refused_before_anything_is_written(plates, tmp_path, node, what):
    out = tmp_path / "out"
    out.mkdir()
    blocker = out / ("shot.analysis.json" if what == "sidecar" else "r.0003.exr")
    blocker.mkdir()
    kwargs = {"analysis": str(blocker)} if what == "sidecar" else {}
    with pytest.raises(FaceRestoreError, match="not a regular file"):
        render(options(plates, out, **kwargs), node=node)
    assert [p.name for p in out.iterdir()] == [blocker.name]  # frames 1 and 2 were not written first


@pytest.mark.parametrize("name", ["A", "R"])
def test_a_matte_over_an_existing_channel_needs_replace_channel(plates, tmp_path, node, name):
    before = hashes(plates)
    with pytest.raises(FaceRestoreError, match=f"already has a channel '{name}'.*--replace-channel"):
        render(options(plates, tmp_path / "out", mask_channel=name), node=node)
    assert not (tmp_path / "out").exists()
    render(options(plates, tmp_path / "out", mask_channel=name, replace_channel=True), node=node)
    spec, pixels = read_buf(tmp_path / "out" / "r.0002.exr")
    assert list(spec.channelnames).count(name) == 1 and pixels[..., list(spec.channelnames).index(name)].max() <= 1.0
    assert hashes(plates) == before


def test_lossy_plates_are_written_losslessly_so_untouched_pixels_stay_exact(tmp_path, colour, node):
    plates = tmp_path / "plates"
    plates.mkdir()
    for t in (1, 2):
        plate = faces_plate(colour, 240, 180, face_width=80, positions=((80 + 2 * t, 30),), seed=t)
        write_exr(plates / f"p.{t:04d}.exr", plate, compression="dwaa:45")
    before = hashes(plates)
    render(options(plates, tmp_path / "out"), node=node)
    render(options(plates, tmp_path / "kept", keep_lossy_compression=True), node=node)
    plate_spec, plate = read_buf(plates / "p.0002.exr")
    spec, out = read_buf(tmp_path / "out" / "r.0002.exr")
    untouched = out[..., list(spec.channelnames).index("face.mask")] == 0
    assert spec.get_string_attribute("compression") == "zip"
    assert np.array_equal(out[untouched][:, :3], plate[untouched][:, :3])
    kept_spec, kept = read_buf(tmp_path / "kept" / "r.0002.exr")
    # Kept on request, whole (the DWA level too); the untouched pixels then drift, as the help says.
    assert kept_spec.get_string_attribute("compression") == "dwaa"
    assert kept_spec.getattribute("openexr:dwaCompressionLevel") == 45.0
    assert not np.array_equal(kept[untouched][:, :3], plate[untouched][:, :3])
    assert hashes(plates) == before


def sidecar(out):
    import json

    path = out / "r.analysis.json"
    return path, json.loads(path.read_text())


def test_plates_replaced_with_the_same_size_and_time_are_analysed_again(tmp_path, colour, node):
    import os

    plates = tmp_path / "plates"
    plates.mkdir()
    for t in (1, 2, 3):
        plate = faces_plate(colour, 240, 180, face_width=80, positions=((80 + 2 * t, 30),), seed=t)
        write_exr(plates / f"p.{t:04d}.exr", plate, compression="none")
    first = render(options(plates, tmp_path / "out"), node=node)
    assert sum(first.faces_per_frame.values()) == 3
    for t in (1, 2, 3):  # the same files, now without a face: same size (uncompressed), same mtime
        path = plates / f"p.{t:04d}.exr"
        stat = path.stat()
        write_exr(path, np.full((180, 240, 3), 0.2, np.float32), compression="none")
        assert path.stat().st_size == stat.st_size
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = render(options(plates, tmp_path / "out"), node=node)
    assert sum(again.faces_per_frame.values()) == 0


def test_a_colourspace_change_means_a_new_analysis(plates, tmp_path, node, colour):
    from facerestore.nodes.colour import ColourPipeline
    from facerestore.nodes.face_restore import FaceRestoreNode

    render(options(plates, tmp_path / "out"), node=node)
    before = sidecar(tmp_path / "out")[1]["settings"]["determined_by"]["colour"]
    other = FaceRestoreNode(ColourPipeline.create(plate_space="Linear Rec.709 (sRGB)"), "cpu")
    render(options(plates, tmp_path / "out"), node=other)
    after = sidecar(tmp_path / "out")[1]["settings"]["determined_by"]["colour"]
    assert "Linear Rec.709" in after and after != before


@pytest.mark.parametrize(
    "damage, field",
    [
        (lambda d: d["faces"].pop("2"), "faces: frames 2 missing"),
        (lambda d: d["faces"]["2"][0].__setitem__("landmarks", [[float("nan"), 0]] * 5), "faces[2][0].landmarks"),
        (lambda d: d["faces"]["2"][0].__setitem__("landmarks", [[1e12, 0]] * 5), "far outside the frame"),
        (lambda d: d["faces"]["2"][0].__setitem__("landmarks", [[1, 2]] * 3), "shape (3, 2)"),
        (lambda d: d["faces"]["2"][0].__setitem__("landmarks", [[50, 50]] * 5), "collapsed to a point"),
        (None, "cannot read analysis"),  # cut short
    ],
)
def test_a_damaged_sidecar_is_named_and_redone_or_refused_when_frozen(plates, tmp_path, node, damage, field):
    import json

    out = tmp_path / "out"
    reference = render(options(plates, out), node=node)
    path, data = sidecar(out)
    if damage is None:
        path.write_text(path.read_text()[:200])
    else:
        damage(data)
        path.write_text(json.dumps(data))
    with pytest.raises(FaceRestoreError, match=re_escape(field)):
        render(options(plates, out, analysis_frozen=True), node=node)
    redone = render(options(plates, out), node=node)  # a note, then a fresh analysis
    assert redone.faces_per_frame == reference.faces_per_frame
    assert sidecar(out)[1]["faces"].keys() == {"1", "2", "3"}


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_a_png_named_exr_is_not_taken_for_a_linear_plate(tmp_path, node):
    import cv2

    folder = tmp_path / "plates"
    folder.mkdir()
    cv2.imwrite(str(folder / "p.png"), np.full((40, 60, 3), 128, np.uint8))
    (folder / "p.png").rename(folder / "p.0001.exr")
    with pytest.raises(FaceRestoreError, match="p.0001.exr: not an OpenEXR file"):
        render(options(folder, tmp_path / "out"), node=node)
    assert not (tmp_path / "out").exists()


def test_an_absurd_frame_range_is_refused_at_once(plates, tmp_path, node):
    with pytest.raises(FaceRestoreError, match="more than 1,000,000 frames"):
        render(options(plates, tmp_path / "out", frames="1-2000000000"), node=node)


def test_frames_outside_the_range_of_another_size_do_not_change_the_result(plates, tmp_path, node, colour):
    (plates / "p.0003.exr").rename(tmp_path / "aside.exr")
    reference = render(options(plates, tmp_path / "ref", frames="1-2"), node=node)
    write_exr(plates / "p.0003.exr", faces_plate(colour, 300, 200, face_width=80, positions=((90, 40),), seed=9))
    mixed = render(options(plates, tmp_path / "mixed", frames="1-2"), node=node)
    assert mixed.tracks == reference.tracks
    for t in (1, 2):
        assert np.array_equal(read_buf(tmp_path / "mixed" / f"r.000{t}.exr")[1], read_buf(tmp_path / "ref" / f"r.000{t}.exr")[1])


def test_stale_partials_of_killed_runs_are_removed_and_live_ones_kept(plates, tmp_path, node):
    import os

    out = tmp_path / "out"
    out.mkdir()
    from facerestore.models.weights import HOST

    dead = out / f".r.0001.exr.partial-999999999@{HOST}.abcd_123"  # no such process
    dead_older_form = out / ".r.0003.exr.partial-999999999"
    live = out / f".r.0002.exr.partial-{os.getppid()}@{HOST}.abcd_123"  # another process that is running
    other_machine = out / ".r.0004.exr.partial-999999999@render-node-07.abcd_123"  # shared storage
    kept = [live, other_machine, out / "notes.partial-1", out / ".notes.partial-12345678.txt"]
    for path in [dead, dead_older_form, *kept]:
        path.write_bytes(b"half")
    render(options(plates, out), node=node)
    assert not dead.exists() and not dead_older_form.exists()
    assert all(path.exists() for path in kept)


def test_an_output_name_too_long_for_its_temporary_file_is_a_one_line_error(plates, tmp_path, node):
    out = tmp_path / "out"
    long_name = RenderOptions(input=str(plates / "p.####.exr"), output=str(out / ("x" * 240 + ".####.exr")),
                              progress=False, analysis=str(tmp_path / "a.json"))
    with pytest.raises(FaceRestoreError, match="cannot write .*File name too long"):
        render(long_name, node=node)
    assert not out.exists()  # the folder it made is removed again: nothing half-written


def test_resume_renders_only_what_is_missing_or_stale(plates, tmp_path, node):
    import os

    out = tmp_path / "out"
    render(options(plates, out), node=node)
    full = {t: read_buf(out / f"r.000{t}.exr")[1] for t in (1, 2, 3)}
    (out / "r.0002.exr").unlink()
    older = os.stat(plates / "p.0003.exr").st_mtime_ns - 10**9
    os.utime(out / "r.0003.exr", ns=(older, older))  # older than its plate: redone
    report = render(options(plates, out, resume=True), node=node)
    assert [j.frame for j in report.jobs] == [2, 3]
    for t in (1, 2, 3):
        assert np.array_equal(read_buf(out / f"r.000{t}.exr")[1], full[t])


def test_sigterm_stops_a_render_like_ctrl_c_and_leaves_no_partial(plates, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "facerestore.plugin.cli", "render", str(plates / "p.####.exr"), "-o", str(out / "r.####.exr")],
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "r.analysis.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in stderr
    assert not [p for p in out.iterdir() if ".partial-" in p.name]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--restore-colorspace", "Bogus"], "unknown colourspace 'Bogus'"),
        (["--model", "/etc/passwd"], "/etc/passwd: not a model file"),
    ],
)
def test_messages_name_the_real_problem(plates, tmp_path, args, message):
    proc = run_cli("render", plates / "p.####.exr", "-o", tmp_path / "out/r.####.exr", "-q", *args)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "out").exists()


def test_other_formats_are_read_only_when_asked_for(tmp_path, colour, node):
    import OpenImageIO as oiio

    folder = tmp_path / "plates"
    folder.mkdir()
    plate = faces_plate(colour, 240, 180, face_width=80, positions=((80, 30),))
    for t in (1, 2):
        buf = oiio.ImageBuf(oiio.ImageSpec(240, 180, 3, "float"))
        buf.set_pixels(oiio.ROI(), plate)
        assert buf.write(str(folder / f"p.000{t}.tif"))
    opts = RenderOptions(
        input=str(folder / "p.####.tif"), output=str(tmp_path / "out/r.####.tif"), frames="1", progress=False
    )
    with pytest.raises(FaceRestoreError, match="p.0001.tif: not an OpenEXR file.*--allow-non-exr"):
        render(opts, node=node)
    import dataclasses
    import json

    report = render(dataclasses.replace(opts, allow_non_exr=True), node=node)
    assert report.faces_per_frame == {1: 1}
    # The frame outside the range is read as the range is, not left out for not being an EXR.
    assert json.loads(open(report.analysis_path).read())["frames"] == [1, 2]


def test_a_sidecar_of_another_version_is_named(plates, tmp_path, node):
    import json

    out = tmp_path / "out"
    render(options(plates, out), node=node)
    path, data = sidecar(out)
    path.write_text(json.dumps(data | {"version": 99}))
    with pytest.raises(FaceRestoreError, match=f"analysis {re_escape(str(path))}: not a facerestore analysis file"):
        render(options(plates, out, analysis_frozen=True), node=node)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KiB tmpfs: a real full disk (needs mount rights, as root in a container; skipped
    where they are missing)."""
    import subprocess

    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_says_so_and_leaves_nothing_half_written(plates, tiny_disk):
    before = hashes(plates)
    proc = run_cli("render", plates / "p.####.exr", "-o", tiny_disk / "r.####.exr", "-q")
    assert proc.returncode == 2 and "no space left on device" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not [p for p in tiny_disk.iterdir() if ".partial-" in p.name]
    assert hashes(plates) == before


def write_deep(path) -> None:
    import OpenImageIO as oiio

    spec = oiio.ImageSpec(240, 180, 4, "float")
    spec.channelnames = ("R", "G", "B", "A")
    spec.deep = True
    deep = oiio.DeepData()
    deep.init(spec)
    for pixel in range(240 * 180):
        deep.set_samples(pixel, 1)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec) and out.write_deep_image(deep) and out.close()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:4] + bytes(range(256)) * 40), "p.0002.exr: cannot read"),
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "p.0002.exr"),
        (lambda p: p.write_bytes(b""), "p.0002.exr"),
        (write_deep, "p.0002.exr: deep images are not supported"),
        (lambda p: write_exr(p, np.full((200, 300, 3), 0.2, np.float32)), "p.0002.exr: 300x200"),
    ],
    ids=["corrupt", "truncated", "empty", "deep", "other-size"],
)
def test_damaged_plates_in_the_range_stop_the_run_before_any_write(plates, tmp_path, damage, message):
    damage(plates / "p.0002.exr")
    before = hashes(plates)
    proc = run_cli("render", plates / "p.####.exr", "-o", tmp_path / "out/r.####.exr", "-q")
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert hashes(plates) == before and not (tmp_path / "out").exists()
