"""Farm scaling: one Open Job Description job for a shot, rendered by 1, 2 and 4 local workers.

`facerestore farm openjd` writes the job; the `Analyse` step runs once (`openjd run --step
Analyse`), then the `Render` step's chunks are shared out round-robin between W parallel
`openjd run --step Render --tasks '[...]'` sessions, each a stand-in for one farm worker.
Reported per W: wall time of the render step, speed-up over one worker, and the analysis step's
share of the total (analysis + render). Every worker count's frames are checked to equal the
one-worker frames bit for bit.

    .venv/bin/python -m facerestore.benchmarks.bench_farm [--frames 24] [--chunk 4] [--workers 1 2 4] [--json out.json]

Speed-up is bounded by the machine's cores (each worker also runs its own threads): on a
2-core machine, 4 workers cannot go faster than 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import OpenImageIO as oiio

from facerestore.nodes.colour import ColourPipeline
from facerestore.plugin.demo import demo_frame_display

OPENJD = Path(sys.executable).parent / "openjd"


def write_shot(folder: Path, frames: int) -> None:
    """A moving face (the demo's astronaut, NASA, public domain), 384x216 linear EXRs."""

    colour = ColourPipeline.create()
    for t in range(1, frames + 1):
        linear = colour.decode(cv2.resize(demo_frame_display(t - 1), (384, 216), interpolation=cv2.INTER_AREA))
        out = oiio.ImageOutput.create(str(folder / f"s.{t:04d}.exr"))
        out.open(str(folder / f"s.{t:04d}.exr"), oiio.ImageSpec(384, 216, 3, "half"))
        out.write_image(np.ascontiguousarray(linear, np.float32))
        out.close()


def pixels(path: Path) -> np.ndarray:
    return oiio.ImageBuf(str(path)).get_pixels(oiio.FLOAT)


def openjd(job: Path, *args: str) -> None:
    subprocess.run(
        [str(OPENJD), "run", str(job / "template.yaml"), "--job-param", f"file://{job / 'openjd_params.yaml'}", *args],
        check=True, capture_output=True, timeout=3600,
    )


def run_workers(job: Path, chunks: list[str], workers: int) -> float:
    shares = [chunks[w::workers] for w in range(workers)]
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        runs = [pool.submit(openjd, job, "--step", "Render", "--no-run-dependencies", "--tasks",
                            json.dumps([{"Frame": c} for c in share])) for share in shares if share]
        for run in runs:
            run.result()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    if not OPENJD.exists():
        print("the farm extra is not installed (pip install 'facerestore[farm]')", file=sys.stderr)
        return 2
    chunks = [f"{a}-{min(a + args.chunk - 1, args.frames)}" for a in range(1, args.frames + 1, args.chunk)]
    figures: dict = {"frames": args.frames, "chunk": args.chunk, "cores": os.cpu_count(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_shot(folder, args.frames)
        reference = None
        for workers in args.workers:
            out, job = folder / f"out{workers}", folder / f"job{workers}"
            subprocess.run(
                [sys.executable, "-m", "facerestore.plugin.cli", "farm", "openjd", str(folder / "s.####.exr"),
                 "-o", str(out / "r.####.exr"), "--chunk", str(args.chunk), "--job-dir", str(job)],
                check=True, capture_output=True,
            )
            start = time.perf_counter()
            openjd(job, "--step", "Analyse")
            analyse = time.perf_counter() - start
            render = run_workers(job, chunks, workers)
            frames = [pixels(out / f"r.{t:04d}.exr") for t in range(1, args.frames + 1)]
            reference = reference or frames
            run = {"workers": workers, "analyse_s": analyse, "render_s": render,
                   "analysis_share": analyse / (analyse + render), "identical_to_one_worker": all(np.array_equal(a, b) for a, b in zip(frames, reference))}
            figures["runs"].append(run)
            print(f"{workers} worker(s): analyse {analyse:.1f} s, render {render:.1f} s, "
                  f"analysis {100 * run['analysis_share']:.0f} % of the total, same frames: {run['identical_to_one_worker']}",
                  flush=True)
    base = figures["runs"][0]["render_s"]
    for run in figures["runs"]:
        run["speed_up"] = base / run["render_s"]
        print(f"{run['workers']} worker(s): render speed-up {run['speed_up']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
