"""Prints the OpenFX bundle's Contents/Resources/worker.json for a Python interpreter:
`python install/worker_json.py /path/to/python`. The plug-in runs that command to start its
worker, so a bundle built once can be installed anywhere and pointed at any environment."""

import json
import shlex
import sys

python = sys.argv[1] if len(sys.argv) > 1 else sys.executable
print(json.dumps({"command": shlex.join([python, "-m", "facerestore.ofx_bridge.worker"])}, indent=2))
