"""Speed in a host: Analyse shot, then sequential OpenFX renders of a shot, against the CLI.

Hosts render frame by frame. The project's C test host (tests/ofx_host/test_host.c, built here
with `cc`) loads the real bundle and renders every frame of a demo-sized shot in order, as a
host scrubbing or rendering a timeline would; the CLI renders the same shot in one
`facerestore render`. Both include starting up and loading the models. Reported: seconds per
frame of each, the ratio host / CLI (target <= 1.5), and the same for a host that gives no clip
range (the worker then tracks each frame's window alone, as before the per-shot state).

    .venv/bin/python -m facerestore.benchmarks.bench_host [--frames 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from facerestore.nodes.colour import ColourPipeline
from facerestore.plugin.demo import DEMO_SIZE, demo_frame_display

ROOT = Path(__file__).resolve().parent.parent
BUNDLE_BINARY = ROOT / "ofx_bridge" / "build" / "FaceRestore.ofx.bundle" / "Contents" / "Linux-x86-64" / "FaceRestore.ofx"


def build_host(folder: Path) -> Path:
    exe = folder / "test_host"
    subprocess.run(
        ["cc", "-O2", "-o", str(exe), str(ROOT / "tests" / "ofx_host" / "test_host.c"),
         f"-I{ROOT / 'ofx_bridge' / 'include'}", "-ldl", "-lpthread"],
        check=True,
    )
    return exe


def write_shot(folder: Path, frames: int) -> None:
    """The demo's astronaut shot (NASA, public domain), degraded: EXRs for the CLI and the same
    pixels as the test host's raw RGBA frames."""

    colour = ColourPipeline.create()
    width, height = DEMO_SIZE
    for t in range(1, frames + 1):
        linear = colour.decode(demo_frame_display(t - 1)).astype(np.float32)
        spec = oiio.ImageSpec(width, height, 3, "float")
        out = oiio.ImageOutput.create(str(folder / f"s.{t:04d}.exr"))
        out.open(str(folder / f"s.{t:04d}.exr"), spec)
        out.write_image(linear)
        out.close()
        np.concatenate([linear, np.ones((height, width, 1), np.float32)], axis=2).tofile(folder / f"frame.{t}.raw")


def timed(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=dict(os.environ, **(env or {})))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    if not BUNDLE_BINARY.exists():
        print("build the OpenFX bundle first (install/setup.sh)", file=sys.stderr)
        return 2
    width, height = DEMO_SIZE
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        host = build_host(folder)
        write_shot(folder, args.frames)
        cli = timed([sys.executable, "-m", "facerestore.plugin.cli", "render", str(folder / "s.####.exr"),
                     "-o", str(folder / "cli" / "r.####.exr"), "-q"])
        host_run = [str(host), str(BUNDLE_BINARY), str(folder), str(width), str(height), "1", str(args.frames), "1",
                    str(folder / "o.raw"), "--sequence"]
        # Analyse shot first (the analysis file in this folder), then every frame.
        per_shot = timed(host_run + ["--analyse"], {"FACERESTORE_ANALYSIS_DIR": str(folder)})
        per_window = timed(host_run, {"FACERESTORE_TEST_NO_FRAME_RANGE": "1"})
    figures = {
        "frames": args.frames,
        "size": f"{width}x{height}",
        "cli_s_per_frame": cli / args.frames,
        "host_s_per_frame": per_shot / args.frames,
        "host_over_cli": per_shot / cli,
        "host_without_clip_range_s_per_frame": per_window / args.frames,
        "host_without_clip_range_over_cli": per_window / cli,
    }
    report(figures, args.json)
    return 0


def report(figures: dict, json_path: str | None) -> None:
    """The figures, one a line, and as JSON at `json_path` when given."""
    for name, value in figures.items():
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
