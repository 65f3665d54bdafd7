"""Restoring frames of an analysed shot, in any order, with temporal fusion.

A frame's result needs its neighbours' restorer outputs, and each of those needs its own
neighbours' inputs; all of it is recomputed the same way whichever frame asks, so a frame
rendered alone equals the same frame of a full render. Plates and outputs are cached, so a
render in order runs the network once per frame. Shared by the render job and the OpenFX worker.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from facerestore.models.weights import RETINAFACE_SOURCE
from facerestore.nodes.align import footprint_of
from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.face_restore import CANDIDATE_THRESHOLD, CropJob, RestoreResult
from facerestore.nodes.face_search import face_signature, look_thumbnail, search_shot, searches_by_keyframes
from facerestore.nodes.faces import FaceResult, box_overlap
from facerestore.nodes.manual_faces import box_of, follow
from facerestore.nodes.tracking import Analysis, TrackerSettings, analyse, frame_look, look_differs


def track_restore_sizes(
    analysis, choose: Callable[[float], tuple[int, int]], pixel_aspect: float = 1.0
) -> dict[int, tuple[int, int]]:
    """One pair of crop sides per track for the whole shot (the restorer's input and the scale
    ensemble's coarse pass, `FaceRestoreNode.crop_sizes_for`), so the restorer's behaviour
    cannot jump between frames when a face hovers near a size boundary."""
    footprints: dict[int, list[float]] = defaultdict(list)
    for faces in analysis.faces.values():
        for face in faces:
            footprints[face.track].append(footprint_of(face.landmarks, pixel_aspect))
    return {track: choose(float(np.median(values))) for track, values in footprints.items()}


def faces_from_analysis(analysis, frame, sizes: dict[int, tuple[int, int]]) -> list[FaceResult]:
    return [
        dataclasses.replace(f, restore_size=sizes[f.track][0], coarse_size=sizes[f.track][1])
        for f in analysis.faces.get(frame, [])
    ]


# A determinant added later reads as the value every earlier analysis was made with.
DETERMINANT_DEFAULTS = {"pixel_aspect": 1.0}


def analysis_determinants(node, added_faces=()) -> dict:
    """Everything a shot's tracks depend on; a change to any of them means analysing again."""

    return {
        "detection_threshold": node.params["detection_threshold"],
        "candidate_threshold": CANDIDATE_THRESHOLD,
        "colour": node.colour.identity(),
        "detector": f"RetinaFace mobilenet 0.25 ({RETINAFACE_SOURCE.sha256[:16]})",
        "added_faces": [face.to_json() for face in added_faces],
        # Only when not square, so the sidecars of square plates written before it still fit.
        **({"pixel_aspect": node.pixel_aspect} if node.pixel_aspect != 1.0 else {}),
    }


def changed_determinants(analysis, determinants: dict) -> list[str]:
    """The determinants that differ from those `analysis` was made with."""
    stored = {**DETERMINANT_DEFAULTS, **analysis.settings.get("determined_by", {})}
    determinants = {**DETERMINANT_DEFAULTS, **determinants}
    return [key for key, value in determinants.items() if stored.get(key) != value]


class AnalysisStore:
    """A shot's analysis file, and when it may be used: the one rule for the CLI, the farm's
    jobs and the OpenFX worker. `determinants`: what the tracks depend on
    (`analysis_determinants`; a key left out is not compared). `fingerprint`: the plates' file
    digests, where the plates are files; `frames`: the frames the shot must cover (None: any
    one frame asked for must be in it)."""

    def __init__(self, path: str, determinants: dict, frames: list | None = None, fingerprint: dict | None = None):
        self.path, self.determinants, self.frames, self.fingerprint = path, determinants, frames, fingerprint

    def problem(self, analysis: Analysis, looks: dict | None = None) -> str | None:
        """What about `analysis` does not fit this shot, or None. `looks`: frame -> `frame_look`
        of the plates at hand (a host's pixels), compared with what the analysis saw."""
        path = self.path
        if self.frames is not None and analysis.frames != self.frames:
            return f"{path} covers other frames"
        missing = sorted({f for f in looks or {} if f not in analysis.faces}, key=str)
        if missing:
            return f"frame {missing[0]} is not in the analysis {path}"
        if self.fingerprint is not None:
            changed = [name for name in self.fingerprint if analysis.fingerprint.get(name) != self.fingerprint[name]]
            if changed:
                more = " and more" if len(changed) > 1 else ""
                return f"{path} was made for other plates ({changed[0]}{more} changed)"
        other = [f for f, look in (looks or {}).items() if f in analysis.looks and look_differs(analysis.looks[f], look)]
        if other:
            return f"{path} was made for other plates (frame {other[0]} looks different)"
        differs = changed_determinants(analysis, self.determinants)
        if differs:
            return f"{path} was made with another {', '.join(differs)}"
        return None

    def load(self, looks: dict | None = None, loader=Analysis.load) -> tuple[Analysis | None, str | None]:
        """(analysis, None) when the file fits, else (None, what does not fit)."""
        try:
            analysis = loader(self.path)
        except FaceRestoreError as exc:
            return None, str(exc)
        problem = self.problem(analysis, looks)
        return (None, problem) if problem else (analysis, None)

    def save(self, analysis: Analysis) -> None:
        """Stamp the analysis with what it was made from, and write it (atomically)."""
        if self.fingerprint is not None:
            analysis.fingerprint = self.fingerprint
        analysis.settings["determined_by"] = self.determinants
        analysis.save(self.path)


def look_of(node, plate: np.ndarray) -> list[int]:
    """`frame_look` of a plate as an analysis records it."""
    return frame_look(look_thumbnail(node, plate))


def analyse_shot(
    node,
    frames: list,
    plate_of: Callable[[object], np.ndarray],
    progress=None,
    added=(),
    dropped=(),
    timings: dict | None = None,
    image_of: Callable[[object], tuple] | None = None,
):
    """Track the faces of `frames` (plates from `plate_of`) with the node's detector.

    `added`: faces given by hand (`manual_faces.AddedFace`), followed through their segments and
    tracked like detected ones (they win over detections that overlap them). `dropped`: track
    IDs to remove (false faces). Both are recorded in the analysis settings. `timings` gets the
    detector's stages (`FaceRestoreNode.detect_with_image`). `image_of(frame)`: the frame's
    `FaceRestoreNode.detection_image` made elsewhere (a render prepares it while reading ahead);
    by default made here from `plate_of`. A large plate is searched whole only on keyframes
    (`face_search`; `image_of` is then not asked for)."""

    detections: dict = {}
    timings = timings if timings is not None else defaultdict(float)
    settings = TrackerSettings(confirm_score=node.params["detection_threshold"], pixel_aspect=node.pixel_aspect)
    # The first frame, asked for once (a host may stream the frames), tells how the shot is searched.
    first_plate, first_image = {}, {}
    if frames and image_of is not None:
        first_image[frames[0]] = image_of(frames[0])  # None: a plate searched by keyframes
        by_keyframes = first_image[frames[0]] is None
    elif frames:
        first_plate[frames[0]] = plate_of(frames[0])
        by_keyframes = searches_by_keyframes(node, first_plate[frames[0]].shape)
    else:
        by_keyframes = False
    given_plate_of, given_image_of = plate_of, image_of

    def plate_of(frame):
        return first_plate.pop(frame) if frame in first_plate else given_plate_of(frame)

    def image_of(frame):
        return first_image.pop(frame) if frame in first_image else given_image_of(frame)

    def detect(frame):
        if given_image_of is None:
            encoded, scale, faces = node.detect_with_image(plate_of(frame), candidates=True, timings=timings)
        else:
            encoded, scale = image_of(frame)
            start = time.perf_counter()
            faces = node.detect_in_image(encoded, scale, candidates=True)
            timings["detect"] += time.perf_counter() - start
        detections[frame] = [(f.landmarks, f.box, f.score) for f in faces]
        return encoded, scale, detections[frame]

    if by_keyframes:
        found = search_shot(node, list(frames), plate_of, settings, timings, progress)
        detections.update((frame, finds) for frame, (_, _, finds) in found.items())
        analysis = analyse(frames, found.__getitem__, settings)
    else:
        analysis = analyse(frames, detect, settings, progress=progress)
    if added:
        # Second pass over the cached detections, with the added faces followed by flow.
        manual = follow(
            list(added), list(frames), lambda f: node.encode(plate_of(f)), analysis.segment_of, node.pixel_aspect
        )

        def with_added(frame):
            plate = plate_of(frame)
            boxes = [box_of(points, node.pixel_aspect) for points in manual[frame]]
            kept = [d for d in detections[frame] if all(box_overlap(d[1], b) < 0.3 for b in boxes)]
            if by_keyframes:  # as the first pass saw the frame: its thumbnail, appearances read around each face
                thumb, scale, _ = found[frame]
                given = [(points, box, 1.0, face_signature(node, plate, points)) for points, box in zip(manual[frame], boxes)]
                return thumb, scale, kept + given
            encoded, scale, _ = node.detect_with_image(plate, candidates=False, run_detector=False, timings=timings)
            return encoded, scale, kept + [(points, box, 1.0) for points, box in zip(manual[frame], boxes)]

        analysis = analyse(frames, with_added, settings)
        analysis.settings["added_faces"] = [face.to_json() for face in added]
    if dropped:
        unknown = set(dropped) - set(analysis.track_ids())
        if unknown:  # refused, not stored: it would drop nothing now and another face later
            known = ", ".join(map(str, analysis.track_ids())) or "none"
            raise FaceRestoreError(
                f"--drop-tracks: no track {', '.join(map(str, sorted(unknown)))} in this shot (tracks: {known})"
            )
        analysis.faces = {f: [t for t in faces if t.track not in set(dropped)] for f, faces in analysis.faces.items()}
        analysis.settings["dropped_tracks"] = sorted(set(dropped))
    return analysis


class ShotRenderer:
    def __init__(
        self, node, analysis, frames: list, plate_of: Callable[[object], np.ndarray], timings: dict | None = None
    ) -> None:
        self.node, self.analysis, self.frames, self.plate_of = node, analysis, list(frames), plate_of
        self.timings = timings if timings is not None else defaultdict(float)
        self.sizes = track_restore_sizes(analysis, node.crop_sizes_for, node.pixel_aspect)
        self.radius = node.params["temporal_window"] // 2
        self.position = {f: i for i, f in enumerate(self.frames)}
        self.plates: dict = {}
        self.outputs: dict = {}

    def window_of(self, frame) -> list:
        """Other frames of the same shot segment within the temporal window."""
        if not self.radius or frame not in self.position:
            return []
        here, segment = self.position[frame], self.analysis.segment_of(frame)
        return [
            other
            for other in self.frames[max(0, here - self.radius) : here + self.radius + 1]
            if other != frame and self.analysis.segment_of(other) == segment
        ]

    def faces(self, frame) -> list[FaceResult]:
        # Faces wholly outside the frame (a hand-edited sidecar, a face added off the plate) have
        # no pixels to restore: left out, here and as anyone's neighbour.
        width, height = self.analysis.size
        faces = faces_from_analysis(self.analysis, frame, self.sizes)
        return [f for f in faces if self.node.in_frame(f, (height, width))]

    def plate(self, frame) -> np.ndarray:
        if frame not in self.plates:
            self.plates[frame] = self.plate_of(frame)
        return self.plates[frame]

    def restored_crops(self, frame) -> list[CropJob]:
        if frame not in self.outputs:
            faces = self.node.select(self.faces(frame))
            here = self.position.get(frame, 0)  # a frame outside the shot has no window
            neighbours = [(self.plate(f), self.faces(f), self.position[f] - here) for f in self.window_of(frame)]
            self.outputs[frame] = (
                self.node.restore_crops(self.plate(frame), faces, neighbours, self.timings) if faces else []
            )
        return self.outputs[frame]

    def render(self, frame, rgb: np.ndarray | None = None, track_mattes: bool = False) -> RestoreResult:
        if rgb is not None:
            self.plates[frame] = rgb
        rgb = self.plate(frame)
        faces = self.node.select(self.faces(frame))
        window = self.window_of(frame)
        result = self.node.composite(
            rgb,
            faces,
            self.restored_crops(frame) if faces else [],
            [self.restored_crops(f) for f in window] if faces else (),
            track_mattes,
        )
        self._evict(frame)
        return result

    def _evict(self, frame) -> None:
        """Keep what the next frames in order can still use: outputs within one radius behind,
        plates within two."""
        if frame not in self.position:
            return
        here = self.position[frame]
        for cache, reach in ((self.outputs, self.radius), (self.plates, 2 * self.radius)):
            for key in [k for k in cache if self.position.get(k, here) < here - reach]:
                del cache[key]
