"""Dense optical flow, one way for every user (temporal fusion, the window restorer's inputs in
the node and in training, faces added by hand, the benchmark's warping error): DIS on 8-bit
grey, bilinear remapping with replicated borders; and the occlusion-aware alignment of one face
crop onto another."""

from __future__ import annotations

import cv2
import numpy as np


def grey_u8(image: np.ndarray) -> np.ndarray:
    """A display-encoded RGB image in [0, 1] as rounded 8-bit grey, what DIS reads."""
    return cv2.cvtColor((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def dense_flow(grey_from: np.ndarray, grey_to: np.ndarray) -> np.ndarray:
    """Per-pixel (dx, dy) from `grey_from` to where its content is in `grey_to`."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(grey_from, grey_to, None)


def remap_by_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` sampled at each pixel plus its flow: the other frame warped onto this one."""
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# Agreement scale in display-encoded units: differences well above noise and codec error
# (about 0.02-0.05 here) mean misalignment, and such pixels fall away.
AGREEMENT_SIGMA = 0.06


def alignment(centre: np.ndarray, neighbour: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flow from `centre` into `neighbour`, `neighbour` warped onto `centre`, and a 0..1 weight:
    0 where the forward-backward check fails (occlusion, flow failure) or the warped neighbour
    disagrees with the centre (misalignment)."""
    grey_c, grey_n = grey_u8(centre), grey_u8(neighbour)
    forward, backward = dense_flow(grey_c, grey_n), dense_flow(grey_n, grey_c)
    warped = remap_by_flow(neighbour, forward)
    back_at = remap_by_flow(backward, forward)
    mismatch = np.sum((forward + back_at) ** 2, axis=2)
    bound = 0.01 * (np.sum(forward**2, axis=2) + np.sum(back_at**2, axis=2)) + 0.5
    consistent = (mismatch <= bound).astype(np.float32)
    difference = cv2.GaussianBlur(np.abs(warped - centre).mean(axis=2), (0, 0), 1.0)
    agreement = np.exp(-((difference / AGREEMENT_SIGMA) ** 2))
    return forward, warped, consistent * agreement


def trusted_blend(centre: np.ndarray, warped: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The warped neighbour where its alignment is trusted (`weight`), the centre elsewhere."""
    w = weight[..., None]
    return (w * warped + (1.0 - w) * centre).astype(np.float32)


def aligned_neighbour(centre: np.ndarray, neighbour: np.ndarray | None) -> np.ndarray:
    """A neighbouring frame's crop of the same face as a window restorer takes it: warped onto
    `centre`, and the centre itself wherever the alignment is not trusted (or no neighbour is
    there: a shot's first frame, a gap in the track)."""
    if neighbour is None:
        return centre
    _, warped, weight = alignment(centre, neighbour)
    return trusted_blend(centre, warped, weight)
