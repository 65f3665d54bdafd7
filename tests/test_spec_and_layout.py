"""Every parameter is documented, dependencies point one way (models <- nodes <- plugin / ofx_bridge),
and the host-agnostic layers never print or read argv."""

import ast
import subprocess
import sys
from pathlib import Path

import import_graph
import pytest

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


# The design card's layers, lowest first; a package imports only packages in layers below its
# own. benchmarks sits above the ways in: it drives renders as a user does.
LAYERS = (
    {"facerestore.models"},
    {"facerestore.nodes"},
    {"facerestore.plugin", "facerestore.ofx_bridge"},
    {"facerestore.benchmarks"},
)


def test_import_graph_from_the_source_points_one_way():
    graph = import_graph.package_graph()
    assert set(graph) == set().union(*LAYERS)
    layer_of = {package: index for index, layer in enumerate(LAYERS) for package in layer}
    upward = {(a, b) for a, targets in graph.items() for b in targets if layer_of[b] >= layer_of[a]}
    assert not upward, f"imports that do not point down the layers: {sorted(upward)}"
    # The graph is really there (a mapping the builder cannot follow finds no edges at all).
    assert graph["facerestore.nodes"] == {"facerestore.models"}
    assert {"facerestore.models", "facerestore.nodes"} <= graph["facerestore.plugin"]
    assert {"facerestore.models", "facerestore.nodes"} <= graph["facerestore.ofx_bridge"]
    modules = import_graph.module_graph()
    assert "facerestore.models.weights" in modules["facerestore.nodes.face_restore"]


def test_the_package_mapping_reads_the_same_without_a_toml_parser():
    import tomllib

    text = (ROOT / "pyproject.toml").read_text()
    assert import_graph.package_dir_line(text) == tomllib.loads(text)["tool"]["setuptools"]["package-dir"]


def test_the_graph_builder_sees_relative_and_function_level_imports(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackage-dir = {"facerestore.low" = "low", "facerestore.high" = "high"}\n'
    )
    for folder in ("low", "high"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "low" / "base.py").write_text("X = 1\n")
    (tmp_path / "low" / "mid.py").write_text("from .base import X\n")
    (tmp_path / "high" / "top.py").write_text(
        "def f():\n    from facerestore.low import mid\n"
        "if True:\n    import os\n    def g():\n        import torch, json\n"
        "with open(__file__):\n    import re\n"
    )
    modules = import_graph.module_graph(tmp_path)
    assert modules["facerestore.low.mid"] == {"facerestore.low.base"}
    assert modules["facerestore.high.top"] == {"facerestore.low", "facerestore.low.mid"}
    assert import_graph.package_graph(tmp_path) == {"facerestore.low": set(), "facerestore.high": {"facerestore.low"}}
    levels = {names[0]: at_top for names, _, at_top in import_graph.imports_of("facerestore.high.top", tmp_path / "high" / "top.py")}
    assert levels == {"facerestore.low.mid": False, "os": True, "torch": False, "json": False, "re": True}


# The only imports made inside functions: optional or heavy dependencies that most commands never
# need, so `facerestore --help`, the OFX worker's start and a render with ONNX Runtime do not pay for
# them. Everything else is imported at the top of its module.
LAZY_IMPORTS = {
    "torch": "PyTorch: training, the torch backend, GPUs; a CPU render runs on ONNX Runtime",
    "facerestore.models.compact": "network definitions import torch at module level",
    "facerestore.models.rrdbnet": "network definitions import torch at module level",
    "facerestore.models.gfpgan": "network definitions import torch at module level",
    "facerestore.models.codeformer": "network definitions import torch at module level",
    "onnx": "exporting and checking ONNX files only",
    "onnxruntime": "loaded with the first session (its start-up costs ~0.3 s)",
    "dlib": "the benchmark's identity metric",
    "face_recognition_models": "the benchmark's identity metric",
    "gfpgan": "the reference implementation some tests and the benchmark compare with, when installed",
    "matplotlib": "plots and sample data only",
    "skimage": "sample faces and metrics only",
    "scipy": "one solver in tracking, metrics",
    "imageio_ffmpeg": "video codecs in training degradations and the benchmark",
    "outline": "OpenCue jobs (farm extra)",
    "yaml": "OpenJD jobs (farm extra)",
    "resource": "peak-memory figures; not on Windows",
    "DaVinciResolveScript": "Resolve's scripting module, only inside Resolve",
    "facerestore_nuke": "Nuke's side, only inside Nuke",
}


def is_lazy(name: str) -> bool:
    return any(name == lazy or name.startswith(lazy + ".") for lazy in LAZY_IMPORTS)


def test_imports_inside_functions_are_only_the_optional_heavy_ones():
    stray = []
    for module, path in import_graph.module_files().items():
        for names, line, at_top in import_graph.imports_of(module, path):
            if not at_top and not any(map(is_lazy, names)):
                stray.append(f"{path.name}:{line} {names[-1] if len(names) > 1 else names[0]}")
    assert not stray, "imports inside functions that belong at the top of their module: " + ", ".join(stray)


def test_the_cli_and_the_worker_start_without_the_heavy_dependencies():
    check = (
        "import sys, facerestore.plugin.cli, facerestore.ofx_bridge.worker, facerestore.nodes.shot; "
        "print(sorted(m for m in ('torch', 'onnx', 'dlib', 'matplotlib', 'skimage') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_nodes_and_models_import_no_host_module():
    names = imported_modules("models") | imported_modules("nodes")
    assert not {m.split(".")[0] for m in names} & HOST_MODULES


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


@pytest.mark.slow
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


def node_attribute_names() -> set[str]:
    """Every attribute a FaceRestoreNode sets on itself, read from its source."""
    source = (ROOT / "nodes" / "face_restore.py").read_text()
    tree = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == "FaceRestoreNode")
    return {
        target.attr
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self"
    }


def assignments_to_node_attributes(path: Path, names: set[str]) -> list[str]:
    """`x.restorer = ...`, `x.params[...] = ...`, `setattr(x, "restorer", ...)` on anything
    but `self` (a class of its own): where code outside nodes/ would change a node."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "setattr":
            args = node.args[-3:] if len(node.args) >= 3 else []
            if args and isinstance(args[1], ast.Constant) and args[1].value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            continue
        for target in (t for t in targets for t in (t.elts if isinstance(t, ast.Tuple) else [t])):
            while isinstance(target, ast.Subscript):
                target = target.value
            if (
                isinstance(target, ast.Attribute)
                and target.attr in names
                and not (isinstance(target.value, ast.Name) and target.value.id == "self")
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_code_outside_nodes_changes_a_node():
    names = node_attribute_names()
    assert {"params", "restorer", "detector", "pixel_aspect"} <= names  # the reader sees the class
    offences = [
        where
        for folder in ("plugin", "ofx_bridge", "benchmarks", "models", "tests")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for where in assignments_to_node_attributes(path, names)
    ]
    assert not offences, f"a node changed from outside nodes/ (use with_params / for_plates): {offences}"
    # The check can fail: it finds the assignments this project used to make.
    probe = ROOT / "tests" / "_probe_assignments.py"
    try:
        probe.write_text("node.pixel_aspect = 2.0\nnode.params['strength'] = 0\nnode.restorer, x = r, 1\n")
        assert len(assignments_to_node_attributes(probe, names)) == 3
    finally:
        probe.unlink()


def test_a_node_parameter_cannot_be_changed_in_place(colour):
    import operator

    from facerestore.nodes.face_restore import FaceRestoreNode

    node = FaceRestoreNode(colour, "cpu", ensemble="off")
    with pytest.raises(TypeError):
        operator.setitem(node.params, "strength", 0.0)
    weaker = node.with_params(strength=0.5)
    assert weaker.params["strength"] == 0.5 and node.params["strength"] == 1.0
    assert weaker.restorer is node.restorer and weaker.detector is node.detector  # nothing loaded again
    assert node.for_plates(2.0).pixel_aspect == 2.0 and node.pixel_aspect == 1.0
    assert node.with_params(pixel_aspect=1.5).for_plates(2.0).pixel_aspect == 1.5  # the parameter wins


def test_the_output_modes_are_read_in_one_place_and_the_c_plugin_takes_them_from_the_spec():
    import re

    import numpy as np

    from facerestore.nodes.face_restore import FACE_RESTORE, OUTPUT_MODES, pack_rgba
    from facerestore.ofx_bridge.params import header

    rgb, matte, alpha = np.full((2, 2, 3), 0.5, np.float32), np.full((2, 2), 0.25, np.float32), np.ones((2, 2))
    packed = {}
    for mode in OUTPUT_MODES:
        packed[mode] = np.zeros((2, 2, 4), np.float32)
        pack_rgba(mode, rgb, matte, alpha, packed[mode])
    assert packed["both"][0, 0].tolist() == [0.5, 0.5, 0.5, 0.25]
    assert packed["restored"][0, 0].tolist() == [0.5, 0.5, 0.5, 1.0]
    assert packed["mask"][0, 0].tolist() == [0.25] * 4
    generated = header()
    for index, mode in enumerate(OUTPUT_MODES):
        assert f"#define FR_OUTPUT_{mode.upper()} {index}\n" in generated
    assert f'#define FR_PLUGIN_ID "{FACE_RESTORE.id}"' in generated
    source = (ROOT / "ofx_bridge" / "src" / "facerestore_ofx.c").read_text()
    assert not re.search(r"output_mode\s*[=!]=\s*\d", source) and FACE_RESTORE.id not in source
