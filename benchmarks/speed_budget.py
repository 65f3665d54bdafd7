"""The restorer's speed budget: a whole `facerestore render` of 12 frames of 640x360 with one
~300 px face (analysis and model load included), per model and ensemble, on this machine.

The face is the astronaut (scikit-image sample data, NASA, public domain) moved as in a real
shot (`benchmarks.people.shot_from_still`) and lightly degraded. Each variant is rendered in a
fresh process, as a user's command line is, in turns (A B A B ...), so a busy machine slows
every variant alike; the report gives the median per variant and each one's ratio to the first.

    python -m facerestore.benchmarks.speed_budget [--repeats 3] [--variant MODEL:ENSEMBLE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from facerestore.benchmarks.people import shot_from_still
from facerestore.benchmarks.run import write_linear_sequence
from facerestore.models.detector import RetinaFaceDetector
from facerestore.models.weights import DEFAULT_RESTORER
from facerestore.nodes.colour import ColourPipeline
from facerestore.plugin.demo import astronaut_srgb, degrade_display

FRAMES = 12
FOOTPRINT = 300.0
BUDGET_SECONDS_PER_FRAME = 2.0


def make_shot(folder: str) -> str:
    still = astronaut_srgb()
    (face,) = RetinaFaceDetector("cpu", score_threshold=0.8).detect(still)
    rng = np.random.default_rng(7)
    frames = shot_from_still(still, face.landmarks, FRAMES, rng, footprint=FOOTPRINT)
    frames = [degrade_display(f, rng) for f in frames]
    return write_linear_sequence(frames, folder, ColourPipeline.create())


def time_render(pattern: str, out: str, model: str, ensemble: str) -> float:
    command = [sys.executable, "-m", "facerestore.plugin.cli", "render", pattern, "-o", out, "-q"]
    command += ["--model", model, "--ensemble", ensemble, "--reanalyse"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variant", action="append", default=[], metavar="MODEL:ENSEMBLE", help=f"default {DEFAULT_RESTORER}:auto"
    )
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    variants = [tuple(v.split(":", 1)) for v in args.variant] or [(DEFAULT_RESTORER, "auto")]
    with tempfile.TemporaryDirectory() as folder:
        pattern = make_shot(os.path.join(folder, "plate"))
        seconds = {v: [] for v in variants}
        for repeat in range(args.repeats):
            for k, (model, ensemble) in enumerate(variants):
                out = os.path.join(folder, f"out{k}-{repeat}", "r.####.exr")
                seconds[(model, ensemble)].append(time_render(pattern, out, model, ensemble))
    first = statistics.median(seconds[variants[0]])
    rows = []
    for (model, ensemble), times in seconds.items():
        median = statistics.median(times)
        rows.append(
            {
                "model": model,
                "ensemble": ensemble,
                "seconds": times,
                "s_per_frame": median / FRAMES,
                "ratio_to_first": median / first,
            }
        )
        print(
            f"{model} ensemble {ensemble}: {median / FRAMES:.2f} s/frame (x{median / first:.2f}; "
            f"budget {BUDGET_SECONDS_PER_FRAME} s/frame; runs {', '.join(f'{t:.1f}' for t in times)} s)"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"frames": FRAMES, "footprint": FOOTPRINT, "machine_cores": os.cpu_count(), "rows": rows},
                handle,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
