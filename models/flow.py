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


Aligned = tuple[np.ndarray, np.ndarray]  # a neighbour warped onto the centre, and its 0..1 weight


def align_window(centre: np.ndarray, neighbours: dict[int, np.ndarray]) -> dict[int, Aligned]:
    """Each neighbour crop (by its frame offset from the centre's) warped onto `centre`, with
    its weight (`alignment`)."""
    return {offset: alignment(centre, crop)[1:] for offset, crop in neighbours.items()}


def window_input(centre: np.ndarray, aligned: dict[int, Aligned], frames: int) -> np.ndarray:
    """A window restorer's input (H, W, 3 * frames): the centre crop, then its nearest earlier
    neighbours and its nearest later ones (frames // 2 each side, nearest first), each trusted
    where its alignment is and the centre elsewhere. The nearest present neighbour counts (a gap
    at -1 takes -2 when the window holds it); with none on a side (a shot's ends, a track's
    gap) the centre stands in. The node and training both make their inputs here."""
    side = frames // 2
    earlier = sorted((o for o in aligned if o < 0), reverse=True)[:side]
    later = sorted(o for o in aligned if o > 0)[:side]
    planes = [centre]
    for offsets in (earlier, later):
        planes += [trusted_blend(centre, *aligned[o]) for o in offsets]
        planes += [centre] * (side - len(offsets))
    return np.concatenate(planes, axis=2)
