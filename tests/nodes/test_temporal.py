"""Tracks, the analysis sidecar, temporal fusion and per-face control, on real faces."""

import json

import cv2
import numpy as np
import pytest

from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.tracking import Analysis, TrackerSettings, smooth_track
from facerestore.plugin.render import RenderOptions, render

from helpers import channel, face_tile, faces_plate, paste, read_buf, second_person_tile, write_exr

# The `node` fixture with the ensemble off (one network pass a face where auto runs four):
# these tests are not about the ensemble.
NODE_ENSEMBLE = "off"


def render_with(node, src, dst, **kw):
    return render(RenderOptions(input=str(src), output=str(dst), progress=False, **kw), node=node)


@pytest.fixture(scope="module")
def cast_shot(tmp_path_factory, colour):
    """30 frames: A (astronaut) crosses the frame and is hidden at frames 5-6; B (a different
    person) leaves after frame 6 and comes back at 18; a cut at 24 to a new set-up with A only."""
    folder = tmp_path_factory.mktemp("cast")
    a, b = face_tile(64), second_person_tile(64)
    for t in range(30):
        canvas = np.full((270, 480, 3), 0.45, np.float32)
        canvas *= np.linspace(0.8, 1.1, 480, dtype=np.float32)[None, :, None]
        if t < 24:
            paste(canvas, a, 40 + 4 * t, 60)
            if t in (5, 6):
                canvas[55:150, 30:170] = 0.3  # something passes in front of A
            if t <= 6 or t >= 18:
                paste(canvas, b, 330, 80)
        else:
            canvas[:] = np.array([0.15, 0.25, 0.55], np.float32)  # another set-up
            paste(canvas, a, 250, 100)
        write_exr(folder / f"cast.{1001 + t}.exr", colour.decode(canvas))
    return folder


@pytest.fixture(scope="module")
def cast_analysis(cast_shot, node, tmp_path_factory):
    out = tmp_path_factory.mktemp("cast_out")
    report = render_with(
        node, cast_shot / "cast.####.exr", out / "o.####.exr", frames="1001", analysis=str(out / "a.json")
    )
    return Analysis.load(report.analysis_path)


def tracks_at(analysis, frame):
    return {f.track: f for f in analysis.faces[frame]}


def test_ids_survive_occlusion_reentry_and_reset_at_a_cut(cast_analysis):
    an = cast_analysis
    assert an.cuts == [1001, 1025]
    a_id = min(tracks_at(an, 1001), key=lambda t: tracks_at(an, 1001)[t].landmarks[0, 0])
    b_id = max(tracks_at(an, 1001), key=lambda t: tracks_at(an, 1001)[t].landmarks[0, 0])
    assert a_id != b_id
    for frame in range(1001, 1025):
        assert a_id in tracks_at(an, frame)  # never lost, not even behind the occluder
    assert not tracks_at(an, 1006)[a_id].detected and not tracks_at(an, 1007)[a_id].detected  # gap filled
    assert tracks_at(an, 1008)[a_id].detected
    assert b_id not in tracks_at(an, 1010)  # B is away
    assert b_id in tracks_at(an, 1019) and b_id in tracks_at(an, 1024)  # and recognised on return
    after_cut = set(tracks_at(an, 1025))
    assert len(after_cut) == 1 and after_cut.isdisjoint({a_id, b_id})  # new shot, new track


def test_filled_gap_follows_the_motion(cast_analysis):
    an = cast_analysis
    a_id = min(tracks_at(an, 1005), key=lambda t: tracks_at(an, 1005)[t].landmarks[0, 0])
    xs = [tracks_at(an, f)[a_id].landmarks[:, 0].mean() for f in range(1004, 1010)]
    steps = np.diff(xs)
    assert np.all(steps > 2) and np.all(steps < 6)  # about 4 px per frame, through the gap


def test_smoothing_is_steady_at_rest_and_follows_motion():
    rng = np.random.default_rng(0)
    base = np.array([[100.0, 100], [140, 100], [120, 120], [105, 140], [135, 140]])
    still = np.stack([base + rng.normal(0, 0.8, base.shape) for _ in range(40)])
    smoothed = smooth_track(still, TrackerSettings())
    assert smoothed[5:-5].std(axis=0).mean() < 0.5 * still.std(axis=0).mean()
    moving = np.stack([base + [3.0 * t, 0] for t in range(40)])
    assert np.abs(smooth_track(moving, TrackerSettings()) - moving)[3:-3].max() < 1.0  # no lag


def test_sidecar_round_trips_exactly_and_notices_changed_plates(cast_shot, cast_analysis, tmp_path):
    again = Analysis.from_json(json.loads(json.dumps(cast_analysis.to_json())))
    for frame, faces in cast_analysis.faces.items():
        for x, y in zip(faces, again.faces[frame]):
            assert x.track == y.track and np.array_equal(x.landmarks, y.landmarks)


@pytest.fixture(scope="module")
def noisy_shot(tmp_path_factory, colour):
    """Six frames of a still face with fresh noise and compression each frame: pure flicker."""
    from facerestore.plugin.demo import degrade_display

    folder = tmp_path_factory.mktemp("noisy")
    clean = np.full((150, 200, 3), 0.4, np.float32)
    paste(clean, face_tile(64), 68, 20)
    for t in range(6):
        frame = degrade_display(clean, np.random.default_rng(100 + t), factor=2, quality=40)
        write_exr(folder / f"n.{1001 + t}.exr", colour.decode(frame), half=False)
    return folder


def frame_to_frame_change(folder, prefix, colour):
    frames = [read_buf(folder / f"{prefix}.{1001 + t}.exr") for t in range(6)]
    matte = channel(*frames[0], "face.mask") > 0.99
    encoded = [np.clip(colour.encode(np.ascontiguousarray(px[..., :3])), 0, 1) for _, px in frames]
    return np.mean([np.abs(a - b)[matte].mean() for a, b in zip(encoded[:-1], encoded[1:])])


def test_temporal_fusion_removes_flicker_that_per_frame_restoration_keeps(noisy_shot, node, colour):
    render_with(node, noisy_shot / "n.####.exr", noisy_shot / "t.####.exr")
    render_with(node.with_params(temporal_window=1), noisy_shot / "n.####.exr", noisy_shot / "p.####.exr")
    temporal = frame_to_frame_change(noisy_shot, "t", colour)
    per_frame = frame_to_frame_change(noisy_shot, "p", colour)
    assert temporal < 0.6 * per_frame, (temporal, per_frame)


def test_any_frame_rendered_alone_equals_the_full_render(noisy_shot, node, tmp_path):
    sidecar = str(tmp_path / "shot.analysis.json")
    render_with(node, noisy_shot / "n.####.exr", tmp_path / "full" / "f.####.exr", analysis=sidecar)
    for frame in (1004, 1001, 1006):  # out of order, one at a time, as a farm would
        render_with(
            node, noisy_shot / "n.####.exr", tmp_path / "alone" / "f.####.exr", frames=str(frame), analysis=sidecar
        )
        full = read_buf(tmp_path / "full" / f"f.{frame}.exr")[1]
        alone = read_buf(tmp_path / "alone" / f"f.{frame}.exr")[1]
        assert np.array_equal(full, alone), frame


def test_track_selection_strength_and_per_track_mattes(cast_shot, cast_analysis, node, tmp_path):
    an = cast_analysis
    left = min(tracks_at(an, 1002), key=lambda t: tracks_at(an, 1002)[t].landmarks[0, 0])
    right = max(tracks_at(an, 1002), key=lambda t: tracks_at(an, 1002)[t].landmarks[0, 0])
    src = cast_shot / "cast.####.exr"
    common = {"frames": "1002", "analysis": str(tmp_path / "a.json")}
    render_with(node.with_params(tracks=str(left)), src, tmp_path / "only.####.exr", track_mattes=True, **common)
    render_with(node.with_params(track_strengths=f"{right}=0"), src, tmp_path / "zero.####.exr", **common)
    plate = read_buf(cast_shot / "cast.1002.exr")[1]
    spec, only = read_buf(tmp_path / "only.1002.exr")
    right_half = (slice(None), slice(300, None))
    assert np.array_equal(only[right_half][..., :3], plate[right_half][..., :3])  # B untouched
    assert channel(spec, only, f"face.mask{left}").max() == 1.0
    assert channel(spec, only, f"face.mask{right}").max() == 0.0
    assert np.array_equal(channel(spec, only, "face.mask"), channel(spec, only, f"face.mask{left}"))
    spec_z, zero = read_buf(tmp_path / "zero.1002.exr")
    assert np.array_equal(zero[right_half][..., :3], plate[right_half][..., :3])
    assert channel(spec_z, zero, "face.mask")[right_half].max() == 1.0  # still matted, just not changed
    assert not np.array_equal(zero[:, :200, :3], plate[:, :200, :3])  # A restored


def test_bad_temporal_requests(cast_shot, node, tmp_path):
    with pytest.raises(FaceRestoreError, match="no track 99"):
        render_with(node.with_params(tracks="99"), cast_shot / "cast.####.exr", tmp_path / "o.####.exr", frames="1001")
    from facerestore.nodes.face_restore import FaceRestoreNode

    with pytest.raises(FaceRestoreError, match="odd"):
        FaceRestoreNode(node.colour, "cpu", temporal_window=4)
    with pytest.raises(FaceRestoreError, match="per-face strengths"):
        FaceRestoreNode(node.colour, "cpu", track_strengths="1:0.5")


def test_a_face_added_by_hand_is_followed_restored_and_matted_through_the_shot(node, colour, tmp_path):
    """A head with its eyes and mouth covered (the detector finds nothing) moving 3 px a frame,
    given by hand as a box on frame 3 only."""
    from facerestore.nodes.manual_faces import parse_added_face

    tile = face_tile(90).copy()
    tile[30:55] = 0.1
    tile[70:90] = 0.1
    for t in range(1, 7):
        canvas = np.full((220, 300, 3), 0.4, np.float32)
        canvas[40 : 40 + tile.shape[0], 60 + 3 * t : 60 + 3 * t + tile.shape[1]] = tile
        write_exr(tmp_path / f"s.{t:04d}.exr", colour.decode(canvas), half=False)
    pattern = str(tmp_path / "s.####.exr")
    assert not node.detect(colour.decode(canvas))  # the detector misses it
    box_on_3 = (60 + 9 + 10, 40 + 15, 60 + 9 + 80, 40 + 90)
    added = parse_added_face("3:" + ",".join(map(str, box_on_3)))
    report = render(
        RenderOptions(input=pattern, output=str(tmp_path / "o.####.exr"), progress=False, added_faces=(added,)),
        node=node,
    )
    analysis = Analysis.load(report.analysis_path)
    assert analysis.settings["added_faces"] == [added.to_json()] and report.tracks == [1]
    centres = []
    for t in range(1, 7):
        spec, out = read_buf(tmp_path / f"o.{t:04d}.exr")
        matte = channel(spec, out, "face.mask")
        ys, xs = np.nonzero(matte > 0.5)
        assert len(xs) > 2000  # matted in every frame, not only the one given
        centres.append(xs.mean())
    # It follows the head (3 px a frame), within the landmark smoother's lag at the shot's ends.
    expected = centres[2] + 3.0 * (np.arange(1, 7) - 3)
    assert np.all(np.diff(centres) > 1.0) and np.abs(np.array(centres) - expected).max() < 4.0, centres
    # Dropping it keeps the stored analysis and removes the face.
    dropped = render(
        RenderOptions(
            input=pattern,
            output=str(tmp_path / "d.####.exr"),
            analysis=report.analysis_path,
            progress=False,
            added_faces=(added,),
            dropped_tracks=(1,),
        ),
        node=node,
    )
    assert dropped.tracks == [] and Analysis.load(report.analysis_path).settings["dropped_tracks"] == [1]


def test_bad_added_faces_are_one_line_errors(tmp_path):
    from facerestore.nodes.manual_faces import parse_added_face

    for text in ("3:1,2,3", "x:1,2,3,4", "3:10,10,12,12", "3:nan,1,50,60"):
        with pytest.raises(FaceRestoreError):
            parse_added_face(text)
    assert parse_added_face(":10,20,110,150").frame is None


def test_on_an_anamorphic_plate_a_face_moving_down_fast_stays_one_track(node, colour):
    """On a 2x plate the eyes are half as far apart in plate pixels as they look; measured in
    plate pixels, 18 px of vertical motion a frame looked like a jump and split the face into a
    new track every frame. The tracker measures on the face desqueezed."""
    import cv2

    from facerestore.nodes.shot import analyse_shot

    plates = {}
    for t in range(6):
        square = faces_plate(colour, width=480, height=400, face_width=100, positions=((180, 10 + 18 * t),), seed=t)
        plates[t] = np.ascontiguousarray(cv2.resize(square, (240, 400), interpolation=cv2.INTER_AREA))
    analysis = analyse_shot(node.with_params(pixel_aspect=2.0), list(range(6)), plates.__getitem__)
    assert {f.track for faces in analysis.faces.values() for f in faces} == {1}
    assert all(len(faces) == 1 for faces in analysis.faces.values())


def test_a_window_restorers_input_is_the_centre_then_its_nearest_neighbours_each_side():
    from facerestore.models.flow import window_input

    shape = (6, 5, 3)
    centre = np.full(shape, 0.5, np.float32)
    trusted, untrusted = np.ones(shape[:2], np.float32), np.zeros(shape[:2], np.float32)
    aligned = {o: (np.full(shape, 0.5 + o / 10, np.float32), trusted) for o in (-2, -1, 2)}
    x = window_input(centre, aligned, 3)
    assert x.shape == (6, 5, 9)
    # The nearest earlier frame (-1, not -2), the nearest later one (+2: +1 is missing).
    assert np.allclose(x[..., :3], 0.5) and np.allclose(x[..., 3:6], 0.4) and np.allclose(x[..., 6:], 0.7)
    # Five frames: the second earlier neighbour next; a missing later one is the centre.
    x = window_input(centre, aligned, 5)
    assert [round(float(x[0, 0, 3 * k]), 3) for k in range(5)] == [0.5, 0.4, 0.3, 0.7, 0.5]
    # Where alignment is not trusted the centre stands in; with no neighbours, the centre throughout.
    half = np.concatenate([trusted[:3], untrusted[3:]])
    x = window_input(centre, {1: (np.zeros(shape, np.float32), half)}, 3)
    assert np.allclose(x[:3, :, 6:], 0.0) and np.allclose(x[3:, :, 6:], 0.5)
    assert np.array_equal(window_input(centre, {}, 3), np.concatenate([centre] * 3, axis=2))


def test_a_face_added_on_an_anamorphic_plate_is_boxed_and_followed_as_it_looks():
    from facerestore.nodes.manual_faces import _moved, box_of, landmarks_in_box
    from facerestore.plugin.demo import astronaut_srgb

    # A face box drawn on a 2x anamorphic plate: narrow in plate pixels, as the face is there.
    box = np.array([100.0, 50.0, 134.0, 135.0])  # 68 x 85 desqueezed: the template box's shape
    points = landmarks_in_box(box)
    assert np.allclose(box_of(points, 2.0), box)
    assert box_of(points, 1.0)[3] - box_of(points, 1.0)[1] < 0.6 * (box[3] - box[1])  # measured square: too short

    # The head turns 8 degrees (as it looks); the plate holds it squeezed 2x across.
    face = np.ascontiguousarray(astronaut_srgb()[0:256, 96:352])
    turn = cv2.getRotationMatrix2D((128.0, 128.0), 8.0, 1.0)
    turned = cv2.warpAffine(face, turn, (256, 256), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    squeeze = lambda image: cv2.resize(image, (128, 256), interpolation=cv2.INTER_AREA)  # noqa: E731
    square_points = np.array([[100.0, 110.0], [156.0, 110.0], [128.0, 140.0], [105.0, 170.0], [151.0, 170.0]])
    expected = (np.c_[square_points, np.ones(5)] @ turn.T) / [2.0, 1.0]
    error = {
        aspect: np.abs(_moved(square_points / [2.0, 1.0], squeeze(face), squeeze(turned), aspect) - expected).max()
        for aspect in (2.0, 1.0)
    }
    assert error[2.0] < 1.0 and error[2.0] < 0.5 * error[1.0], error


def test_a_face_added_twice_on_an_anamorphic_plate_is_one_face_followed_through_the_shot(node, colour, monkeypatch):
    """Two boxes of one covered head moving 20 px a frame down a 2x plate: measured in plate
    pixels its eyes look half as far apart as they are, and the two seeds looked like two faces."""
    from facerestore.nodes import shot
    from facerestore.nodes.manual_faces import parse_added_face

    tile = face_tile(90).copy()
    tile[30:55] = 0.1
    tile[70:90] = 0.1
    plates = {}
    for t in range(1, 7):
        canvas = np.full((260, 300, 3), 0.4, np.float32)
        canvas[20 * t : 20 * t + tile.shape[0], 100 : 100 + tile.shape[1]] = tile
        plates[t] = colour.decode(np.ascontiguousarray(cv2.resize(canvas, (150, 260), interpolation=cv2.INTER_AREA)))
    seeds = tuple(parse_added_face(f"{t}:{50 + 5},{20 * t + 15},{50 + 40},{20 * t + 90}") for t in (2, 4))

    def tracks(analysis):
        return [sorted(f.track for f in analysis.faces[t]) for t in range(1, 7)]

    anamorphic = node.with_params(pixel_aspect=2.0)
    analysis = shot.analyse_shot(anamorphic, list(range(1, 7)), plates.__getitem__, added=seeds)
    # The same, measured in plate pixels as before: the seeds are not joined.
    follow = shot.follow
    monkeypatch.setattr(
        shot,
        "follow",
        lambda added, frames, encoded_of, segment_of, aspect: follow(added, frames, encoded_of, segment_of),
    )
    squeezed = shot.analyse_shot(anamorphic, list(range(1, 7)), plates.__getitem__, added=seeds)
    assert tracks(analysis) == [[1]] * 6, tracks(analysis)
    assert tracks(squeezed) != [[1]] * 6, tracks(squeezed)


class WindowRecorder:
    """A window restorer (3 frames) that returns its centre crop and keeps what it was given."""

    scale, input_size, frames = 1, None, 3

    def __init__(self) -> None:
        self.inputs = []

    def __call__(self, batch):
        self.inputs.append(batch.copy())
        return batch[..., :3]


def test_a_window_restorer_sees_its_own_crop_then_the_previous_and_next_frames_aligned(noisy_shot, colour, tmp_path):
    from facerestore.models.flow import alignment, trusted_blend
    from facerestore.nodes.face_restore import FaceRestoreNode

    recorder = WindowRecorder()
    node = FaceRestoreNode(colour, "cpu", restorer=recorder, temporal_window=3, ensemble="off")
    render_with(node, noisy_shot / "n.####.exr", tmp_path / "w.####.exr")
    assert len(recorder.inputs) == 6  # the shot's frames in order, one face each, each restored once
    crops = [batch[0] for batch in recorder.inputs]
    assert all(crop.shape[-1] == 9 for crop in crops)
    own = [crop[..., :3] for crop in crops]
    # The centre is the frame's own crop, not the window's fused one: what a per-frame render sees.
    per_frame = WindowRecorder()
    alone = FaceRestoreNode(colour, "cpu", restorer=per_frame, temporal_window=1, ensemble="off")
    render_with(alone, noisy_shot / "n.####.exr", tmp_path / "p.####.exr")
    assert all(np.array_equal(a[0][..., :3], b) for a, b in zip(per_frame.inputs, own))
    assert all(np.array_equal(a[0], np.concatenate([b] * 3, axis=2)) for a, b in zip(per_frame.inputs, own))
    # The shot's first frame has no previous one, its last no next one: the crop stands in.
    assert np.array_equal(crops[0][..., 3:6], own[0]) and np.array_equal(crops[-1][..., 6:], own[-1])
    for t in range(1, 5):
        earlier, later = crops[t][..., 3:6], crops[t][..., 6:]
        # Each side is that neighbour's own crop brought onto this one, as training makes them.
        from_earlier, from_later = (trusted_blend(own[t], *alignment(own[t], own[t + d])[1:]) for d in (-1, 1))
        assert np.allclose(earlier, from_earlier, atol=1e-6)
        assert np.allclose(later, from_later, atol=1e-6)
        assert not np.allclose(earlier, from_later, atol=1e-3)  # not the other side
