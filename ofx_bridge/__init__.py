"""The OpenFX plug-in (C) and its Python worker. Depends on nodes; nothing depends on it."""
