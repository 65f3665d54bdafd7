"""`facerestore install HOST [--path] [--uninstall]`: each host's files where it looks, in the
three OS layouts, never over a file it did not write, and an uninstall that leaves the folder
as it was."""

import json
import os
import sys
from pathlib import Path

import pytest

from facerestore.nodes.errors import FaceRestoreError
from facerestore.plugin.install import default_path, install, uninstall

from helpers import ROOT, run_cli

HOSTS = ("nuke", "fusion", "resolve")


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("platform", ["linux", "macos", "windows"])
def test_default_folders_follow_each_hosts_convention(platform, tmp_path):
    env = {"HOME": str(tmp_path), "USERPROFILE": str(tmp_path), "APPDATA": str(tmp_path / "AppData" / "Roaming")}
    paths = {host: default_path(host, platform, env).relative_to(tmp_path).as_posix() for host in HOSTS}
    assert paths["nuke"] == ".nuke/facerestore"
    assert paths["fusion"] == {
        "linux": ".fusion/BlackmagicDesign/Fusion",
        "macos": "Library/Application Support/Blackmagic Design/Fusion",
        "windows": "AppData/Roaming/Blackmagic Design/Fusion",
    }[platform]
    assert paths["resolve"] == {
        "linux": ".local/share/DaVinciResolve/Fusion",
        "macos": "Library/Application Support/Blackmagic Design/DaVinci Resolve/Fusion",
        "windows": "AppData/Roaming/Blackmagic Design/DaVinci Resolve/Support/Fusion",
    }[platform]
    ofx = default_path("ofx", platform, {}).as_posix()
    assert ofx == {"linux": "/usr/OFX/Plugins", "macos": "/Library/OFX/Plugins",
                   "windows": "C:\\Program Files\\Common Files/OFX/Plugins"}[platform]
    assert default_path("ofx", platform, {"OFX_PLUGIN_PATH": str(tmp_path)}) == tmp_path


@pytest.mark.parametrize("platform", ["linux", "macos", "windows"])
@pytest.mark.parametrize("host", HOSTS)
def test_install_then_uninstall_leaves_the_folder_as_it_was(host, platform, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path / "home"), USERPROFILE=str(tmp_path / "home"),
               APPDATA=str(tmp_path / "home" / "AppData" / "Roaming"))
    dest = default_path(host, platform, env)
    (dest / "Scripts" / "Comp").mkdir(parents=True)
    (dest / "Scripts" / "Comp" / "their_script.py").write_text("# the artist's own\n")
    before = snapshot(tmp_path)
    lines = install(host, dest, sys.executable)
    assert str(dest) in lines[0]
    config = next(dest.rglob("facerestore_host.json"))
    assert len(list(dest.rglob("facerestore_host.json"))) == 1
    assert json.loads(config.read_text())["command"] == [sys.executable, "-m", "facerestore.plugin.cli"]
    assert (dest / "Scripts" / "Comp" / "their_script.py").read_text() == "# the artist's own\n"
    if host == "nuke":
        assert {"init.py", "menu.py", "FaceRestore.gizmo", "facerestore_nuke.py", "facerestore_host.py"} <= {
            p.name for p in dest.iterdir()}
        assert "nuke.pluginAddPath" in lines[1]
    else:
        assert (dest / "Macros" / "FaceRestore.setting").exists()
        assert list((dest / "Scripts" / "Comp").glob("FaceRestore*.py"))
        assert bool(list((dest / "Scripts").glob("Utility/*.py"))) == (host == "resolve")
    # The host's Python compiles our scripts beside them; uninstall takes that too.
    (config.parent / "__pycache__").mkdir(exist_ok=True)
    (config.parent / "__pycache__" / "facerestore_host.cpython-39.pyc").write_bytes(b"x")
    install(host, dest, sys.executable)  # a second install over its own files is an update
    uninstall(host, dest)
    assert snapshot(tmp_path) == before


def test_a_file_it_did_not_write_is_never_overwritten_and_edits_survive_uninstall(tmp_path):
    dest = tmp_path / "nuke"
    dest.mkdir()
    (dest / "menu.py").write_text("# someone else's menu\n")
    with pytest.raises(FaceRestoreError, match="was not written by facerestore install"):
        install("nuke", dest, sys.executable)
    assert [p.name for p in dest.iterdir()] == ["menu.py"]  # nothing written
    (dest / "menu.py").unlink()
    install("nuke", dest, sys.executable)
    (dest / "init.py").write_text("# edited by the studio\n")
    with pytest.raises(FaceRestoreError, match="init.py exists"):
        install("nuke", dest, sys.executable)
    lines = uninstall("nuke", dest)
    assert any("kept" in line and "init.py" in line for line in lines)
    assert [p.name for p in dest.iterdir()] == ["init.py"]
    with pytest.raises(FaceRestoreError, match="nothing of facerestore install nuke"):
        uninstall("nuke", dest)


def test_the_cli_installs_the_ofx_bundle_with_its_worker_and_reports_errors_in_one_line(tmp_path):
    bundle = ROOT / "ofx_bridge" / "build" / "FaceRestore.ofx.bundle"
    if not list(bundle.glob("Contents/*/FaceRestore.ofx")):
        pytest.skip("OpenFX bundle not built (install/setup.sh builds it)")
    dest = tmp_path / "ofx"
    proc = run_cli("install", "ofx", "--path", dest, "--python", sys.executable, check=True)
    assert "installed facerestore for ofx" in proc.stdout
    worker = json.loads((dest / "FaceRestore.ofx.bundle" / "Contents" / "Resources" / "worker.json").read_text())
    assert worker["command"].startswith(sys.executable) and worker["command"].endswith("facerestore.ofx_bridge.worker")
    binary = next((dest / "FaceRestore.ofx.bundle" / "Contents").glob("*/FaceRestore.ofx"))
    assert os.access(binary, os.X_OK) and binary.read_bytes() == next(bundle.glob("Contents/*/FaceRestore.ofx")).read_bytes()
    run_cli("install", "ofx", "--path", dest, "--uninstall", check=True)
    assert not dest.exists()
    proc = run_cli("install", "ofx", "--path", dest, "--uninstall")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nothing of facerestore install ofx" in proc.stderr


@pytest.fixture
def small_shot(tmp_path, colour):
    from helpers import write_moving_face_shot

    (tmp_path / "plates").mkdir()
    write_moving_face_shot(tmp_path / "plates", colour, 3)
    return tmp_path / "plates"


def forget_host_modules():
    for name in ("facerestore_host", "facerestore_nuke", "facerestore_fusion"):
        sys.modules.pop(name, None)


@pytest.mark.slow
def test_the_installed_nuke_folder_renders_through_with_the_command_it_recorded(tmp_path, small_shot, monkeypatch):
    """What an artist gets: the installed copy (not the checkout), no FACERESTORE_CMD, a FAKE
    `nuke` module (Nuke cannot run here)."""
    import runpy

    import fake_nuke

    from helpers import channel, read_buf

    dest = tmp_path / "nuke"
    install("nuke", dest, sys.executable)
    monkeypatch.delenv("FACERESTORE_CMD", raising=False)
    monkeypatch.setitem(sys.modules, "nuke", fake_nuke)
    monkeypatch.setattr(sys, "path", list(sys.path))
    forget_host_modules()
    fake_nuke.reset(script=str(tmp_path / "comp.nk"))
    fake_nuke.plugin_path.append(str(dest))
    try:
        runpy.run_path(str(dest / "init.py"))
        import facerestore_host
        import facerestore_nuke

        assert Path(facerestore_nuke.__file__).parent == dest and Path(facerestore_host.__file__).parent == dest
        node = fake_nuke.createNode("FaceRestore")
        read = fake_nuke.createNode("Read")
        for knob, value in (("file", str(small_shot / "s.####.exr")), ("first", 1), ("last", 3), ("raw", True)):
            read[knob].setValue(value)
        node.setInput(0, read)
        run = facerestore_nuke.render_through(node, wait=True)
        assert fake_nuke.messages == [] and run.read is not None
        spec, pixels = read_buf(run.output.replace("####", "0002"))
        assert channel(spec, pixels, "face.mask").max() > 0.9
    finally:
        forget_host_modules()
    uninstall("nuke", dest)
    assert not dest.exists()


@pytest.mark.slow
def test_the_installed_fusion_comp_script_finds_its_support_files_and_renders(tmp_path, small_shot, monkeypatch):
    import contextlib
    import io
    import runpy

    import fake_fusion

    dest = tmp_path / "fusion"
    install("fusion", dest, sys.executable)
    monkeypatch.delenv("FACERESTORE_CMD", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    forget_host_modules()
    comp = fake_fusion.FakeComp((1, 3), {})
    loader = comp.make_tool("Loader")
    loader.SetInput("Clip", str(small_shot / "s.0001.exr"))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(dest / "Scripts" / "Comp" / "FaceRestore Render.py"),
                           init_globals={"comp": comp, "fusion": fake_fusion.FakeFusion(comp)}, run_name="__main__")
        import facerestore_fusion

        assert Path(facerestore_fusion.__file__).parent == dest / "Scripts" / "facerestore"
    finally:
        forget_host_modules()
    assert [t.ID for t in comp.added] == ["Loader"], out.getvalue()
    assert len(list((small_shot / "facerestore").glob("*.exr"))) == 3
    uninstall("fusion", dest)
    assert not dest.exists()


def test_a_failed_install_leaves_nothing_and_a_dangling_link_is_not_replaced(tmp_path):
    dest = tmp_path / "fusion"
    (dest / "Scripts").mkdir(parents=True)
    (dest / "Scripts" / "facerestore").write_text("a file where the install needs a folder\n")
    before = snapshot(dest)
    proc = run_cli("install", "fusion", "--path", dest)
    assert proc.returncode == 2 and proc.stderr.startswith("facerestore: error: cannot install in") and proc.stderr.count("\n") == 1
    assert snapshot(dest) == before  # nothing written, no manifest: a retry is not refused
    (dest / "Scripts" / "facerestore").unlink()
    install("fusion", dest, sys.executable)
    uninstall("fusion", dest)
    nuke = tmp_path / "nuke"
    nuke.mkdir()
    (nuke / "menu.py").symlink_to(tmp_path / "nowhere.py")
    with pytest.raises(FaceRestoreError, match="menu.py exists"):
        install("nuke", nuke, sys.executable)
    assert (nuke / "menu.py").is_symlink() and [p.name for p in nuke.iterdir()] == ["menu.py"]


def test_the_bundles_worker_file_keeps_a_non_ascii_interpreter_path_as_utf8():
    from facerestore.ofx_bridge.config import worker_json

    text = worker_json("/opt/envé/bin/python")
    assert "/opt/envé/bin/python" in text and "\\u" not in text  # the plug-in's reader takes no \u escapes


def test_an_install_stopped_half_way_through_its_renames_can_be_retried_and_uninstalled(tmp_path, monkeypatch):
    """As when Windows refuses to replace a plug-in a running host has loaded: some files are
    already the new ones, the rest not; the manifest must still know every file."""
    from facerestore.plugin import install as install_module

    dest = tmp_path / "nuke"
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise PermissionError(13, "Permission denied", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(install_module.os, "replace", failing_replace)
    with pytest.raises(FaceRestoreError, match="cannot"):
        install("nuke", dest, sys.executable)
    assert not list(dest.rglob("*.facerestore-[0-9]*"))  # no staged file left
    monkeypatch.setattr(install_module.os, "replace", real_replace)
    install("nuke", dest, sys.executable)  # the retry is not refused
    uninstall("nuke", dest)
    assert not dest.exists()
