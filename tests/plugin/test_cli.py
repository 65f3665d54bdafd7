"""The `facerestore` command as users run it: a real process, real files."""

import numpy as np
import pytest
import torch

from helpers import channel, faces_plate, read_buf, run_cli, write_exr


@pytest.fixture(scope="module")
def shot(tmp_path_factory, colour):
    folder = tmp_path_factory.mktemp("shot")
    for i, frame in enumerate((1001, 1002, 1003)):
        write_exr(
            folder / f"sh.{frame}.exr", faces_plate(colour, positions=((110 + 4 * i, 40),), face_width=70, seed=i)
        )
    return folder


def test_render_end_to_end_with_progress_and_timings(shot, tmp_path):
    proc = run_cli(
        "render",
        shot / "sh.####.exr",
        "-o",
        tmp_path / "out" / "r.%04d.exr",
        "--frames",
        "1001-1003",
        "--device",
        "cpu",
        "--strength",
        "0.8",
        "--mask-channel",
        "matte.face",
    )
    assert proc.returncode == 0, proc.stderr
    assert "3/3" in proc.stderr  # progress
    assert "restore" in proc.stdout and "ms/frame" in proc.stdout  # per-stage timings
    for frame in (1001, 1002, 1003):
        spec, px = read_buf(tmp_path / "out" / f"r.{frame}.exr")
        assert channel(spec, px, "matte.face").max() == 1.0


def test_a_cpu_render_never_imports_torch(shot, tmp_path):
    """On the CPU the networks run on ONNX Runtime: a render (and so every farm task and OpenFX
    worker) must not pay PyTorch's import, seconds before the first frame, once the weights are
    in the cache."""
    import subprocess
    import sys

    from facerestore.models.restorer import make_restorer
    from facerestore.nodes.face_restore import FACE_RESTORE

    make_restorer(FACE_RESTORE.defaults()["model"], "cpu")  # the cache, as set-up leaves it
    code = (
        "import sys; from facerestore.plugin import cli; code = cli.main(sys.argv[1:]); "
        "print('torch imported:', 'torch' in sys.modules); sys.exit(code)"
    )
    args = ["render", shot / "sh.####.exr", "-o", tmp_path / "r.####.exr", "--frames", "1001-1002", "-q"]
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "torch imported: False" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["render", "{shot}/sh.####.exr", "-o", "{tmp}/o.####.exr", "--frames", "1003-1001"], "empty"),
        (
            ["render", "{shot}/sh.####.exr", "-o", "{tmp}/o.####.exr", "--frames", "1001-1005"],
            "missing frames 1004-1005",
        ),
        (["render", "{shot}/sh.####.exr", "-o", "{tmp}/o.####.exr", "--colorspace", "Nope"], "unknown colourspace"),
        (["render", "{shot}/sh.####.exr", "-o", "{shot}/sh.####.exr"], "overwrite"),
        (["render", "{shot}/sh.####.exr", "-o", "{tmp}/o.####.exr", "--strength", "3"], "outside 0..1"),
        (["render", "{tmp}/corrupt.exr", "-o", "{tmp}/o.exr"], "corrupt.exr"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(shot, tmp_path, args, message):
    (tmp_path / "corrupt.exr").write_bytes(b"\x76\x2f\x31\x01" + b"\x00" * 64)
    proc = run_cli(*[a.format(shot=shot, tmp=tmp_path) for a in args])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facerestore: error:") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("o.*"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_requested_without_a_gpu_says_so(shot, tmp_path):
    proc = run_cli("render", shot / "sh.1001.exr", "-o", tmp_path / "o.exr", "--device", "cuda")
    assert proc.returncode == 2 and "CUDA was requested" in proc.stderr


@pytest.mark.slow
def test_demo_writes_outputs_and_contact_sheet(tmp_path):
    proc = run_cli("demo", "--out", tmp_path / "demo", "--device", "cpu", "-q")
    assert proc.returncode == 0, proc.stderr
    sheet = tmp_path / "demo" / "contact_sheet.png"
    assert str(sheet) in proc.stdout
    import cv2

    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] > 300 and image.std() > 20
    spec, px = read_buf(tmp_path / "demo" / "restored" / "restored.1001.exr")
    _, plate = read_buf(tmp_path / "demo" / "plate" / "plate.1001.exr")
    matte = channel(spec, px, "face.mask")
    assert matte.max() == 1.0 and (matte == 0).mean() > 0.9
    assert plate[..., :3].max() > 5.0 and np.array_equal(px[..., :3][matte == 0], plate[..., :3][matte == 0])


@pytest.mark.slow
def test_quiet_drops_the_bar_and_the_notes_but_never_a_warning(tmp_path):
    """Farm jobs run `render -q`: a lossy plate's note on how it is written and NaN pixels left as
    they are must still reach the job's log (they go through logging, apart from the bar)."""
    plate = np.full((48, 64, 3), 0.18, np.float32)
    write_exr(tmp_path / "lossy.0001.exr", plate, compression="dwaa:45")
    plate[5, 7] = np.nan  # DWAA would not keep it: a lossless plate of its own
    write_exr(tmp_path / "nan.0001.exr", plate, compression="zip")
    for name, warning in (("lossy", "warning: the plates use lossy DWAA compression"), ("nan", "1 NaN/inf pixels")):
        quiet = run_cli("render", tmp_path / f"{name}.####.exr", "-o", tmp_path / name / "r.####.exr", "-q")
        assert quiet.returncode == 0, quiet.stderr
        lines = quiet.stderr.strip().splitlines()
        assert len(lines) == 1 and warning in lines[0] and "rendering [" not in lines[0]
    loud = run_cli("render", tmp_path / "nan.####.exr", "-o", tmp_path / "loud" / "r.####.exr")
    assert "rendering [" in loud.stderr and "1 NaN/inf pixels" in loud.stderr


def test_json_progress_is_one_object_a_line_and_warnings_stay_text(tmp_path):
    """The host adapters read `--progress json`: each stage counts to its total, every line
    parses, and a warning is still a line of its own for the artist."""
    import json

    plate = np.full((48, 64, 3), 0.18, np.float32)
    plate[5, 7] = np.nan
    for t in (1, 2, 3):
        write_exr(tmp_path / f"p.{t:04d}.exr", plate, compression="zip")
    proc = run_cli("render", tmp_path / "p.####.exr", "-o", tmp_path / "out" / "r.####.exr", "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    events = [json.loads(line)["progress"] for line in lines if line.startswith("{")]
    assert [(e["stage"], e["done"], e["total"]) for e in events if e["stage"] == "rendering"] == [
        ("rendering", d, 3) for d in (1, 2, 3)
    ]
    assert [e["frame"] for e in events if e["stage"] == "rendering"] == [1, 2, 3]
    assert events[0]["stage"] == "analysing" and all(e["faces"] == 0 for e in events if "faces" in e)
    assert sum("NaN/inf pixels" in line for line in lines if not line.startswith("{")) == 3
    bad = run_cli("render", tmp_path / "p.####.exr", "-o", tmp_path / "bad" / "r.####.exr", "--progress", "xml")
    assert bad.returncode == 2 and "invalid choice: 'xml'" in bad.stderr
