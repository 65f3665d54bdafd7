"""FaceRestore Submit to farm (Fusion: Script > FaceRestore Submit to farm).

Writes a farm job (Open Job Description / Deadline Cloud, OpenCue or Deadline 10) that restores
the selected Loader's EXR plates over the comp's render range, and prints how to submit it.
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
    print("facerestore: facerestore_fusion.py is missing; reinstall with `facerestore install fusion`")
else:
    if _folder not in sys.path:
        sys.path.insert(0, _folder)
    import facerestore_fusion

    # Fusion runs a Comp script with `comp` (and `fusion`) set to the current composition.
    facerestore_fusion.farm_main(globals().get("comp"), globals().get("fusion"))
