"""Quality and speed benchmarks (`facerestore bench`). Sits above nodes, like a host."""
