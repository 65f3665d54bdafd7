"""Colour through OpenColorIO.

The restorer and the detector were trained on display-referred sRGB images, so plates are
encoded into that space for them, and the restorer's change is mapped back to scene linear
before it is added to the plate. Processors are built lossless: the round trip must be exact
to well under a code value, including values far above 1.0.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import PyOpenColorIO as OCIO

from facerestore.nodes.errors import FaceRestoreError

# A versioned built-in config, never `ocio://default`, which moves between OCIO releases.
PINNED_CONFIG = "ocio://studio-config-v2.2.0_aces-v1.3_ocio-v2.4"
# Names of an sRGB-encoded Rec.709 colourspace in common configs, most specific first.
SRGB_ENCODED_NAMES = (
    "sRGB Encoded Rec.709 (sRGB)",
    "sRGB - Texture",
    "Utility - sRGB - Texture",
    "srgb_tx",
    "sRGB",
)


def resolve_config_path(explicit: str | None) -> str:
    """--ocio, then $OCIO, then the pinned built-in config."""
    return explicit or os.environ.get("OCIO") or PINNED_CONFIG


def load_config(path: str) -> OCIO.Config:
    try:
        return OCIO.Config.CreateFromFile(path)
    except (OCIO.Exception, OCIO.ExceptionMissingFile) as exc:  # multi-line text; users get its first line
        reason = str(exc).strip().split("\n")[0]
        raise FaceRestoreError(f"cannot load OCIO config {path}: {reason}") from None


def all_finite(values: np.ndarray) -> bool:
    """No NaN or infinity anywhere. NaN and infinities survive a sum, so one sum answers for a
    whole frame (4K: ~10 ms, against ~120 ms for a per-pixel mask); only a sum that is not finite
    (a non-finite value, or finite values so large that they overflow) is checked value by value."""
    if values.dtype == np.float16:  # a half plate as stored: non-finite is an exponent of all ones
        bits = values.view(np.uint16)
        # In bands of rows: each band's temporary stays in the cache (4K: ~6 ms against ~14 ms).
        return all(
            int(np.bitwise_and(bits[y : y + 64], 0x7FFF).max(initial=0)) < 0x7C00 for y in range(0, len(bits), 64)
        )
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum is expected, then checked
        total = float(np.add.reduce(values, axis=None))
    return math.isfinite(total) or bool(np.isfinite(values).all())


def nonfinite_mask(linear_rgb: np.ndarray) -> np.ndarray | None:
    """(H, W) True where a pixel has a non-finite channel; None when there is none (the usual case)."""
    return None if all_finite(linear_rgb) else ~np.isfinite(linear_rgb).all(axis=2)


def neutralise_nonfinite(linear_rgb: np.ndarray) -> np.ndarray:
    """A float32 copy with NaN and -inf as 0 and +inf as a value every display encoding clamps to
    white (1e6: beyond half's range, so a half plate is made float first)."""
    return np.nan_to_num(np.asarray(linear_rgb, np.float32), nan=0.0, posinf=1e6, neginf=0.0)


# Below this many pixels per band a transform runs in one call (threads would cost more than they save).
PIXELS_PER_BAND = 1 << 18


@functools.cache
def colour_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count for the process (pipelines are made per render and per host node)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="facerestore-colour")


@dataclass
class ColourPipeline:
    """Plate colourspace <-> the restorer's display-referred encoding."""

    config_path: str
    plate_space: str
    encoded_space: str
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)  # for large images (see _apply)

    @classmethod
    def create(
        cls, config: str | None = None, plate_space: str | None = None, encoded_space: str | None = None
    ) -> ColourPipeline:
        path = resolve_config_path(config)
        cfg = load_config(path)
        plate = plate_space or cfg.getRoleColorSpace("scene_linear")
        if not plate:
            raise FaceRestoreError(
                f"OCIO config {path} has no scene_linear role; name the plate's space with --colorspace"
            )
        if cfg.getColorSpace(plate) is None:
            raise FaceRestoreError(f"unknown colourspace {plate!r} in OCIO config {path}")
        if encoded_space and cfg.getColorSpace(encoded_space) is None:
            raise FaceRestoreError(
                f"unknown colourspace {encoded_space!r} in OCIO config {path} (--restore-colorspace)"
            )
        encoded = encoded_space or next((n for n in SRGB_ENCODED_NAMES if cfg.getColorSpace(n)), None)
        if encoded is None:
            encoded = cfg.getRoleColorSpace("color_picking")
        if not encoded or cfg.getColorSpace(encoded) is None:
            raise FaceRestoreError(
                f"OCIO config {path} has no sRGB-encoded colourspace for the restorer; name one with --restore-colorspace"
            )
        pipeline = cls(path, cfg.getColorSpace(plate).getName(), cfg.getColorSpace(encoded).getName())
        pipeline._build(cfg)
        return pipeline

    def identity(self) -> str:
        """What the networks and the detector see depends on: the two spaces and the exact
        transform between them (a config edited in place changes this too)."""

        transform = hashlib.sha256(self._encode.getCacheID().encode()).hexdigest()[:16]
        return f"{self.config_path} | {self.plate_space} -> {self.encoded_space} | {transform}"

    def _build(self, cfg: OCIO.Config) -> None:
        lossless = OCIO.OPTIMIZATION_LOSSLESS
        self._encode = cfg.getProcessor(self.plate_space, self.encoded_space).getOptimizedCPUProcessor(lossless)
        self._decode = cfg.getProcessor(self.encoded_space, self.plate_space).getOptimizedCPUProcessor(lossless)

    def _apply(self, processor, rgb: np.ndarray) -> np.ndarray:
        out = np.array(rgb, dtype=np.float32, order="C", copy=True)
        flat = out.reshape(-1, 3)
        # Each pixel is transformed on its own, so bands of rows in threads (OCIO releases the
        # interpreter lock while it works) give the same values as one call: a detector's
        # reduced 4K frame (2.4 Mpx) is encoded on every core. Small regions stay in one call.
        bands = min(self.threads, len(flat) // PIXELS_PER_BAND)
        if bands < 2:
            processor.applyRGB(flat)
            return out
        edges = np.linspace(0, len(flat), bands + 1).astype(int)
        list(colour_pool(self.threads).map(lambda i: processor.applyRGB(flat[edges[i] : edges[i + 1]]), range(bands)))
        return out

    def encode(self, linear_rgb: np.ndarray) -> np.ndarray:
        """Plate values -> display-referred encoding (not clamped)."""
        return self._apply(self._encode, linear_rgb)

    def display(self, linear_rgb: np.ndarray) -> np.ndarray:
        """What the networks (detector and restorer) and contact sheets see: display-encoded and
        clamped to [0, 1]. The one policy for non-finite plate values: NaN and -inf as 0, +inf as
        the brightest value (1 after clamping). The output leaves those pixels untouched."""
        # A finite image (the usual case, told by one sum) is encoded without a neutralised copy first.
        encoded = self.encode(linear_rgb if all_finite(linear_rgb) else neutralise_nonfinite(linear_rgb))
        return np.clip(encoded, 0.0, 1.0, out=encoded)

    def decode(self, encoded_rgb: np.ndarray) -> np.ndarray:
        """Display-referred encoding -> plate values."""
        return self._apply(self._decode, encoded_rgb)
