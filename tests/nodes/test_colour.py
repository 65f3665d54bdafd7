import numpy as np
import pytest

from facerestore.nodes.colour import PINNED_CONFIG, ColourPipeline, all_finite, nonfinite_mask
from facerestore.nodes.errors import FaceRestoreError


def test_round_trip_error_below_1e5_over_hdr_range(colour):
    values = np.random.default_rng(0).uniform(-0.5, 20.0, (256, 256, 3)).astype(np.float32)
    back = colour.decode(colour.encode(values))
    relative = np.abs(back - values) / np.maximum(np.abs(values), 1.0)
    assert relative.max() < 1e-5


def test_defaults_come_from_a_pinned_versioned_config(colour, monkeypatch):
    assert PINNED_CONFIG.startswith("ocio://") and "default" not in PINNED_CONFIG and "-v" in PINNED_CONFIG
    assert colour.config_path == PINNED_CONFIG
    assert colour.plate_space == "ACEScg"  # the studio config's scene_linear role
    assert "sRGB" in colour.encoded_space


def test_ocio_env_is_honoured_and_bad_config_is_one_line(monkeypatch):
    monkeypatch.setenv("OCIO", "/nowhere/config.ocio")
    with pytest.raises(FaceRestoreError, match="/nowhere/config.ocio") as info:
        ColourPipeline.create()
    assert "\n" not in str(info.value)


def test_named_plate_space_changes_the_encoding():
    srgb_linear = ColourPipeline.create(plate_space="Linear Rec.709 (sRGB)")
    grey = np.full((1, 1, 3), 0.18, np.float32)
    # Linear sRGB 0.18 encodes to the familiar ~0.46 code value.
    assert abs(float(srgb_linear.encode(grey)[0, 0, 0]) - 0.4613) < 2e-3


def test_unknown_colourspace_is_an_error():
    with pytest.raises(FaceRestoreError, match="unknown colourspace"):
        ColourPipeline.create(plate_space="No Such Space")


def test_the_whole_frame_finiteness_check_is_exact():
    frame = np.random.default_rng(0).random((64, 96, 3), dtype=np.float32)
    assert all_finite(frame) and nonfinite_mask(frame) is None
    for bad in (np.nan, np.inf, -np.inf):
        spoiled = frame.copy()
        spoiled[5, 7, 2] = bad
        assert not all_finite(spoiled)
        assert np.argwhere(nonfinite_mask(spoiled)).tolist() == [[5, 7]]
    # Finite values whose sum overflows (and cancel to NaN) are still finite.
    huge = np.full((64, 96, 3), 3e38, np.float32)
    huge[::2] *= -1
    assert all_finite(huge) and nonfinite_mask(huge) is None


def test_a_half_plate_is_finite_exactly_when_no_value_is_nan_or_infinite():
    """A half frame is checked as stored (its exponent bits), in bands of rows: every non-finite
    half pattern is caught wherever it lies, and a view sees only its own channels."""
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    finite, special = every[np.isfinite(every)], every[~np.isfinite(every)]
    plate = np.resize(finite, 300 * 70 * 4).reshape(300, 70, 4)  # the extremes (+-65504) included
    assert all_finite(plate) and all_finite(plate[..., :3]) and nonfinite_mask(plate[..., :3]) is None
    rng = np.random.default_rng(3)
    for value in rng.choice(special, 40):
        spoiled = plate.copy()
        y, x = rng.integers(0, 300), rng.integers(0, 70)
        spoiled[y, x, rng.integers(0, 3)] = value
        assert not all_finite(spoiled[..., :3])
        assert np.argwhere(nonfinite_mask(spoiled[..., :3])).tolist() == [[y, x]]
    alpha_only = plate.copy()
    alpha_only[5, 5, 3] = np.inf
    assert all_finite(alpha_only[..., :3]) and not all_finite(alpha_only)
