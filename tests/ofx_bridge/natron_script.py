"""A NatronRenderer script for tests/ofx_bridge/test_natron.py (runs inside Natron's Python):
Read (openfx-io's OpenImageIO reader) -> FaceRestore -> Write (OpenImageIO, 32-bit float EXR).

    NatronRenderer -w Write FIRST-LAST natron_script.py

Environment: FR_IN / FR_OUT (#### patterns), FR_FIRST / FR_LAST (the Write node's range),
FR_ANALYSIS (the node's Analysis file), FR_ANALYSE=1 to press the node's Analyse shot button
before the render (as a user would in the GUI). The reader and writer do no colour conversion
(openfx-io built without OpenColorIO): the plate's values reach the node as they are on disk.
"""

import os

import NatronEngine


def choose(param, option_id):
    """A choice parameter set by its option's id (the labels may differ between builds)."""
    ids = [param.getOption(i) for i in range(param.getNumOptions())]
    lower = [i.lower() for i in ids]
    if option_id.lower() not in lower:
        raise RuntimeError(f"{param.getScriptName()} has no option {option_id} (has {ids})")
    param.setValue(lower.index(option_id.lower()))


def set_value(node, name, value):
    param = node.getParam(name)
    if param is None:
        raise RuntimeError(f"{node.getScriptName()} has no parameter {name}")
    if isinstance(param, NatronEngine.ChoiceParam) and isinstance(value, str):
        choose(param, value)
    else:
        param.setValue(value)


read = app.createNode("fr.inria.openfx.ReadOIIO")  # noqa: F821 (Natron's app)
read.setScriptName("Plate")
set_value(read, "filename", os.environ["FR_IN"])
set_value(read, "edgePixels", "Repeat")  # the plate's data window as it is, no black border

effect = app.createNode("com.facerestore.FaceRestore")  # noqa: F821
if effect is None:
    raise RuntimeError("no com.facerestore.FaceRestore in OFX_PLUGIN_PATH")
effect.setScriptName("FaceRestore")
effect.connectInput(0, read)
set_value(effect, "analysis", os.environ.get("FR_ANALYSIS", ""))
if os.environ.get("FR_ANALYSE") == "1":
    effect.getParam("analyse_shot").trigger()
    print(f"[natron_script] status: {effect.getParam('analysis_status').getValue()}")

write = app.createNode("fr.inria.openfx.WriteOIIO")  # noqa: F821
write.setScriptName("Write")
write.connectInput(0, effect)
set_value(write, "filename", os.environ["FR_OUT"])
set_value(write, "formatType", 0)  # the input's format, not the project's
set_value(write, "clipToRoD", True)
set_value(write, "frameRange", 2)  # manual
set_value(write, "firstFrame", int(os.environ["FR_FIRST"]))
set_value(write, "lastFrame", int(os.environ["FR_LAST"]))
set_value(write, "bitDepth", "32f")
