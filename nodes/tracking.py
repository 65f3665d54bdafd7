"""Whole-shot face analysis: tracks with persistent IDs, shot cuts, smoothed landmarks.

The analysis runs once over the shot and is stored in a JSON sidecar. Renders read it, so any
frame rendered alone, in any order, on any machine, sees exactly the landmarks and track IDs a
full-shot render sees (JSON floats round-trip exactly).

- Detections are assigned to tracks by landmark distance relative to face size (Hungarian).
- A track survives up to `max_gap` frames without a detection; the gap is filled by
  interpolating landmarks, so a missed detection does not drop the face.
- A face that leaves and comes back within `reentry_frames` gets its old ID back when its
  aligned appearance matches (normalised correlation of a small face-space crop).
- A shot cut (large change between consecutive frames) ends every track.
- Landmarks are smoothed with a One-Euro filter run forwards and backwards (no lag, steady at
  rest, responsive in motion); the shot is known in full, so the filter need not be causal.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from facerestore.models.weights import write_atomically
from facerestore.nodes.align import desqueeze, scaled_template_transform, warp_to_face
from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.faces import FaceResult

ANALYSIS_FORMAT = "facerestore-analysis"
ANALYSIS_VERSION = 1
SIGNATURE_SIZE = 32


@dataclass
class TrackerSettings:
    max_gap: int = 8  # frames a track survives without a detection
    reentry_frames: int = 250  # how long a lost face may stay away and keep its ID
    match_distance: float = 0.6  # landmark-centre distance / inter-ocular distance / frame gap
    reentry_similarity: float = 0.8  # appearance correlation for re-identification
    cut_threshold: float = 0.12  # mean absolute change of a thumbnail between frames
    smooth_min_cutoff: float = 1.0  # One-Euro, Hz at 24 fps
    smooth_beta: float = 0.5
    # A run of a track is kept when one detection reaches confirm_score, or when it was detected
    # (at any candidate score) in at least confirm_frames frames.
    confirm_score: float = 0.0
    confirm_frames: int = 5
    # Width over height of the plate's pixels: motion and sizes are compared, and landmarks
    # smoothed, on the face as it looks (desqueezed), though stored in plate pixels.
    pixel_aspect: float = 1.0


@dataclass
class Analysis:
    frames: list[int | None]
    size: tuple[int, int]
    cuts: list[int | None]  # frames that start a new shot (the first frame included)
    faces: dict[int | None, list[FaceResult]]  # tracked: landmarks smoothed
    fingerprint: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    # Per frame, what the detector saw, tiny (`frame_look`): where the plates come as pixels (a
    # host), not files, this tells a sidecar of other plates from this shot's own.
    looks: dict = field(default_factory=dict)

    def segment_of(self, frame) -> int:
        """Index of the shot segment containing `frame`."""
        return self._segments[frame]

    @cached_property
    def _segments(self) -> dict:
        # Asked for every neighbour of every frame: computed once, not searched each time.
        cuts, segment, out = set(self.cuts), -1, {}
        for frame in self.frames:
            segment += frame in cuts
            out[frame] = max(segment, 0)
        return out

    def track_ids(self) -> list[int]:
        return sorted({f.track for faces in self.faces.values() for f in faces})

    def to_json(self) -> dict:
        def face(f: FaceResult) -> dict:
            return {
                "track": f.track,
                "landmarks": f.landmarks.tolist(),
                "box": f.box.tolist(),
                "score": f.score,
                "detected": f.detected,
            }

        return {
            "format": ANALYSIS_FORMAT,
            "version": ANALYSIS_VERSION,
            "frames": self.frames,
            "size": list(self.size),
            "cuts": self.cuts,
            "settings": self.settings,
            "fingerprint": self.fingerprint,
            "faces": {json.dumps(k): [face(f) for f in v] for k, v in self.faces.items()},
            "looks": {json.dumps(k): v for k, v in self.looks.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> Analysis:
        if not isinstance(data, dict) or (data.get("format"), data.get("version")) != (
            ANALYSIS_FORMAT,
            ANALYSIS_VERSION,
        ):
            raise FaceRestoreError("not a facerestore analysis file of a supported version")
        validate_analysis_json(data)
        faces = {
            json.loads(k): [
                FaceResult(
                    np.array(f["box"], np.float64),
                    f["score"],
                    np.array(f["landmarks"], np.float64),
                    track=f["track"],
                    detected=f["detected"],
                )
                for f in v
            ]
            for k, v in data["faces"].items()
        }
        looks = {json.loads(k): v for k, v in data.get("looks", {}).items()}  # none in sidecars before looks
        return cls(data["frames"], tuple(data["size"]), data["cuts"], faces, data["fingerprint"], data["settings"], looks)

    def save(self, path: str) -> None:
        try:
            write_atomically(Path(path), json.dumps(self.to_json()).encode())
        except OSError as exc:
            raise FaceRestoreError(f"cannot write analysis {path}: {exc.strerror}") from None

    @classmethod
    def load(cls, path: str) -> Analysis:
        try:
            # Without blocking: a FIFO or device named as the sidecar would wait forever on open.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            with open(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise FaceRestoreError("not a regular file")
                return cls.from_json(json.loads(handle.read()))
        except FaceRestoreError as exc:
            raise FaceRestoreError(f"analysis {path}: {exc}") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FaceRestoreError(f"cannot read analysis {path}: {exc}") from None


def validate_analysis_json(data: dict) -> None:
    """Every number a render will use is checked before it is used (a damaged or hand-edited
    sidecar is a clear error naming the field, not an SVD failure deep in alignment)."""

    def bad(field: str, why: str):
        raise FaceRestoreError(f"{field}: {why}")

    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        bad("frames", "missing or empty")
    if not all(f is None or (isinstance(f, int) and not isinstance(f, bool)) for f in frames):
        bad("frames", "not frame numbers")
    if len(frames) != len(set(frames)):
        bad("frames", "listed twice")
    # Every field is read as the shape it is written in: any other shape is a damaged file.
    cuts = data.get("cuts")
    if not isinstance(cuts, list) or not set(map(json.dumps, cuts)) <= set(map(json.dumps, frames)):
        bad("cuts", "not a list of the shot's frames")
    for name in ("settings", "fingerprint"):
        if not isinstance(data.get(name), dict):
            bad(name, f"{type(data.get(name)).__name__}, not an object")
    settings = data["settings"]
    if not isinstance(settings.get("determined_by", {}), dict):
        bad("settings.determined_by", "not an object")
    dropped = settings.get("dropped_tracks", [])
    if not isinstance(dropped, list) or not all(isinstance(t, int) for t in dropped):
        bad("settings.dropped_tracks", "not a list of track IDs")
    looks = data.get("looks", {})
    if not isinstance(looks, dict) or not set(looks) <= {json.dumps(f) for f in frames}:
        bad("looks", "not an object keyed by the shot's frames")
    if not all(
        isinstance(v, list) and len(v) == LOOK_VALUES and all(isinstance(x, int) and 0 <= x <= 255 for x in v)
        for v in looks.values()
    ):
        bad("looks", f"not {LOOK_VALUES} values 0-255 a frame")
    size = data.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and 0 < v < 1 << 20 for v in size)):
        bad("size", f"{size!r} is not a frame size")
    limit = 4.0 * max(size)
    faces = data.get("faces")
    if not isinstance(faces, dict):
        bad("faces", "missing")
    keys = {json.dumps(f) for f in frames}
    if set(faces) != keys:
        missing = sorted(keys - set(faces))
        bad("faces", f"frames {', '.join(missing[:5]) or 'none'} missing, or frames not in the shot listed")
    for key, entries in faces.items():
        if not isinstance(entries, list):
            bad(f"faces[{key}]", "not a list")
        for index, face in enumerate(entries):
            where = f"faces[{key}][{index}]"
            if not isinstance(face, dict) or not isinstance(face.get("track"), int) or face["track"] < 1:
                bad(where, "no track ID")
            if not isinstance(face.get("detected"), bool):
                bad(f"{where}.detected", "not true or false")
            # (Sidecars before 2026-12 also hold the unsmoothed "raw_landmarks": never read.)
            for field_name, shape in (("landmarks", (5, 2)), ("box", (4,))):
                try:
                    values = np.asarray(face.get(field_name), np.float64)
                except (TypeError, ValueError):
                    bad(f"{where}.{field_name}", "not numbers")
                if values.shape != shape:
                    bad(f"{where}.{field_name}", f"shape {values.shape}, expected {shape}")
                if not np.isfinite(values).all() or np.abs(values).max() > limit:
                    bad(f"{where}.{field_name}", "not finite or far outside the frame")
            landmarks = np.asarray(face["landmarks"], np.float64)
            if np.ptp(landmarks, axis=0).max() < 1.0:
                bad(f"{where}.landmarks", "collapsed to a point")
            score = face.get("score")
            if not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
                bad(f"{where}.score", f"{score!r} is not a detector score")


def file_digest(path: str) -> list:
    """Size and content hash of one file."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return [os.path.getsize(path), digest.hexdigest()]


def file_fingerprint(paths: list[str], map_=map) -> dict:
    """Size and a content hash of every input frame: a replaced plate invalidates the analysis
    even with the same size and modification time (a render reads every byte anyway). `map_`: a
    thread pool's map hashes several files at once (hashlib releases the interpreter lock)."""
    return {os.path.basename(path): digest for path, digest in zip(paths, map_(file_digest, paths))}


def thumbnail(encoded: np.ndarray) -> np.ndarray:
    return cv2.resize(encoded, (64, 36), interpolation=cv2.INTER_AREA)


LOOK_SIZE = (16, 9)
LOOK_VALUES = LOOK_SIZE[0] * LOOK_SIZE[1]
# Mean difference (0-255 grey levels) above which a frame is not the one an analysis saw. The
# same pixels give the same look exactly; a host's own resampling or a re-encode moves it by
# about one level; another shot, tens.
LOOK_TOLERANCE = 6.0


def frame_look(thumb: np.ndarray) -> list[int]:
    """A frame as the detector saw it, tiny: grey levels of its `thumbnail`, 16x9."""
    grey = cv2.resize(np.asarray(thumb, np.float32).mean(axis=2), LOOK_SIZE, interpolation=cv2.INTER_AREA)
    return [int(v) for v in np.clip(np.rint(grey * 255.0), 0, 255).astype(np.uint8).reshape(-1)]


def is_cut(previous_thumb: np.ndarray, thumb: np.ndarray, settings: TrackerSettings) -> bool:
    return float(np.abs(thumb - previous_thumb).mean()) > settings.cut_threshold


def look_differs(stored: list[int], seen: list[int]) -> bool:
    return float(np.abs(np.asarray(stored, np.float32) - np.asarray(seen, np.float32)).mean()) > LOOK_TOLERANCE


def appearance_signature(encoded: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return signature_of_crop(warp_to_face(encoded, scaled_template_transform(landmarks, SIGNATURE_SIZE), SIGNATURE_SIZE))


def signature_of_crop(crop: np.ndarray) -> np.ndarray:
    """A face crop (SIGNATURE_SIZE, aligned) as a zero-mean unit vector, for correlation."""
    vector = crop.reshape(-1).astype(np.float64)
    vector -= vector.mean()
    return vector / (np.linalg.norm(vector) + 1e-9)


def interocular(landmarks: np.ndarray) -> float:
    return max(2.0, float(np.linalg.norm(landmarks[1] - landmarks[0])))


class _Track:
    def __init__(self, track_id: int) -> None:
        self.id = track_id
        self.observations: dict[int, tuple] = {}  # frame index -> (landmarks, box, score)
        self.signature: np.ndarray | None = None
        self.last_index = -1


def one_euro(values: np.ndarray, rate: float, min_cutoff: float, beta: float, scale: float) -> np.ndarray:
    """One-Euro filter (Casiez et al. 2012) over a (T, ...) series; speed measured in `scale` units."""

    def alpha(cutoff: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau * rate)

    out = np.empty_like(values)
    out[0] = values[0]
    derivative = np.zeros_like(values[0])
    for t in range(1, len(values)):
        raw_derivative = (values[t] - out[t - 1]) * rate
        a_d = alpha(1.0)
        derivative = a_d * raw_derivative + (1 - a_d) * derivative
        speed = float(np.abs(derivative).mean()) / scale
        a = alpha(min_cutoff + beta * speed)
        out[t] = a * values[t] + (1 - a) * out[t - 1]
    return out


def smooth_track(landmarks: np.ndarray, settings: TrackerSettings, fps: float = 24.0) -> np.ndarray:
    """Zero-phase: the forward and backward passes' lags cancel."""
    if len(landmarks) < 3:
        return landmarks.copy()
    scale = float(np.median([interocular(lm) for lm in landmarks]))
    forward = one_euro(landmarks, fps, settings.smooth_min_cutoff, settings.smooth_beta, scale)
    backward = one_euro(landmarks[::-1], fps, settings.smooth_min_cutoff, settings.smooth_beta, scale)[::-1]
    return (forward + backward) / 2.0


def analyse(frames: list, detect, settings: TrackerSettings | None = None, progress=None) -> Analysis:
    """Track faces over a shot.

    `frames`: frame numbers; `detect(frame)` -> (encoded, scale, [(landmarks, box, score)]) where
    `encoded` is the display-encoded image the detector saw, `scale` its size relative to the
    plate (one number, or (across, down) for an anamorphic plate seen desqueezed), and landmarks
    and boxes are in plate pixels. A find may carry a fourth item, its appearance signature
    (`appearance_signature`), when `encoded` is too small to read it from (`face_search`)."""
    settings = settings or TrackerSettings()
    tracks: list[_Track] = []
    active: list[_Track] = []
    cuts = []
    previous_thumb = None
    next_id = 1
    size = None
    looks = {}
    for index, frame in enumerate(frames):
        encoded, scale, detections = detect(frame)
        scale_x, scale_y = np.broadcast_to(scale, 2)  # one number, or across and down (anamorphic)
        size = size or (round(encoded.shape[1] / scale_x), round(encoded.shape[0] / scale_y))
        thumb = thumbnail(encoded)
        looks[frame] = frame_look(thumb)
        if previous_thumb is None or is_cut(previous_thumb, thumb, settings):
            cuts.append(frame)
            active = []  # a cut ends every track
            segment_start = index
        previous_thumb = thumb
        active = [t for t in active if index - t.last_index <= settings.max_gap + 1]
        assigned = _assign(active, detections, index, settings)
        for det_index, detection in enumerate(detections):
            landmarks, box, score = detection[:3]
            track = assigned.get(det_index)
            if track is None:
                # New or returning face: its appearance now is what a later return is matched to.
                signature = detection[3] if len(detection) > 3 else appearance_signature(encoded, landmarks * scale)
                track = _reidentify(tracks, active, signature, index, segment_start, settings)
                if track is None:
                    track = _Track(next_id)
                    next_id += 1
                    tracks.append(track)
                track.signature = signature
                active.append(track)
            track.observations[index] = (np.asarray(landmarks, np.float64), np.asarray(box, np.float64), float(score))
            track.last_index = index
        if progress:
            progress(index + 1, len(frames))
    faces = {frame: [] for frame in frames}
    cut_indices = [frames.index(c) for c in cuts]
    for track in tracks:
        for segment in _segments(track, settings.max_gap, cut_indices):
            best = max(track.observations[i][2] for i in segment)
            if best < settings.confirm_score and len(segment) < settings.confirm_frames:
                continue
            _emit(track.id, segment, track.observations, frames, faces, settings)
    for frame in faces:
        faces[frame].sort(key=lambda f: f.track)
    return Analysis(list(frames), size or (0, 0), cuts, faces, settings=settings.__dict__.copy(), looks=looks)


def _assign(active: list[_Track], detections: list, index: int, settings: TrackerSettings) -> dict[int, _Track]:
    if not active or not detections:
        return {}
    from scipy.optimize import linear_sum_assignment

    cost = np.full((len(detections), len(active)), 1e6)
    factors = desqueeze(settings.pixel_aspect)
    for i, (landmarks, *_) in enumerate(detections):
        landmarks = landmarks * factors if settings.pixel_aspect != 1.0 else landmarks
        for j, track in enumerate(active):
            last_landmarks = track.observations[track.last_index][0]
            if settings.pixel_aspect != 1.0:
                last_landmarks = last_landmarks * factors
            gap = index - track.last_index
            distance = np.linalg.norm(landmarks.mean(0) - last_landmarks.mean(0)) / interocular(last_landmarks)
            size_change = abs(math.log(interocular(landmarks) / interocular(last_landmarks)))
            if distance <= settings.match_distance * gap + 0.5 and size_change < 0.5:
                cost[i, j] = distance + size_change
    rows, cols = linear_sum_assignment(cost)
    return {r: active[c] for r, c in zip(rows, cols) if cost[r, c] < 1e6}


def _reidentify(tracks, active, signature, index, segment_start, settings) -> _Track | None:
    """A lost track of this shot whose appearance matches, if any (best match wins)."""
    best, best_similarity = None, settings.reentry_similarity
    for track in tracks:
        if track in active or track.signature is None:
            continue
        if track.last_index < segment_start or index - track.last_index > settings.reentry_frames:
            continue
        similarity = float(signature @ track.signature)
        if similarity > best_similarity:
            best, best_similarity = track, similarity
    return best


def _segments(track: _Track, max_gap: int, cut_indices: list[int]) -> list[list[int]]:
    """Runs of observed frame indices, split where the face was away longer than max_gap."""
    indices = sorted(track.observations)
    runs = [[indices[0]]]
    for i in indices[1:]:
        crosses_cut = any(runs[-1][-1] < c <= i for c in cut_indices)
        if i - runs[-1][-1] > max_gap + 1 or crosses_cut:
            runs.append([i])
        else:
            runs[-1].append(i)
    return runs


def _emit(track_id, observed, observations, frames, faces, settings) -> None:
    span = list(range(observed[0], observed[-1] + 1))
    raw = []
    for i in span:
        if i in observations:
            raw.append(observations[i])
            continue
        before = max(k for k in observed if k < i)
        after = min(k for k in observed if k > i)
        w = (i - before) / (after - before)
        lerp = [(1 - w) * observations[before][n] + w * observations[after][n] for n in (0, 1, 2)]
        raw.append((lerp[0], lerp[1], float(lerp[2])))
    if settings.pixel_aspect == 1.0:
        smoothed = smooth_track(np.stack([r[0] for r in raw]), settings)
    else:
        factors = desqueeze(settings.pixel_aspect)
        smoothed = smooth_track(np.stack([r[0] for r in raw]) * factors, settings) / factors
    for k, i in enumerate(span):
        _, box, score = raw[k]
        faces[frames[i]].append(FaceResult(box, score, smoothed[k], track=track_id, detected=i in observations))
