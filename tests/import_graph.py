"""The import graph of facerestore, built from the source (every import, module level or not).

The design card's top-level folders are mapped onto one namespace by pyproject's package-dir,
which tools that look for a `facerestore/` folder cannot follow; this reads that mapping instead.

    python tests/import_graph.py            # Graphviz DOT of the package-level graph on stdout
    python tests/import_graph.py --modules  # module-level edges, one per line
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_folders(root: Path = ROOT) -> dict[str, Path]:
    """{'facerestore.nodes': ROOT/'nodes', ...} from pyproject's package-dir."""
    text = (root / "pyproject.toml").read_text()
    try:
        import tomllib  # Python 3.11+

        mapping = tomllib.loads(text)["tool"]["setuptools"]["package-dir"]
    except ModuleNotFoundError:  # 3.10
        mapping = package_dir_line(text)
    return {package: root / folder for package, folder in mapping.items()}


def package_dir_line(text: str) -> dict[str, str]:
    """The package-dir mapping read from its one line of pyproject.toml, without a TOML parser."""
    line = re.search(r"^package-dir\s*=\s*\{(.*)\}", text, re.M).group(1)
    return dict(re.findall(r'"([^"]+)"\s*=\s*"([^"]+)"', line))


def module_files(root: Path = ROOT) -> dict[str, Path]:
    modules = {}
    for package, folder in package_folders(root).items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package,) + parts)] = path
    return modules


def _module_level_statements(body: list) -> list:
    """Statements run when the module is imported: its body and, inside it, the bodies of
    if / try / with / for / while blocks and of classes, but not of functions."""
    found = []
    for node in body:
        found.append(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for field in ("body", "orelse", "finalbody"):
            found += _module_level_statements(getattr(node, field, []) or [])
        for handler in getattr(node, "handlers", []) or []:
            found += _module_level_statements(handler.body)
    return found


def imports_of(module: str, path: Path) -> list[tuple[tuple[str, ...], int, bool]]:
    """One entry per imported name: (the modules it may name, line, at module level). For
    `from a.b import c` the names are ("a.b.c", "a.b"): c is a module or a name in a.b. Relative
    imports are resolved against the module's own package."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    module_level = {id(node) for node in _module_level_statements(tree.body)}
    found = []
    for node in ast.walk(tree):
        at_top = id(node) in module_level
        if isinstance(node, ast.Import):
            found.extend(((alias.name,), node.lineno, at_top) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.extend(((f"{target}.{alias.name}", target), node.lineno, at_top) for alias in node.names)
    return found


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> facerestore modules it imports."""
    files = module_files(root)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        graph[module] = {
            name for names, _, _ in imports_of(module, path) for name in names if name in files and name != module
        }
    return graph


def package_of(module: str, packages) -> str:
    return max((p for p in packages if module == p or module.startswith(p + ".")), key=len)


def package_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Package -> the other facerestore packages it imports."""
    packages = package_folders(root)
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in module_graph(root).items():
        source = package_of(module, packages)
        edges[source].update(package_of(t, packages) for t in targets)
        edges[source].discard(source)
    return {p: set(edges.get(p, ())) for p in packages}


def dot(graph: dict[str, set[str]]) -> str:
    lines = ["digraph facerestore {", "  rankdir=BT;"]
    lines += [f'  "{a}" -> "{b}";' for a in sorted(graph) for b in sorted(graph[a])]
    lines += [f'  "{a}";' for a in sorted(graph) if not graph[a]]
    return "\n".join(lines + ["}"]) + "\n"


if __name__ == "__main__":
    if "--modules" in sys.argv:
        for a, targets in sorted(module_graph().items()):
            for b in sorted(targets):
                print(f"{a} -> {b}")
    else:
        sys.stdout.write(dot(package_graph()))
