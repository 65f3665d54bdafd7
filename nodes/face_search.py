"""Finding the faces of a large plate without running the detector on every whole frame.

On a plate of more than KEYFRAME_MIN_PIXELS the detector sees the whole frame (reduced)
only on keyframes: the first frame, every KEYFRAME_INTERVAL-th, the first after a cut, and any
frame where a face of the frame before is not found again near where it was. Between keyframes
each face is looked for in a small region around its last box, at a resolution where it is easy
to find (the detector's cost there follows the faces, not the frame). A face that a keyframe
finds and the frame before did not have is followed back, region by region, to the frame where it
entered, so a face that enters between keyframes is tracked from its first frame. What this
misses: a face that comes and goes entirely between two keyframes (fewer than KEYFRAME_INTERVAL
frames, a third of a second at 24 fps), which is too short to restore visibly anyway.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from facerestore.nodes.align import desqueeze, scaled_template_transform, warp_to_face
from facerestore.nodes.colour import all_finite, neutralise_nonfinite
from facerestore.nodes.face_restore import face_roi, resample
from facerestore.nodes.faces import box_overlap
from facerestore.nodes.tracking import SIGNATURE_SIZE, TrackerSettings, is_cut, signature_of_crop, thumbnail

# Plates up to this many pixels (desqueezed; 1280 x 720) are searched whole on every frame: there
# the detector costs little, and nothing can be missed. A 1080p plate and larger: keyframes.
KEYFRAME_MIN_PIXELS = 1280 * 720
KEYFRAME_INTERVAL = 8
# A region spans this many face sides around the last box (a face may move about one face side
# a frame and still be found), searched at this long side (the face then ~85 px, where the
# detector is surest, whatever its size in the plate).
REGION_SPAN = 3.0
REGION_SIDE = 256
# A face found in a region is the one looked for when its centre is within this many of the last
# box's sides of where it was.
FOLLOW_DISTANCE = 0.75
# Two finds of one face (two regions that overlap) when their boxes overlap this much.
SAME_FACE_OVERLAP = 0.5
# The sampling step of a large plate's look (a thumbnail of 64x36 needs no more than this).
LOOK_SAMPLES = (256, 144)


def searches_by_keyframes(node, shape: tuple) -> bool:
    """Whether a plate of `shape` (H, W, ...) is searched whole only on keyframes."""
    stretch_x, stretch_y = desqueeze(node.pixel_aspect)
    return shape[0] * stretch_y * shape[1] * stretch_x > KEYFRAME_MIN_PIXELS


def look_thumbnail(node, plate: np.ndarray) -> np.ndarray:
    """The frame's thumbnail (cuts, and the look an analysis records): of the detector's image on
    a plate searched whole every frame; of a sparse sample of the plate on a larger one, where
    reducing the whole frame for a thumbnail would cost what the keyframes save."""
    if not searches_by_keyframes(node, plate.shape):
        return thumbnail(node.detection_image(plate)[0])
    h, w = plate.shape[:2]
    step = max(1, min(h // LOOK_SAMPLES[1], w // LOOK_SAMPLES[0]))
    return thumbnail(node.colour.display(plate[::step, ::step, :3]))


def _encoded_region(node, plate: np.ndarray, rows: slice, cols: slice, size: tuple[int, int]) -> np.ndarray:
    """A plate region at `size`, as the networks see it (reduced first, non-finite values
    neutralised before the reduction so they do not spread)."""
    region = plate[rows, cols, :3]
    if size != (region.shape[1], region.shape[0]):
        finite = region if all_finite(region) else neutralise_nonfinite(region)
        region = resample(np.ascontiguousarray(finite, np.float32), size)
    return node.colour.display(region)


def face_signature(node, plate: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The face's appearance (`tracking.appearance_signature`) read from the plate around it: the
    region reduced to about twice the signature's size, then encoded, then aligned."""
    to_face = scaled_template_transform(landmarks, SIGNATURE_SIZE, node.pixel_aspect)
    (rows, cols), to_face_region = face_roi(plate.shape, to_face, SIGNATURE_SIZE)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    if h < 1 or w < 1:  # the face wholly off the plate: nothing to compare
        return np.zeros(SIGNATURE_SIZE * SIGNATURE_SIZE * 3)
    factor = min(1.0, 2.0 * SIGNATURE_SIZE / max(h, w))
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    encoded = _encoded_region(node, plate, rows, cols, size)
    to_small = np.diag([size[0] / w, size[1] / h, 1.0])
    return signature_of_crop(warp_to_face(encoded, to_face_region @ np.linalg.inv(to_small), SIGNATURE_SIZE))


def faces_near(node, plate: np.ndarray, box: np.ndarray, timings: dict) -> list:
    """The faces the detector finds in a region around `box` (plate pixels), in plate pixels."""
    start = time.perf_counter()
    h, w = plate.shape[:2]
    stretch_x, stretch_y = desqueeze(node.pixel_aspect)
    side = max((box[2] - box[0]) * stretch_x, (box[3] - box[1]) * stretch_y, 8.0)
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_x, half_y = REGION_SPAN * side / 2 / stretch_x, REGION_SPAN * side / 2 / stretch_y
    x0, x1 = max(0, int(np.floor(centre_x - half_x))), min(w, int(np.ceil(centre_x + half_x)))
    y0, y1 = max(0, int(np.floor(centre_y - half_y))), min(h, int(np.ceil(centre_y + half_y)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return []
    # Searched at one scale, the face at the size the detector finds best: reduced, or enlarged.
    scale = REGION_SIDE / max((x1 - x0) * stretch_x, (y1 - y0) * stretch_y)
    size = (max(1, round((x1 - x0) * scale * stretch_x)), max(1, round((y1 - y0) * scale * stretch_y)))
    encoded = _encoded_region(node, plate, slice(y0, y1), slice(x0, x1), size)
    ready = time.perf_counter()
    timings["detect: reduce + encode"] += ready - start
    found = node.detect_in_image(encoded, np.array([size[0] / (x1 - x0), size[1] / (y1 - y0)]), True, scales=(1.0,))
    timings["detect"] += time.perf_counter() - ready
    offset = np.array([x0, y0], np.float32)
    return [
        dataclasses.replace(f, landmarks=f.landmarks + offset, box=f.box + np.tile(offset, 2)) for f in found
    ]


def _found_again(node, plate: np.ndarray, box: np.ndarray, timings: dict):
    """The face last seen at `box`, found in its region of `plate`; None where it is not there."""
    return _followed(faces_near(node, plate, box, timings), box, node.pixel_aspect)


def _apart(box: np.ndarray, boxes) -> bool:
    """Whether `box` is another face than every one of `boxes`."""
    return all(box_overlap(box, other) < SAME_FACE_OVERLAP for other in boxes)


def _followed(faces: list, box: np.ndarray, pixel_aspect: float):
    """Of `faces`, the one that is the face last seen at `box`, if any."""
    stretch = np.asarray(desqueeze(pixel_aspect))
    side = max((box[2] - box[0]) * stretch[0], (box[3] - box[1]) * stretch[1])
    centre = (box[:2] + box[2:]) / 2 * stretch
    best, best_distance = None, FOLLOW_DISTANCE * side
    for face in faces:
        distance = float(np.linalg.norm((face.box[:2] + face.box[2:]) / 2 * stretch - centre))
        if distance <= best_distance:
            best, best_distance = face, distance
    return best


def _detection(node, plate: np.ndarray, face) -> tuple:
    """What the tracker takes for one find: landmarks, box, score and appearance."""
    return face.landmarks, face.box, face.score, face_signature(node, plate, face.landmarks)


def search_shot(
    node,
    frames: list,
    plate_of: Callable[[object], np.ndarray],
    settings: TrackerSettings,
    timings: dict | None = None,
    progress=None,
) -> dict:
    """Every frame's finds, by keyframes and regions (see the module): frame -> (thumbnail, its
    scale, [(landmarks, box, score, signature)]), what `tracking.analyse`'s `detect` returns.
    `plate_of` is asked for each frame once, in order (a host may stream them); the plates since
    the last keyframe are kept, for following an entering face back (at most
    KEYFRAME_INTERVAL - 1 of them)."""
    timings = timings if timings is not None else defaultdict(float)
    found: dict = {}
    since_key: dict = {}
    previous, previous_thumb, last_key = [], None, None
    for index, frame in enumerate(frames):
        plate = plate_of(frame)
        start = time.perf_counter()
        thumb = look_thumbnail(node, plate)
        timings["detect: reduce + encode"] += time.perf_counter() - start
        cut = previous_thumb is None or is_cut(previous_thumb, thumb, settings)
        key = cut or index - last_key >= KEYFRAME_INTERVAL
        faces = []
        if not key:
            for detection in previous:
                near = _found_again(node, plate, detection[1], timings)
                if near is None:
                    key = True  # a face not found where it was: the whole frame looked at again
                    break
                if _apart(near.box, [f.box for f in faces]):
                    faces.append(near)
        if key:
            faces = node.detect_with_image(plate, candidates=True, timings=timings)[2]
            if not cut:
                entered = [f for f in faces if _apart(f.box, [d[1] for d in previous])]
                # A face of the frame before that the whole frame's search missed (a doubtful
                # face's score flickers) is looked for where it was, as between keyframes.
                for detection in previous:
                    if _apart(detection[1], [f.box for f in faces]):
                        near = _found_again(node, plate, detection[1], timings)
                        if near is not None and _apart(near.box, [f.box for f in faces]):
                            faces.append(near)
                _follow_back(node, since_key, entered, found, timings)
            last_key = index
            since_key.clear()
        else:
            since_key[frame] = plate
        found[frame] = (thumb, np.array([thumb.shape[1] / plate.shape[1], thumb.shape[0] / plate.shape[0]]), [])
        found[frame][2].extend(_detection(node, plate, f) for f in faces)
        previous, previous_thumb = found[frame][2], thumb
        if progress:
            progress(index + 1, len(frames))
    return found


def _follow_back(node, since_key: dict, entered: list, found: dict, timings: dict) -> None:
    """Faces a keyframe found that the frame before lacked, followed back through the frames
    since the last keyframe (`since_key`: frame -> plate, in order) while they are found, added
    to those frames' finds."""
    for face in entered:
        box = face.box
        for frame, plate in reversed(since_key.items()):
            near = _found_again(node, plate, box, timings)
            finds = found[frame][2]
            if near is None or not _apart(near.box, [d[1] for d in finds]):
                break
            finds.append(_detection(node, plate, near))
            box = near.box
