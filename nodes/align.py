"""Face-space geometry (from the models layer) and the soft face matte the node composites with."""

from __future__ import annotations

import numpy as np

from facerestore.models.align import (  # noqa: F401  (re-exported for the node layer)
    INPUT_SIZES,
    TEMPLATE_LANDMARKS,
    TEMPLATE_SIZE,
    affine_scale,
    choose_input_size,
    estimate_similarity,
    footprint_of,
    invert_affine,
    scaled_template_transform,
    transform_points,
    warp_to_face,
)


def face_matte(size: int, feather: float = 0.12) -> np.ndarray:
    """Soft matte of the face area in face space: an egg shape (narrower at the chin) with a
    smooth fall-off, exactly 0 well inside the crop border so no box edge can show."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) * (TEMPLATE_SIZE / size)
    # Reaches the hairline, ears and jaw: the benchmark's face region (a dilated matte) showed a
    # tighter egg left those degraded. Still exactly 0 well before the crop border.
    cx, cy = 256.0, 280.0
    half_width, half_height = 160.0, 205.0
    dy = (ys - cy) / half_height
    # Cheeks taper towards the jaw line below the mouth.
    width = half_width * (1.0 - 0.22 * np.clip(dy, 0.0, 1.0) ** 2)
    radius = np.sqrt(((xs - cx) / width) ** 2 + dy**2)
    inner = 1.0 - feather
    t = np.clip((1.0 - radius) / max(feather, 1e-6), 0.0, 1.0) if feather > 0 else (radius <= 1).astype(float)
    matte = t * t * (3.0 - 2.0 * t)  # smoothstep: no visible ring at either end of the feather
    matte[radius >= 1.0] = 0.0
    matte[radius <= inner] = 1.0
    return matte.astype(np.float32)
