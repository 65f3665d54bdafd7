"""The restoration network behind the face node: weights conversion, caching and inference."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from facerestore.models.errors import ModelError
from facerestore.models.weights import (
    RESTORERS,
    RestorerWeights,
    cache_dir,
    sha256_file,
    write_atomically,
)


def converted_weights_path(entry: RestorerWeights) -> Path:
    # The source checksum is in the name, so new upstream weights never reuse a stale file.
    return cache_dir() / "weights" / f"{entry.name}-{entry.sources[-1].sha256[:8]}.pth"


def convert_realesrgan_ncnn(entry: RestorerWeights) -> dict:
    import torch

    from facerestore.models.ncnn_import import read_conv_weights
    from facerestore.models.rrdbnet import RRDBNet

    param_path, bin_path = (source.verified_path() for source in entry.sources)
    convs = read_conv_weights(param_path, bin_path)
    net = RRDBNet()
    modules = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    if len(modules) != len(convs):
        raise ModelError(f"{entry.name}: {len(convs)} ncnn convolutions for {len(modules)} network layers")
    name_of = {module: name for name, module in net.named_modules()}
    state = {}
    for module, (weight, bias) in zip(modules, convs):
        if tuple(module.weight.shape) != weight.shape:
            raise ModelError(f"{entry.name}: shape {weight.shape} does not fit {name_of[module]}")
        state[f"{name_of[module]}.weight"] = torch.from_numpy(weight)
        state[f"{name_of[module]}.bias"] = torch.from_numpy(bias)
    return state


def ensure_converted_weights(entry: RestorerWeights) -> Path:
    """Convert once into the user cache; later runs verify the cached file's checksum."""
    import torch

    path = converted_weights_path(entry)
    record_path = path.with_suffix(".json")
    if path.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("sha256") == sha256_file(path):
            return path
    state = convert_realesrgan_ncnn(entry)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, buffer.getvalue())
    record = {
        "name": entry.name,
        "sha256": sha256_file(path),
        "licence": entry.licence,
        "sources": [f"{s.distribution}=={s.version}:{s.path} sha256={s.sha256}" for s in entry.sources],
    }
    write_atomically(record_path, json.dumps(record, indent=2).encode())
    return path


class TorchRestorer:
    """One network instance per process and device; loading costs seconds, so it is reused."""

    def __init__(self, name: str, device: str) -> None:
        import torch

        from facerestore.models.rrdbnet import RRDBNet

        if name not in RESTORERS:
            raise ModelError(f"unknown model {name!r}; available: {', '.join(sorted(RESTORERS))}")
        self.entry = RESTORERS[name]
        self.device = torch.device(device)
        self.scale = self.entry.scale
        net = RRDBNet()
        state = torch.load(ensure_converted_weights(self.entry), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        self.net = net.eval().to(self.device)
        # fp16 halves memory and doubles throughput on a GPU; on the CPU it is slower and less exact.
        self.half = self.device.type == "cuda"
        if self.half:
            self.net = self.net.half()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float32 in [0, 1] -> (N, 4H, 4W, 3) float32 in [0, 1]."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(self.device)
            if self.half:
                x = x.half()
            y = self.net(x).float().clamp_(0, 1)
            return y.permute(0, 2, 3, 1).cpu().numpy()
