"""Choosing where inference runs. Asking for CUDA where there is none is an error, never a
silent fall back to the CPU."""

from __future__ import annotations

from facerestore.models.errors import ModelError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_torch_device(requested: str) -> str:
    import torch

    if requested not in DEVICE_CHOICES:
        raise ModelError(f"unknown device {requested!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            "CUDA was requested (--device cuda) but this PyTorch build sees no CUDA GPU "
            f"(torch {torch.__version__}); use --device cpu or install the CUDA build via set-up"
        )
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def onnx_providers(device: str) -> list[str]:
    """ONNX Runtime providers for a resolved device ('cpu' or 'cuda')."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelError(
                "CUDA was requested but onnxruntime has no CUDA provider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu via set-up"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
