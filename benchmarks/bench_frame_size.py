"""Speed of one frame, by stage: the same face in a 1080p and a 4K plate; a 4K plate with no
face against reading and writing it; and a short 4K shot rendered with reading, computing and
writing overlapped against one after another.

Cost should follow face area, not frame area. Run from the set-up environment:

    .venv/bin/python -m facerestore.benchmarks.bench_frame_size [--repeats 3] [--device cpu] [--json out.json]

Reports the median of the repeats after one warm-up, per stage, the process's peak memory after
each size, and ratios measured in the same run (the machine is shared and noisy; compare
ratios, not seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import OpenImageIO as oiio

from facerestore.models.device import resolve_torch_device
from facerestore.nodes.colour import ColourPipeline
from facerestore.nodes.exr_io import read_frame
from facerestore.nodes.face_restore import FaceRestoreNode
from facerestore.plugin.demo import astronaut_srgb, degrade_display
from facerestore.plugin.render import RenderOptions, render

SIZES = {"1080p": (1920, 1080), "4K": (3840, 2160)}


def plate_with_face(
    colour: ColourPipeline, width: int, height: int, shift: int = 0, face: bool = True, faces: int = 1
) -> np.ndarray:
    """The astronaut's head, about 180 px wide, on a soft gradient, `faces` times along a row;
    degraded, then linear. `shift` moves the heads right by that many pixels (a shot's frames)."""
    head = astronaut_srgb()[20:230, 140:320]
    canvas = np.linspace(0.2, 0.4, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    if not face:
        return colour.decode(canvas)
    rng = np.random.default_rng(0)
    for index in range(faces):
        y, x = height // 3, width // 2 + shift + (index - faces // 2) * width // (faces + 1)
        canvas[y : y + head.shape[0], x : x + head.shape[1]] = head
        # Degrade only around the face: a whole-4K JPEG pass is not what we are timing.
        window = (slice(y - 64, y + head.shape[0] + 64), slice(x - 64, x + head.shape[1] + 64))
        canvas[window] = degrade_display(canvas[window], rng)
    return colour.decode(canvas)


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_plate(path: Path, linear: np.ndarray) -> None:
    """Half-float RGB with ZIP compression, as plates usually come."""
    spec = oiio.ImageSpec(linear.shape[1], linear.shape[0], 3, "half")
    spec.attribute("compression", "zip")
    out = oiio.ImageOutput.create(str(path))
    out.open(str(path), spec)
    out.write_image(np.ascontiguousarray(linear, np.float32))
    out.close()


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def faceless_4k(node, colour: ColourPipeline, folder: Path, repeats: int) -> dict:
    """A 4K plate with no face: the node's time against reading and writing the frame."""
    plate = plate_with_face(colour, *SIZES["4K"], face=False)
    path = folder / "empty.exr"
    write_plate(path, plate)
    read = median_seconds(lambda: read_frame(str(path)), repeats)
    write = median_seconds(lambda: write_plate(folder / "empty_out.exr", plate), repeats)
    process = median_seconds(lambda: node.process(plate), repeats)
    return {"read": read, "write": write, "process": process, "process_over_read_write": process / (read + write)}


def overlapped_vs_sequential(node, colour: ColourPipeline, folder: Path, frames: int, repeats: int, device: str) -> dict:
    """A 4K shot with four faces rendered from one analysis with reading ahead and writing behind
    in threads, and with each step after the other: a warm-up render, then the two taking turns
    (which goes first alternates), medians. Every output file must be the same byte for byte.
    Then the same shot through `facerestore render` in a child process, for its peak memory."""
    for t in range(frames):
        write_plate(folder / f"shot.{t + 1:04d}.exr", plate_with_face(colour, *SIZES["4K"], shift=6 * t, faces=4))
    source = str(folder / "shot.####.exr")
    analysis = str(folder / "shot.analysis.json")

    def run(name: str, overlap: bool):
        options = RenderOptions(
            source, str(folder / name / "out.####.exr"), progress=False, analysis=analysis, overlap_io=overlap
        )
        return render(options, node)

    warm_up = run("warm-up", True)  # the analysis, and the four-face batch shapes
    seconds: dict = {"sequential": [], "overlapped": []}
    for index in range(repeats):
        order = (("sequential", False), ("overlapped", True))
        for name, overlap in order if index % 2 == 0 else order[::-1]:
            seconds[name].append(run(name, overlap).wall_seconds / frames)
    identical = all(
        (folder / "sequential" / f"out.{t + 1:04d}.exr").read_bytes()
        == (folder / "overlapped" / f"out.{t + 1:04d}.exr").read_bytes()
        for t in range(frames)
    )
    import resource  # not on Windows

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    command = [sys.executable, "-m", "facerestore.plugin.cli", "render", source, "-o", str(folder / "cli" / "out.####.exr"),
               "--analysis", analysis, "--device", device, "--quiet"]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"facerestore render failed: {proc.stderr.strip()}")
    # The largest child so far: only this one ran (unless an earlier, larger one did: then unknown).
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "render_peak_rss_mib": peak / 1024 if peak > before else None,
        "faces": max(warm_up.faces_per_frame.values()),
        "seconds_per_frame": median,
        "runs": seconds,
        "speed_up": median["sequential"] / median["overlapped"],
        "identical": identical,
        "frames": frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=6, help="length of the 4K shot for the overlap figure")
    parser.add_argument("--json")
    args = parser.parse_args()

    colour = ColourPipeline.create()
    node = FaceRestoreNode(colour, resolve_torch_device(args.device))
    results: dict = {"peak_rss_mib": {}}
    plates = {}
    for name, (width, height) in SIZES.items():
        plates[name] = plate_with_face(colour, width, height)
        node.process(plates[name])  # warm-up
        # Peak resident memory so far (1080p runs first, so the 4K figure is the 4K frame's peak).
        results["peak_rss_mib"][name] = peak_rss_mib()
    # The sizes take turns, so drift in the machine's load falls on both; each result is dropped
    # before the next frame, as a render does.
    runs: dict = {name: [] for name in SIZES}
    faces = {}
    for _ in range(args.repeats):
        for name, plate in plates.items():
            start = time.perf_counter()
            result = node.process(plate)
            runs[name].append({"total": time.perf_counter() - start, **result.timings})
            faces[name] = len(result.faces)
            del result
    for name in SIZES:
        stages = {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
        spread = max(r["total"] for r in runs[name]) - min(r["total"] for r in runs[name])
        results[name] = {"faces": faces[name], "seconds": stages, "total_spread": spread}
        print(f"{name:>6}: {faces[name]} face(s), " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in stages.items()))
    print("peak memory: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in results["peak_rss_mib"].items())
          + f" (plate alone: 4K float RGB {3840 * 2160 * 12 / 2**20:.0f} MiB)")
    ratio = results["4K"]["seconds"]["total"] / results["1080p"]["seconds"]["total"]
    print(f"4K / 1080p time ratio: {ratio:.2f} (frame area ratio 4.00)")
    results["ratio_4k_over_1080p"] = ratio
    with tempfile.TemporaryDirectory(prefix="facerestore-bench-") as folder:
        empty = faceless_4k(node, colour, Path(folder), args.repeats)
        print(
            f"4K, no face: node {empty['process'] * 1000:.0f} ms, read {empty['read'] * 1000:.0f} ms, "
            f"write {empty['write'] * 1000:.0f} ms (node / (read + write) {empty['process_over_read_write']:.2f})"
        )
        shot = overlapped_vs_sequential(node, colour, Path(folder), args.frames, max(2, args.repeats // 2), args.device)
        print(
            f"4K shot, {shot['frames']} frames, {shot['faces']} faces: sequential {shot['seconds_per_frame']['sequential']:.2f} s/frame, "
            f"overlapped {shot['seconds_per_frame']['overlapped']:.2f} s/frame (x{shot['speed_up']:.2f}, medians of "
            f"{len(shot['runs']['overlapped'])}); "
            f"output files identical: {shot['identical']}; peak memory of `facerestore render` on it: "
            + (f"{shot['render_peak_rss_mib']:.0f} MiB" if shot["render_peak_rss_mib"] else "not measurable here")
        )
    results["faceless_4k"], results["overlap"] = empty, shot
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    cv2.setNumThreads(0)
    main()
