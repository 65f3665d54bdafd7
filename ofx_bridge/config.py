"""What `facerestore install ofx` places, and the OpenFX bundle's Contents/Resources/worker.json: the command the plug-in runs to start its
worker. Written by the build and by `facerestore install ofx --python`, so a bundle built once
can be installed anywhere and pointed at any environment:
`python -m facerestore.ofx_bridge.config /path/to/python`."""

import json
import shlex
import sys
from pathlib import Path

from facerestore.nodes.errors import FaceRestoreError

BUNDLE = Path(__file__).resolve().parent / "build" / "FaceRestore.ofx.bundle"


def worker_json(python: str) -> str:
    # Not ASCII-escaped: the plug-in's small JSON reader takes UTF-8 but no \u escapes.
    command = shlex.join([python, "-m", "facerestore.ofx_bridge.worker"])
    return json.dumps({"command": command}, indent=2, ensure_ascii=False) + "\n"


def install_files(python: str) -> tuple[Path, dict[str, bytes], list[str]]:
    """The built bundle's folder, the worker.json to put in it (one that starts `python`'s
    facerestore) and what to tell the user. Registered under the `facerestore.install` entry
    point, so `facerestore install` (in plugin/) places the bundle without importing this layer."""
    if not any(BUNDLE.glob("Contents/*/FaceRestore.ofx")):
        raise FaceRestoreError(f"the OpenFX bundle is not built ({BUNDLE}); run install/setup.sh or make -C ofx_bridge")
    worker = {"Contents/Resources/worker.json": worker_json(python).encode("utf-8")}
    return BUNDLE, worker, ["hosts scan this folder at start-up: restart them; FaceRestore is under Filter > facerestore"]

if __name__ == "__main__":
    sys.stdout.buffer.write(worker_json(sys.argv[1] if len(sys.argv) > 1 else sys.executable).encode())
