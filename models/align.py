"""Geometry between plate pixels and a restorer's canonical face space.

A similarity transform (rotation, uniform scale, translation) from the five landmarks keeps
the face's proportions; anything with more freedom would warp identity. The template is the
one FFHQ-aligned face restorers (GFPGAN, GPEN, CodeFormer, RestoreFormer++) are trained on, so
their weights see faces framed as they expect.
"""

from __future__ import annotations

import cv2
import numpy as np

TEMPLATE_SIZE = 512
# Landmark positions of a frontal face in 512x512 canonical space: eyes, nose tip, mouth
# corners (FFHQ-style framing, which leaves room for forehead, chin and cheeks).
TEMPLATE_LANDMARKS = np.array(
    [[192.98, 239.95], [318.90, 240.19], [256.63, 314.02], [201.26, 371.41], [313.09, 371.15]],
    dtype=np.float64,
)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity mapping src points onto dst points (Umeyama 1991), as 2x3."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1  # no reflections
    rotation = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / src_c.var(0).sum()
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def affine_scale(matrix: np.ndarray) -> float:
    """Uniform scale of a similarity matrix."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def desqueeze(pixel_aspect: float) -> tuple[float, float]:
    """Factors (across, down) that make a plate's pixels square, stretching the coarser axis so
    neither loses resolution: 2 -> (2, 1), 0.5 -> (1, 2). Python floats: a square plate's float32
    coordinates stay float32."""
    return max(pixel_aspect, 1.0), max(1.0 / pixel_aspect, 1.0)


def scaled_template_transform(landmarks: np.ndarray, size: int, pixel_aspect: float = 1.0) -> np.ndarray:
    """Plate pixel -> face space of side `size` (the template scaled from 512). `pixel_aspect`:
    the plate pixels' width over their height (2 for a 2x anamorphic plate): the face is fitted
    as it looks, desqueezed, so the restorer sees it with square pixels."""
    if pixel_aspect == 1.0:
        return estimate_similarity(landmarks, TEMPLATE_LANDMARKS * (size / TEMPLATE_SIZE))
    factors = desqueeze(pixel_aspect)
    similarity = estimate_similarity(np.asarray(landmarks, np.float64) * factors, TEMPLATE_LANDMARKS * (size / TEMPLATE_SIZE))
    return similarity * np.array([*factors, 1.0])[None, :]


def input_transform(to_out: np.ndarray, scale: int) -> np.ndarray:
    """Plate -> the input crop of a x`scale` restorer whose output grid is `to_out`.

    Pixel centres: input pixel i covers output pixels scale*i .. scale*i + scale-1, so its
    centre sits on output coordinate scale*i + (scale-1)/2. That is how the networks upsample
    (pixel shuffle and a nearest-neighbour base) and how cv2.resize samples; scaling the output
    transform alone (input i on output scale*i) puts the restored face 1.5 px (x4) off the
    plate's face. Measured on a clean face: the broad-trained x4 model scored 25.8 dB against
    its target off by that shift and 32.3 dB aligned."""
    if scale == 1:
        return to_out
    out = np.array(to_out, np.float64) / scale
    out[:, 2] -= (scale - 1) / (2.0 * scale)
    return out


def warp_to_face(
    image: np.ndarray, plate_to_face: np.ndarray, size: int, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """Sample a face-space crop of side `size` from `image` (H, W, C).

    When the crop is smaller than the face in the plate, the plate is low-passed first so
    the crop is not aliased."""
    scale = affine_scale(plate_to_face)
    source = image
    if scale < 0.8:
        sigma = 0.5 * (1.0 / scale - 1.0)
        source = cv2.GaussianBlur(image, (0, 0), sigma)
    return cv2.warpAffine(source, plate_to_face, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)


# Restorer input sizes for x4 networks (output is 4x): faces are restored near their plate
# resolution, so cost follows face area, not frame area.
# 256 in (1024 out) for large faces: capped at 128, a 450 px face was shrunk 3.5x and a clean
# 128 px crop scaled back already scored below the degraded plate.
INPUT_SIZES = (32, 64, 128, 256)


def footprint_of(landmarks: np.ndarray, pixel_aspect: float = 1.0) -> float:
    """Plate pixels covered by the 512 face space for these landmarks (for an anamorphic plate,
    pixels along its finer axis: the face's size as it looks)."""
    if pixel_aspect != 1.0:
        landmarks = np.asarray(landmarks, np.float64) * desqueeze(pixel_aspect)
    return TEMPLATE_SIZE / affine_scale(scaled_template_transform(landmarks, TEMPLATE_SIZE))


# Face-resolution (x1) restorers: the crop is the face at its own plate resolution, in steps of
# 16 px (a few shapes for ONNX Runtime to plan, and even sides for the 2x pixel-unshuffle).
FACE_RESOLUTION_MIN, FACE_RESOLUTION_MAX = 64, 512


def choose_face_resolution_size(footprint_px: float) -> int:
    """Crop side for a x1 restorer: the face's own footprint, rounded up to 16 px, within
    64..512. Larger faces are reduced to 512 and only the restorer's change is scaled back up,
    so the plate's own detail above that resolution is kept, not blurred by a round trip."""
    size = int(np.ceil(footprint_px / 16.0)) * 16
    return int(min(max(size, FACE_RESOLUTION_MIN), FACE_RESOLUTION_MAX))


def choose_input_size(footprint_px: float) -> int:
    """Smallest restorer input that does not shrink the face by more than 1.6x.

    Measured on the degraded astronaut (x2 blur/noise/JPEG): a 200 px face fed at 64 px lost
    0.3 dB against the degraded plate, fed at 128 px it gained 0.2 dB."""
    for size in INPUT_SIZES:
        if size * 1.6 >= footprint_px:
            return size
    return INPUT_SIZES[-1]
