"""Ways a person or a host drives facerestore: farm job writers (and, later, host adapters)."""
