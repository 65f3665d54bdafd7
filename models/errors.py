class ModelError(RuntimeError):
    """A model or its weights cannot be used; the message says why and what to do."""
