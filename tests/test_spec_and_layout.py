"""Every parameter is documented, dependencies point one way (models <- nodes <- plugin / ofx_bridge),
and the host-agnostic layers never print or read argv."""

import ast
import subprocess
import sys
from pathlib import Path

from facerestore.nodes.face_restore import FACE_RESTORE
from facerestore.plugin.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
HOST_MODULES = {"nuke", "fusionscript", "DaVinciResolveScript", "hou", "PySide2", "PySide6"}


def imported_modules(folder: str) -> set[str]:
    names = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
    return names


def test_every_parameter_has_a_label_and_hint_and_reaches_the_cli():
    ids = [p.id for p in FACE_RESTORE.params]
    assert len(ids) == len(set(ids))
    help_text = build_parser()._subparsers._group_actions[0].choices["render"].format_help()
    for param in FACE_RESTORE.params:
        assert param.label and len(param.hint) > 15, param.id
        assert param.hint.split()[0] in help_text
    assert FACE_RESTORE.id.count(".") >= 2  # reverse-DNS


def test_dependencies_point_one_way():
    models = imported_modules("models")
    nodes = imported_modules("nodes")
    assert not any(m.startswith("facerestore.nodes") for m in models)
    upper_layers = ("facerestore.ofx_bridge", "facerestore.benchmarks", "facerestore.plugin")
    assert not any(m.startswith(upper_layers) for m in models | nodes)
    assert not {m.split(".")[0] for m in models | nodes} & HOST_MODULES


def test_cli_batch_and_demo_live_in_the_plugin_layer():
    for moved in ("cli.py", "render.py", "demo.py"):
        assert not (ROOT / "nodes" / moved).exists()
        assert (ROOT / "plugin" / moved).exists()


def test_nodes_and_models_never_print_or_read_argv():
    for folder in ("nodes", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id not in ("print", "input", "breakpoint"), where
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sys":
                    assert node.attr not in ("argv", "stdout", "stderr", "exit"), where
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                    assert not {"argparse", "tqdm"} & {n.split(".")[0] for n in names}, where


SILENT_RUN = """
import numpy as np
from helpers import faces_plate
from facerestore.nodes.colour import ColourPipeline
from facerestore.nodes.face_restore import FaceRestoreNode
from facerestore.nodes.shot import ShotRenderer, analyse_shot

colour = ColourPipeline.create()
node = FaceRestoreNode(colour, "cpu")
plates = {f: faces_plate(colour, seed=f) for f in range(3)}
analysis = analyse_shot(node, list(plates), plates.__getitem__)
result = ShotRenderer(node, analysis, list(plates), plates.__getitem__).render(1)
assert result.matte.max() > 0.9, "a face was restored"
"""


def test_a_whole_shot_through_the_nodes_writes_nothing_to_stdout_or_stderr():
    """What a host embedding the nodes sees: no chatter on its console (a fresh interpreter, so
    first-time model loading is covered too)."""
    run = subprocess.run(
        [sys.executable, "-c", SILENT_RUN], capture_output=True, text=True, cwd=ROOT / "tests", timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""


def test_every_file_generated_from_the_spec_is_current():
    """The host spec JSON, the Nuke gizmo and the Fusion macro: one spec, no drift."""
    from facerestore.plugin.hostspec import generated_files

    for path, text in generated_files().items():
        assert path.read_text() == text, f"{path.name} drifted: python -m facerestore.plugin.hostspec --write"
