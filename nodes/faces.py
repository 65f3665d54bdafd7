"""One record of a face, from detection through tracking to the render."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FaceResult:
    """A face in plate pixels. Detection fills box, score and landmarks (and sizes it for the
    node that found it); tracking adds its track and whether it was seen on this frame or filled
    in across a gap, with smoothed landmarks; a shot's renderer sizes every face of a track alike."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray  # plate pixels, data-window array coordinates
    # Side of the restorer's input crop; None: worked out from this frame's landmarks (a tracked
    # face before a shot's renderer sizes it per track).
    restore_size: int | None = None
    track: int | None = None
    # Side of the scale ensemble's coarse crop (0: no coarse pass); None: as restore_size.
    coarse_size: int | None = None
    detected: bool = True  # False where tracking filled a gap between sightings


def box_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))
