"""Choosing where inference runs. Asking for CUDA where there is none is an error, never a
silent fall back to the CPU."""

from __future__ import annotations

import os
import sys

from facerestore.models.errors import ModelError
from facerestore.models.weights import cache_dir

DEVICE_CHOICES = ("auto", "cpu", "cuda")


# Device nodes of the NVIDIA driver on Linux (and WSL's GPU bridge): without any of them no
# process here can reach a CUDA GPU.
CUDA_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


def no_cuda_driver() -> bool:
    """True where no CUDA GPU can be reached (Linux without the driver's device nodes): a CPU
    render then never imports PyTorch, whose import alone takes seconds on 2 cores."""
    return sys.platform == "linux" and not any(os.path.exists(node) for node in CUDA_DEVICE_NODES)


def resolve_torch_device(requested: str) -> str:
    if requested not in DEVICE_CHOICES:
        raise ModelError(f"unknown device {requested!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if requested == "cpu" or (requested == "auto" and no_cuda_driver()):
        return "cpu"
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            "CUDA was requested (--device cuda) but this PyTorch build sees no CUDA GPU "
            f"(torch {torch.__version__}); use --device cpu or install the CUDA build via set-up"
        )
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def onnx_providers(device: str) -> list:
    """ONNX Runtime providers for a resolved device ('cpu' or 'cuda').

    On a GPU: CUDA, with TensorRT (fp16, engines cached in the user cache) in front of it when
    FACERESTORE_TENSORRT=1. TensorRT is opt-in because it builds an engine per input shape on
    first use (minutes), which a one-off render would not win back."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise ModelError(
            "CUDA was requested but onnxruntime has no CUDA provider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu via set-up"
        )
    providers: list = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if os.environ.get("FACERESTORE_TENSORRT") == "1":
        if "TensorrtExecutionProvider" not in available:
            raise ModelError(
                "FACERESTORE_TENSORRT=1 but onnxruntime has no TensorRT provider "
                "(install TensorRT and onnxruntime-gpu with TensorRT support, or unset it)"
            )

        engines = cache_dir() / "tensorrt"
        engines.mkdir(parents=True, exist_ok=True)
        options = {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(engines)}
        providers.insert(0, ("TensorrtExecutionProvider", options))
    return providers
