import json

import numpy as np
import pytest
import torch

from facerestore.models.errors import ModelError
from facerestore.models.restorer import (
    OnnxRestorer,
    TorchRestorer,
    converted_weights_path,
    ensure_converted_weights,
    ensure_onnx,
    make_restorer,
)
from facerestore.models.rrdbnet import RRDBNet
from facerestore.models.weights import REALESR_ANIMEVIDEO_V3, REALESRGAN_X4PLUS, RESTORERS, PackagedFile, sha256_file


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
    truncated = PackagedFile(source.distribution, source.version, source.path, source.sha256, source.size - 1)
    with pytest.raises(ModelError, match="bytes, expected"):
        truncated.verified_path()


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


# RRDBNet (realesrgan-x4plus, 64 MB) takes most of this test's time: in the full suite only.
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if RESTORERS[n].kind == "rrdbnet" else n for n in sorted(RESTORERS)],
)
def test_every_built_in_network_exports_to_onnx_matching_pytorch_on_a_real_face(name):
    from facerestore.plugin.demo import astronaut_srgb

    face = astronaut_srgb()[40:200:2, 160:288:2]  # 80x64 crop of the astronaut's face
    batch = np.stack([face, face[:, ::-1]]).astype(np.float32)
    # A window restorer's neighbours: the face moved a pixel, and the face itself.
    neighbours = [np.roll(batch, 1, axis=2), batch][: 2 * (RESTORERS[name].frames // 2)]
    batch = np.concatenate([batch, *neighbours], axis=3)
    torch_out = TorchRestorer(name, "cpu")(batch)
    onnx_out = OnnxRestorer(name, "cpu")(batch)
    scale = RESTORERS[name].scale
    assert onnx_out.shape == torch_out.shape == (2, 80 * scale, 64 * scale, 3)
    assert np.abs(onnx_out - torch_out).max() < 1e-4
    path = ensure_onnx(RESTORERS[name])
    assert json.loads(path.with_suffix(".onnx.json").read_text())["sha256"] == sha256_file(path)
    assert isinstance(make_restorer(name, "cpu"), OnnxRestorer)


def test_compact_network_converts_from_ncnn_with_its_prelu_slopes():
    import cv2

    from facerestore.models.compact import CompactNet
    from facerestore.plugin.demo import astronaut_srgb

    state = torch.load(ensure_converted_weights(REALESR_ANIMEVIDEO_V3), weights_only=True)
    net = CompactNet()
    net.load_state_dict(state, strict=True)
    slopes = state["body.1.weight"]
    assert slopes.shape == (64,) and slopes.std() > 0.05  # read from the file, not PReLU's 0.25 default
    clean = cv2.resize(astronaut_srgb(), (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32)
    small = cv2.resize(clean, (64, 64), interpolation=cv2.INTER_AREA)
    with torch.inference_mode():
        out = net(torch.from_numpy(small).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()

    def psnr(image):
        return 10 * np.log10(1 / np.mean((image - clean) ** 2))

    # Misplaced blobs give noise (< 15 dB); the real network lands near bicubic (22.0 vs 22.7 dB).
    assert psnr(out) > psnr(cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC)) - 1.5


def test_make_restorer_gives_the_backend_asked_for():
    assert isinstance(make_restorer("realesrgan-x4plus", "cpu", "torch"), TorchRestorer)
    with pytest.raises(ModelError, match="backend"):
        make_restorer("realesrgan-x4plus", "cpu", "tensorflow")


def test_restorers_of_one_model_share_one_session_and_one_network():
    first, second = (
        make_restorer("realesrgan-x4plus", "cpu", "onnx"),
        make_restorer("realesrgan-x4plus", "cpu", "onnx"),
    )
    assert first.session is second.session
    assert TorchRestorer("realesr-animevideov3-x4", "cpu").net is TorchRestorer("realesr-animevideov3-x4", "cpu").net
    assert make_restorer("realesr-animevideov3-x4", "cpu", "onnx").session is not first.session


def test_gpu_providers_are_refused_clearly_where_onnxruntime_has_none(monkeypatch):
    import onnxruntime as ort

    from facerestore.models.device import onnx_providers

    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        monkeypatch.setenv("FACERESTORE_TENSORRT", "1")
        if "TensorrtExecutionProvider" in ort.get_available_providers():
            assert onnx_providers("cuda")[0][0] == "TensorrtExecutionProvider"
        else:
            with pytest.raises(ModelError, match="TensorRT"):
                onnx_providers("cuda")
    else:
        with pytest.raises(ModelError, match="no CUDA provider"):
            onnx_providers("cuda")


def test_cache_files_are_replaced_whole_and_readable_as_the_umask_allows(tmp_path):
    import os

    from facerestore.models.weights import replaced_atomically, write_atomically

    target = tmp_path / "weights.pth"
    write_atomically(target, b"first")
    with pytest.raises(RuntimeError), replaced_atomically(target) as tmp:
        tmp.write_bytes(b"half-writ")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["weights.pth"]
    umask = os.umask(0o022)
    try:
        write_atomically(target, b"second")
    finally:
        os.umask(umask)
    # A render farm's shared cache: other accounts must be able to read what one wrote.
    assert target.read_bytes() == b"second" and target.stat().st_mode & 0o777 == 0o644
