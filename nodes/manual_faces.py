"""Faces the artist adds by hand (`--add-face`), followed through the shot.

A face the detector misses (turned away, in deep shadow, behind a veil of codec damage) is
given on one or a few frames as a box or as its five points (eyes, nose tip, mouth corners).
Each seed is followed forwards and backwards to the ends of its shot segment by optical flow
on the display-encoded plates, measured only around the face (cost follows face area). In
each frame the added face replaces any detection that overlaps it, then goes through the
tracker and smoother like any other face. The seeds are stored in the analysis sidecar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from facerestore.models.align import desqueeze, estimate_similarity, transform_points
from facerestore.models.flow import dense_flow, grey_u8
from facerestore.nodes.align import TEMPLATE_LANDMARKS
from facerestore.nodes.errors import FaceRestoreError

# Where RetinaFace puts its box around a face aligned to the 512 template (hairline to chin).
TEMPLATE_BOX = np.array([120.0, 110.0, 392.0, 450.0])
MAX_COORDINATE = 1e7


@dataclass(frozen=True)
class AddedFace:
    frame: int | None
    landmarks: np.ndarray  # (5, 2) plate pixels

    def to_json(self) -> dict:
        return {"frame": self.frame, "landmarks": self.landmarks.round(3).tolist()}


def landmarks_in_box(box: np.ndarray) -> np.ndarray:
    """Five points of a frontal face filling `box` as the detector's box would."""
    x0, y0, x1, y1 = box
    scale_x = (x1 - x0) / (TEMPLATE_BOX[2] - TEMPLATE_BOX[0])
    scale_y = (y1 - y0) / (TEMPLATE_BOX[3] - TEMPLATE_BOX[1])
    return np.stack(
        [
            x0 + (TEMPLATE_LANDMARKS[:, 0] - TEMPLATE_BOX[0]) * scale_x,
            y0 + (TEMPLATE_LANDMARKS[:, 1] - TEMPLATE_BOX[1]) * scale_y,
        ],
        axis=1,
    )


def box_of(landmarks: np.ndarray, pixel_aspect: float = 1.0) -> np.ndarray:
    """The detector-style box around five points (the inverse of `landmarks_in_box`, up to
    the face's rotation), sized from the face desqueezed on an anamorphic plate."""
    stretch = np.array(desqueeze(pixel_aspect))
    square = landmarks * stretch
    centre = square.mean(0)
    template_centre = TEMPLATE_LANDMARKS.mean(0)
    size = np.linalg.norm(square[1] - square[0]) / np.linalg.norm(TEMPLATE_LANDMARKS[1] - TEMPLATE_LANDMARKS[0])
    corners = ((TEMPLATE_BOX.reshape(2, 2) - template_centre) * size + centre) / stretch
    return corners.reshape(4)


def parse_added_face(text: str) -> AddedFace:
    """`FRAME:X0,Y0,X1,Y1` (a box) or `FRAME:x,y,...` (ten numbers: the five points), plate
    pixels; FRAME may be empty for a single-file render (`:X0,Y0,X1,Y1`)."""
    frame_text, _, numbers_text = text.partition(":")
    try:
        frame = int(frame_text) if frame_text.strip() else None
        numbers = np.array([float(v) for v in numbers_text.split(",")], np.float64)
    except ValueError:
        raise FaceRestoreError(
            f"cannot read --add-face {text!r}; expected FRAME:X0,Y0,X1,Y1 or FRAME:ten numbers"
        ) from None
    # Plate pixels: beyond this no frame reaches (and 1e300 would overflow the arithmetic below).
    if not np.all(np.isfinite(numbers)) or np.abs(numbers).max(initial=0) > MAX_COORDINATE:
        raise FaceRestoreError(
            f"--add-face {text!r}: numbers must be finite plate pixels (within ±{MAX_COORDINATE:.0e})"
        )
    if len(numbers) == 4:
        if numbers[2] - numbers[0] < 8 or numbers[3] - numbers[1] < 8:
            raise FaceRestoreError(f"--add-face {text!r}: the box must be X0,Y0,X1,Y1 with at least 8 px each way")
        return AddedFace(frame, landmarks_in_box(numbers))
    if len(numbers) == 10:
        points = numbers.reshape(5, 2)
        if np.linalg.norm(points[1] - points[0]) < 4:
            raise FaceRestoreError(f"--add-face {text!r}: the eyes must be at least 4 px apart")
        return AddedFace(frame, points)
    raise FaceRestoreError(f"--add-face {text!r}: give 4 numbers (a box) or 10 (five points), not {len(numbers)}")


# How much larger than the frame an added face may be (a close-up's box can overrun the frame;
# far beyond it the flow and the crops would work on absurd sizes).
MAX_FACE_PER_FRAME = 4.0


def check_added_faces(added, width: int, height: int) -> None:
    """Each face given by hand must touch the `width` x `height` frame and be of a size a face
    in it can have: a box off the plate, or one of 1e9 pixels, is refused before any work."""
    for face in added:
        box = box_of(face.landmarks)
        where = f"--add-face {'' if face.frame is None else face.frame}:"
        if not np.isfinite(box).all():
            raise FaceRestoreError(f"{where} the face's numbers are too large")
        if max(box[2] - box[0], box[3] - box[1]) > MAX_FACE_PER_FRAME * max(width, height):
            raise FaceRestoreError(f"{where} the face is far larger than the {width}x{height} frame")
        if box[2] <= 0 or box[3] <= 0 or box[0] >= width or box[1] >= height:
            corners = ",".join(f"{v:.0f}" for v in box)
            raise FaceRestoreError(f"{where} the face (box {corners}) lies outside the {width}x{height} frame")


def _moved(landmarks: np.ndarray, before: np.ndarray, after: np.ndarray, pixel_aspect: float = 1.0) -> np.ndarray:
    """`landmarks` of `before` carried into `after` by dense flow around the face."""
    h, w = before.shape[:2]
    box = box_of(landmarks, pixel_aspect)
    stretch_x, stretch_y = desqueeze(pixel_aspect)
    # Half the face's width around it, measured as it looks (desqueezed).
    pad_x = 0.5 * (box[2] - box[0])
    pad_y = pad_x * stretch_x / stretch_y
    x0, y0 = int(max(0, box[0] - pad_x)), int(max(0, box[1] - pad_y))
    x1, y1 = int(min(w, box[2] + pad_x)), int(min(h, box[3] + pad_y))
    if x1 - x0 < 16 or y1 - y0 < 16:
        return landmarks
    grey = grey_u8(before[y0:y1, x0:x1])
    flow = dense_flow(grey, grey_u8(after[y0:y1, x0:x1]))
    # The motion of the face's textured pixels (flat areas tell nothing: the aperture problem),
    # as the similarity that best explains it.
    bx0, by0, bx1, by1 = (int(round(v)) for v in (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0))
    ys, xs = np.mgrid[max(0, by0) : min(y1 - y0, by1) : 2, max(0, bx0) : min(x1 - x0, bx1) : 2]
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))[ys, xs]
    textured = gradient > max(8.0, float(np.percentile(gradient, 50))) if gradient.size else gradient
    if textured.sum() < 10:
        return landmarks
    points = np.stack([xs[textured], ys[textured]], axis=1).astype(np.float64)
    moved = points + flow[ys[textured], xs[textured]]
    # A turn of the head is a similarity of the face as it looks: desqueezed.
    stretch = np.array(desqueeze(pixel_aspect))
    motion = estimate_similarity(points * stretch, moved * stretch)
    local = (landmarks - [x0, y0]) * stretch
    return transform_points(motion, local) / stretch + [x0, y0]


def follow(
    added: list[AddedFace],
    frames: list,
    encoded_of: Callable[[object], np.ndarray],
    segment_of: Callable[[object], int],
    pixel_aspect: float = 1.0,
) -> dict:
    """frame -> list of landmarks of the added faces there: each seed followed to the ends of
    its segment; where several seeds of one face could reach a frame, the nearest one wins.
    Seeds whose frames are not in `frames` are an error. On an anamorphic plate (`pixel_aspect`)
    distances and motion are measured on the face desqueezed."""
    stretch = np.array(desqueeze(pixel_aspect))
    position = {f: i for i, f in enumerate(frames)}
    per_frame: dict = {f: [] for f in frames}
    for seed in added:
        if seed.frame not in position:
            raise FaceRestoreError(f"--add-face names frame {seed.frame}, which is not in the rendered range")
    # Seeds close to each other's path (same face on several frames) form one face.
    faces: list[list[AddedFace]] = []
    for seed in sorted(added, key=lambda s: position[s.frame]):
        for group in faces:
            last = group[-1]
            gap = abs(position[seed.frame] - position[last.frame])
            spread = np.linalg.norm((seed.landmarks.mean(0) - last.landmarks.mean(0)) * stretch)
            size = np.linalg.norm((last.landmarks[1] - last.landmarks[0]) * stretch)
            if segment_of(seed.frame) == segment_of(last.frame) and spread < size * (1.0 + 0.2 * gap):
                group.append(seed)
                break
        else:
            faces.append([seed])
    for group in faces:
        best: dict = {}  # frame index -> (distance to its seed, landmarks)
        for seed in group:
            start = position[seed.frame]
            best[start] = (0, seed.landmarks)
            for step in (1, -1):
                landmarks, here = seed.landmarks, start
                while 0 <= here + step < len(frames) and segment_of(frames[here + step]) == segment_of(seed.frame):
                    distance = abs(here + step - start)
                    if here + step in best and best[here + step][0] <= distance:
                        break
                    landmarks = _moved(
                        landmarks, encoded_of(frames[here]), encoded_of(frames[here + step]), pixel_aspect
                    )
                    here += step
                    best[here] = (distance, landmarks)
        for index, (_, landmarks) in best.items():
            per_frame[frames[index]].append(landmarks)
    return per_frame
