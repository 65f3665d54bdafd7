"""facerestore's Nuke folder (put it on NUKE_PATH, or let `facerestore install nuke` do it).

Runs in every Nuke session, `nuke -t` and farm renders included: no UI here. The FaceRestore
gizmo is found because this folder is on the plug-in path; its Python (facerestore_nuke.py) and
the shared host module must be importable by the buttons.
"""

import os
import sys

import nuke

HERE = os.path.dirname(os.path.abspath(__file__))
# This folder first, so its own facerestore_host is the one imported (not another install's);
# a checkout's shared module (../hostside) after it.
if HERE in sys.path:
    sys.path.remove(HERE)
sys.path.insert(0, HERE)
CHECKOUT_HOSTSIDE = os.path.join(HERE, "..", "hostside")
if os.path.isdir(CHECKOUT_HOSTSIDE) and CHECKOUT_HOSTSIDE not in sys.path:
    sys.path.append(CHECKOUT_HOSTSIDE)

# The OFX node the gizmo wraps returns restored RGB with the matte in alpha; the gizmo moves the
# matte to face.mask. Used bare (OFX menu), it keeps the same default.
nuke.knobDefault("OFXcom.facerestore.FaceRestore_v1.output", "both")
