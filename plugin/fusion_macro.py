"""The Fusion macro `plugin/fusion/FaceRestore.setting`, generated from the host spec.

The macro wraps the OFX node (tool id `ofx.com.facerestore.FaceRestore`; Fusion names an OFX
node's inputs after the plug-in's parameter ids, which are the spec ids, and its clips `Source`
and `Output`) and publishes every parameter with the spec's default. The OFX node runs once, in
`output = both` (restored RGB, matte in alpha), and two Custom tools split that into the macro's
outputs, so restoration is not paid twice:
- `MainOutput1`: the restored RGB with the plate's own alpha (taken from a PipeRouter on the input);
- `MatteOut`: the face matte, in RGB and alpha.
Custom tools take channel expressions as text (`a1`: alpha of Image1), where ChannelBooleans
would need its menus' numeric indices.
"""

from __future__ import annotations

OFX_TOOL = "FaceRestoreOFX"
INPUT_ROUTER = "FaceRestoreIn"
RGB_TOOL = "FaceRestoreRGB"
MATTE_TOOL = "FaceRestoreMatte"
# OFX-only parameters the artist sets: the plate's colourspace and the shot's analysis file.
# (`output` stays `both`: the macro's outputs split it.)
PUBLISHED_OFX_PARAMS = ("colorspace", "analysis")


class Table:
    """A Lua table constructor, `Type { key = value, ... }`; a key of None is a positional item."""

    def __init__(self, type_name: str = "", *items: tuple) -> None:
        self.type_name, self.items = type_name, list(items)


def lua(value) -> str:
    """A scalar as a Lua literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def emit(value, depth: int = 0) -> str:
    """Lua text of a value, tab-indented as Fusion writes settings; short tables on one line."""
    if not isinstance(value, Table):
        return lua(value)
    head = value.type_name + " " if value.type_name else ""
    entries = [(f"{key} = " if key else "") + emit(item, depth + 1) for key, item in value.items]
    inline = head + "{ " + ", ".join(entries) + " }"
    if len(entries) <= 2 and "\n" not in inline and len(inline) <= 80:
        return inline
    pad = "\t" * (depth + 1)
    return head + "{\n" + "".join(f"{pad}{e},\n" for e in entries) + "\t" * depth + "}"


def fusion_value(param: dict):
    """The value Fusion stores for a parameter: a choice is its option's index."""
    if param["type"] == "choice":
        return param["choices"].index(param["default"])
    return param["default"]


def view(kind: str, x: int, y: int) -> Table:
    """A tool's place in the flow (`ViewInfo`)."""
    return Table(kind, ("Pos", Table("", (None, x), (None, y))))


def link(tool: str, output: str = "Output") -> Table:
    return Table("Input", ("SourceOp", tool), ("Source", output))


def custom_tool(images: dict, expressions: tuple, pos: tuple) -> Table:
    inputs = [(image, link(tool)) for image, tool in images.items()]
    for channel, expression in zip(("Red", "Green", "Blue", "Alpha"), expressions):
        inputs.append((channel + "Expression", Table("Input", ("Value", expression))))
    return Table(
        "Custom",
        ("CtrlWShown", False),
        ("Inputs", Table("", *inputs)),
        ("ViewInfo", view("OperatorInfo", *pos)),
    )


def macro_text(spec: dict) -> str:
    node = spec["node"]
    ofx_only = {p["id"]: p for p in spec["ofx_params"]}
    published = list(spec["params"]) + [ofx_only[i] for i in PUBLISHED_OFX_PARAMS]

    inputs = [
        (
            p["id"],
            Table(
                "InstanceInput",
                ("SourceOp", OFX_TOOL),
                ("Source", p["id"]),
                ("Name", p["label"]),
                ("Default", fusion_value(p)),
            ),
        )
        for p in published
    ]
    # The OFX node's Analyse shot button (Fusion's progress bar) and Status line, published as they are.
    inputs += [
        (c["id"], Table("InstanceInput", ("SourceOp", OFX_TOOL), ("Source", c["id"]), ("Name", c["label"])))
        for c in spec["ofx_controls"]
    ]
    inputs.append(("MainInput1", Table("InstanceInput", ("SourceOp", INPUT_ROUTER), ("Source", "Input"))))
    outputs = [
        ("MainOutput1", Table("InstanceOutput", ("SourceOp", RGB_TOOL), ("Source", "Output"))),
        ("MatteOut", Table("InstanceOutput", ("SourceOp", MATTE_TOOL), ("Source", "Output"))),
    ]
    ofx_inputs = [("Source", link(INPUT_ROUTER))]
    ofx_inputs += [(p["id"], Table("Input", ("Value", fusion_value(p)))) for p in published + [ofx_only["output"]]]
    tools = [
        (INPUT_ROUTER, Table("PipeRouter", ("CtrlWShown", False), ("ViewInfo", view("PipeRouterInfo", 0, 0)))),
        (
            OFX_TOOL,
            Table(
                node["fusion_ofx_id"],
                ("CtrlWShown", False),
                ("Inputs", Table("", *ofx_inputs)),
                ("ViewInfo", view("OperatorInfo", 110, 0)),
            ),
        ),
        # Restored RGB from the OFX node, alpha from the plate.
        (RGB_TOOL, custom_tool({"Image1": OFX_TOOL, "Image2": INPUT_ROUTER}, ("r1", "g1", "b1", "a2"), (220, 0))),
        # The matte (the OFX node's alpha) in every channel.
        (MATTE_TOOL, custom_tool({"Image1": OFX_TOOL}, ("a1", "a1", "a1", "a1"), (220, 33))),
    ]
    version = ".".join(str(v) for v in node["version"])
    macro = Table(
        "MacroOperator",
        ("CtrlWZoom", False),
        ("NameSet", True),
        ("CustomData", Table("", ("GeneratedBy", spec["generated_by"]), ("Node", f"{node['id']} {version}"))),
        ("Inputs", Table("ordered()", *inputs)),
        ("Outputs", Table("", *outputs)),
        ("ViewInfo", view("GroupInfo", 0, 0)),
        ("Tools", Table("ordered()", *tools)),
    )
    return emit(Table("", ("Tools", Table("ordered()", ("FaceRestore", macro))), ("ActiveTool", "FaceRestore"))) + "\n"
