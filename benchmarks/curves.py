"""A training record's loss curves as a picture (`losses` of the JSON record train_v2 writes).

python -m facerestore.benchmarks.curves models/trained/facerestore-face-x4-v3.json docs/images/v3-curves.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)


def plot_curves(record_path: str, out_path: str) -> None:
    with open(record_path) as handle:
        record = json.load(handle)
    log = record["losses"]
    steps = [entry["step"] for entry in log]
    figure, axis = plt.subplots(figsize=(7, 3.5), dpi=110)
    axis.plot(steps, [e["reconstruction"] for e in log], label="Charbonnier (pixels)")
    axis.plot(steps, [e["temporal"] for e in log], label="temporal (frame-to-frame change)")
    axis.set_xlabel("step (100-step means; a new degradation draw every sample)")
    axis.set_ylabel("loss")
    axis.set_title(f"{record['config'].get('name') or record['weights']}: training losses")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_path)
    plt.close(figure)


if __name__ == "__main__":
    plot_curves(sys.argv[1], sys.argv[2])
