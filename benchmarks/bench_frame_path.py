"""The frame path at 1080p and 4K: a render's time outside the networks against what OpenImageIO
alone needs to read and write the same frames (the copy floor), per frame size and per case (one
face, four faces, no face), with the share of every stage of the render's report.

The plates are the demo's face (the astronaut, NASA, public domain) pasted 1:1 onto a soft grey
gradient, half float, ZIP, moving 6 px a frame (`bench_frame_size.plate_with_face`). Each case is
a whole `render` with its analysis (as a new user runs it), the models loaded once beforehand.
The copy floor reads each frame (its own pixel type) and writes it again with the same
compression, one frame after another, on the same OpenImageIO / OpenEXR thread count as the
render. The machine is shared and noisy (one 8-frame render moves by a third from one run to the
next), so each case is rendered `--repeats` times (3), each render between two copy floors, and
the ratio is the median render's over the median floor. A 2-frame shot of each size is rendered
first, untimed: the networks' first runs at a shape and a process's first render are one-off
costs. Compare the ratios, not the seconds.

Time outside the networks = wall time less the stages that are networks or run beside them:
`load models`, `restore` (the restorer and its ensemble), `temporal` (the window's flow and
fusion) and `analyse: detect` (the face detector). The issue's own figure leaves the detector in
(wall less `load models`, `restore`, `temporal`); both are reported.

    .venv/bin/python -m facerestore.benchmarks.bench_frame_path [--frames 8] [--long 100] [--json out.json]

`--long N` also renders an N-frame 4K shot with one face in a child `facerestore render` and
reports its peak resident memory (the frames kept from the analysis, those in flight and the
temporal window: bounded, whatever N).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from facerestore.benchmarks.bench_frame_size import SIZES, plate_with_face, write_plate
from facerestore.models.device import resolve_torch_device
from facerestore.nodes.colour import ColourPipeline
from facerestore.nodes.exr_io import set_io_threads
from facerestore.nodes.face_restore import FaceRestoreNode
from facerestore.plugin.render import KEEP_CAP_BYTES, RenderOptions, machine_threads, render

CASES = {"one face": 1, "four faces": 4, "no face": 0}
NETWORK_STAGES = ("load models", "restore", "temporal", "analyse: detect")
ISSUE_NETWORK_STAGES = ("load models", "restore", "temporal")


def write_shot(folder: Path, colour: ColourPipeline, size: str, faces: int, frames: int) -> str:
    """The shot's plates in `folder`, made unless they are there already (from an earlier run
    with the same --plates folder: making a 4K plate takes seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = SIZES[size]
    for t in range(frames):
        path = folder / f"plate.{t + 1:04d}.exr"
        if not path.is_file():
            plate = plate_with_face(colour, width, height, shift=6 * t, face=faces > 0, faces=max(faces, 1))
            write_plate(path, plate)
    return str(folder / "plate.####.exr")


def copy_floor(paths: list[Path], folder: Path) -> float:
    """Seconds to read every frame and write it again (same pixel types, same header, so the
    same compression), one after another."""
    start = time.perf_counter()
    for path in paths:
        inp = oiio.ImageInput.open(str(path))
        spec = oiio.ImageSpec(inp.spec())
        pixels = inp.read_image(0, 0, 0, spec.nchannels, spec.format)
        inp.close()
        target = str(folder / path.name)
        out = oiio.ImageOutput.create(target)
        if not (out.open(target, spec) and out.write_image(pixels) and out.close()):
            raise SystemExit(f"copy floor: cannot write {target}: {out.geterror()}")
    return time.perf_counter() - start


def measure_case(node, pattern: str, folder: Path, frames: int, repeats: int = 3) -> dict:
    """`repeats` renders of the shot, each between two copy floors (floor, render, floor, render,
    ..., floor): the ratio is the median render's time outside the networks over the median
    floor (this machine is shared and noisy; one render of 8 frames moves by a third)."""
    plates = sorted(Path(pattern).parent.glob("plate.*.exr"))
    (folder / "copy").mkdir(parents=True, exist_ok=True)
    floors, reports = [copy_floor(plates, folder / "copy")], []
    for _ in range(repeats):
        reports.append(
            render(
                RenderOptions(pattern, str(folder / "out" / "r.####.exr"), progress=False, reanalyse=True), node=node
            )
        )
        floors.append(copy_floor(plates, folder / "copy"))

    def outside(report, networks) -> float:
        return report.wall_seconds - sum(report.timings.get(s, 0.0) for s in networks)

    report = sorted(reports, key=lambda r: outside(r, NETWORK_STAGES))[len(reports) // 2]
    wall, stages = report.wall_seconds, dict(report.timings)
    floor = float(np.median(floors))
    outside_median = outside(report, NETWORK_STAGES)
    outside_issue = outside(report, ISSUE_NETWORK_STAGES)
    return {
        "frames": frames,
        "faces_per_frame": max(report.faces_per_frame.values()),
        "wall": wall,
        "stages": stages,
        "stage_sum": sum(stages.values()),
        "unreported": wall - sum(stages.values()),
        "copy_floor": floor,
        "copy_floors": floors,
        "outside_networks_each": [outside(r, NETWORK_STAGES) for r in reports],
        "outside_networks": outside_median,
        "ratio": outside_median / floor,
        "outside_issue_definition": outside_issue,
        "ratio_issue_definition": outside_issue / floor,
    }


def sequential_identical(node, pattern: str, folder: Path, frames: int) -> bool:
    """The same shot rendered again from its analysis with reading and writing in this thread,
    one frame after another: every output file the same byte for byte."""
    analysis = str(folder / "out" / "r.analysis.json")
    render(
        RenderOptions(pattern, str(folder / "seq" / "r.####.exr"), progress=False, analysis=analysis, overlap_io=False),
        node=node,
    )
    return all(
        (folder / "out" / f"r.{t:04d}.exr").read_bytes() == (folder / "seq" / f"r.{t:04d}.exr").read_bytes()
        for t in range(1, frames + 1)
    )


def long_shot_memory(colour: ColourPipeline, folder: Path, frames: int, device: str) -> dict:
    """Peak resident memory of `facerestore render` (a child process) on an N-frame 4K shot: eight
    plates made, then copied back and forth (1..8, 8..1, ...), so the face keeps moving smoothly
    (making each 4K plate takes seconds)."""
    made = sorted(Path(write_shot(folder / "made", colour, "4K", 1, 8)).parent.glob("plate.*.exr"))
    (folder / "plates").mkdir()
    cycle = made + made[::-1]
    for t in range(frames):
        shutil.copyfile(cycle[t % len(cycle)], folder / "plates" / f"plate.{t + 1:04d}.exr")
    pattern = str(folder / "plates" / "plate.####.exr")
    command = [sys.executable, "-m", "facerestore.plugin.cli", "render", pattern, "-o",
               str(folder / "out" / "r.####.exr"), "--device", device, "--quiet"]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"facerestore render failed: {proc.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "frames": frames,
        "seconds": seconds,
        # The largest child so far: this one, unless an earlier one was larger (then unknown).
        "peak_rss_mib": peak / 1024 if peak > before else None,
        "kept_frames_cap_mib": KEEP_CAP_BYTES / 2**20,
    }


def print_table(results: dict) -> None:
    print(
        "| size | case | faces | wall s | outside networks s | copy floor s | ratio | issue's ratio | stages / wall |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size, cases in results["cases"].items():
        for case, r in cases.items():
            print(
                f"| {size} | {case} | {r['faces_per_frame']} | {r['wall']:.1f} | {r['outside_networks']:.1f} | "
                f"{r['copy_floor']:.1f} | {r['ratio']:.2f} | {r['ratio_issue_definition']:.2f} | "
                f"{r['stage_sum'] / r['wall']:.3f} |"
            )
    print()
    for size, cases in results["cases"].items():
        for case, r in cases.items():
            shares = ", ".join(
                f"{stage} {100 * seconds / r['wall']:.0f} %"
                for stage, seconds in sorted(r["stages"].items(), key=lambda kv: -kv[1])
                if seconds / r["wall"] >= 0.005
            )
            print(f"{size}, {case}: {shares}; unreported {100 * r['unreported'] / r['wall']:.1f} %")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="renders per case (the median is reported)")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma list of " + ", ".join(SIZES))
    parser.add_argument("--cases", default=",".join(CASES), help="comma list of " + ", ".join(CASES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--long", type=int, default=0, help="also the peak memory of an N-frame 4K render")
    parser.add_argument("--only-long", action="store_true", help="only the long render's memory")
    parser.add_argument("--plates", help="keep the plates in this folder and reuse them in later runs")
    parser.add_argument("--plates-only", action="store_true", help="make the plates (--plates) and stop")
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    threads = machine_threads()
    set_io_threads(threads)  # the copy floor's, as the render sets its own
    colour = ColourPipeline.create()
    results: dict = {"threads": threads, "device": args.device, "frames": args.frames, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="facerestore-frame-path-") as tmp:
        root = Path(tmp)
        if not args.only_long:
            plates = Path(args.plates) if args.plates else root / "plates"
            shots = {
                (size, case): write_shot(
                    plates / f"{size}-{case.replace(' ', '-')}", colour, size, CASES[case], args.frames
                )
                for size in args.sizes.split(",")
                for case in args.cases.split(",")
            }
            warm = {
                size: write_shot(plates / f"warm-up-{size}", colour, size, 4, 2) for size in args.sizes.split(",")
            }
            if args.plates_only:
                return 0
            node = FaceRestoreNode(colour, resolve_torch_device(args.device))
            # Warm-up, a 2-frame shot of each size: the networks' first runs at a shape, and a
            # process's first render (imports, thread pools), are not what is timed.
            for size, pattern in warm.items():
                render(RenderOptions(pattern, str(root / f"warm-out-{size}" / "r.####.exr"), progress=False), node=node)
            for (size, case), pattern in shots.items():
                folder = root / f"{size}-{case.replace(' ', '-')}"
                result = measure_case(node, pattern, folder, args.frames, args.repeats)
                if case == "one face":
                    result["sequential_render_identical"] = sequential_identical(node, pattern, folder, args.frames)
                results["cases"].setdefault(size, {})[case] = result
                print(
                    f"{size}, {case}: outside the networks {result['outside_networks']:.1f} s, "
                    f"copy floor {result['copy_floor']:.1f} s (x{result['ratio']:.2f})",
                    flush=True,
                )
            print_table(results)
            for size, cases in results["cases"].items():
                if "one face" in cases:
                    identical = cases["one face"]["sequential_render_identical"]
                    print(f"{size}, one face, rendered again one frame after another: files identical: {identical}")
        if args.long:
            results["long"] = long_shot_memory(colour, root / "long", args.long, args.device)
            long = results["long"]
            peak = f"{long['peak_rss_mib']:.0f} MiB" if long["peak_rss_mib"] else "not measurable here"
            print(f"4K, {long['frames']} frames, one face: {long['seconds']:.0f} s, peak resident memory {peak}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
