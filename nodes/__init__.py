"""Host-agnostic nodes and the frame / colour / IO core. Imports no host module."""
