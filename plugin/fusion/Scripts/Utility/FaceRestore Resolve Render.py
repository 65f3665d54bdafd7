"""FaceRestore Resolve Render (DaVinci Resolve: Workspace > Scripts > FaceRestore Resolve Render).

Restores the faces of the EXR sequence under the playhead in the current timeline with
facerestore (the node's default settings) and imports the result into the current media pool
folder: restored RGB plus the `face.mask` matte channel. The result stays on disk in
`<plates folder>/facerestore/`.
"""

from __future__ import annotations

import os
import sys


def _support_folder():
    """Where facerestore_fusion.py lives: beside this script, in Scripts/facerestore (where
    `facerestore install` puts it, outside the script menus), or plugin/fusion in a checkout."""
    try:
        here = os.path.dirname(os.path.abspath(__file__))
    except NameError:  # run without a file name: FACERESTORE_FUSION names the folder
        here = os.environ.get("FACERESTORE_FUSION", "")
    for folder in (here, os.path.join(here, "..", "facerestore"), os.path.join(here, "..", "..")):
        if os.path.isfile(os.path.join(folder, "facerestore_fusion.py")):
            return os.path.abspath(folder)
    return None


_folder = _support_folder()
if _folder is None:
    print("facerestore: facerestore_fusion.py is missing; reinstall with `facerestore install resolve`")
else:
    if _folder not in sys.path:
        sys.path.insert(0, _folder)
    import facerestore_fusion

    # Resolve runs a menu script with `resolve` set; from outside, DaVinciResolveScript finds it.
    facerestore_fusion.resolve_main(globals().get("resolve"))
