"""The Nuke FaceRestore gizmo, generated from the node spec (`python -m facerestore.plugin.hostspec --write`).

Inside: the OpenFX node (class `OFXcom.facerestore.FaceRestore_v1`, output `both`: restored RGB,
matte in alpha) and a Copy node that takes the plate (B, input 0) and copies the restored RGB and
the matte, into the `face.mask` layer, from the OFX node (A, input 1): the plate's own alpha and
other layers pass through untouched. The spec's parameters are Link knobs onto the OFX node's,
so there is one value per parameter; the inner node carries the spec's defaults. The OFX node's
Analyse shot button and Status line are linked the same way.

The input order of the Copy node follows the .nk stack rule as nkparser reads it (first pushed =
input 0); Nuke itself was not available to confirm it (see README, Nuke: known limits).
"""

from __future__ import annotations

OFX_NODE = "FaceRestoreOFX"
COPY_NODE = "MatteToLayer"
KNOB_TYPES = {"float": 7, "int": 3, "choice": 4, "str": 1}


def quoted(text: str) -> str:
    """A TCL word: braces unless the text needs no quoting."""
    if text and all(c.isalnum() or c in "._-/" for c in text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("[", "\\[").replace("$", "\\$")
    return '"' + escaped.replace("\n", "\\n") + '"'


def value_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return quoted(str(value)) if value != "" else '""'


def python_button(name: str, label: str, call: str, tooltip: str, new_line: bool = True) -> str:
    code = f"import facerestore_nuke\nfacerestore_nuke.{call}(nuke.thisNode())"
    line = "" if new_line else " -STARTLINE"
    return f" addUserKnob {{22 {name} l {quoted(label)} t {quoted(tooltip)}{line} T {quoted(code)}}}"


def gizmo_text(spec: dict) -> str:
    node = spec["node"]
    ofx_params = {p["id"]: p for p in spec["ofx_params"]}
    lines = [
        "# " + spec["generated_by"],
        "version 13.0",
        "add_layer {face face.mask}",
        "Gizmo {",
        " inputs 1",
        f" help {quoted(node['hint'] + ' The matte goes to the face.mask layer; alpha is the plate.')}",
        " tile_color 0x5a8fc8ff",
        f" addUserKnob {{20 facerestore l {node['label']}}}",
        " addUserKnob {6 restore_faces l \"restore faces\" t \"Preview switch: off shows the plate.\" +STARTLINE}",
        " restore_faces true",
    ]
    for param in spec["params"]:
        lines.append(f" addUserKnob {{41 {param['id']} l {quoted(param['label'])} T {OFX_NODE}.{param['id']}}}")
        if param["id"] == "tracks":
            lines.append(python_button("pick_faces", "Pick faces...", "pick_faces", "List the shot's face tracks.", False))
    for name in ("colorspace", "analysis"):
        lines.append(f" addUserKnob {{41 {name} l {quoted(ofx_params[name]['label'])} T {OFX_NODE}.{name}}}")
    # The OFX node's Analyse shot button (Nuke's progress bar, cancel) and Status line, linked.
    for control in spec["ofx_controls"]:
        lines.append(f" addUserKnob {{41 {control['id']} l {quoted(control['label'])} T {OFX_NODE}.{control['id']}}}")
    lines += [
        " addUserKnob {20 render_through_tab l \"Render through\"}",
        " addUserKnob {26 render_through_note l \"\" +STARTLINE T \"Renders the input range with the facerestore "
        "command (no OFX install needed) and reads the result back.\"}",
        " addUserKnob {2 render_folder l \"Render folder\" t \"Where the input range and the result are written "
        "(default: facerestore/ beside the script).\"}",
        " addUserKnob {6 per_face_mattes l \"per-face mattes (face.mask1..N)\" +STARTLINE}",
        python_button("render_through", "Render through facerestore", "render_through", "Background render, with progress and cancel."),
        python_button("submit_to_farm", "Submit to farm...", "submit_to_farm", "Write an OpenJD / Deadline job for the input range.", False),
        python_button("bake_to_group", "Bake to Group", "bake_to_group", "Replace this gizmo by a Group, for scripts that travel."),
        "}",
        " Input {",
        "  inputs 0",
        "  name Input1",
        "  xpos 0",
        "  ypos -150",
        " }",
        " set Nplate [stack 0]",
        f" {node['nuke_ofx_class']} {{",
    ]
    for param in spec["params"] + [ofx_params["colorspace"], ofx_params["analysis"]]:
        lines.append(f"  {param['id']} {value_text(param['default'])}")
    lines += [
        "  output both",
        "  disable {{!parent.restore_faces}}",
        f"  name {OFX_NODE}",
        "  xpos 110",
        "  ypos -80",
        " }",
        " set Nrestored [stack 0]",
        " push $Nplate",
        " push $Nrestored",
        " Copy {",
        "  inputs 2",
        "  from0 rgba.red",
        "  to0 rgba.red",
        "  from1 rgba.green",
        "  to1 rgba.green",
        "  from2 rgba.blue",
        "  to2 rgba.blue",
        "  from3 rgba.alpha",
        "  to3 face.mask",
        "  disable {{!parent.restore_faces}}",
        f"  name {COPY_NODE}",
        "  xpos 0",
        "  ypos 0",
        " }",
        " Output {",
        "  name Output1",
        "  xpos 0",
        "  ypos 100",
        " }",
        "end_group",
    ]
    return "\n".join(lines) + "\n"
