"""Temporal fusion of a face over a window of frames.

Each neighbouring frame's face is first cropped with its own (smoothed) landmarks, so it lies
in the same face space as the current frame's; dense optical flow then aligns what landmarks
cannot (mouth, eyes, small pose changes). Neighbour pixels are weighted by flow consistency
(forward-backward check: occlusions and flow failures get 0) and by how well they agree with
the current frame, so moving features are never smeared. Averaging the aligned window removes
noise and codec flicker that differ from frame to frame: a single-frame restorer gets that
steady input; a window restorer gets the face's own crop and its aligned neighbours as channels
(`window_input`) and learns how much of each to trust. The restorer's outputs are then fused the
same way, because a learned restorer invents slightly different detail for each frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from facerestore.models.flow import alignment, remap_by_flow, trusted_blend

Aligned = tuple[np.ndarray, np.ndarray]  # a neighbour warped onto the centre, and its 0..1 weight


def align_window(centre: np.ndarray, neighbours: dict[int, np.ndarray]) -> dict[int, Aligned]:
    """Each neighbour crop (by its frame offset from the centre's) warped onto `centre`, with
    its weight (`models.flow.alignment`)."""
    return {offset: alignment(centre, crop)[1:] for offset, crop in neighbours.items()}


def fuse(centre: np.ndarray, aligned: dict[int, Aligned]) -> np.ndarray:
    """Occlusion-aware weighted mean of `centre` and its aligned neighbours (same size)."""
    if not aligned:
        return centre
    total = centre.astype(np.float32).copy()
    weight = np.ones(centre.shape[:2], np.float32)
    for warped, w in aligned.values():
        total += warped * w[..., None]
        weight += w
    return total / weight[..., None]


def window_input(centre: np.ndarray, aligned: dict[int, Aligned], frames: int) -> np.ndarray:
    """A window restorer's input (H, W, 3 * frames): the centre crop, then its nearest earlier
    neighbours and its nearest later ones (frames // 2 each side, nearest first), each trusted
    where its alignment is and the centre elsewhere. The nearest present neighbour counts (a gap
    at -1 takes -2 when the window holds it); with none on a side (a shot's ends, a track's
    gap) the centre stands in. Training makes its inputs the same way."""
    side = frames // 2
    earlier = sorted((o for o in aligned if o < 0), reverse=True)[:side]
    later = sorted(o for o in aligned if o > 0)[:side]
    planes = [centre]
    for offsets in (earlier, later):
        planes += [trusted_blend(centre, *aligned[o]) for o in offsets]
        planes += [centre] * (side - len(offsets))
    return np.concatenate(planes, axis=2)


def fuse_outputs(centre_input, centre_output, neighbours: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Fuse restored outputs over the window. Alignment and weights come from the restorer's
    inputs (steadier than its outputs, whose invented detail is what flickers), scaled up to
    the output size. `neighbours`: (input crop, restored crop) pairs of the same face."""
    if not neighbours:
        return centre_output
    scale = centre_output.shape[0] / centre_input.shape[0]
    size = (centre_output.shape[1], centre_output.shape[0])
    total = centre_output.astype(np.float32).copy()
    weight = np.ones(centre_output.shape[:2], np.float32)
    for neighbour_input, neighbour_output in neighbours:
        flow, _, w = alignment(centre_input, neighbour_input)
        flow_out = cv2.resize(flow, size, interpolation=cv2.INTER_LINEAR) * scale
        w_out = cv2.resize(w, size, interpolation=cv2.INTER_LINEAR)
        total += remap_by_flow(neighbour_output, flow_out) * w_out[..., None]
        weight += w_out
    return total / weight[..., None]
