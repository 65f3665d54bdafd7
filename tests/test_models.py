import json

import numpy as np
import pytest
import torch

from facerestore.models.errors import ModelError
from facerestore.models.restorer import TorchRestorer, converted_weights_path, ensure_converted_weights
from facerestore.models.rrdbnet import RRDBNet
from facerestore.models.weights import REALESRGAN_X4PLUS, PackagedFile, sha256_file


def test_converted_weights_load_strictly_with_a_checksum_record():
    path = ensure_converted_weights(REALESRGAN_X4PLUS)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == sha256_file(path) and "BSD-3" in record["licence"]
    state = torch.load(path, weights_only=True)
    RRDBNet().load_state_dict(state, strict=True)
    assert sum(v.numel() for v in state.values()) == 16_697_987  # RRDBNet x4plus parameter count


def test_a_tampered_cache_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("FACERESTORE_CACHE", str(tmp_path))
    path = ensure_converted_weights(REALESRGAN_X4PLUS)
    good = sha256_file(path)
    path.write_bytes(b"tampered")
    assert ensure_converted_weights(REALESRGAN_X4PLUS) == path and sha256_file(path) == good
    assert converted_weights_path(REALESRGAN_X4PLUS).parent == tmp_path / "weights"


def test_source_checksum_mismatch_is_refused():
    source = REALESRGAN_X4PLUS.sources[0]
    wrong = PackagedFile(source.distribution, source.version, source.path, "0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch"):
        wrong.verified_path()
    with pytest.raises(ModelError, match="not installed"):
        PackagedFile("no-such-dist-xyz", "1", "x", "0" * 64).locate()


def test_restorer_upscales_and_improves_a_blurred_edge():
    restorer = TorchRestorer("realesrgan-x4plus", "cpu")
    x = np.zeros((1, 16, 16, 3), np.float32)
    x[:, :, 8:] = 1.0
    import cv2

    soft = cv2.GaussianBlur(x[0], (0, 0), 1.2)[None]
    y = restorer(soft)
    assert y.shape == (1, 64, 64, 3) and y.min() >= 0.0 and y.max() <= 1.0
    profile = y[0, 32, :, 0]
    # A real network sharpens the step: the transition spans fewer pixels than the blurred input.
    assert (
        np.count_nonzero((profile > 0.1) & (profile < 0.9))
        < np.count_nonzero((soft[0, 8, :, 0] > 0.1) & (soft[0, 8, :, 0] < 0.9)) * 4
    )
