"""Networks, weights registry and inference backends. Imports nothing from nodes or hosts.

Prints nothing: notes go to the `facerestore.models` logger, which the CLI and worker show and a
host embedding the package may route where it likes (silent until someone adds a handler)."""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
