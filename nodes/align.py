"""Face-space geometry (from the models layer) and the soft face matte the node composites with."""

from __future__ import annotations

import numpy as np

from facerestore.models.align import (  # noqa: F401  (re-exported for the node layer)
    TEMPLATE_LANDMARKS,
    TEMPLATE_SIZE,
    affine_scale,
    choose_face_resolution_size,
    choose_input_size,
    desqueeze,
    estimate_similarity,
    footprint_of,
    input_transform,
    invert_affine,
    scaled_template_transform,
    transform_points,
    warp_to_face,
)


def face_matte(size: int, feather: float = 0.1) -> np.ndarray:
    """Soft matte of the whole face in face space: a rounded box (superellipse, exponent 3)
    from the hairline to below the jaw and across the cheeks, tapering at the jaw, at full
    weight; the feather falls off outside that (up to 10 % beyond it, so it never reaches the
    crop border, and larger feathers eat inward). Exactly 0 well inside the crop border, so no
    box edge can show.

    The earlier egg left 14-28 % of the detector's face box (cheeks, jaw and forehead corners)
    unrestored; this shape covers the face box up to its corners."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) * (TEMPLATE_SIZE / size)
    cx, cy = 256.0, 280.0
    half_width, half_height = 155.0, 195.0
    dy = (ys - cy) / half_height
    # Cheeks taper towards the jaw line below the mouth.
    width = half_width * (1.0 - 0.25 * np.clip(dy, 0.0, 1.0) ** 2)
    radius = (np.abs((xs - cx) / width) ** 3 + np.abs(dy) ** 3) ** (1.0 / 3.0)
    outer = 1.0 + min(feather, 0.1)
    inner = outer - feather
    if feather > 0:
        t = np.clip((outer - radius) / feather, 0.0, 1.0)
        matte = t * t * (3.0 - 2.0 * t)  # smoothstep: no visible ring at either end of the feather
    else:
        matte = (radius <= 1.0).astype(np.float64)
    matte[radius >= outer] = 0.0
    matte[radius <= inner] = 1.0
    return matte.astype(np.float32)
