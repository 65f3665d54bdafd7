import cv2
import numpy as np
import pytest

from facerestore.models.detector import RetinaFaceDetector
from facerestore.nodes.demo import astronaut_srgb

from helpers import ASTRONAUT_LANDMARKS, face_tile


@pytest.fixture(scope="module")
def detector():
    return RetinaFaceDetector("cpu")


def test_finds_the_astronaut_with_landmarks_on_her_features(detector):
    faces = detector.detect(astronaut_srgb())
    assert len(faces) == 1
    error = np.linalg.norm(faces[0].landmarks - ASTRONAUT_LANDMARKS, axis=1)
    assert error.max() < 6.0, error


def test_finds_small_faces_and_twenty_or_more(detector):
    canvas = np.full((420, 640, 3), 0.5, np.float32)
    tile = face_tile(40)  # head 40 px wide: the face box itself is about 24 px
    positions = [(20 + 75 * col, 15 + 80 * row) for row in range(5) for col in range(8)][:24]
    for x, y in positions:
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    faces = detector.detect(canvas)
    assert len(faces) >= 20
    centres = np.array([f.landmarks.mean(0) for f in faces])
    expected = np.array([(x + 20, y + 25) for x, y in positions])
    nearest = np.min(np.linalg.norm(centres[:, None] - expected[None], axis=2), axis=1)
    assert np.all(nearest < 10)  # every detection sits on a pasted face


def test_finds_a_full_frame_close_up(detector):
    head = astronaut_srgb()[40:200, 165:285]
    frame = cv2.resize(head, (810, 1080), interpolation=cv2.INTER_CUBIC)
    frame = np.pad(frame, ((0, 0), (555, 555), (0, 0)), mode="edge")  # 1920x1080, face fills the height
    faces = detector.detect(frame)
    assert len(faces) == 1
    eye_distance = np.linalg.norm(faces[0].landmarks[1] - faces[0].landmarks[0])
    assert eye_distance > 200


def test_no_faces_in_a_plain_frame(detector):
    noise = np.random.default_rng(0).uniform(0, 1, (240, 320, 3)).astype(np.float32)
    assert detector.detect(cv2.GaussianBlur(noise, (0, 0), 3)) == []
