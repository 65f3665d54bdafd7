"""Speed of one frame, by stage: the same face in a 1080p and a 4K plate.

Cost should follow face area, not frame area. Run from the set-up environment:

    .venv/bin/python -m facerestore.benchmarks.bench_frame_size [--repeats 3] [--device cpu] [--json out.json]

Reports the median of the repeats after one warm-up, per stage, the process's peak memory after
each size, and the 4K / 1080p ratio measured in the same run (the machine is shared and noisy; compare ratios, not seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import cv2
import numpy as np

from facerestore.models.device import resolve_torch_device
from facerestore.nodes.colour import ColourPipeline
from facerestore.nodes.face_restore import FaceRestoreNode
from facerestore.plugin.demo import astronaut_srgb, degrade_display

SIZES = {"1080p": (1920, 1080), "4K": (3840, 2160)}


def plate_with_face(colour: ColourPipeline, width: int, height: int) -> np.ndarray:
    """The astronaut's head, about 180 px wide, on a soft gradient; degraded, then linear."""
    head = astronaut_srgb()[20:230, 140:320]
    canvas = np.linspace(0.2, 0.4, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    y, x = height // 3, width // 2
    canvas[y : y + head.shape[0], x : x + head.shape[1]] = head
    # Degrade only around the face: a whole-4K JPEG pass is not what we are timing.
    window = (slice(y - 64, y + head.shape[0] + 64), slice(x - 64, x + head.shape[1] + 64))
    canvas[window] = degrade_display(canvas[window], np.random.default_rng(0))
    return colour.decode(canvas)


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json")
    args = parser.parse_args()

    colour = ColourPipeline.create()
    node = FaceRestoreNode(colour, resolve_torch_device(args.device))
    results = {}
    for name, (width, height) in SIZES.items():
        plate = plate_with_face(colour, width, height)
        node.process(plate)  # warm-up
        # Peak resident memory so far (1080p runs first, so the 4K figure is the 4K frame's peak).
        results.setdefault("peak_rss_mib", {})[name] = peak_rss_mib()
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = node.process(plate)
            runs.append({"total": time.perf_counter() - start, **result.timings})
        stages = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        spread = max(r["total"] for r in runs) - min(r["total"] for r in runs)
        results[name] = {"faces": len(result.faces), "seconds": stages, "total_spread": spread}
        print(
            f"{name:>6}: {len(result.faces)} face(s), " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in stages.items())
        )
    print("peak memory: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in results["peak_rss_mib"].items())
          + f" (plate alone: 4K float RGB {3840 * 2160 * 12 / 2**20:.0f} MiB)")
    ratio = results["4K"]["seconds"]["total"] / results["1080p"]["seconds"]["total"]
    print(f"4K / 1080p time ratio: {ratio:.2f} (frame area ratio 4.00)")
    results["ratio_4k_over_1080p"] = ratio
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    cv2.setNumThreads(0)
    main()
