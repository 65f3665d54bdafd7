"""The held-out-people case set: shots made from stills, scored per model.

Faces: tests/data/faces (reduced crops of CC0 inter-faces portraits; see tests/models/test_face_data.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facerestore.benchmarks import people
from facerestore.models import face_data
from facerestore.models.detector import RetinaFaceDetector

from helpers import licensed_faces_copy


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("people")
    roots, manifest = licensed_faces_copy(tmp_path)
    face_data.build_faces(roots, tmp_path / "built", manifest, progress=lambda line: None)
    return face_data.open_built_faces(tmp_path / "built", manifest), manifest


def test_a_shot_from_a_still_moves_a_little_every_frame_and_keeps_a_findable_face(built):
    faces, _ = built
    (entry,) = faces.faces("held_out")
    frames = people.shot_from_still(faces.still(entry), np.array(entry["landmarks"]), 5, np.random.default_rng(3))
    assert all(f.shape == (360, 640, 3) and f.dtype == np.float32 for f in frames)
    detector = RetinaFaceDetector("cpu", score_threshold=0.8)
    centres = []
    for frame in frames:
        (face,) = detector.detect(frame)
        centres.append(face.landmarks.mean(axis=0))
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    # Every frame moves (a still shot would teach nothing temporal), none jumps.
    assert (steps > 0.05).all() and (steps < 6).all()
    footprints = [people.footprint_of(detector.detect(f)[0].landmarks) for f in frames]
    assert people.FOOTPRINT_RANGE[0] * 0.8 < np.median(footprints) < people.FOOTPRINT_RANGE[1] * 1.2


def test_the_sharpness_ratio_is_one_for_the_truth_and_falls_with_blur():
    rng = np.random.default_rng(0)
    truth = cv2.GaussianBlur(rng.random((64, 64, 3)).astype(np.float32), (0, 0), 0.7)
    mask = np.ones((64, 64), bool)
    assert people.high_frequency_ratio(truth, truth, mask) == pytest.approx(1.0)
    soft = cv2.GaussianBlur(truth, (0, 0), 1.2)
    sharpened = truth + 0.8 * (truth - soft)
    assert (
        people.high_frequency_ratio(soft, truth, mask) < 0.5 < 1.0 < people.high_frequency_ratio(sharpened, truth, mask)
    )


@pytest.mark.slow
def test_the_people_bench_scores_every_model_against_the_plate(built, tmp_path):
    faces, manifest = built
    results = people.run_people(
        str(tmp_path / "bench"),
        ("facerestore-face-x4",),
        frames=3,
        seed=1,
        faces_root=str(faces.root),
        device="cpu",
        settings=("block",),
        progress=lambda line: None,
        manifest_path=manifest,
    )
    (row,) = results["rows"]
    assert row["person"] == "interfaces-005" and row["setting"] == "block" and row["faces_found"] == 1
    summary = results["summary"]["all"]
    assert summary["degraded input"]["psnr_gain"] == 0.0
    # A block-degraded plate: the restorer must gain on it and sharpen it towards the truth.
    assert summary["facerestore-face-x4"]["psnr_gain"] > 0.3
    assert summary["facerestore-face-x4"]["sharpness"] > summary["degraded input"]["sharpness"]
    assert json.loads((tmp_path / "bench" / "results.json").read_text())["rows"] == results["rows"]
    sheet = cv2.imread(str(tmp_path / "bench" / "people.png"))
    assert sheet.shape[1] == 3 * 160  # degraded, the model, the truth
    assert "| all | facerestore-face-x4 |" in Path(tmp_path / "bench" / "results.md").read_text()
