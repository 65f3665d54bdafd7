"""facerestore's Nuke menus (interactive sessions only): a FaceRestore toolbar with the gizmo,
render-through and farm actions for the selected FaceRestore node, and the ToolSet."""

import os

import nuke

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLSET = os.path.join(HERE, "ToolSets", "FaceRestore", "FaceRestore with face grade.nk")


def selected_facerestore():
    """The selected FaceRestore node, or None with a message."""
    try:
        node = nuke.selectedNode()
    except ValueError:  # Nuke raises it when nothing is selected
        node = None
    if node is None or node.Class() not in ("FaceRestore", "Group") or node.knob("render_through") is None:
        nuke.message("FaceRestore: select a FaceRestore node first")
        return None
    return node


def on_selected(action):
    node = selected_facerestore()
    if node is not None:
        import facerestore_nuke

        getattr(facerestore_nuke, action)(node)


menu = nuke.menu("Nodes").addMenu("FaceRestore")
menu.addCommand("FaceRestore", "import facerestore_nuke; facerestore_nuke.create_node()", "ctrl+alt+f")
menu.addCommand("Render through facerestore", lambda: on_selected("render_through"))
menu.addCommand("Pick faces...", lambda: on_selected("pick_faces"))
menu.addCommand("Submit to farm...", lambda: on_selected("submit_to_farm"))
menu.addCommand("Bake to Group", lambda: on_selected("bake_to_group"))
menu.addCommand("ToolSets/FaceRestore with face grade", lambda: nuke.loadToolset(TOOLSET))
