"""Every parameter is documented, and dependencies point one way: models <- nodes <- hosts."""

import ast
from pathlib import Path

from facerestore.nodes.cli import build_parser
from facerestore.nodes.face_restore import FACE_RESTORE

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
