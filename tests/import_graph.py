"""The import graph of facerestore, built from the source (every import, module level or not).

The design card's top-level folders are mapped onto one namespace by pyproject's package-dir,
which tools that look for a `facerestore/` folder cannot follow; this reads that mapping instead.

    python tests/import_graph.py            # Graphviz DOT of the package-level graph on stdout
    python tests/import_graph.py --modules  # module-level edges, one per line
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def package_folders(root: Path = ROOT) -> dict[str, Path]:
    """{'facerestore.nodes': ROOT/'nodes', ...} from pyproject's package-dir."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    return {package: root / folder for package, folder in config["tool"]["setuptools"]["package-dir"].items()}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    modules = {}
    for package, folder in package_folders(root).items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package,) + parts)] = path
    return modules


def imports_of(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import in the file, relative
    imports resolved against the module's own package."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    module_level = {id(node) for node in tree.body}
    for node in tree.body:  # imports inside module-level if / try blocks are module level too
        if isinstance(node, (ast.If, ast.Try)):
            module_level.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        at_top = id(node) in module_level
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, at_top) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno, at_top))
            # `from facerestore.models import weights` names a module, not just the package
            for alias in node.names:
                found.append((f"{target}.{alias.name}", node.lineno, at_top))
    return found


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> facerestore modules it imports."""
    files = module_files(root)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        graph[module] = {target for target, _, _ in imports_of(module, path) if target in files and target != module}
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
