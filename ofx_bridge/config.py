"""The OpenFX bundle's Contents/Resources/worker.json: the command the plug-in runs to start its
worker. Written by the build and by `facerestore install ofx --python`, so a bundle built once
can be installed anywhere and pointed at any environment:
`python -m facerestore.ofx_bridge.config /path/to/python`."""

import json
import shlex
import sys


def worker_json(python: str) -> str:
    # Not ASCII-escaped: the plug-in's small JSON reader takes UTF-8 but no \u escapes.
    command = shlex.join([python, "-m", "facerestore.ofx_bridge.worker"])
    return json.dumps({"command": command}, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.buffer.write(worker_json(sys.argv[1] if len(sys.argv) > 1 else sys.executable).encode())
