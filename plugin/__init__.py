"""Every way a person or a host drives facerestore: the CLI and batch render (progress, reports,
demo), the farm job writers, the Nuke and Fusion / Resolve adapters and their installer. Only this
layer (and ofx_bridge) reads argv or prints; it converts parameters and buffers for the nodes."""
