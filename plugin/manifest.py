"""The record of what a command wrote into a folder the user named (`install --path`, `farm
--job-dir`): one JSON manifest per folder, `{"files": {relative path: sha256}, "folders":
[relative path]}`. One reader validates it and every path in it, one check says whether a file
may be (over)written, one says whether a path can be written without following a link, so no
command writes through a link or outside the folder, overwrites a file it did not write, or
removes anything outside the folder because a manifest said so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath

from facerestore.nodes.errors import FaceRestoreError

SHA256 = re.compile(r"[0-9a-f]{64}")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inside(dest: Path, relative: str, resolve: bool = True) -> Path:
    """`dest / relative` for a relative path that stays inside `dest` (no `..`, not absolute,
    and with `resolve`, not leading elsewhere through a link); anything else is refused."""
    parts = PurePosixPath(relative).parts
    if not relative or PurePosixPath(relative).is_absolute() or ".." in parts or "\\" in relative or ":" in relative:
        raise FaceRestoreError(f"{relative!r} is not a path inside {dest}")
    target = dest / relative
    if not resolve:
        return target
    root = os.path.realpath(dest)
    if os.path.commonpath([root, os.path.realpath(target)]) != root:
        raise FaceRestoreError(f"{target} leads outside {dest}")
    return target


def check_no_links(dest: Path, target: Path) -> None:
    """Writing `target` (inside `dest`) follows no symbolic link in a folder between `dest`
    and it (a link at `target` itself is something there: see check_writable)."""
    path = target.parent
    while path != dest and dest in path.parents:
        if path.is_symlink():
            raise FaceRestoreError(f"{path} is a symbolic link; refusing to write through it")
        path = path.parent


def read_manifest(path: Path, dest: Path) -> dict:
    """The manifest at `path` (empty when there is none), every entry checked; a manifest that
    is a link, not JSON, of another shape or naming paths outside `dest` is refused by name."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise FaceRestoreError(f"{path} is not a regular file; move it away")
    if not path.exists():
        return {"files": {}, "folders": []}
    damaged = f"{path} is damaged; remove it and what it listed by hand"
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        raise FaceRestoreError(damaged) from None
    if not isinstance(data, dict):
        raise FaceRestoreError(damaged)
    files, folders = data.get("files", {}), data.get("folders", [])
    if not isinstance(files, dict) or not all(isinstance(v, str) and SHA256.fullmatch(v) for v in files.values()):
        raise FaceRestoreError(damaged)
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        raise FaceRestoreError(damaged)
    for relative in [*files, *(f for f in folders if f != ".")]:
        try:
            inside(dest, relative)
        except FaceRestoreError as exc:
            raise FaceRestoreError(f"{path} lists {exc}; remove it and what it listed by hand") from None
    return {**data, "files": dict(files), "folders": list(folders)}


def check_writable(dest: Path, relative: str, manifest: dict, what: str) -> Path:
    """`dest / relative` may be written: nothing is there, or the file there is the one this
    command wrote (its checksum in the manifest); and no link is followed to write it."""
    target = inside(dest, relative, resolve=False)
    check_no_links(dest, target)
    # lexists: a dangling symbolic link is something there too.
    if os.path.lexists(target) and (
        target.is_symlink() or not target.is_file() or manifest["files"].get(relative) != digest(target.read_bytes())
    ):
        raise FaceRestoreError(f"{target} exists and was not written by {what} (or was edited since); {HINT[what]}")
    return target


HINT = {
    "facerestore install": "move it away, or install with --path elsewhere",
    "facerestore farm": "move it away, or give another --job-dir",
}
