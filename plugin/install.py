"""`facerestore install ofx|nuke|fusion|resolve [--path DIR] [--uninstall]`

Puts each host's piece where that host looks (per user, on Linux, macOS and Windows), or in
`--path`. Every file written is listed, with its checksum, in a manifest in the destination, so:
a file that is already there and was not written by this command (or was edited since) is never
overwritten (the install stops before writing anything); `--uninstall` removes exactly what was
written and the folders it created, and keeps (and names) anything changed since.

The host-side scripts run in the host's own Python and start facerestore as a command; the
install records which one (`facerestore_host.json`: this environment's interpreter), so the
host finds it without PATH or environment set-up.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from facerestore.nodes.errors import FaceRestoreError
from facerestore.plugin.manifest import check_writable, digest, read_manifest

PLUGIN_DIR = Path(__file__).resolve().parent
HOSTSIDE = PLUGIN_DIR / "hostside"
HOST_FILES = ("facerestore_host.py", "facerestore_spec.json")
MANIFEST = ".facerestore-install-{host}.json"
PLATFORMS = ("linux", "macos", "windows")


def register(sub) -> None:
    install = sub.add_parser("install", help="install the OpenFX plug-in or the Nuke / Fusion / Resolve adapter")
    install.add_argument("host", choices=("ofx", "nuke", "fusion", "resolve"))
    install.add_argument("--path", help="destination folder (default: where the host looks, per user)")
    install.add_argument("--uninstall", action="store_true", help="remove what an earlier install wrote there")
    install.add_argument(
        "--python",
        help="interpreter with facerestore installed that the host starts (default: this one); for a "
        "shared install, an environment every machine can reach",
    )
    # Which OS's folders to use by default (tests install the three layouts on one machine).
    install.add_argument("--platform", choices=PLATFORMS, help=argparse.SUPPRESS)
    install.set_defaults(handler=run)


def current_platform() -> str:
    return {"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux")


def default_path(host: str, platform: str, env: dict) -> Path:
    """Where each host looks for per-user additions (the OpenFX folder is machine-wide)."""
    home = Path(env.get("USERPROFILE" if platform == "windows" else "HOME", "~")).expanduser()
    appdata = Path(env.get("APPDATA", home / "AppData" / "Roaming"))
    mac_support = home / "Library" / "Application Support" / "Blackmagic Design"
    if host == "ofx":
        if env.get("OFX_PLUGIN_PATH"):
            return Path(env["OFX_PLUGIN_PATH"].split(os.pathsep)[0])
        common = Path(env.get("CommonProgramFiles", r"C:\Program Files\Common Files"))
        return {"linux": Path("/usr/OFX/Plugins"), "macos": Path("/Library/OFX/Plugins"), "windows": common / "OFX" / "Plugins"}[platform]
    if host == "nuke":
        return home / ".nuke" / "facerestore"
    if host == "fusion":
        return {
            "linux": home / ".fusion" / "BlackmagicDesign" / "Fusion",
            "macos": mac_support / "Fusion",
            "windows": appdata / "Blackmagic Design" / "Fusion",
        }[platform]
    return {
        "linux": home / ".local" / "share" / "DaVinciResolve" / "Fusion",
        "macos": mac_support / "DaVinci Resolve" / "Fusion",
        "windows": appdata / "Blackmagic Design" / "DaVinci Resolve" / "Support" / "Fusion",
    }[platform]


@dataclass(frozen=True)
class Placement:
    """What one install writes: file contents by path relative to the destination, and the
    lines to tell the artist."""

    files: dict[str, bytes]
    notes: list[str]


def host_config(python: str) -> bytes:
    return json.dumps({"command": [python, "-m", "facerestore.plugin.cli"]}, indent=1).encode() + b"\n"


def with_host_module(folder: str, python: str) -> dict[str, bytes]:
    files = {f"{folder}/{name}".lstrip("/"): (HOSTSIDE / name).read_bytes() for name in HOST_FILES}
    files[f"{folder}/facerestore_host.json".lstrip("/")] = host_config(python)
    return files


def tree(source: Path, prefix: str) -> dict[str, bytes]:
    return {
        f"{prefix}/{p.relative_to(source).as_posix()}".lstrip("/"): p.read_bytes()
        for p in sorted(source.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def placement(host: str, dest: Path, python: str) -> Placement:
    if host == "ofx":
        return registered_placement(host, python)
    if host == "nuke":
        files = tree(PLUGIN_DIR / "nuke", "") | with_host_module("", python)
        line = f'nuke.pluginAddPath("{dest.as_posix()}")'
        return Placement(files, [f"add to the init.py in your ~/.nuke folder: {line}  (or put {dest} on NUKE_PATH)"])
    # Menu scripts in Scripts/Comp (and Resolve's Scripts/Utility); what they share in
    # Scripts/facerestore, where Fusion lists no menu entry.
    fusion = PLUGIN_DIR / "fusion"
    files = {"Macros/FaceRestore.setting": (fusion / "FaceRestore.setting").read_bytes()}
    files |= tree(fusion / "Scripts" / "Comp", "Scripts/Comp")
    if host == "resolve":
        files |= tree(fusion / "Scripts" / "Utility", "Scripts/Utility")
    files |= with_host_module("Scripts/facerestore", python)
    files["Scripts/facerestore/facerestore_fusion.py"] = (fusion / "facerestore_fusion.py").read_bytes()
    where = "Workspace > Scripts > Utility" if host == "resolve" else "Script > Comp"
    return Placement(files, [f"in {host.title()}: the FaceRestore macro is in the Add Tool > Macros menu; render-through in {where}"])


def registered_placement(host: str, python: str) -> Placement:
    """A host whose files another layer provides (the OpenFX bundle: ofx_bridge), found through
    the `facerestore.install` entry point rather than imported."""
    for entry in importlib.metadata.entry_points(group="facerestore.install"):
        if entry.name == host:
            folder, replaced, notes = entry.load()(python)  # a folder to copy, some of its files replaced
            files = tree(folder, folder.name) | {f"{folder.name}/{r}": data for r, data in replaced.items()}
            return Placement(files, notes)
    raise FaceRestoreError(f"no installer for {host} is registered (reinstall facerestore: pip install -e .)")


def install(host: str, dest: Path, python: str) -> list[str]:
    plan = placement(host, dest, python)
    manifest_path = dest / MANIFEST.format(host=host)
    manifest = read_manifest(manifest_path, dest)  # refused when a link, damaged or naming paths outside dest
    for relative in plan.files:
        check_writable(dest, relative, manifest, "facerestore install")
    # Two phases: every file written beside its target first, then all renamed into place, so a
    # failure (a folder in the way, a full disk) leaves the destination as it was.
    folders = list(manifest["folders"])
    staged: list[tuple[Path, Path]] = []
    old_files = manifest["files"]
    old_manifest = manifest_path.read_bytes() if manifest_path.is_file() else None
    new_files = {r: digest(d) for r, d in plan.files.items()}
    try:
        for relative, data in plan.files.items():
            target = dest / relative
            missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
            folders += [str(p.relative_to(dest)) if p != dest else "." for p in missing if p == dest or dest in p.parents]
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.facerestore-{os.getpid()}")
            partial.write_bytes(data)
            if "/Contents/" in relative and "/Resources/" not in relative:
                partial.chmod(0o755)  # the plug-in binary
            staged.append((partial, target))
        # The manifest first: if renaming stops half way, uninstall still knows every file.
        record = {"host": host, "files": new_files, "folders": sorted(set(folders))}
        manifest_path.write_text(json.dumps(record, indent=1) + "\n")
        for partial, target in staged:
            os.replace(partial, target)
        staged = []
    except BaseException as exc:  # an OS error, or Ctrl-C: no staged file is left behind
        for partial, _ in staged:
            partial.unlink(missing_ok=True)
        renamed = {r for r, d in new_files.items() if (dest / r).is_file() and digest((dest / r).read_bytes()) == d}
        if renamed:
            # Stopped half way through the renames: the manifest lists what is on disk now (the
            # new files, and the old ones not yet replaced), so a retry or an uninstall works.
            files = {r: d for r, d in old_files.items() if r not in renamed} | {r: new_files[r] for r in renamed}
            manifest_path.write_text(json.dumps({"host": host, "files": files, "folders": sorted(set(folders))}, indent=1))
        else:
            if old_manifest is not None:
                manifest_path.write_bytes(old_manifest)
            elif manifest_path.exists():
                manifest_path.unlink()
            for folder in sorted(set(folders) - set(manifest["folders"]), key=lambda f: -len(Path(f).parts)):
                path = dest / folder
                if path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
        if not isinstance(exc, OSError):
            raise
        raise FaceRestoreError(f"cannot install in {dest}: {exc.strerror or exc} ({exc.filename or dest})") from None
    # Files of an earlier install that this one no longer has.
    for relative in [r for r in old_files if r not in plan.files and (dest / r).is_file()]:
        if digest((dest / relative).read_bytes()) == old_files[relative]:
            (dest / relative).unlink()
    return [f"installed facerestore for {host} in {dest} ({len(plan.files)} files)", *plan.notes]


def uninstall(host: str, dest: Path) -> list[str]:
    manifest_path = dest / MANIFEST.format(host=host)
    if not manifest_path.exists():
        raise FaceRestoreError(f"nothing of facerestore install {host} in {dest} (no {manifest_path.name})")
    manifest = read_manifest(manifest_path, dest)  # every entry inside dest, or nothing is removed
    kept = []
    for relative, checksum in manifest["files"].items():
        target = dest / relative
        if not target.exists():
            continue
        if target.is_file() and digest(target.read_bytes()) == checksum:
            target.unlink()
        else:
            kept.append(str(target))
    for relative in manifest["files"]:  # what the host's Python compiled beside our scripts
        cache = (dest / relative).parent / "__pycache__"
        if relative.endswith(".py") and cache.is_dir() and not cache.is_symlink():
            for compiled in cache.glob(Path(relative).stem + ".*.pyc"):
                compiled.unlink()
            if not any(cache.iterdir()):
                cache.rmdir()
    manifest_path.unlink()
    for folder in sorted(manifest["folders"], key=lambda f: -len(Path(f).parts)):
        path = dest / folder
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    lines = [f"removed facerestore for {host} from {dest}"]
    return lines + [f"kept {k} (changed since it was installed)" for k in kept]


MIN_PYTHON = (3, 10)


def check_python(given: str, python: str) -> None:
    """`--python`: a file that runs as a Python interpreter of a version facerestore supports
    and imports facerestore (what the host will start); `/bin/true` or a folder is refused."""
    hint = "give an environment's bin/python with facerestore installed"
    if not os.path.isfile(python) or not os.access(python, os.X_OK):
        raise FaceRestoreError(f"--python {given}: not an executable file; {hint}")
    probe = (
        "import sys; print(sys.version_info[0], sys.version_info[1]); "
        "import facerestore.plugin.cli, facerestore.ofx_bridge.worker"
    )
    try:
        proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise FaceRestoreError(f"--python {given}: cannot run it ({reason}); {hint}") from None
    words = proc.stdout.split()
    version = tuple(int(w) for w in words[:2]) if len(words) >= 2 and all(w.isdigit() for w in words[:2]) else None
    if version is None:
        raise FaceRestoreError(f"--python {given}: not a Python interpreter (it did not report a version); {hint}")
    if version < MIN_PYTHON:
        raise FaceRestoreError(f"--python {given}: Python {version[0]}.{version[1]}; facerestore needs 3.10 or later")
    if proc.returncode != 0:
        raise FaceRestoreError(f"--python {given} cannot import facerestore; {hint}")


def run(args) -> int:
    platform = args.platform or current_platform()
    dest = Path(os.path.abspath(args.path)) if args.path else default_path(args.host, platform, dict(os.environ))
    python = os.path.abspath(args.python) if args.python else sys.executable
    if args.python:
        check_python(args.python, python)
    try:
        lines = uninstall(args.host, dest) if args.uninstall else install(args.host, dest, python)
    except PermissionError as exc:
        raise FaceRestoreError(f"cannot write in {dest}: {exc.strerror}; use --path, or run as an administrator") from None
    except OSError as exc:
        raise FaceRestoreError(f"cannot {'uninstall from' if args.uninstall else 'install in'} {dest}: {exc.strerror or exc}") from None
    print("\n".join(lines))
    return 0
