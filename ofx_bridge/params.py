"""The OpenFX plug-in's parameter table, generated from the node spec at build time:
`python -m facerestore.ofx_bridge.params > build/params.h` (the Makefile does this), so the
OFX node, the CLI and the host adapters cannot drift apart.

Besides the node's own parameters, the OFX node shows the three a host node adds (how the result is
returned, the plate's colourspace and the shot's analysis file); the worker reads them. Then the
host controls: the Analyse shot button and the Status line (`FR_ANALYSE_*`, `FR_STATUS_*`)."""

from __future__ import annotations

import math
import sys

from facerestore.nodes.face_restore import FACE_RESTORE, HOST_CONTROLS, HOST_PARAMS, OUTPUT_MODES

# The node's own parameters and the three a host node adds around them (HOST_PARAMS).
OFX_PARAMS = FACE_RESTORE.params + HOST_PARAMS


def c_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif " " <= char <= "~":
            out.append(char)
        else:
            out += [f"\\{byte:03o}" for byte in char.encode("utf-8")]
    return '"' + "".join(out) + '"'


def c_number(value) -> str:
    return repr(float(value)) if value is not None else "0"


def slider_step(p) -> tuple[float, int]:
    """(increment, digits shown) for a numeric parameter: a hundredth of its range, rounded down
    to a power of ten, and enough digits to show that step and the default exactly (hosts' own
    defaults are a step of 1 and two digits: 0.0075 would read 0.01)."""
    step = 10.0 ** math.floor(math.log10((p.maximum - p.minimum) / 100.0))
    default_decimals = len(repr(float(p.default)).split(".")[1].rstrip("0"))
    return step, max(2, min(6, max(default_decimals, -math.floor(math.log10(step)))))


def header(params=OFX_PARAMS) -> str:
    lines = [
        "/* Generated from the node spec by `python -m facerestore.ofx_bridge.params`; do not edit. */",
        f"#define FR_PLUGIN_ID {c_string(FACE_RESTORE.id)}",
        f"#define FR_SPEC_VERSION_MAJOR {FACE_RESTORE.version[0]}",
        f"#define FR_SPEC_VERSION_MINOR {FACE_RESTORE.version[1]}",
        # The Output choice's index as the host stores it, per mode (what the plug-in's own
        # masking of the result needs to know; the worker packs the result itself).
        *(f"#define FR_OUTPUT_{mode.upper()} {index}" for index, mode in enumerate(OUTPUT_MODES)),
    ]
    for p in params:
        if p.choices:
            options = ", ".join(c_string(c) for c in p.choices)
            lines.append(f"static const char *const OPTIONS_{p.id}[] = {{{options}}};")
    lines.append("static const ParamSpec PARAMS[] = {")
    for p in params:
        common = f"{c_string(p.id)}, {c_string(p.label)}, {c_string(p.hint)}"
        if p.choices:
            fields = f"P_CHOICE, {p.choices.index(p.default)}, 0, 0, NULL, OPTIONS_{p.id}, {len(p.choices)}, 0, 0"
        elif isinstance(p.default, bool) or not isinstance(p.default, (int, float, str)):
            raise TypeError(f"{p.id}: no OFX parameter kind for {type(p.default).__name__}")
        elif isinstance(p.default, str):
            fields = f"P_STRING, 0, 0, 0, {c_string(p.default)}, NULL, 0, 0, 0"
        elif isinstance(p.default, int):
            fields = f"P_INT, {p.default}, {c_number(p.minimum)}, {c_number(p.maximum)}, NULL, NULL, 0, 1, 0"
        else:
            step, digits = slider_step(p)
            fields = (
                f"P_DOUBLE, {c_number(p.default)}, {c_number(p.minimum)}, {c_number(p.maximum)}, NULL, NULL, 0, "
                f"{step!r}, {digits}"
            )
        lines.append(f"    {{{common}, {fields}}},")
    lines.append("};")
    for control in HOST_CONTROLS:
        prefix = {"button": "FR_ANALYSE", "status": "FR_STATUS"}[control.kind]
        lines += [
            f"#define {prefix}_ID {c_string(control.id)}",
            f"#define {prefix}_LABEL {c_string(control.label)}",
            f"#define {prefix}_HINT {c_string(control.hint)}",
        ]
        if control.kind == "status":
            lines.append(f"#define {prefix}_DEFAULT {c_string(control.default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(header())
