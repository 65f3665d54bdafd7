"""The OpenFX bundle, driven by a test host written for these tests (no real host application
can run here: tests/ofx_host/test_host.c stands in for one). Real bundle, real worker, real
models; pixels compared with `facerestore render`."""

import ctypes
import os
import shutil
import subprocess
import sys

import numpy as np
import OpenImageIO as oiio
import pytest

from facerestore.nodes.face_restore import FACE_RESTORE

from helpers import ROOT, faces_plate, write_exr

BUNDLE = ROOT / "ofx_bridge" / "build" / "FaceRestore.ofx.bundle"
BINARY = BUNDLE / "Contents" / "Linux-x86-64" / "FaceRestore.ofx"
W, H = 200, 150

pytestmark = pytest.mark.skipif(shutil.which("cc") is None or sys.platform != "linux", reason="needs cc on Linux")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    subprocess.run(["make", "-s", "-C", str(ROOT / "ofx_bridge"), f"PYTHON={sys.executable}"], check=True)
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


@pytest.fixture(scope="module")
def shot(tmp_path_factory, colour):
    """Five frames of a moving face as float EXRs, and the same pixels as the host's raw frames."""
    folder = tmp_path_factory.mktemp("ofx_shot")
    for t in range(1, 6):
        plate = faces_plate(colour, width=W, height=H, face_width=64, positions=((60 + 2 * t, 20),), seed=t)
        write_exr(folder / f"s.{t:04d}.exr", plate, half=False)
        rgba = np.concatenate([plate, np.ones((H, W, 1), np.float32)], axis=2).astype(np.float32)
        rgba.tofile(folder / f"frame.{t}.raw")
    return folder


def run_host(host, shot, out, *args, env=None, time=3, timeout=600, binary=BINARY):
    """Runs the test host; the result also carries the host's pid, which names its shm segments."""
    with subprocess.Popen(
        [str(host), str(binary), str(shot), str(W), str(H), "1", "5", str(time), str(out), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **(env or {})),
    ) as popen:
        try:
            stdout, stderr = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            subprocess.run(["pkill", "-KILL", "-P", str(popen.pid)])  # its worker, stopped or not
            popen.kill()
            raise
    proc = subprocess.CompletedProcess(popen.args, popen.returncode, stdout, stderr)
    proc.pid = popen.pid
    return proc


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
    assert params - {p.id for p in FACE_RESTORE.params} == {"output", "colorspace", "analysis"}
    assert "context OfxImageEffectContextFilter" in lines and "clip Source" in lines and "clip Output" in lines
    assert "frames needed 1 5" in lines  # time 3, window 3: two radii either side


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
    assert len(declared) == len(FACE_RESTORE.params) + len(HOST_PARAMS)


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


def test_an_anamorphic_clip_is_restored_as_the_cli_restores_it(host, shot, tmp_path, node):
    """The host says the clip's pixels are twice as wide as tall: the plug-in passes that on
    (pixel aspect left at 0, automatic) and the frame equals the CLI's render with aspect 2."""
    from facerestore.plugin.render import RenderOptions, render

    node.params["pixel_aspect"] = 2.0
    try:
        render(RenderOptions(input=str(shot / "s.####.exr"), output=str(tmp_path / "r.####.exr"), progress=False,
                             analysis=str(tmp_path / "a.json")), node=node)
    finally:
        node.params["pixel_aspect"] = 0.0
    env = {"FACERESTORE_TEST_PIXEL_ASPECT": "2"}
    proc = run_host(host, shot, tmp_path / "o.raw", "colorspace=ACEScg", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rgb, matte = differences_from_cli(tmp_path / "o.raw", tmp_path / "r.0003.exr")
    assert rgb <= 1e-6 and matte <= 1e-6
    square = run_host(host, shot, tmp_path / "square.raw", "colorspace=ACEScg")
    assert square.returncode == 0
    assert differences_from_cli(tmp_path / "square.raw", tmp_path / "r.0003.exr")[1] > 0.1  # a different matte


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


def test_an_installed_bundle_finds_its_worker_at_load_time_wherever_it_is(host, shot, tmp_path):
    # Python somewhere else (a wrapper standing in for a moved venv), the bundle on a shared path.
    marker = tmp_path / "wrapper-ran"
    python = tmp_path / "elsewhere" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\ntouch "{marker}"\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    shared = tmp_path / "shared plugins"
    subprocess.run(
        [sys.executable, "-m", "facerestore.plugin.cli", "install", "ofx", "--path", str(shared), "--python", str(python)],
        check=True, capture_output=True,
    )
    marker.unlink()
    installed = shared / "FaceRestore.ofx.bundle" / "Contents" / "Linux-x86-64" / "FaceRestore.ofx"
    assert sys.executable.encode() not in installed.read_bytes()  # nothing of the build's paths compiled in
    proc = run_host(host, shot, tmp_path / "o.raw", binary=installed, env={"FACERESTORE_WORKER_CMD": ""})
    assert proc.returncode == 0 and marker.exists(), proc.stdout
    # Without the Resources file, the environment or `facerestore` on PATH: an error that says
    # where it looked.
    (installed.parent.parent / "Resources" / "worker.json").unlink()
    lost = run_host(host, shot, tmp_path / "o.raw", binary=installed, env={"FACERESTORE_WORKER_CMD": "", "PATH": "/usr/bin:/bin"})
    assert lost.returncode == 3 and "worker.json (missing)" in lost.stdout and "facerestore worker" in lost.stdout


# Between two renders: kill the host's worker (its child) and wait until it is gone.
KILL_WORKER = "pkill -KILL -P $PPID -f 'ofx_bridge[.]worker' && sleep 0.5"


def test_a_worker_that_died_between_renders_does_not_end_the_host(host, shot, tmp_path):
    # The test host keeps SIGPIPE's default action: writing to the dead worker's socket used
    # to end the host process (exit 141) and leave its segment and socket behind.
    proc = run_host(host, shot, tmp_path / "o.raw", "--renders", "2", "--between", KILL_WORKER,
                    env={"TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "between-renders command failed" not in proc.stdout  # a worker was there to kill
    assert "render 1 status 0" in proc.stdout and "render 2 status 0" in proc.stdout  # a fresh worker
    assert not leftover_segments(proc)
    assert not list(tmp_path.glob("facerestore-*"))  # the socket's directory is gone


@pytest.mark.slow
def test_a_stopped_worker_costs_one_bounded_render_then_a_fresh_worker_serves(host, shot, tmp_path):
    import time as clock

    flag = tmp_path / "stopped"
    started = clock.monotonic()
    proc = run_host(
        host, shot, tmp_path / "o.raw", "--renders", "2", timeout=120,
        env={"FACERESTORE_WORKER_STOP_ONCE": str(flag), "FACERESTORE_WORKER_TIMEOUT": "15", "TMPDIR": str(tmp_path)},
    )
    assert flag.exists()
    assert "render 1 status 1" in proc.stdout and "no answer within 15 s" in proc.stdout
    assert "render 2 status 0" in proc.stdout and proc.returncode == 0
    assert clock.monotonic() - started < 15 + 3 + 60  # timeout, grace, one fresh worker's render
    assert not leftover_segments(proc) and not list(tmp_path.glob("facerestore-*"))


def test_instances_rendering_at_once_each_get_the_right_frame(host, shot, tmp_path):
    single = run_host(host, shot, tmp_path / "one.raw")
    both = run_host(host, shot, tmp_path / "two.raw", "--threads", "3")
    assert single.returncode == 0 and both.returncode == 0, both.stdout
    assert both.stdout.count("status 0") == 3
    one = np.fromfile(tmp_path / "one.raw", np.float32)
    for i in range(3):
        assert np.array_equal(np.fromfile(tmp_path / f"two.raw.{i}", np.float32), one)
    assert not leftover_segments(single, both)


def test_the_socket_is_private_to_the_user(host, shot, tmp_path):
    look = "stat -c '%a %u' ${TMPDIR}/facerestore-*/ ${TMPDIR}/facerestore-*/worker.sock"
    proc = run_host(host, shot, tmp_path / "o.raw", "--renders", "2", "--between", look, env={"TMPDIR": str(tmp_path)})
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
            try:
                conn.sendall(data)
            except BrokenPipeError:  # an oversized request: answered and closed before it all went
                pass
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


def test_sequential_host_renders_without_an_analysis_equal_the_cli_full_render(host, tmp_path, node, colour):
    """A host renders a 12-frame shot frame by frame with no analysis file: the worker tracks the
    whole clip once (streamed by the plug-in), restores each frame once, and every frame equals
    the CLI's full render (a window alone would track frame 1 over frames 1-5 only)."""
    import json

    from facerestore.plugin.render import RenderOptions, render

    long_shot = tmp_path / "shot"
    long_shot.mkdir()
    for t in range(1, 13):
        plate = faces_plate(colour, width=W, height=H, face_width=64, positions=((40 + 5 * t, 20 + t),), seed=t)
        write_exr(long_shot / f"s.{t:04d}.exr", plate, half=False)
        np.concatenate([plate, np.ones((H, W, 1), np.float32)], axis=2).astype(np.float32).tofile(
            long_shot / f"frame.{t}.raw")
    render(RenderOptions(input=str(long_shot / "s.####.exr"), output=str(tmp_path / "r.####.exr"), progress=False),
           node=node)
    log = tmp_path / "worker.log"
    proc = subprocess.run(
        [str(host), str(BINARY), str(long_shot), str(W), str(H), "1", "12", "1", str(tmp_path / "o.raw"),
         "--sequence", "colorspace=ACEScg"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, FACERESTORE_WORKER_LOG=str(log)),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for t in range(1, 13):
        rgb, matte = differences_from_cli(tmp_path / f"o.raw.{t}", tmp_path / f"r.{t:04d}.exr")
        assert rgb <= 1e-6 and matte <= 1e-6, t
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    analysed = [f for e in entries if e["op"] == "analyse" for f in e["frames"]]
    assert analysed == list(range(1, 13))  # the clip streamed once, in order
    renders = [e for e in entries if e["op"] == "render" and "need" not in e]
    assert len(renders) == 12 and all(e["per_shot"] for e in renders)
    restored = sorted(f for e in renders for f in e["restored"])
    assert restored == list(range(1, 13))  # each frame restored once, not once per neighbour


def test_a_host_that_holds_frames_beyond_the_clip_renders_every_frame_as_the_cli(host, shot, tmp_path, node):
    """Hosts hand out the first and last frames for times beyond a clip's ends: those held
    frames are not part of the shot and must not make the worker ask for its analysis again
    (it did, and the plug-in then read past its answer buffer and crashed the host)."""
    from facerestore.plugin.render import RenderOptions, render

    render(RenderOptions(input=str(shot / "s.####.exr"), output=str(tmp_path / "r.####.exr"), progress=False), node=node)
    proc = run_host(host, shot, tmp_path / "o.raw", "--sequence", "colorspace=ACEScg",
                    env={"FACERESTORE_TEST_HOLD_FRAMES": "1"})
    assert proc.returncode == 0 and proc.stdout.count("status 0") == 5, proc.stdout + proc.stderr
    for t in range(1, 6):
        assert differences_from_cli(tmp_path / f"o.raw.{t}", tmp_path / f"r.{t:04d}.exr")[0] <= 1e-6, t


def test_an_upstream_that_changes_on_every_evaluation_is_analysed_once_then_rendered_per_window(host, shot, tmp_path):
    import json

    log = tmp_path / "worker.log"
    proc = run_host(host, shot, tmp_path / "o.raw", "--sequence",
                    env={"FACERESTORE_TEST_UNSTEADY_FRAMES": "1", "FACERESTORE_WORKER_LOG": str(log)})
    assert proc.returncode == 0 and proc.stdout.count("status 0") == 5, proc.stdout
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [f for e in entries if e["op"] == "analyse" for f in e["frames"]] == [1, 2, 3, 4, 5]  # once, not per frame
    renders = [e for e in entries if e["op"] == "render" and "need" not in e]
    assert len(renders) == 5 and not any(e["per_shot"] for e in renders)


def test_a_render_at_a_fractional_time_leaves_the_shot_state_alone(host, shot, tmp_path):
    """Motion blur or a retime downstream asks for t = 3.5: not a frame of the shot, so it is
    tracked over its own window and the shot's analysis is neither built nor marked unsteady."""
    import json

    log = tmp_path / "worker.log"
    proc = run_host(host, shot, tmp_path / "o.raw", time=3.5, env={"FACERESTORE_WORKER_LOG": str(log)})
    assert proc.returncode == 0, proc.stdout
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["op"] for e in entries] == ["render"] and entries[0]["per_shot"] is False


def test_a_frame_changed_between_renders_is_analysed_again(host, shot, tmp_path, node, colour):
    """The worker's shot state is keyed by frame content: an upstream change in the window
    (here frame 4 replaced between two renders of frame 3) makes it track the shot again."""
    from facerestore.plugin.render import RenderOptions, render

    changed = tmp_path / "shot"
    shutil.copytree(shot, changed)
    plate = faces_plate(colour, width=W, height=H, face_width=64, positions=((90, 30),), seed=40)
    rgba = np.concatenate([plate, np.ones((H, W, 1), np.float32)], axis=2).astype(np.float32)
    rgba.tofile(tmp_path / "new4.raw")
    write_exr(changed / "s.0004.exr", plate, half=False)
    render(RenderOptions(input=str(changed / "s.####.exr"), output=str(tmp_path / "r.####.exr"), progress=False),
           node=node)
    # The host's raw frames are still the old ones: frame 4 changes between its two renders.
    proc = run_host(host, changed, tmp_path / "o.raw", "--renders", "2", "colorspace=ACEScg",
                    "--between", f"cp {tmp_path / 'new4.raw'} {changed / 'frame.4.raw'}")
    assert proc.returncode == 0 and proc.stdout.count("status 0") == 2, proc.stdout
    assert differences_from_cli(tmp_path / "o.raw", tmp_path / "r.0003.exr")[0] <= 1e-6


def test_a_host_that_gives_no_clip_range_renders_over_the_window(host, shot, tmp_path):
    proc = run_host(host, shot, tmp_path / "o.raw", env={"FACERESTORE_TEST_NO_FRAME_RANGE": "1"})
    assert proc.returncode == 0, proc.stdout
    out = np.fromfile(tmp_path / "o.raw", np.float32).reshape(H, W, 4)
    assert out[..., 3].max() > 0.9  # the face was found and restored from the window alone
