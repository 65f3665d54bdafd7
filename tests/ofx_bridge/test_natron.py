"""The OpenFX bundle in a real host: NatronRenderer 2.5 with openfx-io's OpenImageIO reader and
writer, built from source (see docs/hosts.md, Tested hosts). Skipped where Natron is not found
(CI never has it): $FACERESTORE_NATRON_RENDERER, else NatronRenderer on PATH, else the build
folder of the project's Natron build script (${XDG_CACHE_HOME:-~/.cache}/facerestore-natron/bin);
openfx-io's IO.ofx.bundle is looked for in ../ofx beside the binary ($FACERESTORE_NATRON_OFX).

A shot is read, restored and written by Natron; the node's Analyse shot button is pressed from
the script as a user would in the GUI. The written frames must equal `facerestore render`'s (RGB,
and the matte in alpha against face.mask), and Natron's log must have no `[Bug]` line (Natron
prints one for every image a plug-in fetches that it did not announce)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from helpers import ROOT, build_ofx_bundle, faces_plate, write_exr

HERE = Path(__file__).resolve().parent
BUNDLE_DIR = ROOT / "ofx_bridge" / "build"
W, H, FRAMES = 200, 150, 6


def natron_renderer() -> Path | None:
    if os.environ.get("FACERESTORE_NATRON_RENDERER"):
        return Path(os.environ["FACERESTORE_NATRON_RENDERER"])
    on_path = shutil.which("NatronRenderer")
    if on_path:
        return Path(on_path)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    built = Path(cache) / "facerestore-natron" / "bin" / "NatronRenderer"
    return built if built.is_file() else None


NATRON = natron_renderer()
IO_BUNDLES = Path(os.environ.get("FACERESTORE_NATRON_OFX") or (NATRON.parent.parent / "ofx" if NATRON else "/none"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.host_app,
    pytest.mark.skipif(
        NATRON is None or not (IO_BUNDLES / "IO.ofx.bundle").is_dir(),
        reason="NatronRenderer and openfx-io's IO.ofx.bundle not found (a host test: see docs/hosts.md)",
    ),
]


@pytest.fixture(scope="module")
def natron_shot(tmp_path_factory, colour):
    """Six float EXR frames of a moving face, and the CLI's full render of them."""
    from facerestore.nodes.face_restore import FaceRestoreNode
    from facerestore.plugin.render import RenderOptions, render

    build_ofx_bundle()
    folder = tmp_path_factory.mktemp("natron")
    for t in range(1, FRAMES + 1):
        plate = faces_plate(colour, width=W, height=H, face_width=64, positions=((40 + 5 * t, 20 + t),), seed=t)
        write_exr(folder / f"s.{t:04d}.exr", plate, half=False)
    render(
        RenderOptions(input=str(folder / "s.####.exr"), output=str(folder / "cli" / "r.####.exr"), progress=False),
        node=FaceRestoreNode(colour),
    )
    return folder


def run_natron(shot: Path, out: Path, **env) -> subprocess.CompletedProcess:
    from facerestore.models.weights import cache_dir

    home = out / "natron-home"  # Natron's settings and caches: fresh, not the user's
    variables = dict(
        os.environ,
        OFX_PLUGIN_PATH=f"{IO_BUNDLES}:{BUNDLE_DIR}",
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        FACERESTORE_CACHE=str(cache_dir()),  # the worker's models stay where they are without Natron
        QT_QPA_PLATFORM="offscreen",
        FR_IN=str(shot / "s.####.exr"),
        FR_OUT=str(out / "n.####.exr"),
        FR_FIRST="1",
        FR_LAST=str(FRAMES),
        **env,
    )
    command = [str(NATRON), "-w", "Write", f"1-{FRAMES}", str(HERE / "natron_script.py")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=variables)
    log = proc.stdout + proc.stderr
    print(f"$ {' '.join(command)}\n{log}")  # the host's whole log, shown with -s or on failure
    return proc


def differences_from_cli(natron_exr: Path, cli_exr: Path) -> tuple[float, float]:
    def pixels(path):
        buf = oiio.ImageBuf(str(path))
        return list(buf.spec().channelnames), buf.get_pixels(oiio.FLOAT)

    names, out = pixels(natron_exr)
    ref_names, ref = pixels(cli_exr)
    rgb = np.abs(out[..., [names.index(c) for c in "RGB"]] - ref[..., [ref_names.index(c) for c in "RGB"]]).max()
    matte = np.abs(out[..., names.index("A")] - ref[..., ref_names.index("face.mask")]).max()
    return float(rgb), float(matte)


def test_natron_renders_the_analysed_shot_as_the_cli_with_only_declared_fetches(natron_shot, tmp_path):
    analysis = tmp_path / "shot.analysis.json"
    proc = run_natron(natron_shot, tmp_path, FR_ANALYSIS=str(analysis), FR_ANALYSE="1")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "[bug]" not in log.lower()  # no undeclared fetch, nor anything else Natron calls a bug
    assert analysis.is_file()  # Analyse shot wrote where the node said
    assert "status: Analysed " in log
    for t in range(1, FRAMES + 1):
        rgb, matte = differences_from_cli(tmp_path / f"n.{t:04d}.exr", natron_shot / "cli" / f"r.{t:04d}.exr")
        assert (rgb, matte) == (0.0, 0.0), t  # bit for bit


def test_natron_refuses_a_final_render_of_an_unanalysed_shot(natron_shot, tmp_path):
    proc = run_natron(natron_shot, tmp_path)
    log = proc.stdout + proc.stderr
    assert "a final render needs the analysed shot" in log
    # The host's own message log has the whole text, not only the plug-in's stderr.
    assert re.search(r"\] \S+: FaceRestore: the shot is not analysed: a final render needs", log), log
    assert not any((tmp_path / f"n.{t:04d}.exr").exists() for t in range(1, FRAMES + 1))  # never a preview
    assert "[bug]" not in log.lower()
