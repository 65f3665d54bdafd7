"""The OpenFX bundle, driven by a test host written for these tests (no real host application
can run here: tests/ofx_host/test_host.c stands in for one; Natron, where built, is in
tests/hosts). Real bundle, real worker, real models; pixels compared with `facerestore render`.
The test host is strict: every run here also checks that the plug-in fetched no image it had not
announced (getFramesNeeded) for that render, nor outside a render or a user's Analyse shot."""

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from facerestore.nodes.face_restore import FACE_RESTORE, HOST_CONTROLS

from helpers import ROOT, build_ofx_bundle, faces_plate, write_exr

BUNDLE = ROOT / "ofx_bridge" / "build" / "FaceRestore.ofx.bundle"
BINARY = BUNDLE / "Contents" / "Linux-x86-64" / "FaceRestore.ofx"
W, H = 200, 150

pytestmark = pytest.mark.skipif(shutil.which("cc") is None or sys.platform != "linux", reason="needs cc on Linux")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    build_ofx_bundle()
    exe = tmp_path_factory.mktemp("host") / "test_host"
    subprocess.run(
        [
            "cc",
            "-std=c11",
            "-O1",
            f"-I{ROOT / 'ofx_bridge' / 'include'}",
            "-o",
            str(exe),
            str(ROOT / "tests" / "ofx_host" / "test_host.c"),
            "-ldl",
            "-lpthread",
        ],
        check=True,
    )
    return exe


def write_shot(folder, colour, frames, position) -> None:
    """`frames` frames of a moving face as float EXRs, and the same pixels as the host's raw frames."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(1, frames + 1):
        plate = faces_plate(colour, width=W, height=H, face_width=64, positions=(position(t),), seed=t)
        write_exr(folder / f"s.{t:04d}.exr", plate, half=False)
        rgba = np.concatenate([plate, np.ones((H, W, 1), np.float32)], axis=2).astype(np.float32)
        rgba.tofile(folder / f"frame.{t}.raw")


@pytest.fixture(scope="module")
def shot(tmp_path_factory, colour):
    """Five frames of a moving face."""
    folder = tmp_path_factory.mktemp("ofx_shot")
    write_shot(folder, colour, 5, lambda t: (60 + 2 * t, 20))
    return folder


@pytest.fixture(scope="module")
def long_plates(tmp_path_factory, colour):
    """Twelve frames of a face moving further, where a window alone tracks differently from the
    whole shot."""
    folder = tmp_path_factory.mktemp("ofx_long_shot")
    write_shot(folder, colour, 12, lambda t: (40 + 5 * t, 20 + t))
    return folder


@pytest.fixture(scope="module")
def long_shot(long_plates, default_node):
    """The long plates and the CLI's full render of them (cli/r.####.exr)."""
    from facerestore.plugin.render import RenderOptions, render

    out = str(long_plates / "cli" / "r.####.exr")
    render(RenderOptions(input=str(long_plates / "s.####.exr"), output=out, progress=False), node=default_node)
    return long_plates


# For tests whose renders are not what they check: the node's ensemble off (its choice index as
# a host saves it), a quarter of the network's passes.
ENSEMBLE_OFF = f"ensemble={next(p for p in FACE_RESTORE.params if p.id == 'ensemble').choices.index('off')}"


@pytest.fixture
def socket_tmp():
    """A short TMPDIR of the test's own for the plug-in's socket folder: the plug-in takes TMPDIR
    only when the socket's path fits in sun_path (it falls back to /tmp), and tmp_path grows
    longer under pytest -n."""
    folder = Path(tempfile.mkdtemp(prefix="fr-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_host(host, shot, out, *args, env=None, time=3, timeout=600, binary=BINARY, last=5):
    """Runs the test host; the result also carries the host's pid, which names its shm segments.
    Analyses go to a folder of the test's (FACERESTORE_ANALYSIS_DIR), not the user's cache."""
    env = {"FACERESTORE_ANALYSIS_DIR": str(Path(str(out)).parent / "analyses"), **(env or {})}
    with subprocess.Popen(
        [str(host), str(binary), str(shot), str(W), str(H), "1", str(last), str(time), str(out), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **env),
    ) as popen:
        try:
            stdout, stderr = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            subprocess.run(["pkill", "-KILL", "-P", str(popen.pid)])  # its worker, stopped or not
            popen.kill()
            raise
    proc = subprocess.CompletedProcess(popen.args, popen.returncode, stdout, stderr)
    proc.pid = popen.pid
    assert "undeclared fetch" not in stdout, stdout  # every image was one the plug-in announced
    return proc


def host_values(proc) -> dict:
    """The node's Analysis file and Status as the host holds them after Analyse shot."""
    prefix = "value "
    return dict(line[len(prefix) :].split(" = ", 1) for line in proc.stdout.splitlines() if line.startswith(prefix))


def worker_log(path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def differences_from_cli(raw_path, exr_path) -> tuple[float, float]:
    """Largest differences of a host render (RGBA, the matte in alpha) from the CLI's frame: RGB,
    and the matte against the CLI's face.mask."""
    out = np.fromfile(raw_path, np.float32).reshape(H, W, 4)
    buf = oiio.ImageBuf(str(exr_path))
    names = list(buf.spec().channelnames)
    reference = buf.get_pixels(oiio.FLOAT)
    rgb = np.abs(out[..., :3] - reference[..., [names.index(c) for c in "RGB"]]).max()
    return float(rgb), float(np.abs(out[..., 3] - reference[..., names.index("face.mask")]).max())


def leftover_segments(*procs) -> list[str]:
    """Shared-memory segments left by these host processes (`facerestore-PID-N`), not by
    anything else on the machine."""
    prefixes = tuple(f"facerestore-{p.pid}-" for p in procs)
    return [name for name in os.listdir("/dev/shm") if name.startswith(prefixes)]


def test_bundle_layout_and_entry_points(host):
    assert BINARY.is_file()
    lib = ctypes.CDLL(str(BINARY))
    assert lib.OfxGetNumberOfPlugins() == 1

    class OfxPlugin(ctypes.Structure):
        _fields_ = [
            ("api", ctypes.c_char_p),
            ("api_version", ctypes.c_int),
            ("id", ctypes.c_char_p),
            ("major", ctypes.c_uint),
            ("minor", ctypes.c_uint),
        ]

    lib.OfxGetPlugin.restype = ctypes.POINTER(OfxPlugin)
    plugin = lib.OfxGetPlugin(0).contents
    assert plugin.api == b"OfxImageEffectPluginAPI" and plugin.id == b"com.facerestore.FaceRestore"
    assert (plugin.major, plugin.minor) == FACE_RESTORE.version


def test_describe_offers_the_node_parameters_and_temporal_frames(host, shot, tmp_path):
    proc = run_host(host, shot, tmp_path / "o.raw", "temporal_window=3", env={"FACERESTORE_WORKER_CMD": "false"})
    lines = proc.stdout.splitlines()
    params = {line.split()[1] for line in lines if line.startswith("param ")}
    assert {p.id for p in FACE_RESTORE.params} <= params  # the OFX node renders the same spec
    assert params - {p.id for p in FACE_RESTORE.params} == {"output", "colorspace", "analysis"} | {
        c.id for c in HOST_CONTROLS
    }
    assert "param analyse_shot OfxParamTypePushButton" in lines and "param analysis_status OfxParamTypeString" in lines
    assert "context OfxImageEffectContextFilter" in lines and "clip Source" in lines and "clip Output" in lines
    assert "frames needed 1 5" in lines  # time 3, window 3: two radii either side
    assert f"region of interest 0 0 {W} {H}" in lines  # the whole frame: faces are found anywhere


def test_the_declared_parameters_are_the_node_spec(host, shot, tmp_path):
    """Labels, defaults, ranges and choices as the plug-in declares them to a host, against the
    spec they are generated from: the OFX node cannot drift from the CLI."""
    from facerestore.nodes.face_restore import HOST_PARAMS

    proc = run_host(host, shot, tmp_path / "o.raw", env={"FACERESTORE_WORKER_CMD": "false"})
    declared = {}
    for line in proc.stdout.splitlines():
        if line.startswith("paramdef "):
            name, rest = line[len("paramdef ") :].split(" ", 1)
            declared[name] = rest
    for p in FACE_RESTORE.params + HOST_PARAMS:
        line = declared[p.id]
        assert line.startswith(f"label={p.label}")
        if p.choices:
            assert f" default={p.choices.index(p.default)}" in line
            assert line.endswith(" ".join(f"option={c}" for c in p.choices))
        elif isinstance(p.default, str):
            assert line.endswith(f" default={p.default}")
        elif isinstance(p.default, int):
            assert line.endswith(f" default={p.default} min={p.minimum} max={p.maximum}")
        else:
            numbers = dict(field.split("=") for field in line.split(" ")[-5:])
            assert [float(numbers[k]) for k in ("default", "min", "max")] == [p.default, p.minimum, p.maximum]
            # The slider moves in steps the range can use and shows the default as it is (a
            # host's own step of 1 and 2 digits would show 0.0075 as 0.01).
            digits, step = int(numbers["digits"]), float(numbers["step"])
            assert step <= (p.maximum - p.minimum) / 100 and round(step, digits) == step
            assert round(p.default, digits) == p.default, (p.id, digits)
    for control in HOST_CONTROLS:
        assert declared[control.id].startswith(f"label={control.label}")
    assert declared["analysis_status"].endswith(f" default={HOST_CONTROLS[1].default}")
    assert len(declared) == len(FACE_RESTORE.params) + len(HOST_PARAMS) + len(HOST_CONTROLS)


@pytest.mark.slow
def test_render_matches_facerestore_render(host, shot, tmp_path, node):
    from facerestore.plugin.render import RenderOptions, render

    report = render(
        RenderOptions(input=str(shot / "s.####.exr"), output=str(tmp_path / "r.####.exr"), progress=False), node=node
    )
    proc = run_host(host, shot, tmp_path / "o.raw", f"analysis={report.analysis_path}", "colorspace=ACEScg")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rgb, matte = differences_from_cli(tmp_path / "o.raw", tmp_path / "r.0003.exr")
    assert rgb <= 1e-6 and matte <= 1e-6  # matte in alpha
    out = np.fromfile(tmp_path / "o.raw", np.float32).reshape(H, W, 4)
    source = np.fromfile(shot / "frame.3.raw", np.float32).reshape(H, W, 4)
    assert (np.abs(out[..., :3] - source[..., :3]).max(axis=2) > 1e-3).sum() > 300  # the face was restored


@pytest.mark.slow
def test_an_anamorphic_clip_is_restored_as_the_cli_restores_it(host, shot, tmp_path, node):
    """The host says the clip's pixels are twice as wide as tall: the plug-in passes that on
    (pixel aspect left at 0, automatic) and the frame equals the CLI's render with aspect 2."""
    from facerestore.plugin.render import RenderOptions, render

    render(
        RenderOptions(
            input=str(shot / "s.####.exr"),
            output=str(tmp_path / "r.####.exr"),
            progress=False,
            analysis=str(tmp_path / "a.json"),
        ),
        node=node.with_params(pixel_aspect=2.0),
    )
    env = {"FACERESTORE_TEST_PIXEL_ASPECT": "2"}
    proc = run_host(host, shot, tmp_path / "o.raw", "colorspace=ACEScg", f"analysis={tmp_path / 'a.json'}", env=env)
    assert "persistent" not in proc.stdout  # the analysed shot, not a preview
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rgb, matte = differences_from_cli(tmp_path / "o.raw", tmp_path / "r.0003.exr")
    assert rgb <= 1e-6 and matte <= 1e-6
    square = run_host(host, shot, tmp_path / "square.raw", "colorspace=ACEScg")
    assert square.returncode == 0
    assert differences_from_cli(tmp_path / "square.raw", tmp_path / "r.0003.exr")[1] > 0.1  # a different matte


@pytest.mark.slow
def test_mask_input_limits_the_change_and_the_matte(host, shot, tmp_path):
    full = run_host(host, shot, tmp_path / "full.raw")
    mask = np.zeros((H, W), np.float32)
    mask[:, :100] = 1.0  # the left half, through the middle of the face
    mask.tofile(tmp_path / "mask.raw")
    masked = run_host(host, shot, tmp_path / "masked.raw", "--mask", tmp_path / "mask.raw")
    assert full.returncode == 0 and masked.returncode == 0, masked.stdout
    assert "clip Mask" in masked.stdout
    a = np.fromfile(tmp_path / "full.raw", np.float32).reshape(H, W, 4)
    b = np.fromfile(tmp_path / "masked.raw", np.float32).reshape(H, W, 4)
    source = np.fromfile(shot / "frame.3.raw", np.float32).reshape(H, W, 4)
    assert np.array_equal(b[:, 100:, :3], source[:, 100:, :3]) and not b[:, 100:, 3].any()
    assert np.array_equal(b[:, :100], a[:, :100])
    assert a[:, 100:, 3].max() > 0.5  # the face did reach into the masked-off half


@pytest.mark.slow
def test_a_worker_killed_mid_render_is_a_host_error_and_the_next_render_recovers(host, shot, tmp_path):
    flag = tmp_path / "died"
    proc = run_host(host, shot, tmp_path / "o.raw", "--renders", "2", env={"FACERESTORE_WORKER_DIE_ONCE": str(flag)})
    assert flag.exists()
    assert "render 1 status 1" in proc.stdout and "worker exited with status 9 during the render" in proc.stdout
    assert "render 2 status 0" in proc.stdout and proc.returncode == 0
    missing = run_host(host, shot, tmp_path / "o.raw", env={"FACERESTORE_WORKER_CMD": "/nonexistent/worker"})
    assert missing.returncode == 3 and "while starting" in missing.stdout
    assert not leftover_segments(proc, missing)


def test_install_and_uninstall(host, tmp_path):
    env = dict(os.environ, OFX_PLUGIN_PATH=f"{tmp_path / 'plugins'}:/elsewhere")
    facerestore = [sys.executable, "-m", "facerestore.plugin.cli", "install", "ofx"]
    subprocess.run(facerestore, check=True, env=env, capture_output=True)
    installed = tmp_path / "plugins" / "FaceRestore.ofx.bundle" / "Contents" / "Linux-x86-64" / "FaceRestore.ofx"
    assert installed.read_bytes() == BINARY.read_bytes()
    subprocess.run([*facerestore, "--uninstall"], check=True, env=env, capture_output=True)
    assert not (tmp_path / "plugins" / "FaceRestore.ofx.bundle").exists()


@pytest.mark.slow
def test_an_installed_bundle_finds_its_worker_at_load_time_wherever_it_is(host, shot, tmp_path):
    # Python somewhere else (a wrapper standing in for a moved venv), the bundle on a shared path.
    marker = tmp_path / "wrapper-ran"
    python = tmp_path / "elsewhere" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\ntouch "{marker}"\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    shared = tmp_path / "shared plugins"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "facerestore.plugin.cli",
            "install",
            "ofx",
            "--path",
            str(shared),
            "--python",
            str(python),
        ],
        check=True,
        capture_output=True,
    )
    marker.unlink()
    installed = shared / "FaceRestore.ofx.bundle" / "Contents" / "Linux-x86-64" / "FaceRestore.ofx"
    assert sys.executable.encode() not in installed.read_bytes()  # nothing of the build's paths compiled in
    proc = run_host(host, shot, tmp_path / "o.raw", binary=installed, env={"FACERESTORE_WORKER_CMD": ""})
    assert proc.returncode == 0 and marker.exists(), proc.stdout
    # Without the Resources file, the environment or `facerestore` on PATH: an error that says
    # where it looked.
    (installed.parent.parent / "Resources" / "worker.json").unlink()
    lost = run_host(
        host, shot, tmp_path / "o.raw", binary=installed, env={"FACERESTORE_WORKER_CMD": "", "PATH": "/usr/bin:/bin"}
    )
    assert lost.returncode == 3 and "worker.json (missing)" in lost.stdout and "facerestore worker" in lost.stdout


# Between two renders: kill the host's worker (its child) and wait until it is gone.
KILL_WORKER = "pkill -KILL -P $PPID -f 'ofx_bridge[.]worker' && sleep 0.5"


@pytest.mark.slow
def test_a_worker_that_died_between_renders_does_not_end_the_host(host, shot, tmp_path, socket_tmp):
    # The test host keeps SIGPIPE's default action: writing to the dead worker's socket used
    # to end the host process (exit 141) and leave its segment and socket behind.
    proc = run_host(
        host, shot, tmp_path / "o.raw", "--renders", "2", "--between", KILL_WORKER, env={"TMPDIR": str(socket_tmp)}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "between-renders command failed" not in proc.stdout  # a worker was there to kill
    assert "render 1 status 0" in proc.stdout and "render 2 status 0" in proc.stdout  # a fresh worker
    assert not leftover_segments(proc)
    assert not list(socket_tmp.glob("facerestore-*"))  # the socket's directory is gone


@pytest.mark.slow
def test_a_stopped_worker_costs_one_bounded_render_then_a_fresh_worker_serves(host, shot, tmp_path, socket_tmp):
    import time as clock

    flag = tmp_path / "stopped"
    started = clock.monotonic()
    proc = run_host(
        host,
        shot,
        tmp_path / "o.raw",
        "--renders",
        "2",
        timeout=120,
        env={"FACERESTORE_WORKER_STOP_ONCE": str(flag), "FACERESTORE_WORKER_TIMEOUT": "15", "TMPDIR": str(socket_tmp)},
    )
    assert flag.exists()
    assert "render 1 status 1" in proc.stdout and "no answer within 15 s" in proc.stdout
    assert "render 2 status 0" in proc.stdout and proc.returncode == 0
    assert clock.monotonic() - started < 15 + 3 + 60  # timeout, grace, one fresh worker's render
    assert not leftover_segments(proc) and not list(socket_tmp.glob("facerestore-*"))


@pytest.mark.slow
def test_instances_rendering_at_once_each_get_the_right_frame(host, shot, tmp_path):
    single = run_host(host, shot, tmp_path / "one.raw")
    both = run_host(host, shot, tmp_path / "two.raw", "--threads", "3")
    assert single.returncode == 0 and both.returncode == 0, both.stdout
    assert both.stdout.count("status 0") == 3
    one = np.fromfile(tmp_path / "one.raw", np.float32)
    for i in range(3):
        assert np.array_equal(np.fromfile(tmp_path / f"two.raw.{i}", np.float32), one)
    assert not leftover_segments(single, both)


def test_the_socket_is_private_to_the_user(host, shot, tmp_path, socket_tmp):
    look = "stat -c '%a %u' ${TMPDIR}/facerestore-*/ ${TMPDIR}/facerestore-*/worker.sock"
    args = ("--renders", "2", "--between", look, ENSEMBLE_OFF)
    proc = run_host(host, shot, tmp_path / "o.raw", *args, env={"TMPDIR": str(socket_tmp)})
    assert proc.returncode == 0, proc.stdout
    modes = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert len(modes) == 2 and all(uid == str(os.getuid()) for _, uid in modes)
    assert all(int(mode, 8) & 0o077 == 0 for mode, _ in modes)  # neither group nor others


@pytest.fixture
def worker(tmp_path):
    """The worker on its own, as the plug-in starts it, for the channel's bad-request tests."""
    import socket
    import time as clock

    path = tmp_path / "w.sock"
    proc = subprocess.Popen([sys.executable, "-m", "facerestore.ofx_bridge.worker", "--socket", str(path)])
    deadline = clock.monotonic() + 60
    while not path.exists() and clock.monotonic() < deadline:
        clock.sleep(0.1)

    def ask(data: bytes) -> tuple[dict, bool]:
        """The answer to `data`, and whether the worker closed the connection after it."""
        import json

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(30)
            conn.connect(str(path))
            with contextlib.suppress(BrokenPipeError):  # an oversized request: answered and closed before it all went
                conn.sendall(data)
            received = b""
            while b"\n" not in received:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += chunk
            first, _, rest = received.partition(b"\n")
            conn.settimeout(2)
            try:
                closed = not rest and conn.recv(1) == b""
            except TimeoutError:
                closed = False
            return json.loads(first), closed

    yield ask
    proc.terminate()
    proc.wait(timeout=30)


def test_the_worker_answers_every_bad_request_and_closes(worker, tmp_path):
    target = tmp_path / "victim"
    target.write_bytes(b"keep")
    good = {"id": 7, "op": "render", "width": 2, "height": 2, "centre": 0, "times": [1], "params": {}}
    import json

    cases = {
        b"{not json\n": "malformed request",
        b"[1, 2]\n": "not a render or analyse request",
        b"\xff\xfe{}\n": "malformed request",
        b"x" * (2 << 20): "longer than",
        (json.dumps(good | {"shm": f"../..{target}"}) + "\n").encode(): "not a facerestore shared-memory name",
        (json.dumps(good | {"shm": "facerestore-1-1-0123456789abcdef"}) + "\n").encode(): "No such file",
    }
    for request, message in cases.items():
        answer, closed = worker(request)
        assert answer["ok"] is False and message in answer["error"], (request[:40], answer)
        # A malformed request closes the channel; a well-formed one naming a missing segment
        # is an ordinary error and the worker goes on serving.
        assert closed == (message != "No such file")
    assert target.read_bytes() == b"keep"


@pytest.mark.slow
def test_the_first_render_is_a_preview_over_its_own_window_whatever_the_shot_length(host, tmp_path, colour):
    """The first frame costs the same for 6 frames as for 48: the render fetches only its own
    window (what getFramesNeeded announced), tracks the faces over it, and says it is a preview.
    Nothing of the rest of the clip is read (the worker's log lists every frame it was given)."""
    for frames in (6, 48):
        folder = tmp_path / f"shot{frames}"
        write_shot(folder, colour, frames, lambda t: (40 + (t % 12) * 5, 20))
        log = tmp_path / f"worker{frames}.log"
        proc = run_host(
            host, folder, tmp_path / f"o{frames}.raw", time=1, last=frames, env={"FACERESTORE_WORKER_LOG": str(log)}
        )
        assert proc.returncode == 0 and "render 1 status 0" in proc.stdout, proc.stdout
        entries = worker_log(log)
        assert [e["op"] for e in entries] == ["render"]  # no analysis, no streaming
        assert entries[0]["mode"] == "preview" and entries[0]["frames"] == [1, 2, 3, 4, 5]  # t = 1, two radii of 2
        assert "persistent OfxMessageWarning: FaceRestore preview (the shot is not analysed)" in proc.stdout
        out = np.fromfile(tmp_path / f"o{frames}.raw", np.float32).reshape(H, W, 4)
        assert out[..., 3].max() > 0.9  # a real preview: the face found and restored


@pytest.mark.slow
def test_after_analyse_shot_every_frame_equals_the_cli_full_render(host, long_shot, tmp_path):
    """Analyse shot (the host's instanceChanged, a user's press) streams the clip to the worker
    once, with the host's progress bar; the analysis goes to a file the node now names, the Status
    line changes (the host drops its cached previews), and every frame rendered in order, final or
    not, equals the CLI's full render (a window alone would track frame 1 over frames 1-5 only)."""
    log = tmp_path / "worker.log"
    proc = run_host(
        host,
        long_shot,
        tmp_path / "o.raw",
        "--analyse",
        "--sequence",
        "--final",
        "colorspace=ACEScg",
        time=1,
        last=12,
        env={"FACERESTORE_WORKER_LOG": str(log)},
    )
    assert proc.returncode == 0 and "analyse status 0" in proc.stdout, proc.stdout + proc.stderr
    for t in range(1, 13):
        rgb, matte = differences_from_cli(tmp_path / f"o.raw.{t}", long_shot / "cli" / f"r.{t:04d}.exr")
        assert rgb <= 1e-6 and matte <= 1e-6, t
    progress = [
        float(line.split()[1])
        for line in proc.stdout.splitlines()
        if line.startswith("progress 0.") or line.startswith("progress 1.")
    ]
    assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 1.0 and len(progress) >= 4
    assert proc.stdout.index("progress start") < proc.stdout.index("progress end") < proc.stdout.index("render 1")
    values = host_values(proc)
    written = Path(values["analysis"])
    assert written.parent == tmp_path / "analyses" and written.is_file()
    assert (
        values["analysis_status"].startswith("Analysed ") and "frames 1-12, 1 face track" in values["analysis_status"]
    )
    entries = worker_log(log)
    assert [f for e in entries if e["op"] == "analyse" for f in e["frames"]] == list(range(1, 13))  # once, in order
    renders = [e for e in entries if e["op"] == "render"]
    assert len(renders) == 12 and all(e["mode"] == "shot" for e in renders)
    assert sorted(f for e in renders for f in e["restored"]) == list(range(1, 13))  # each frame restored once
    assert "persistent OfxMessageWarning" not in proc.stdout


def test_analyse_shot_stops_when_the_user_cancels_and_the_node_keeps_what_it_had(host, long_plates, tmp_path):
    log = tmp_path / "worker.log"
    proc = run_host(
        host,
        long_plates,
        tmp_path / "o.raw",
        "--analyse",
        time=1,
        last=12,
        env={"FACERESTORE_WORKER_LOG": str(log), "FACERESTORE_TEST_CANCEL_AT": "0.3"},
    )
    assert proc.returncode == 0 and "progress cancelled" in proc.stdout and "progress end" in proc.stdout, proc.stdout
    entries = worker_log(log)
    analysed = [f for e in entries if e["op"] == "analyse" for f in e.get("frames", [])]
    assert analysed and analysed[-1] < 12  # stopped part-way: not every frame was read
    assert {"op": "analyse", "cancelled": True} in entries
    assert host_values(proc) == {"analysis": "", "analysis_status": HOST_CONTROLS[1].default}
    assert not (tmp_path / "analyses").exists() or not any((tmp_path / "analyses").iterdir())
    assert [e["mode"] for e in entries if e["op"] == "render"] == ["preview"]  # the render after it


def test_analyse_shot_never_replaces_a_file_that_is_not_an_analysis(host, shot, tmp_path):
    plate = tmp_path / "plate.exr"
    shutil.copy(shot / "s.0001.exr", plate)
    before = plate.read_bytes()
    proc = run_host(host, shot, tmp_path / "o.raw", "--analyse", f"analysis={plate}")
    assert "analyse status 1" in proc.stdout and "is not a facerestore analysis; refusing to replace it" in proc.stdout
    assert plate.read_bytes() == before


@pytest.mark.slow
def test_a_final_render_is_never_silently_a_preview(host, shot, tmp_path, node):
    """A host's final render (to disk, batch, farm) of a shot that is not analysed, or whose
    analysis no longer fits the node's settings, fails with a message that says what to do."""
    from facerestore.plugin.render import RenderOptions, render

    refused = run_host(host, shot, tmp_path / "o.raw", "--final")
    assert refused.returncode == 3 and "a final render needs the analysed shot" in refused.stdout
    assert "Press Analyse shot" in refused.stdout
    report = render(
        RenderOptions(input=str(shot / "s.####.exr"), output=str(tmp_path / "r.####.exr"), progress=False), node=node
    )
    stale = run_host(
        host, shot, tmp_path / "o.raw", "--final", f"analysis={report.analysis_path}", "detection_threshold=0.5"
    )
    assert stale.returncode == 3 and "made with another detection_threshold" in stale.stdout
    viewer = run_host(host, shot, tmp_path / "o.raw", f"analysis={report.analysis_path}", "detection_threshold=0.5")
    assert (
        viewer.returncode == 0 and "preview (the analysis was made with another detection_threshold)" in viewer.stdout
    )
    missing = run_host(host, shot, tmp_path / "o.raw", "--final", f"analysis={tmp_path / 'none.json'}")
    assert missing.returncode == 3 and "no analysis at" in missing.stdout


@pytest.mark.slow
def test_a_sidecar_of_other_plates_is_never_used_as_this_shots_analysis(host, shot, tmp_path, node, colour):
    """The worker has the host's pixels, not files: it checks the frame against what the
    analysis saw (`AnalysisStore`, the CLI's rule). Another shot's sidecar, with the same frames
    and settings, is refused by a final render and previewed by the viewer, never used."""
    from facerestore.plugin.render import RenderOptions, render

    other = tmp_path / "other"
    other.mkdir()
    for t in range(1, 6):
        plate = faces_plate(colour, width=W, height=H, face_width=64, positions=((20 + 3 * t, 60),), seed=50 + t)
        write_exr(other / f"o.{t:04d}.exr", plate * np.float32(2.5), half=False)
    report = render(
        RenderOptions(input=str(other / "o.####.exr"), output=str(tmp_path / "r" / "r.####.exr"), progress=False),
        node=node,
    )
    final = run_host(host, shot, tmp_path / "o.raw", "--final", f"analysis={report.analysis_path}")
    assert final.returncode == 3 and "made for other plates (frame 3 looks different)" in final.stdout, final.stdout
    viewer = run_host(host, shot, tmp_path / "o.raw", f"analysis={report.analysis_path}")
    assert viewer.returncode == 0 and "preview (the analysis was made for other plates" in viewer.stdout
    own = render(
        RenderOptions(input=str(shot / "s.####.exr"), output=str(tmp_path / "s" / "r.####.exr"), progress=False),
        node=node,
    )
    assert run_host(host, shot, tmp_path / "o.raw", "--final", f"analysis={own.analysis_path}").returncode == 0


@pytest.mark.slow
def test_a_cli_sidecar_with_faces_added_by_hand_is_the_analysed_shot_in_the_host(host, shot, tmp_path, node):
    """Faces added with `--add-face` are part of the sidecar, not a setting of the node: the
    host's final render takes the sidecar as it is and equals the CLI's frame."""
    from facerestore.nodes.manual_faces import parse_added_face
    from facerestore.plugin.render import RenderOptions, render

    options = RenderOptions(
        input=str(shot / "s.####.exr"),
        output=str(tmp_path / "r.####.exr"),
        progress=False,
        added_faces=(parse_added_face("1:140,90,190,140"),),
    )
    report = render(options, node=node)
    proc = run_host(host, shot, tmp_path / "o.raw", "--final", f"analysis={report.analysis_path}", "colorspace=ACEScg")
    assert proc.returncode == 0, proc.stdout
    assert differences_from_cli(tmp_path / "o.raw", tmp_path / "r.0003.exr") == (0.0, 0.0)


@pytest.mark.slow
def test_a_host_that_holds_frames_beyond_the_clip_renders_every_frame_as_the_cli(host, shot, tmp_path, node):
    """Hosts hand out the first and last frames for times beyond a clip's ends: those held
    frames are not part of the shot."""
    from facerestore.plugin.render import RenderOptions, render

    render(
        RenderOptions(input=str(shot / "s.####.exr"), output=str(tmp_path / "r.####.exr"), progress=False), node=node
    )
    proc = run_host(
        host,
        shot,
        tmp_path / "o.raw",
        "--analyse",
        "--sequence",
        "colorspace=ACEScg",
        env={"FACERESTORE_TEST_HOLD_FRAMES": "1"},
    )
    assert proc.returncode == 0 and proc.stdout.count("status 0") == 6, proc.stdout + proc.stderr
    for t in range(1, 6):
        assert differences_from_cli(tmp_path / f"o.raw.{t}", tmp_path / f"r.{t:04d}.exr")[0] <= 1e-6, t


def test_a_render_at_a_fractional_time_is_tracked_over_its_own_window(host, shot, tmp_path, node):
    """Motion blur or a retime downstream asks for t = 3.5: not a frame of the shot, so it is
    tracked over its own window, even in a final render with an analysis."""
    from facerestore.plugin.render import RenderOptions, render

    report = render(
        RenderOptions(input=str(shot / "s.####.exr"), output=str(tmp_path / "r.####.exr"), progress=False),
        node=node.with_params(ensemble="off"),
    )
    log = tmp_path / "worker.log"
    proc = run_host(
        host,
        shot,
        tmp_path / "o.raw",
        "--final",
        f"analysis={report.analysis_path}",
        ENSEMBLE_OFF,
        time=3.5,
        env={"FACERESTORE_WORKER_LOG": str(log)},
    )
    assert proc.returncode == 0, proc.stdout
    entries = worker_log(log)
    assert [e["op"] for e in entries] == ["render"] and entries[0]["mode"] == "preview"


@pytest.mark.slow
def test_a_frame_changed_between_renders_is_restored_again(host, shot, tmp_path, node, colour):
    """Restored crops are reused by frame content: an upstream change in the window (here frame
    4 replaced between two renders of frame 3) makes the worker restore that frame again."""
    from facerestore.plugin.render import RenderOptions, render

    changed = tmp_path / "shot"
    shutil.copytree(shot, changed)
    plate = faces_plate(colour, width=W, height=H, face_width=64, positions=((90, 30),), seed=40)
    rgba = np.concatenate([plate, np.ones((H, W, 1), np.float32)], axis=2).astype(np.float32)
    rgba.tofile(tmp_path / "new4.raw")
    write_exr(changed / "s.0004.exr", plate, half=False)
    report = render(
        RenderOptions(input=str(changed / "s.####.exr"), output=str(tmp_path / "r.####.exr"), progress=False),
        node=node,
    )
    # The host's raw frames are still the old ones: frame 4 changes between its two renders.
    proc = run_host(
        host,
        changed,
        tmp_path / "o.raw",
        "--renders",
        "2",
        "colorspace=ACEScg",
        f"analysis={report.analysis_path}",
        "--between",
        f"cp {tmp_path / 'new4.raw'} {changed / 'frame.4.raw'}",
    )
    assert proc.returncode == 0 and proc.stdout.count("status 0") == 2, proc.stdout
    assert differences_from_cli(tmp_path / "o.raw", tmp_path / "r.0003.exr")[0] <= 1e-6


def test_a_host_that_gives_no_clip_range_renders_previews_and_cannot_analyse(host, shot, tmp_path):
    proc = run_host(
        host, shot, tmp_path / "o.raw", "--analyse", ENSEMBLE_OFF, env={"FACERESTORE_TEST_NO_FRAME_RANGE": "1"}
    )
    assert "analyse status 1" in proc.stdout and "no frame range for the Source clip" in proc.stdout
    assert proc.returncode == 0, proc.stdout  # its renders are previews
    out = np.fromfile(tmp_path / "o.raw", np.float32).reshape(H, W, 4)
    assert out[..., 3].max() > 0.9  # the face was found and restored from the window alone
