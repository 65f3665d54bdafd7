"""The restoration network behind the face node: weights conversion, caching and inference."""

from __future__ import annotations

import io
import json
import logging
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from facerestore.models import byo
from facerestore.models.byo import _unwrap
from facerestore.models.device import onnx_providers
from facerestore.models.errors import ModelError
from facerestore.models.ncnn_import import read_layer_weights
from facerestore.models.weights import (
    RESTORERS,
    RestorerWeights,
    cache_dir,
    sha256_file,
    write_atomically,
)

log = logging.getLogger(__name__)


def converted_weights_path(entry: RestorerWeights) -> Path:
    # The source checksum is in the name, so new upstream weights never reuse a stale file.
    return cache_dir() / "weights" / f"{entry.name}-{entry.sources[-1].sha256[:8]}.pth"


def network_for(entry: RestorerWeights):
    """An untrained network of the entry's architecture."""
    if entry.frames != 1 and entry.kind not in ("compact", "compact-context"):
        raise ModelError(f"{entry.name}: only compact networks take a window of frames")
    if entry.kind == "rrdbnet":
        from facerestore.models.rrdbnet import RRDBNet

        return RRDBNet()
    if entry.kind == "compact":
        from facerestore.models.compact import CompactNet

        return CompactNet(frames=entry.frames)
    if entry.kind == "compact-context":
        from facerestore.models.compact import ContextCompactNet

        return ContextCompactNet(frames=entry.frames)
    if entry.kind == "face-resolution":
        from facerestore.models.compact import FaceResolutionNet

        return FaceResolutionNet()
    raise ModelError(f"{entry.name}: unknown network kind {entry.kind!r}")


def convert_ncnn(entry: RestorerWeights) -> dict:
    """ncnn convolution and PReLU blobs, in file order, onto the network's modules in order."""
    import torch

    param_path, bin_path = (source.verified_path() for source in entry.sources)
    blobs = read_layer_weights(param_path, bin_path)
    net = network_for(entry)
    modules = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.PReLU)]
    if len(modules) != len(blobs):
        raise ModelError(f"{entry.name}: {len(blobs)} ncnn weight layers for {len(modules)} network layers")
    name_of = {module: name for name, module in net.named_modules()}
    state = {}
    for module, blob in zip(modules, blobs):
        names = ("weight", "bias") if isinstance(module, torch.nn.Conv2d) else ("weight",)
        if len(blob) != len(names) or tuple(module.weight.shape) != blob[0].shape:
            raise ModelError(f"{entry.name}: ncnn blob {blob[0].shape} does not fit {name_of[module]}")
        for key, array in zip(names, blob):
            state[f"{name_of[module]}.{key}"] = torch.from_numpy(array)
    return state


def cached_and_intact(path: Path, record_path: Path) -> bool:
    """A cache file is used only while it matches the checksum recorded when it was written."""
    if not (path.is_file() and record_path.is_file()):
        return False
    return json.loads(record_path.read_text()).get("sha256") == sha256_file(path)


def ensure_converted_weights(entry: RestorerWeights) -> Path:
    """Convert once into the user cache; later runs verify the cached file's checksum."""
    if entry.source_format == "pth":
        return entry.sources[0].verified_path()
    path = converted_weights_path(entry)
    record_path = path.with_suffix(".json")
    if cached_and_intact(path, record_path):
        return path
    import torch  # only to convert: importing it costs seconds that a cached file does not need

    state = convert_ncnn(entry)
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


def onnx_path(entry: RestorerWeights) -> Path:
    return converted_weights_path(entry).with_suffix(".onnx")


def ensure_onnx(entry: RestorerWeights) -> Path:
    """Export the converted network to ONNX once (dynamic batch and size), with a checksum record."""
    path = onnx_path(entry)
    record_path = path.with_suffix(".onnx.json")
    if cached_and_intact(path, record_path):
        return path
    # Only to export: importing torch takes seconds (2.5 s on 2 CPU cores), which every CLI
    # render and every OpenFX worker paid before its first frame even with the file cached.
    import torch

    net = build_network(entry.name).eval()
    buffer = io.BytesIO()
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but exact for this network
        torch.onnx.export(
            net,
            (torch.rand(1, 3 * entry.frames, 32, 32),),
            buffer,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": dynamic, "output": dynamic},
            opset_version=17,
            dynamo=False,
        )
    write_atomically(path, buffer.getvalue())
    record = {
        "name": entry.name,
        "sha256": sha256_file(path),
        "licence": entry.licence,
        "from": str(converted_weights_path(entry)),
    }
    write_atomically(record_path, json.dumps(record, indent=2).encode())
    return path


def registry_entry(name: str) -> RestorerWeights:
    if name not in RESTORERS:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(sorted(RESTORERS))}")
    return RESTORERS[name]


def build_network(name: str):
    """The named network with its verified weights loaded strictly (in training mode)."""
    import torch

    entry = registry_entry(name)
    net = network_for(entry)
    state = torch.load(ensure_converted_weights(entry), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net


def make_restorer(name: str, device: str, backend: str = "auto", fidelity: float = 0.7):
    """A registry model by name, else a user's model from the search path (`models.byo`).

    `auto`: ONNX Runtime on the CPU for registry models (measured 0.68x PyTorch's time on a 128 px
    face crop, outputs within 1e-6), PyTorch with fp16 on a GPU; a user's file runs in the
    backend its format needs. `fidelity` is CodeFormer's weight (0 = quality, 1 = fidelity)."""

    if backend not in ("auto", "torch", "onnx"):
        raise ModelError(f"unknown backend {backend!r}; choose auto, torch or onnx")
    if name not in RESTORERS:
        user = byo.find(name)
        if user is None:
            users = ", ".join(p.stem for p in byo.available()) or "none on FACERESTORE_MODEL_PATHS or in the cache"
            raise ModelError(f"unknown model {name!r}; built in: {', '.join(sorted(RESTORERS))}; yours: {users}")
        if user.non_commercial:
            log.warning("note: model %r: %s", user.name, user.licence)
        onnx_kinds = ("face-onnx", "codeformer-onnx")
        if (backend == "onnx" and user.kind not in onnx_kinds) or (backend == "torch" and user.kind in onnx_kinds):
            raise ModelError(f"model {user.name!r} ({user.path.suffix} file) cannot run with --backend {backend}")
        if user.kind in onnx_kinds:
            return FaceOnnxRestorer(user, device, fidelity)
        return TorchRestorer(name, device, user, fidelity)
    if backend == "auto":
        backend = "onnx" if device == "cpu" else "torch"
    if backend == "onnx":
        return OnnxRestorer(name, device)
    return TorchRestorer(name, device)


def _file_stamp(path: Path) -> tuple[str, int, int]:
    """Cache key for a model file: a replaced file (new size or time) gets a new session."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _onnx_session(path: Path, device: str):
    return _cached_onnx_session(_file_stamp(path), device)


# One session per model file and device in the process: the OpenFX worker holds a node per
# parameter set, and every node of the same model shares the session (loading costs seconds
# and hundreds of MB). ONNX Runtime sessions are safe to run from several threads.
@lru_cache(maxsize=8)
def _cached_onnx_session(stamp: tuple[str, int, int], device: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(stamp[0], options, providers=onnx_providers(device))


@lru_cache(maxsize=8)
def _cached_torch_network(name: str, device: str, user_stamp: tuple | None, user):
    """One network per model and device in the process, in inference form (fp16 on a GPU)."""
    import torch

    net = (build_network(name) if user is None else user_network(user)).eval().to(torch.device(device))
    if torch.device(device).type == "cuda":
        net = net.half()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


def check_channels(name: str, batch: np.ndarray, frames: int) -> None:
    if batch.ndim != 4 or batch.shape[-1] != 3 * frames:
        raise ModelError(
            f"model {name!r} takes (N, H, W, {3 * frames}) crops ({frames} frame(s) of RGB); got {tuple(batch.shape)}"
        )


class OnnxRestorer:
    """One ONNX Runtime session per process and device, reused for every frame."""

    def __init__(self, name: str, device: str) -> None:
        self.entry = registry_entry(name)
        self.scale, self.input_size = self.entry.scale, self.entry.input_size
        self.frames = self.entry.frames
        self.scale_ensemble = self.entry.scale_ensemble
        self.device = device
        self.session = _onnx_session(ensure_onnx(self.entry), device)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3 * frames) float32 in [0, 1] -> (N, scale*H, scale*W, 3) float32 in [0, 1]."""
        check_channels(self.entry.name, batch, self.frames)
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        y = self.session.run(None, {"input": x})[0]
        return np.clip(y, 0.0, 1.0).transpose(0, 2, 3, 1)


class TorchRestorer:
    """One network instance per process and device; loading costs seconds, so it is reused."""

    def __init__(self, name: str, device: str, user=None, fidelity: float = 0.7) -> None:
        import torch

        self.device, self.name = torch.device(device), name
        if user is None:
            entry = registry_entry(name)
            self.scale, self.input_size, self.frames = entry.scale, entry.input_size, entry.frames
            self.scale_ensemble = entry.scale_ensemble
        else:
            self.scale, self.input_size, self.frames = user.scale, user.input_size, user.frames
            self.scale_ensemble = False
        # Face models (GFPGAN, CodeFormer) work in [-1, 1]; the x4 restorers in [0, 1].
        self.signed = self.input_size is not None
        # CodeFormer's weight travels with each call, so one shared network serves every fidelity.
        self.extra_args = (fidelity,) if user is not None and user.kind == "codeformer" else ()
        # fp16 halves memory and doubles throughput on a GPU; on the CPU it is slower and less exact.
        self.half = self.device.type == "cuda"
        stamp = None if user is None else _file_stamp(user.path)
        self.net = _cached_torch_network(name, str(self.device), stamp, user)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3 * frames) float32 in [0, 1] -> (N, scale*H, scale*W, 3) float32 in [0, 1]."""
        import torch

        check_channels(self.name, batch, self.frames)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(self.device)
            if self.signed:
                x = x * 2 - 1
            if self.half:
                x = x.half()
            y = self.net(x, *self.extra_args).float()
            y = (y.clamp_(-1, 1) + 1) / 2 if self.signed else y.clamp_(0, 1)
            return y.permute(0, 2, 3, 1).cpu().numpy()


def user_network(user):
    """A user's .pth loaded strictly into our architecture for its kind."""
    import torch

    state = _unwrap(torch.load(user.path, map_location="cpu", weights_only=True))
    if user.kind == "gfpgan":
        from facerestore.models.gfpgan import GFPGAN

        net = GFPGAN(out_size=user.input_size)
    elif user.kind == "codeformer":
        from facerestore.models.codeformer import CodeFormer

        net = CodeFormer()
    elif user.kind == "rrdbnet":
        from facerestore.models.rrdbnet import RRDBNet

        net = RRDBNet()
    else:
        from facerestore.models.compact import CompactNet

        body = sorted({int(k.split(".")[1]) for k in state})
        net = CompactNet(
            num_feat=state["body.0.weight"].shape[0],
            num_conv=(len(body) - 3) // 2,
            upscale=user.scale,
            frames=user.frames,
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"{user.path}: weights do not fit the {user.kind} architecture ({str(exc).splitlines()[0]})"
        ) from None
    return net


class FaceOnnxRestorer:
    """A user's ONNX face restorer: fixed square input, RGB in [-1, 1] (GFPGAN, GPEN-BFR,
    RestoreFormer++), plus the fidelity weight for CodeFormer exports."""

    scale, frames, scale_ensemble = 1, 1, False

    def __init__(self, user, device: str, fidelity: float) -> None:
        self.user, self.input_size = user, user.input_size
        self.session = _onnx_session(user.path, device)
        inputs = self.session.get_inputs()
        self.image_input = inputs[0].name
        self.extra = {}
        if len(inputs) == 2:
            dtype = np.float64 if "double" in inputs[1].type else np.float32
            self.extra[inputs[1].name] = np.array([fidelity] if inputs[1].shape else fidelity, dtype)
        # Exports with a fixed batch of 1 run face by face.
        self.per_face = inputs[0].shape[0] == 1

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) * 2 - 1
        if self.per_face:
            y = np.concatenate(
                [self.session.run(None, {self.image_input: x[i : i + 1]} | self.extra)[0] for i in range(len(x))]
            )
        else:
            y = self.session.run(None, {self.image_input: x} | self.extra)[0]
        return ((np.clip(y, -1, 1) + 1) / 2).astype(np.float32).transpose(0, 2, 3, 1)
