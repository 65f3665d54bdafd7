"""Dense optical flow, one way for every user (temporal fusion, faces added by hand, the
benchmark's warping error): DIS on 8-bit grey, bilinear remapping with replicated borders."""

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
