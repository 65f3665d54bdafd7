"""Re-grain: give a restored face back the plate's noise, so it does not sit in the shot as a
clean, plastic patch.

The plate's noise is measured where it is put back (inside the face matte), as a 3x3 colour
covariance of a high-pass residual: the Laplacian-like kernel below cancels planes and gentle
gradients, so on smooth skin what it passes is mostly noise. Medians keep edges (eyes, mouth)
from counting as grain. Only what the restored pixels lack is added (plate minus restored
covariance), so a restorer that kept some noise is not given twice as much.

The noise is seeded by the plate's own pixels under the face, so a frame rendered alone, on a
farm or through the OpenFX worker gets the same grain as in a full render, and each frame gets
new grain, as film and sensors do. The grain is white (one value per plate pixel): the spatial
character of coarse film grain or of codec-smeared noise is not matched.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

# Responds to noise, not to planes; its L2 norm is 6, so the response over 6 has the noise's scale.
_HIGH_PASS = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32) / 6.0
_MAD_TO_SIGMA = 1.4826
MIN_SAMPLES = 64


def noise_covariance(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """3x3 covariance of the noise of `image` (H, W, 3) over the pixels where `where` is true."""
    residual = cv2.filter2D(image.astype(np.float32), -1, _HIGH_PASS, borderType=cv2.BORDER_REFLECT)
    inner = where.copy()
    inner[[0, -1], :] = False  # the kernel's border rows and columns see reflected pixels
    inner[:, [0, -1]] = False
    samples = residual[inner]
    if len(samples) < MIN_SAMPLES:
        return np.zeros((3, 3), np.float64)
    sigma = _MAD_TO_SIGMA * np.median(np.abs(samples - np.median(samples, 0)), 0)
    # Correlations between channels (luma grain is correlated, chroma grain is not) from the
    # samples that look like noise: within 2.5 sigma in every channel.
    calm = samples[(np.abs(samples) <= 2.5 * np.maximum(sigma, 1e-6)).all(1)]
    if len(calm) < MIN_SAMPLES or (sigma <= 0).any():
        return np.diag(sigma.astype(np.float64) ** 2)
    correlation = np.corrcoef(calm.T.astype(np.float64))
    return correlation * np.outer(sigma, sigma)


def missing_grain(plate: np.ndarray, restored: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Covariance of the noise the restored pixels lack against the plate (positive semi-definite)."""
    values, vectors = np.linalg.eigh(noise_covariance(plate, where) - noise_covariance(restored, where))
    return (vectors * np.clip(values, 0.0, None)) @ vectors.T


def grain(shape: tuple[int, int], covariance: np.ndarray, seed_pixels: np.ndarray, salt: int = 0) -> np.ndarray:
    """Gaussian colour noise with `covariance`, seeded by the bytes of `seed_pixels`."""
    digest = hashlib.blake2b(np.ascontiguousarray(seed_pixels).tobytes(), digest_size=8, key=str(salt).encode())
    rng = np.random.default_rng(int.from_bytes(digest.digest(), "little"))
    values, vectors = np.linalg.eigh(covariance)
    mixing = vectors * np.sqrt(np.clip(values, 0.0, None))
    white = rng.standard_normal((*shape, 3), dtype=np.float32)
    return (white @ mixing.T.astype(np.float32)).astype(np.float32)
