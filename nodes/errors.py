class FaceRestoreError(Exception):
    """Bad input or an impossible request. The message is shown to the user as one line."""
