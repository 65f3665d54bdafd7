"""The GPU path. These tests run only where PyTorch sees a CUDA GPU (and ONNX Runtime has its
CUDA provider); on a CPU-only machine they are skipped, and `test_cli.py` checks instead that
asking for CUDA there fails with a clear message."""

import numpy as np
import pytest
import torch

from facerestore.models.restorer import make_restorer
from facerestore.models.weights import DEFAULT_RESTORER
from facerestore.nodes.face_restore import FaceRestoreNode

from helpers import faces_plate

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_onnx_runtime_runs_the_restorer_on_the_cuda_provider():
    restorer = make_restorer(DEFAULT_RESTORER, "cuda", "onnx")
    assert restorer.session.get_providers()[0] == "CUDAExecutionProvider"
    crop = np.random.default_rng(0).random((2, 64, 64, 3 * restorer.frames), dtype=np.float32)
    on_cpu = make_restorer(DEFAULT_RESTORER, "cpu", "onnx")(crop)
    assert np.abs(restorer(crop) - on_cpu).max() < 1e-3


def test_pytorch_fp16_on_the_gpu_stays_close_to_the_cpu():
    restorer = make_restorer(DEFAULT_RESTORER, "cuda", "torch")
    assert restorer.half and next(restorer.net.parameters()).dtype == torch.float16
    crop = np.random.default_rng(1).random((4, 128, 128, 3 * restorer.frames), dtype=np.float32)
    on_cpu = make_restorer(DEFAULT_RESTORER, "cpu", "torch")(crop)
    assert np.abs(restorer(crop) - on_cpu).mean() < 2e-3


def test_a_gpu_render_matches_the_cpu_render_closely(colour):
    plate = faces_plate(colour)
    on_gpu = FaceRestoreNode(colour, "cuda").process(plate)
    on_cpu = FaceRestoreNode(colour, "cpu").process(plate)
    assert on_gpu.matte.max() > 0.9
    assert np.array_equal(on_gpu.rgb[on_cpu.matte == 0], plate[on_cpu.matte == 0])
    inside = on_cpu.matte > 0.5
    assert np.abs(on_gpu.rgb[inside] - on_cpu.rgb[inside]).mean() < 2e-3
