"""The one node spec, as every host adapter reads it.

Host-side code (Nuke's, Fusion's and Resolve's Python) runs inside the host's own interpreter,
which cannot import facerestore (numpy, torch and OpenImageIO are built for another Python), so
the adapters read the spec from `facerestore_spec.json` and drive `facerestore render` as a
subprocess. That file, the Nuke gizmo and the Fusion macro are generated from `FACE_RESTORE` by
`python -m facerestore.plugin.hostspec --write`; a test fails when a committed copy drifts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from facerestore.nodes.face_restore import FACE_RESTORE, HOST_CONTROLS, HOST_PARAMS
from facerestore.nodes.spec import Param
from facerestore.plugin.fusion_macro import macro_text
from facerestore.plugin.nuke_gizmo import gizmo_text

PLUGIN_DIR = Path(__file__).resolve().parent
SPEC_FILE = PLUGIN_DIR / "hostside" / "facerestore_spec.json"
# OpenFX hosts name a plug-in's node after its identifier and major version (Nuke: the class
# `OFX<identifier>_v<major>`; Fusion: the tool id `ofx.<identifier>`).
OFX_IDENTIFIER = "com.facerestore.FaceRestore"
CLI_FLAG_NAMES = {"matte_feather": "feather"}


def cli_flag(param: Param) -> str:
    """The `facerestore render` flag of a node parameter."""
    return "--" + CLI_FLAG_NAMES.get(param.id, param.id).replace("_", "-")


def param_json(param: Param, cli: bool) -> dict:
    kind = "choice" if param.choices else type(param.default).__name__
    entry = {"id": param.id, "label": param.label, "hint": param.hint, "type": kind, "default": param.default}
    if param.minimum is not None:
        entry |= {"min": param.minimum, "max": param.maximum}
    if param.choices:
        entry["choices"] = list(param.choices)
    entry["flag"] = cli_flag(param) if cli else None
    return entry


def spec_json() -> dict:
    return {
        "generated_by": "python -m facerestore.plugin.hostspec --write (do not edit)",
        "node": {
            "id": FACE_RESTORE.id,
            "version": list(FACE_RESTORE.version),
            "label": FACE_RESTORE.label,
            "hint": FACE_RESTORE.hint,
            "ofx_identifier": OFX_IDENTIFIER,
            "nuke_ofx_class": f"OFX{OFX_IDENTIFIER}_v{FACE_RESTORE.version[0]}",
            "fusion_ofx_id": f"ofx.{OFX_IDENTIFIER}",
        },
        "params": [param_json(p, cli=True) for p in FACE_RESTORE.params],
        # Parameters of the OFX node only: render-through passes the plate and analysis as files.
        "ofx_params": [param_json(p, cli=False) for p in HOST_PARAMS],
        # The OFX node's Analyse shot button and Status line: host adapters show them as they are.
        "ofx_controls": [
            {"id": c.id, "label": c.label, "hint": c.hint, "kind": c.kind, "default": c.default} for c in HOST_CONTROLS
        ],
        "matte_channel": "face.mask",
    }


def generated_files() -> dict[Path, str]:
    """Every file generated from the spec, by path, with its text."""

    spec = spec_json()
    return {
        SPEC_FILE: json.dumps(spec, indent=1) + "\n",
        PLUGIN_DIR / "nuke" / "FaceRestore.gizmo": gizmo_text(spec),
        PLUGIN_DIR / "fusion" / "FaceRestore.setting": macro_text(spec),
    }


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print("usage: python -m facerestore.plugin.hostspec --write", file=sys.stderr)
        return 2
    for path, text in generated_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
