"""Re-grain: the restored face gets the plate's measured noise back (astronaut, NASA, public domain)."""

import numpy as np
import pytest

from facerestore.nodes.grain import grain, noise_covariance

from helpers import faces_plate


def test_noise_covariance_recovers_known_colour_noise():
    rng = np.random.default_rng(5)
    flat = np.full((200, 200, 3), 0.4, np.float32) + np.linspace(0, 0.2, 200, dtype=np.float32)[None, :, None]
    shared = rng.normal(0, 0.02, (200, 200, 1))  # luma-like: the same in every channel
    noisy = flat + shared + rng.normal(0, [0.01, 0.02, 0.03], (200, 200, 3))
    covariance = noise_covariance(noisy.astype(np.float32), np.ones((200, 200), bool))
    expected = np.full((3, 3), 0.02**2) + np.diag(np.square([0.01, 0.02, 0.03]))
    assert np.sqrt(np.diag(covariance)) == pytest.approx(np.sqrt(np.diag(expected)), rel=0.06)
    assert covariance[0, 2] == pytest.approx(expected[0, 2], rel=0.2)
    regrown = grain((400, 400), covariance, noisy)
    assert np.cov(regrown.reshape(-1, 3).T) == pytest.approx(covariance, abs=2e-5)


@pytest.fixture(scope="module")
def noisy_plate(colour):
    rng = np.random.default_rng(3)
    clean = np.clip(
        colour.encode(faces_plate(colour, 400, 300, face_width=120, positions=((140, 50),), degrade=False)), 0, 1
    )
    encoded = np.clip(clean + rng.normal(0, 0.03, clean.shape).astype(np.float32), 0, 1)
    return encoded, colour.decode(encoded)


def test_regrain_restores_the_plates_noise_level_inside_the_matte_only(colour, noisy_plate, default_node):
    encoded, plate = noisy_plate
    levels, results = {}, {}
    for amount in (0.0, 0.5, 1.0):
        result = default_node.with_params(regrain=amount).process(plate)
        inside = result.matte > 0.95
        out = np.clip(colour.encode(result.rgb), 0, 1)
        levels[amount] = np.sqrt(np.diag(noise_covariance(out, inside))).mean()
        results[amount] = result
        assert np.array_equal(result.rgb[result.matte == 0], plate[result.matte == 0])
    plate_level = np.sqrt(np.diag(noise_covariance(encoded, results[1.0].matte > 0.95))).mean()
    assert levels[0.0] < 0.3 * plate_level  # the restorer removed the noise ...
    assert levels[1.0] == pytest.approx(plate_level, rel=0.15)  # ... re-grain puts it back
    assert levels[0.0] < levels[0.5] < levels[1.0]


def test_regrain_is_a_function_of_the_frame_not_of_the_render_order(noisy_plate, default_node):
    _, plate = noisy_plate
    # Not about the ensemble: off (one network pass a face).
    clean_node = default_node.with_params(ensemble="off")
    node = clean_node.with_params(regrain=1.0)
    first = node.process(plate)
    assert np.array_equal(first.rgb, node.process(plate.copy()).rgb)  # any frame, any order: the same grain
    inside = first.matte > 0.95
    other = plate.copy()
    y, x = np.argwhere(inside)[0]
    other[y, x] *= 1.001  # another frame of the shot (one pixel differs under the face)
    grain_first = (first.rgb - clean_node.process(plate).rgb)[inside]
    grain_other = (node.process(other).rgb - clean_node.process(other).rgb)[inside]
    # Fresh grain per frame, as a sensor or film gives: the two frames' grain is uncorrelated.
    assert abs(np.corrcoef(grain_first.ravel(), grain_other.ravel())[0, 1]) < 0.1
