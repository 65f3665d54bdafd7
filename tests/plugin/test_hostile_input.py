"""Hostile input to `facerestore render`: every case asserts the inputs are unchanged (hashes)
and nothing is written that should not be (astronaut, NASA, public domain)."""

import hashlib

import numpy as np
import pytest

from facerestore.nodes.errors import FaceRestoreError
from facerestore.plugin.render import RenderOptions, render

from helpers import faces_plate, read_buf, run_cli, run_cli_here, write_exr

# The `node` fixture with the ensemble off (one network pass a face where auto runs four):
# these tests are not about the ensemble.
NODE_ENSEMBLE = "off"


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
    proc = run_cli_here("render", plates / "p.####.exr", "-o", tmp_path / "out/r.####.exr", "--analysis",
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


DAMAGED_SIDECARS = [
    (lambda d: d["faces"].pop("2"), "faces: frames 2 missing"),
    (lambda d: d["faces"]["2"][0].__setitem__("landmarks", [[float("nan"), 0]] * 5), "faces[2][0].landmarks"),
    (lambda d: d["faces"]["2"][0].__setitem__("landmarks", [[1e12, 0]] * 5), "far outside the frame"),
    (lambda d: d["faces"]["2"][0].__setitem__("landmarks", [[1, 2]] * 3), "shape (3, 2)"),
    (lambda d: d["faces"]["2"][0].__setitem__("landmarks", [[50, 50]] * 5), "collapsed to a point"),
    (None, "cannot read analysis"),  # cut short
]


def test_a_damaged_sidecar_is_named_by_what_is_wrong(plates, tmp_path, node):
    """Each damage, read as a render reads the sidecar (`AnalysisStore.load`); the render's own
    handling (refused when frozen, else analysed again) is the next test, once."""
    import copy
    import json

    from facerestore.nodes.shot import AnalysisStore

    out = tmp_path / "out"
    render(options(plates, out), node=node)
    path, pristine = sidecar(out)
    text = path.read_text()
    for damage, field in DAMAGED_SIDECARS:
        if damage is None:
            path.write_text(text[:200])
        else:
            data = copy.deepcopy(pristine)
            damage(data)
            path.write_text(json.dumps(data))
        analysis, problem = AnalysisStore(str(path), {}).load()
        assert analysis is None and field in problem, (field, problem)


def test_a_damaged_sidecar_is_named_and_redone_or_refused_when_frozen(plates, tmp_path, node):
    import json

    out = tmp_path / "out"
    reference = render(options(plates, out), node=node)
    path, data = sidecar(out)
    data["faces"]["2"][0]["landmarks"] = [[float("nan"), 0]] * 5
    path.write_text(json.dumps(data))
    with pytest.raises(FaceRestoreError, match=re_escape("faces[2][0].landmarks")):
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
    proc = run_cli_here("render", plates / "p.####.exr", "-o", tmp_path / "out/r.####.exr", "-q", *args)
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
    proc = run_cli_here("render", plates / "p.####.exr", "-o", tiny_disk / "r.####.exr", "-q")
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
    proc = run_cli_here("render", plates / "p.####.exr", "-o", tmp_path / "out/r.####.exr", "-q")
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert hashes(plates) == before and not (tmp_path / "out").exists()


# --- Issue 34: the farm writers, installers, resume and worker, tried as a careless or
# malicious user would. Each case: refused in one line (exit 2) or handled, nothing left behind,
# nothing outside what was named touched.


def one_line_refusal(proc, message: str) -> None:
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_the_sidecar_may_not_be_one_of_the_output_frames(plates, tmp_path, node):
    out = tmp_path / "out"
    with pytest.raises(FaceRestoreError, match="analysis sidecar .*r.0003.exr is one of the output frames"):
        render(options(plates, out, analysis=str(out / "r.0003.exr")), node=node)
    assert not out.exists()
    # Outside the rendered range it is no output frame of this run.
    render(options(plates, out, frames="1-2", analysis=str(out / "r.0003.exr")), node=node)
    assert (out / "r.0003.exr").read_text().startswith("{")


@pytest.mark.parametrize("box", ["1:-500,-500,-400,-400", "1:-1e9,-1e9,1e9,1e9", "1:1e300,1e300,2e300,2e300"])
def test_an_added_face_off_the_frame_or_absurdly_large_is_refused_before_any_work(plates, tmp_path, box):
    import time

    start = time.monotonic()
    proc = run_cli_here("render", plates / "p.####.exr", "-o", tmp_path / "out/r.####.exr", f"--add-face={box}", "-q")
    one_line_refusal(proc, "--add-face")
    assert time.monotonic() - start < 60  # refused up front: 1e9 px once meant 10 GB and 84 s
    assert not (tmp_path / "out").exists()


def test_a_hand_edited_face_outside_the_frame_is_left_out_not_a_crash(plates, tmp_path, node):
    import json

    out = tmp_path / "out"
    render(options(plates, out), node=node)
    path, data = sidecar(out)
    for face in data["faces"]["2"]:  # 600 px left of a 240 px frame: within the validator's limits
        face["landmarks"] = (np.array(face["landmarks"]) - [600, 0]).tolist()
        face["box"] = (np.array(face["box"]) - [600, 0, 600, 0]).tolist()
    path.write_text(json.dumps(data))
    report = render(options(plates, out, analysis_frozen=True), node=node)
    assert report.faces_per_frame[2] == 0 and report.faces_per_frame[1] == 1
    spec, pixels = read_buf(out / "r.0002.exr")
    assert pixels[..., list(spec.channelnames).index("face.mask")].max() == 0  # nothing restored off the plate


def test_unknown_track_ids_are_refused_on_a_first_render(plates, tmp_path, node):
    out = tmp_path / "out"
    with pytest.raises(FaceRestoreError, match=r"--drop-tracks: no track 99 in this shot \(tracks: 1\)"):
        render(options(plates, out, dropped_tracks=(99,)), node=node)
    assert not out.exists()  # neither the sidecar nor the folder: nothing was stored
    proc = run_cli_here("render", plates / "p.####.exr", "-o", out / "r.####.exr", "--track-strengths", "9=0", "-q")
    one_line_refusal(proc, "--track-strengths: no track 9 in this shot (tracks: 1)")
    assert not list(out.glob("r.*.exr"))


SIDECAR_DAMAGE = [
    (lambda d: [], "not a facerestore analysis file"),
    (lambda d: d | {"cuts": 5}, "cuts"),
    (lambda d: d | {"settings": "x"}, "settings"),
    (lambda d: d | {"fingerprint": []}, "fingerprint"),
    (lambda d: d | {"settings": d["settings"] | {"determined_by": []}}, "settings.determined_by"),
    (lambda d: d | {"frames": ["1", "2", "3"]}, "frames"),
    (lambda d: d | {"looks": {"1": [1, 2]}}, "looks"),
]


def test_a_sidecar_of_the_wrong_shape_is_named_by_its_field(plates, tmp_path, node):
    """Every damaged field, read as a render reads it (`AnalysisStore.load`): not used, and the
    reason names the field. The render's own handling is the next test, once."""
    import json

    from facerestore.nodes.shot import AnalysisStore

    out = tmp_path / "out"
    render(options(plates, out), node=node)
    path, data = sidecar(out)
    assert AnalysisStore(str(path), {}).load()[0] is not None  # the undamaged sidecar is used
    for damage, field in SIDECAR_DAMAGE:
        path.write_text(json.dumps(damage(data)))
        analysis, problem = AnalysisStore(str(path), {}).load()
        assert analysis is None and field in problem, (field, problem)


@pytest.mark.slow
def test_a_sidecar_of_the_wrong_shape_is_analysed_again_or_refused_when_frozen(plates, tmp_path, node):
    import json

    out = tmp_path / "out"
    reference = render(options(plates, out), node=node)
    path, data = sidecar(out)
    path.write_text(json.dumps(data | {"cuts": 5}))
    with pytest.raises(FaceRestoreError, match="cuts"):
        render(options(plates, out, analysis_frozen=True), node=node)
    redone = render(options(plates, out), node=node)  # a note, then a fresh analysis
    assert redone.faces_per_frame == reference.faces_per_frame
    assert sidecar(out)[1]["settings"]["determined_by"]
    proc = run_cli_here("render", plates / "p.####.exr", "-o", out / "r.####.exr", "--analysis-frozen", "-q")
    assert proc.returncode == 0, proc.stderr  # the redone sidecar is whole again


def test_resume_keeps_only_whole_frames_of_the_same_render(plates, tmp_path, node, colour):
    import os

    from facerestore.nodes.face_restore import FaceRestoreNode
    from facerestore.plugin.render import RENDER_KEY_ATTRIBUTE

    out = tmp_path / "out"
    render(options(plates, out), node=node)
    full = {t: read_buf(out / f"r.000{t}.exr")[1] for t in (1, 2, 3)}
    key = read_buf(out / "r.0001.exr")[0].get_string_attribute(RENDER_KEY_ATTRIBUTE)
    assert len(key) == 64
    assert render(options(plates, out, resume=True), node=node).jobs == []  # the same render: all done
    # Other options, another node parameter: nothing of the first render is kept.
    report = render(options(plates, out, resume=True, output_mode="mask"), node=node)
    assert [j.frame for j in report.jobs] == [1, 2, 3]
    assert read_buf(out / "r.0002.exr")[0].channelnames == ("face.mask",)
    render(options(plates, out), node=node)
    weaker = FaceRestoreNode(colour, "cpu", strength=0.2)
    assert [j.frame for j in render(options(plates, out, resume=True), node=weaker).jobs] == [1, 2, 3]
    assert not np.array_equal(read_buf(out / "r.0002.exr")[1], full[2])
    # A frame cut short after it was written (still newer than its plate) is rendered again.
    render(options(plates, out), node=node)
    frame = out / "r.0002.exr"
    stat = frame.stat()
    frame.write_bytes(frame.read_bytes()[: stat.st_size // 2])
    os.utime(frame, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert [j.frame for j in render(options(plates, out, resume=True), node=node).jobs] == [2]
    for t in (1, 2, 3):  # the key is a header attribute: the pixels are those of a plain render
        assert np.array_equal(read_buf(out / f"r.000{t}.exr")[1], full[t])


# --- The farm.


def farm(plates, tmp_path, *extra, engine="openjd"):
    return run_cli_here("farm", engine, plates / "p.####.exr", "-o", tmp_path / "out/r.####.exr",
                   "--job-dir", tmp_path / "job", *extra)


@pytest.mark.parametrize(
    "options, message",
    [
        ("--fr 1-2", "unrecognized arguments: --fr"),  # abbreviations no longer bypass the guard
        ("--rean", "unrecognized arguments: --rean"),
        ("--resu", "unrecognized arguments: --resu"),
        ("-o/elsewhere/r.####.exr", "-o is set by the job itself"),
        ("--analysis=/elsewhere/a.json", "--analysis is set by the job itself"),
        ("--track-strengths garbage", "cannot read per-face strengths"),
        ("--tracks abc", "cannot read track list"),
        ("--add-face 1:1,2,3", "give 4 numbers"),
        ("--add-face 1:-500,-500,-400,-400", "lies outside the 240x180 frame"),
        ("--mask-channel R", "already has a channel 'R'"),
        ("--colorspace {{Param.Bogus}}", "reads as an expression"),
        ("--colorspace 'a\nb'", "newline"),
    ],
)
def test_farm_render_options_are_checked_as_render_checks_them(plates, tmp_path, options, message):
    one_line_refusal(farm(plates, tmp_path, f"--render-options={options}"), message)
    assert not (tmp_path / "job").exists()


def test_farm_refuses_a_sidecar_that_is_an_output_frame_and_a_job_dir_that_is_a_file(plates, tmp_path):
    proc = farm(plates, tmp_path, "--analysis", tmp_path / "out/r.0002.exr")
    one_line_refusal(proc, "is one of the output frames")
    assert not (tmp_path / "job").exists()
    (tmp_path / "job").write_text("the user's notes\n")
    one_line_refusal(farm(plates, tmp_path), "exists and is not a folder")
    assert (tmp_path / "job").read_text() == "the user's notes\n"


@pytest.mark.parametrize("engine, theirs", [("openjd", "template.yaml"), ("openjd", "parameter_values.yaml"),
                                            ("deadline", "submit.sh"), ("deadline", "analyse.job")])
def test_farm_never_overwrites_files_it_did_not_write_but_replaces_its_own(plates, tmp_path, engine, theirs):
    job = tmp_path / "job"
    job.mkdir()
    (job / theirs).write_text("the user's own\n")
    one_line_refusal(farm(plates, tmp_path, engine=engine), "was not written by facerestore farm")
    assert [p.name for p in job.iterdir()] == [theirs] and (job / theirs).read_text() == "the user's own\n"
    (job / theirs).unlink()
    assert farm(plates, tmp_path, engine=engine).returncode == 0
    again = farm(plates, tmp_path, "--render-options=--strength 0.5", engine=engine)  # its own job: replaced
    assert again.returncode == 0, again.stderr
    assert "0.5" in "".join(p.read_text() for p in job.iterdir())


def test_farm_refuses_a_newline_in_a_plate_name(plates, tmp_path):
    import shutil

    evil = tmp_path / "sh\nPostJobScript=evil.py\nx"
    evil.mkdir()
    for t in (1, 2):
        shutil.copy(plates / f"p.{t:04d}.exr", evil / f"p.{t:04d}.exr")
    for engine in ("deadline", "openjd"):
        proc = run_cli_here("farm", engine, evil / "p.####.exr", "-o", tmp_path / "out/r.####.exr", "--job-dir",
                       tmp_path / "job")
        one_line_refusal(proc, "newline")
    assert not (tmp_path / "job").exists()


def test_deadline_arguments_split_back_into_the_paths_given(plates, tmp_path):
    """Quotes, backslashes and spaces in the paths: the Arguments line splits (as the slow
    Deadline test stands in for the CommandLine plugin: POSIX rules) into exactly the paths."""
    import shlex
    import shutil

    odd = tmp_path / 'plates "q" \\b $x'
    odd.mkdir()
    for t in (1, 2, 3):
        shutil.copy(plates / f"p.{t:04d}.exr", odd / f"p.{t:04d}.exr")
    output = tmp_path / 'out \\d "o"' / "r.####.exr"
    proc = run_cli_here("farm", "deadline", odd / "p.####.exr", "-o", output, "--job-dir", tmp_path / "job")
    assert proc.returncode == 0, proc.stderr
    info = dict(line.split("=", 1) for line in (tmp_path / "job" / "render_plugin.job").read_text().splitlines())
    words = shlex.split(info["Arguments"])
    assert words[words.index("render") + 1] == str(odd / "p.####.exr")
    assert words[words.index("-o") + 1] == str(output)
    assert words[words.index("--analysis") + 1] == str(output.parent / "r.analysis.json")
    one_line_refusal(run_cli_here("farm", "deadline", odd / "p.####.exr", "-o", tmp_path / "a\\\\b/r.####.exr",
                             "--job-dir", tmp_path / "job2"), "two backslashes")
    assert not (tmp_path / "job2").exists()


def test_an_openjd_template_stays_valid_with_braces_in_the_plate_name(plates, tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    odd = tmp_path / "a{{x}}"
    odd.mkdir()
    for t in (1, 2):
        shutil.copy(plates / f"p.{t:04d}.exr", odd / f"a{{{{x}}}}.{t:04d}.exr")
    proc = run_cli_here("farm", "openjd", odd / "a{{x}}.####.exr", "-o", tmp_path / "out/r.####.exr",
                   "--job-dir", tmp_path / "job")
    assert proc.returncode == 0, proc.stderr
    openjd = Path(sys.executable).parent / "openjd"
    if not openjd.exists():
        pytest.skip("openjd (the farm extra) is not installed")
    check = subprocess.run([str(openjd), "check", str(tmp_path / "job" / "template.yaml")], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# --- The installers.


def tree_of(folder) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def test_install_never_writes_through_a_link(tmp_path):
    dest, elsewhere = tmp_path / "nuke", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    manifest = dest / ".facerestore-install-nuke.json"
    manifest.symlink_to(elsewhere / "planted.json")  # dangling: writing it would create a file outside
    one_line_refusal(run_cli_here("install", "nuke", "--path", dest), "is not a regular file")
    assert list(elsewhere.iterdir()) == [] and [p.name for p in dest.iterdir()] == [manifest.name]
    manifest.unlink()
    fusion = tmp_path / "fusion"
    fusion.mkdir()
    (fusion / "Macros").symlink_to(elsewhere, target_is_directory=True)  # a linked subfolder inside --path
    one_line_refusal(run_cli_here("install", "fusion", "--path", fusion), "Macros is a symbolic link")
    assert list(elsewhere.iterdir()) == [] and [p.name for p in fusion.iterdir()] == ["Macros"]


@pytest.mark.parametrize(
    "manifest, message",
    [
        (lambda sha: {"files": {"../elsewhere/keep.txt": sha}, "folders": []}, "is not a path inside"),
        (lambda sha: {"files": {}, "folders": ["../elsewhere/empty"]}, "is not a path inside"),
        (lambda sha: {"files": {"/abs/keep.txt": sha}, "folders": []}, "is not a path inside"),
        (lambda sha: {"files": {"link/keep.txt": sha}, "folders": []}, "leads outside"),
        (lambda sha: [], "is damaged"),
        (lambda sha: {"files": 5}, "is damaged"),
        (lambda sha: {"files": {"menu.py": "x"}}, "is damaged"),
    ],
    ids=["dotdot-file", "dotdot-folder", "absolute", "through-link", "list", "files-5", "bad-checksum"],
)
def test_uninstall_removes_nothing_outside_its_folder_whatever_the_manifest_says(tmp_path, manifest, message):
    import json

    dest, elsewhere = tmp_path / "nuke", tmp_path / "elsewhere"
    assert run_cli_here("install", "nuke", "--path", dest).returncode == 0
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not facerestore's\n")
    (elsewhere / "empty").mkdir()
    (dest / "link").symlink_to(elsewhere, target_is_directory=True)
    sha = hashlib.sha256(b"not facerestore's\n").hexdigest()
    (dest / ".facerestore-install-nuke.json").write_text(json.dumps(manifest(sha)))
    before = tree_of(elsewhere)
    for args in (["--uninstall"], []):
        one_line_refusal(run_cli_here("install", "nuke", "--path", dest, *args), message)
    assert tree_of(elsewhere) == before


@pytest.mark.parametrize("python", ["/bin/true", "folder", "missing", "script"])
def test_install_python_must_be_a_python_interpreter(tmp_path, python):
    import os

    given = {"folder": tmp_path, "missing": tmp_path / "nope", "script": tmp_path / "python3"}.get(python, python)
    if python == "script":  # runs, exits 0, is named like python, but is not one
        given.write_text("#!/bin/sh\nexit 0\n")
        os.chmod(given, 0o755)
    proc = run_cli_here("install", "ofx", "--path", tmp_path / "dest", "--python", given)
    one_line_refusal(proc, f"--python {given}")
    assert not (tmp_path / "dest").exists()


# --- The OpenFX worker, started as the plug-in starts it.


def start_worker(path, log, **env):
    import os
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "facerestore.ofx_bridge.worker", "--socket", str(path)],
                            stderr=open(log, "w"), env=dict(os.environ, **env))
    import socket

    deadline = time.monotonic() + 120
    while True:  # serving once it accepts (a stale socket file may be there before it binds)
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(str(path)) == 0:
                return proc
        time.sleep(0.1)


def stop_worker(proc, log=None) -> None:
    import signal
    import subprocess
    import time

    proc.send_signal(signal.SIGINT)  # its own clean stop: removes the socket it made
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # the worker writes every thread's stack to its log
        time.sleep(2)
        proc.kill()
        pytest.fail(f"the worker did not stop on SIGINT; its log:\n{log.read_text() if log else '(not kept)'}")


def ask_worker(path, request: dict, timeout: float = 20.0) -> dict:
    import json
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall((json.dumps(request) + "\n").encode())
        received = b""
        while b"\n" not in received and (chunk := conn.recv(65536)):
            received += chunk
        return json.loads(received.partition(b"\n")[0])


@pytest.mark.parametrize("what", ["file", "folder"])
def test_the_worker_never_replaces_what_is_at_its_socket_path(tmp_path, what):
    path = tmp_path / "worker.sock"
    if what == "file":
        path.write_text("the user's file\n")
    else:
        path.mkdir()
    one_line_refusal(run_cli("worker", "--socket", path), "is not a socket of this user")
    import subprocess
    import sys

    direct = subprocess.run([sys.executable, "-m", "facerestore.ofx_bridge.worker", "--socket", str(path)],
                            capture_output=True, text=True, timeout=120)
    one_line_refusal(direct, "refusing to replace it")
    assert path.read_text() == "the user's file\n" if what == "file" else path.is_dir()


def test_a_stale_socket_is_replaced_a_live_one_is_not_and_only_its_own_is_removed(tmp_path):
    import socket

    path = tmp_path / "worker.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a dead worker's socket file, no one listening
    proc = start_worker(path, tmp_path / "w.log")
    try:
        assert "not a render or analyse request" in ask_worker(path, {"op": "nothing"})["error"]
        one_line_refusal(run_cli("worker", "--socket", path), "another worker is serving there")
        assert ask_worker(path, {"op": "nothing"})["ok"] is False  # the first one still serves
    finally:
        stop_worker(proc, tmp_path / "w.log")
    assert not path.exists()


def test_the_worker_survives_fifos_silent_clients_descriptor_exhaustion_and_early_closes(tmp_path):
    import json
    import os
    import resource
    import socket
    import time

    path, log = tmp_path / "worker.sock", tmp_path / "w.log"
    proc = start_worker(path, log, FACERESTORE_WORKER_FIRST_LINE_TIMEOUT="1")
    try:
        # A FIFO as the analysis: refused at once (it used to block, holding the render lock).
        fifo = tmp_path / "analysis.fifo"
        os.mkfifo(fifo)
        request = {"id": 1, "op": "render", "shm": "x", "width": 2, "height": 2, "centre": 0, "times": [1],
                   "params": {"analysis": str(fifo)}}
        start = time.monotonic()
        answer = ask_worker(path, request)
        assert answer["ok"] is False and "not a regular file" in answer["error"] and time.monotonic() - start < 10
        # A client that never sends a line is closed after the first-line timeout.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
            silent.settimeout(15)
            silent.connect(str(path))
            assert silent.recv(1) == b""
        # Out of descriptors: accept() fails; the worker says so once and keeps serving.
        open_now = len(os.listdir(f"/proc/{proc.pid}/fd"))
        soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (open_now + 1, hard))
        clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(4)]
        for client in clients:
            client.connect(str(path))
        time.sleep(2)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
        for client in clients:
            client.close()
        assert proc.poll() is None and ask_worker(path, {"op": "nothing"})["ok"] is False
        # A client that closes before its answer: one line in the log, no traceback.
        for _ in range(5):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as early:
                early.connect(str(path))
                early.sendall((json.dumps(request) + "\n").encode())
        assert ask_worker(path, {"op": "nothing"})["ok"] is False and proc.poll() is None
    finally:
        stop_worker(proc, log)
    text = log.read_text()
    assert "cannot accept a connection" in text and "Traceback" not in text, text
    assert not path.exists()


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_the_worker_stops_when_the_kernel_hands_its_stop_signal_to_another_thread(tmp_path, signum):
    # A process-wide signal may land on any thread (torch's, a serving one); Python runs the
    # handler only in the main thread, which used to sit in accept() forever: the host's stop hung.
    import ctypes
    import os
    import signal

    path, log = tmp_path / "worker.sock", tmp_path / "w.log"
    proc = start_worker(path, log)
    others = [int(tid) for tid in os.listdir(f"/proc/{proc.pid}/task") if int(tid) != proc.pid]
    assert others, "the worker has no thread besides its main one to hand the signal to"
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.tgkill(proc.pid, others[0], getattr(signal, signum)) == 0
    try:
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            stop_worker(proc, log)
    assert not path.exists()
