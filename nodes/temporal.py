"""Temporal fusion of a face over a window of frames.

Each neighbouring frame's face is first cropped with its own (smoothed) landmarks, so it lies
in the same face space as the current frame's; dense optical flow then aligns what landmarks
cannot (mouth, eyes, small pose changes). Neighbour pixels are weighted by flow consistency
(forward-backward check: occlusions and flow failures get 0) and by how well they agree with
the current frame, so moving features are never smeared. Averaging the aligned window removes
noise and codec flicker that differ from frame to frame: a single-frame restorer gets that
steady input; a window restorer gets the face's own crop and its aligned neighbours as channels
(`models.flow.window_input`) and learns how much of each to trust. The restorer's outputs are then fused the
same way, because a learned restorer invents slightly different detail for each frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from facerestore.models.flow import Aligned, alignment, remap_by_flow


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
