"""Networks, weights registry and inference backends. Imports nothing from nodes or hosts."""
