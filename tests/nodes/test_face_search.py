"""Large plates: the detector sees the whole frame only on keyframes and follows each face in a
region around it between them (`nodes/face_search.py`). Real detector, real plates: the demo's
astronaut (NASA, public domain) pasted onto a gradient, at 1600x900 (above KEYFRAME_MIN_PIXELS)."""

from collections import defaultdict

import numpy as np
import pytest

from facerestore.benchmarks.bench_frame_size import plate_with_face
from facerestore.nodes import face_search
from facerestore.nodes.shot import analyse_shot, look_of

FRAMES = 14
ENTERS, LEAVES = 5, 11  # the second face is in frames 5..10


@pytest.fixture(scope="module")
def plates(colour):
    """Face A drifts right the whole shot; face B enters between two keyframes and leaves."""
    shot = []
    for t in range(FRAMES):
        plate = plate_with_face(colour, 1600, 900, shift=6 * t)
        if ENTERS <= t < LEAVES:
            other = plate_with_face(colour, 600, 320, shift=0)
            plate[520:840, 100 + 8 * t : 700 + 8 * t] = other
        shot.append(plate)
    return shot


def analysed(node, plates, monkeypatch, keyframes: bool):
    with monkeypatch.context() as patch:
        if not keyframes:
            patch.setattr(face_search, "KEYFRAME_MIN_PIXELS", 10**9)
        whole = defaultdict(int)
        original = type(node).detect_with_image

        def counted(self, plate, *args, **kwargs):
            whole["searches"] += 1
            return original(self, plate, *args, **kwargs)

        patch.setattr(type(node), "detect_with_image", counted)
        analysis = analyse_shot(node, list(range(FRAMES)), plates.__getitem__)
    return analysis, whole["searches"]


def centre(face):
    return (face.box[:2] + face.box[2:]) / 2


def test_keyframes_find_the_faces_a_search_of_every_whole_frame_finds(node, plates, monkeypatch):
    by_keyframes, searches = analysed(node, plates, monkeypatch, keyframes=True)
    every_frame, every_searches = analysed(node, plates, monkeypatch, keyframes=False)
    assert every_searches == FRAMES
    # Keyframes 0 and 8, and 11 where face B is not found again near where it was.
    assert searches == 3
    assert len(by_keyframes.track_ids()) == len(every_frame.track_ids()) == 2
    for t in range(FRAMES):
        ours, theirs = by_keyframes.faces[t], every_frame.faces[t]
        assert len(ours) == len(theirs) == (2 if ENTERS <= t < LEAVES else 1), t
        for a, b in zip(sorted(ours, key=lambda f: f.box[0]), sorted(theirs, key=lambda f: f.box[0])):
            side = b.box[2] - b.box[0]
            assert np.linalg.norm(centre(a) - centre(b)) < 0.1 * side, t


def test_a_face_entering_between_keyframes_is_tracked_from_its_first_frame(node, plates, monkeypatch):
    analysis, _ = analysed(node, plates, monkeypatch, keyframes=True)
    entered = {t for t in range(FRAMES) for f in analysis.faces[t] if f.box[1] > 450}
    assert entered == set(range(ENTERS, LEAVES))


def test_the_looks_an_analysis_records_are_those_of_its_frames(node, plates, monkeypatch):
    analysis, _ = analysed(node, plates, monkeypatch, keyframes=True)
    assert all(analysis.looks[t] == look_of(node, plates[t]) for t in (0, ENTERS, FRAMES - 1))
    # Another frame's look is not this one's: a cut in the thumbnail would be seen.
    assert look_of(node, plates[0]) != look_of(node, np.ascontiguousarray(plates[0][::-1]))


def test_a_cut_starts_a_keyframe(node, plates, monkeypatch):
    """After a cut the faces of the frame before mean nothing: the whole frame is searched."""
    cut = plates[:4] + [np.ascontiguousarray(p[:, ::-1]) * 0.3 for p in plates[:4]]
    with monkeypatch.context() as patch:
        calls = []
        original = type(node).detect_with_image
        patch.setattr(type(node), "detect_with_image", lambda self, p, *a, **k: calls.append(1) or original(self, p, *a, **k))
        analysis = analyse_shot(node, list(range(8)), cut.__getitem__)
    assert analysis.cuts == [0, 4] and len(calls) == 2
    assert all(len(analysis.faces[t]) == 1 for t in range(8))


def test_each_frame_is_asked_for_once_and_in_order(node, plates):
    """A host streams the frames to the analysis (the OpenFX worker): following an entering face
    back must use the plates kept since the last keyframe, not ask for them again."""
    asked = []

    def plate_of(frame):
        asked.append(frame)
        return plates[frame]

    analysis = analyse_shot(node, list(range(FRAMES)), plate_of)
    assert asked == list(range(FRAMES))
    assert {t for t in range(FRAMES) if len(analysis.faces[t]) == 2} == set(range(ENTERS, LEAVES))


def test_the_search_holds_no_more_plates_than_those_since_its_last_keyframe(node, plates):
    """Memory stays bounded on a long shot: besides the frame at hand, only the plates since the
    last keyframe (for following an entering face back) are held."""
    import gc
    import weakref

    given = []
    most = 0

    def plate_of(frame):
        nonlocal most
        gc.collect()
        most = max(most, sum(ref() is not None for ref in given))
        plate = plates[frame % FRAMES].copy()  # a fresh array per frame, as a reader gives
        given.append(weakref.ref(plate))
        return plate

    frames = list(range(3 * FRAMES))  # faces come and go five times
    analyse_shot(node, frames, plate_of)
    assert most <= face_search.KEYFRAME_INTERVAL


def test_a_face_a_keyframe_misses_is_looked_for_where_it_was(node, plates, monkeypatch):
    """A doubtful face's score flickers: when the whole frame's search on a keyframe misses a
    face of the frame before (simulated: the keyframe's search loses face A), it is found in its
    region as between keyframes, not lost until the next keyframe."""
    original = type(node).detect_with_image
    calls = []

    def missing_a(self, plate, *args, **kwargs):
        calls.append(1)
        encoded, scale, faces = original(self, plate, *args, **kwargs)
        if len(calls) == 2:  # the keyframe at frame 8
            faces = [f for f in faces if f.box[1] > 450]
        return encoded, scale, faces

    monkeypatch.setattr(type(node), "detect_with_image", missing_a)
    frames = list(range(LEAVES))  # no keyframe after frame 8 to find face A again
    analysis = analyse_shot(node, frames, plates.__getitem__)
    assert len(calls) == 2
    assert all(any(f.box[1] < 450 for f in analysis.faces[t]) for t in frames)
    assert len(analysis.track_ids()) == 2
