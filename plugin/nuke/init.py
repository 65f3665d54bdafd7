"""facerestore's Nuke folder (put it on NUKE_PATH, or let `facerestore install nuke` do it).

Runs in every Nuke session, `nuke -t` and farm renders included: no UI here. The FaceRestore
gizmo is found because this folder is on the plug-in path; its Python (facerestore_nuke.py) and
the shared host module must be importable by the buttons.
"""

import os
import sys

import nuke

HERE = os.path.dirname(os.path.abspath(__file__))
for folder in (HERE, os.path.join(HERE, "..", "hostside")):  # installed copy, or a checkout
    if os.path.isdir(folder) and folder not in sys.path:
        sys.path.append(folder)

# The OFX node the gizmo wraps returns restored RGB with the matte in alpha; the gizmo moves the
# matte to face.mask. Used bare (OFX menu), it keeps the same default.
nuke.knobDefault("OFXcom.facerestore.FaceRestore_v1.output", "both")
