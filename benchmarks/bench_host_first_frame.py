"""The first frame in a host: how long the first render of a shot takes, 6 frames against 48.

A compositor drops the node on a plate and looks at one frame. The project's C test host
(tests/ofx_host/test_host.c) loads the real bundle and renders frame 1 of a shot with no
analysis, once for a 6-frame clip and once for a 48-frame clip (the demo's six plates repeated),
back to back in one run. Each figure is the whole host process: worker start, model load and the
one render. Reported: seconds for each and the ratio 48 / 6 (issue 35's target: <= 1.5).

    .venv/bin/python -m facerestore.benchmarks.bench_host_first_frame [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from facerestore.benchmarks.bench_host import BUNDLE_BINARY, build_host, report, timed
from facerestore.nodes.colour import ColourPipeline
from facerestore.plugin.demo import DEMO_FRAMES, DEMO_SIZE, demo_frame_display


def write_raw_shot(folder: Path, frames: int) -> None:
    """`frames` raw RGBA frames for the test host: the demo's plates, repeated."""
    colour = ColourPipeline.create()
    width, height = DEMO_SIZE
    plates = [colour.decode(demo_frame_display(i)).astype(np.float32) for i in range(len(DEMO_FRAMES))]
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(1, frames + 1):
        plate = plates[(t - 1) % len(plates)]
        np.concatenate([plate, np.ones((height, width, 1), np.float32)], axis=2).tofile(folder / f"frame.{t}.raw")


def first_render_seconds(host: Path, folder: Path, frames: int) -> float:
    width, height = DEMO_SIZE
    return timed(
        [
            str(host),
            str(BUNDLE_BINARY),
            str(folder),
            str(width),
            str(height),
            "1",
            str(frames),
            "1",
            str(folder / "o.raw"),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    if not BUNDLE_BINARY.exists():
        print("build the OpenFX bundle first (install/setup.sh)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        host = build_host(folder)
        for frames in (6, 48):
            write_raw_shot(folder / f"shot{frames}", frames)
        short = first_render_seconds(host, folder / "shot6", 6)
        long = first_render_seconds(host, folder / "shot48", 48)
    figures = {
        "size": "x".join(map(str, DEMO_SIZE)),
        "first_render_6_frames_s": short,
        "first_render_48_frames_s": long,
        "ratio_48_over_6": long / short,
    }
    report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
