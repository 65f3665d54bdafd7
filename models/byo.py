"""Bring-your-own restorers: face models studios already keep, found by name on a search path.

Search path: each folder of `FACERESTORE_MODEL_PATHS` (separated like PATH), then the user
cache's `models/` folder, where `facerestore models import FILE` copies a file with a checksum
record. A model's name is its file name without the extension; `--model` also takes a path.

Recognised from the file's contents, never from its name:
- `.pth` state dicts: GFPGAN v1.3 / v1.4 (clean architecture), CodeFormer (with its fidelity
  weight), Real-ESRGAN RRDBNet x4, Real-ESRGAN compact (SRVGG) networks;
- `.onnx` graphs of 512 px (or other square) FFHQ-aligned face restorers taking RGB in [-1, 1]:
  GFPGAN, GPEN-BFR, RestoreFormer++; and CodeFormer exports, whose second input is the fidelity
  weight.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from facerestore.models.errors import ModelError
from facerestore.models.weights import cache_dir, replaced_atomically, sha256_file, write_atomically

EXTENSIONS = (".pth", ".onnx")

LICENCES = {
    "gfpgan": "GFPGAN weights (TencentARC): Apache-2.0 per their repository, with StyleGAN2-derived parts under "
    "NVIDIA's source code licence; check before commercial use",
    "rrdbnet": "Real-ESRGAN-format weights: licence of their source (Real-ESRGAN's own are BSD-3-Clause)",
    "compact": "Real-ESRGAN-format weights: licence of their source (Real-ESRGAN's own are BSD-3-Clause)",
    "face-onnx": "licence of the exported model (GFPGAN: Apache-2.0/NVIDIA parts; GPEN: non-commercial unless "
    "licensed from Alibaba; RestoreFormer++: see its authors); check before commercial use",
    "codeformer": "CodeFormer weights: S-Lab License 1.0, NON-COMMERCIAL use only",
    "codeformer-onnx": "CodeFormer weights: S-Lab License 1.0, NON-COMMERCIAL use only",
}


@dataclass(frozen=True)
class UserModel:
    name: str
    path: Path
    kind: str  # gfpgan | codeformer | rrdbnet | compact | face-onnx | codeformer-onnx
    input_size: int | None  # fixed square input (face models), or None for x4 crops sized to the face
    scale: int
    licence: str
    frames: int = 1  # a window restorer's frames (compact networks trained by `facerestore train`)

    @property
    def non_commercial(self) -> bool:
        return "NON-COMMERCIAL" in self.licence.upper()


def search_paths() -> list[Path]:
    folders = [Path(p) for p in os.environ.get("FACERESTORE_MODEL_PATHS", "").split(os.pathsep) if p]
    return folders + [cache_dir() / "models"]


def _unwrap(state: dict) -> dict:
    for key in ("params_ema", "params", "state_dict"):
        if isinstance(state.get(key), dict):
            return state[key]
    return state


def identify(path: Path, name: str | None = None) -> UserModel:
    """What kind of restorer a file holds, from its contents."""
    name = name or path.stem
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    if path.suffix == ".pth":
        import torch

        try:
            state = _unwrap(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:
            raise ModelError(f"{path}: not a PyTorch state dict ({type(exc).__name__})") from None
        keys = set(state)
        if {"conv_body_first.weight", "stylegan_decoder.style_conv1.modulated_conv.weight"} <= keys:
            return UserModel(name, path, "gfpgan", 512, 1, LICENCES["gfpgan"])
        if {"conv_first.weight", "body.0.rdb1.conv1.weight", "conv_last.weight"} <= keys:
            return UserModel(name, path, "rrdbnet", None, 4, LICENCES["rrdbnet"])
        if "body.0.weight" in keys and "body.1.weight" in keys and state["body.1.weight"].ndim == 1:
            last = state[f"body.{max(int(k.split('.')[1]) for k in keys)}.weight"]
            scale = round((last.shape[0] / 3) ** 0.5)
            channels = state["body.0.weight"].shape[1]  # a window restorer takes its neighbours too
            frames = channels // 3
            if channels % 3 or frames % 2 == 0:
                raise ModelError(
                    f"{path}: {channels} input channels; a compact network takes 3 per frame, an odd number of frames"
                )
            return UserModel(name, path, "compact", None, scale, LICENCES["compact"], frames)
        if {"quantize.embedding.weight", "position_emb", "idx_pred_layer.1.weight"} <= keys:
            return UserModel(name, path, "codeformer", 512, 1, LICENCES["codeformer"])
        raise ModelError(f"{path}: unrecognised network (not GFPGAN, CodeFormer or Real-ESRGAN weights)")
    if path.suffix == ".onnx":
        import onnx

        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception as exc:
            raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
        initialisers = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in initialisers]
        dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if inputs else []
        if len(dims) != 4 or dims[1] not in (0, 3):
            raise ModelError(f"{path}: expected an image input (N, 3, H, W); found {dims}")
        size = dims[2] or dims[3] or 512
        if len(inputs) == 2:
            return UserModel(name, path, "codeformer-onnx", size, 1, LICENCES["codeformer-onnx"])
        if len(inputs) == 1:
            return UserModel(name, path, "face-onnx", size, 1, LICENCES["face-onnx"])
        raise ModelError(f"{path}: {len(inputs)} inputs; expected the image (and CodeFormer's fidelity weight)")
    raise ModelError(f"{path}: unsupported model file type (use .pth or .onnx)")


def find(name: str) -> UserModel | None:
    """A user model by name on the search path, or by file path."""
    as_path = Path(name)
    if as_path.suffix in EXTENSIONS and as_path.is_file():
        return identify(as_path)
    if os.sep in name and as_path.exists():
        # A path the user meant as a model: say what is wrong with it, not "unknown model".
        raise ModelError(f"{name}: not a model file (a .pth or .onnx face restorer)")
    for folder in search_paths():
        for extension in EXTENSIONS:
            candidate = folder / f"{name}{extension}"
            if candidate.is_file():
                verify_import_record(candidate)
                return identify(candidate, name)
    return None


def available() -> list[Path]:
    found = []
    for folder in search_paths():
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.suffix in EXTENSIONS and not p.name.startswith("."))
    return found


def record_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".json")


def verify_import_record(path: Path) -> None:
    """Imported files carry the checksum taken at import; a changed file is refused."""
    record = record_path(path)
    if record.is_file() and json.loads(record.read_text()).get("sha256") != sha256_file(path):
        raise ModelError(f"{path} changed since it was imported (checksum mismatch); import it again")


def import_model(source: Path, name: str | None = None) -> UserModel:
    """Copy a recognised model file into the cache's models folder, with a checksum record."""
    model = identify(source, name)
    target = cache_dir() / "models" / f"{model.name}{source.suffix}"
    if target.resolve() == source.resolve():
        raise ModelError(f"{source} is already in the model cache")
    digest = sha256_file(source)
    if target.is_file() and sha256_file(target) != digest:
        raise ModelError(f"a different model named {model.name!r} is already imported ({target}); use --name")
    with replaced_atomically(target) as tmp:
        shutil.copyfile(source, tmp)  # streamed: face models run to hundreds of MB
    record = {"name": model.name, "kind": model.kind, "sha256": digest, "licence": model.licence, "from": str(source)}
    write_atomically(record_path(target), json.dumps(record, indent=2).encode())
    return identify(target, model.name)
