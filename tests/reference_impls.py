"""The reference implementations published on PyPI, for parity tests of our own architectures.

`gfpgan` 1.3.8 (wheel), `basicsr` 1.4.2 (sdist) and `codeformer-pip` 0.0.4 (sdist, CodeFormer's
code under the S-Lab licence, used here only to test against) are downloaded once with pip
(sha256-pinned) into the user cache, and only their architecture modules are imported, from the
unpacked files: the packages' `__init__` modules pull in datasets, training code and facexlib,
none of which a forward pass needs. Two imports are given placeholders, and only those:
`torchvision`, which basicsr's `arch_util` imports for deformable convolutions that GFPGAN never
calls (no torchvision build loads beside torch 2.13 CPU), and `get_root_logger` (logging only).
The code that computes the reference outputs is the published code, unchanged.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import sys
import tarfile
import tempfile
import types
import zipfile
from pathlib import Path

from facerestore.models.datasets import pypi_file
from facerestore.models.weights import cache_dir

GFPGAN_WHEEL = (
    "gfpgan==1.3.8",
    "gfpgan-1.3.8-py3-none-any.whl",
    "3d8386df6320aa9dfb0dd4cd09d9f8ed12ae0bbd9b2df257c3d21aefac5d8b85",
)
BASICSR_SDIST = (
    "basicsr==1.4.2",
    "basicsr-1.4.2.tar.gz",
    "b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87",
)
CODEFORMER_SDIST = (
    "codeformer-pip==0.0.4",
    "codeformer-pip-0.0.4.tar.gz",
    "b0f7e1bcf9003b2abcf714265b83ec9b6cf30c2243e5a56f4c4f8d42a0262045",
)


def _install_unpacked(staging: Path, root: Path) -> None:
    if root.exists():  # a partial unpack from an interrupted run
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(root)


def _unpacked_sources() -> Path:
    root = cache_dir() / "reference" / "gfpgan-1.3.8-basicsr-1.4.2"
    if (root / "gfpgan" / "archs" / "gfpganv1_clean_arch.py").is_file() and (root / "basicsr").is_dir():
        return root
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "staging"
        with zipfile.ZipFile(pypi_file(GFPGAN_WHEEL, Path(tmp))) as wheel:
            wheel.extractall(staging, [n for n in wheel.namelist() if n.startswith("gfpgan/")])
        with tarfile.open(pypi_file(BASICSR_SDIST, Path(tmp))) as sdist:
            members = [m for m in sdist.getmembers() if m.name.startswith("basicsr-1.4.2/basicsr/")]
            sdist.extractall(staging / "sdist", members, filter="data")
        (staging / "sdist" / "basicsr-1.4.2" / "basicsr").rename(staging / "basicsr")
        _install_unpacked(staging, root)
    return root


def _codeformer_sources() -> Path:
    root = cache_dir() / "reference" / "codeformer-pip-0.0.4"
    if (root / "codeformer" / "basicsr" / "archs" / "codeformer_arch.py").is_file():
        return root
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(pypi_file(CODEFORMER_SDIST, Path(tmp))) as sdist:
            prefix = "codeformer-pip-0.0.4/codeformer/basicsr/"
            members = [m for m in sdist.getmembers() if m.name.startswith(prefix)]
            sdist.extractall(Path(tmp) / "staging", members, filter="data")
        _install_unpacked(Path(tmp) / "staging" / "codeformer-pip-0.0.4", root)
    return root


def codeformer_reference_class():
    """The published `CodeFormer` class."""
    root = _codeformer_sources() / "codeformer"
    if "codeformer.basicsr.archs.codeformer_arch" not in sys.modules:
        _package("codeformer", root)
        _package("codeformer.basicsr", root / "basicsr")
        _package(
            "codeformer.basicsr.utils",
            root / "basicsr" / "utils",
            get_root_logger=lambda *a, **k: logging.getLogger("codeformer"),
        )
        _package("codeformer.basicsr.archs", root / "basicsr" / "archs")
    return importlib.import_module("codeformer.basicsr.archs.codeformer_arch").CodeFormer


def _package(name: str, path: Path, **attributes) -> None:
    """A package whose submodules load from `path` without running its `__init__`."""
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    module.__dict__.update(attributes)
    sys.modules[name] = module


def gfpgan_reference_class():
    """The official `GFPGANv1Clean` class."""
    root = _unpacked_sources()
    if "gfpgan.archs.gfpganv1_clean_arch" not in sys.modules:
        sys.modules.setdefault("torchvision", types.SimpleNamespace(__version__="0.0.0"))
        _package("basicsr", root / "basicsr")
        _package(
            "basicsr.utils", root / "basicsr" / "utils", get_root_logger=lambda *a, **k: logging.getLogger("basicsr")
        )
        _package("basicsr.archs", root / "basicsr" / "archs")
        _package("gfpgan", root / "gfpgan")
        _package("gfpgan.archs", root / "gfpgan" / "archs")
    return importlib.import_module("gfpgan.archs.gfpganv1_clean_arch").GFPGANv1Clean
