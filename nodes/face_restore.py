"""The FaceRestore node: finds faces in a scene-linear plate, restores them, and composites the
restorer's change back under a soft face matte.

    out = plate + strength * matte * (linear(restored) - linear(encoded plate))

The restorer sees the plate in a display-referred encoding clamped to [0, 1]; only its change
is mapped back to linear and added, so values above 1.0 and below 0 survive, and every pixel the
matte does not cover is returned bit-identical.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Protocol

import cv2
import numpy as np

from facerestore.models import byo
from facerestore.models.detector import RetinaFaceDetector
from facerestore.models.flow import align_window, window_input
from facerestore.models.restorer import make_restorer
from facerestore.models.weights import DEFAULT_RESTORER, RESTORERS
from facerestore.nodes.align import (
    affine_scale,
    choose_face_resolution_size,
    choose_input_size,
    desqueeze,
    face_matte,
    footprint_of,
    input_transform,
    invert_affine,
    scaled_template_transform,
    transform_points,
    warp_to_face,
)
from facerestore.nodes.colour import ColourPipeline, all_finite, neutralise_nonfinite, nonfinite_mask
from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.exr_io import as_float32
from facerestore.nodes.faces import FaceResult
from facerestore.nodes.grain import grain, missing_grain
from facerestore.nodes.spec import HostControl, NodeSpec, Param
from facerestore.nodes.temporal import fuse, fuse_outputs

FACE_RESTORE = NodeSpec(
    id="com.facerestore.FaceRestore",
    # 1.1: colour_tolerance and pixel_aspect added; keep_colour_radius 2.5 -> 2, matte_feather 0.12 -> 0.1.
    # 1.2: the default model is the window restorer (facerestore-face-x4-window).
    # 1.3: the default model is that restorer trained on more varied faces (facerestore-face-x4-varied).
    # 1.4: ensemble "flip+scale" (a coarse second pass), what auto picks for the default model.
    # 1.5: the default model is that restorer taught to leave nearly clean plates alone
    # (facerestore-face-x4-faithful); a 1.4 shot re-renders as it was with facerestore-face-x4-varied.
    # 1.6: flip+scale averages the coarse pass in below its own resolution only; ensemble
    # "flip+scale-even" (1.5's blend, at every scale) re-renders a 1.4 / 1.5 shot whose ensemble
    # was flip+scale (or auto with the faithful or varied model) as it was.
    # 1.7: a x4 restorer's input crop (and its neighbours') sampled cubic, not bilinear: the
    # networks learned from area-reduced crops, and a bilinear crop was softer than those (held-out
    # people, v3: mild -0.10 -> +0.24 dB); and the default model is facerestore-face-x4-v3 (216
    # more people). `--model facerestore-face-x4-faithful --crop-sampling linear` re-renders a 1.6
    # shot as it was.
    version=(1, 7),
    label="FaceRestore",
    hint="Restores the faces in a scene-linear plate and outputs a soft face matte; other pixels are untouched.",
    params=(
        Param(
            "strength", "Strength", "How much of the restorer's change is applied (0 = plate, 1 = full).", 1.0, 0.0, 1.0
        ),
        Param(
            "model",
            "Model",
            "Restoration network: a built-in name or one of yours (`facerestore models list`), or a .pth/.onnx path.",
            DEFAULT_RESTORER,
        ),
        Param(
            "backend",
            "Inference backend",
            "auto: ONNX Runtime on the CPU, PyTorch (fp16) on a GPU; or force torch or onnx.",
            "auto",
            choices=("auto", "torch", "onnx"),
        ),
        Param(
            "fidelity",
            "CodeFormer fidelity",
            "CodeFormer models only: 0 favours restored quality, 1 favours the plate's identity.",
            0.7,
            0.0,
            1.0,
        ),
        Param(
            "matte_feather",
            "Matte feather",
            "Width of the matte's soft edge, as a fraction of the face size; up to 0.1 it lies wholly outside the "
            "face, wider feathers also eat inward.",
            # 0.1: the whole face at full weight. Bench suite (seed 0): +0.01 to +0.03 dB on every case
            # against 0.12, identity the same or higher.
            0.1,
            0.0,
            0.5,
        ),
        Param(
            "pixel_aspect",
            "Pixel aspect",
            "Width over height of the plate's pixels (2 for a 2x anamorphic plate, 0.25-4); faces are found "
            "and restored desqueezed. 0: the EXR header's PixelAspectRatio, or the host clip's (square without one).",
            0.0,
            0.0,
            4.0,
        ),
        Param(
            "keep_colour_radius",
            "Keep plate colour below (px)",
            "The plate's own colour and tone are kept below this blur radius in plate pixels (to within the colour "
            "tolerance) and the restorer adds detail above it; this prevents colour shifts. 0 takes the restorer's "
            "colour too, less its mean shift per face.",
            2.0,
            0.0,
            32.0,
        ),
        Param(
            "colour_tolerance",
            "Colour tolerance",
            "How far the restorer may move the plate's colour and tone below the keep-colour radius, in "
            "display-encoded values (0-1): smaller changes (codec blocks and noise it removed) stay, a larger "
            "tone shift is brought back to within it. 0 keeps the plate's colour exactly.",
            0.0075,
            0.0,
            0.1,
        ),
        Param(
            "regrain",
            "Re-grain",
            "Adds back the plate's measured noise where the restorer removed it (0 = off, 1 = the plate's level).",
            0.0,
            0.0,
            1.0,
        ),
        Param(
            "temporal_window",
            "Temporal window",
            "Frames fused around each frame (odd; 1 = per-frame restoration, no temporal fusion).",
            5,
            1,
            15,
        ),
        Param(
            "ensemble",
            "Ensemble",
            "flip: restore each face and its mirror image and average them; flip+scale: also restore it reduced "
            "to a coarser scale (1/2.5 of its size) and average that in below that scale's resolution, which helps "
            "most on soft, compressed or downscaled plates (x4 networks only). Each pass costs restore time. auto: "
            "flip+scale for the networks it was measured with (the default, faithful and varied), flip "
            "for other networks, off for 512 px face models (GFPGAN, CodeFormer...). flip+scale-even: the coarse "
            "pass averaged in at every scale, as node spec 1.4 and 1.5 did (re-renders such a shot as it was where "
            "its ensemble was flip+scale, or auto with the faithful or varied model).",
            "auto",
            # Appended, never inserted: hosts save a choice by its index.
            choices=("auto", "flip", "off", "flip+scale", "flip+scale-even"),
        ),
        Param("tracks", "Faces", "Track IDs to restore, e.g. 1,3; empty restores every face.", ""),
        Param(
            "track_strengths",
            "Per-face strength",
            "Strength per track ID, e.g. 1=0.5,3=0.8; faces not named use Strength.",
            "",
        ),
        Param(
            "detection_threshold",
            "Detection threshold",
            "Minimum face detector confidence.",
            0.8,
            0.05,
            0.999,
        ),
        Param(
            "crop_sampling",
            "Crop sampling",
            "How a x4 restorer's face crop is sampled from the plate: cubic (node spec 1.7: as sharp as the crops "
            "the networks learned from) or linear (bilinear, as node spec 1.6 and before did; re-renders such a "
            "shot as it was). Face-resolution (x1) restorers always sample cubic.",
            "cubic",
            # Appended, never inserted: hosts save a choice by its index.
            choices=("cubic", "linear"),
        ),
    ),
)

# What a host node adds around the node's own parameters: how the result is returned, the
# plate's colourspace and a shot analysis. The OpenFX plug-in and the host adapters show them; the
# CLI has them as render options (--output, --colorspace, --analysis).
OUTPUT_MODES = ("both", "restored", "mask")


@dataclass(frozen=True)
class OutputPlanes:
    """What an output mode hands back: the restored RGB (else the matte in its place) and the
    matte (an alpha or a channel; else the plate's own alpha)."""

    restored_rgb: bool
    matte: bool


def output_planes(mode: str) -> OutputPlanes:
    """The one reading of the Output parameter / `--output`, for the CLI's EXR parts and the
    OpenFX worker's RGBA (the C plug-in's constants are generated from OUTPUT_MODES)."""
    if mode not in OUTPUT_MODES:
        raise FaceRestoreError(f"output must be one of {', '.join(OUTPUT_MODES)}, not {mode!r}")
    return OutputPlanes(restored_rgb=mode != "mask", matte=mode != "restored")


def pack_rgba(mode: str, rgb: np.ndarray, matte: np.ndarray, plate_alpha: np.ndarray, out: np.ndarray) -> None:
    """A host's RGBA result in `out`: `output_planes(mode)` as four channels."""
    planes = output_planes(mode)
    out[..., :3] = rgb if planes.restored_rgb else matte[..., None]
    out[..., 3] = matte if planes.matte else plate_alpha


HOST_PARAMS = (
    Param(
        "output",
        "Output",
        "both: restored RGB with the face matte in alpha; restored: RGB, plate alpha; mask: the matte.",
        "both",
        choices=OUTPUT_MODES,
    ),
    Param(
        "colorspace", "Plate colourspace", "OCIO colourspace of the plate; empty = the config's scene_linear role.", ""
    ),
    Param(
        "analysis",
        "Analysis file",
        "The shot's analysis (tracks, smoothed landmarks), written by Analyse shot or `facerestore render`; "
        "empty = previews until the shot is analysed.",
        "",
    ),
)

# What a host node shows beside them: the shot's analysis on demand, and what the frames are.
HOST_CONTROLS = (
    HostControl(
        "analyse_shot",
        "Analyse shot",
        "Track the faces over the whole clip once (the host's progress bar; cancel keeps what the node had) "
        "and store it in Analysis file (empty: a new file in facerestore's cache). Until then frames are "
        "previews tracked over their own window; after it every frame equals `facerestore render`'s.",
        "button",
    ),
    HostControl(
        "analysis_status",
        "Status",
        "Whether the frames are previews or the analysed shot; written by the node.",
        "status",
        "Not analysed: frames are previews (faces tracked over each frame's own window). Press Analyse shot.",
    ),
)

PIXEL_ASPECT_RANGE = (0.25, 4.0)
MAX_BATCH = 16
# The scale ensemble's second pass sees each face reduced this much from its plate size (sides
# in steps of 16 px, at least 32). A x4 restorer restores a plate that is soft at its own
# resolution best when it sees the face reduced 2-3x (its training inputs), a sharp one best
# near 1x. The average of both passes came within 0.08 dB of the better one under every
# degradation tried (x1 to x4, both held-out clips) and at most 0.01 dB under the main pass,
# where either pass alone lost up to 0.47 dB (see README, Models). Skipped when it would be over
# 0.8 of the main crop's side: nearly the same scale again, at nearly the full cost.
COARSE_REDUCTION = 2.5
COARSE_MAX_SHARE = 0.8
# The coarse pass is averaged in below a Gaussian of this many pixels of its output (on the main
# output's grid: this x main / coarse crop side); above it the main pass stands alone, so a sharp
# plate keeps the detail the reduction threw away. Measured on the bench suite (13 cases, seed 0,
# the faithful model; the record's `coarse_band_seed0`): 1 lifts the nearly clean plates by
# +0.10 (cap13) and +0.14 dB (franck) over an even average and costs the degraded settings up to
# 0.013 dB; 0.5 a third of the gain; 2 and 4 (with another change) more on the clean plates but
# up to 0.06 / 0.15 dB less on the degraded ones. Seed 2024: mild +0.10 / +0.12, the rest within
# 0.013.
COARSE_BAND = 1.0
# Shot analysis also keeps detections down to this confidence, and keeps a face found only at
# that level when it is tracked through several frames (`TrackerSettings.confirm_frames`): a
# small, dark or blurred face scores 0.5-0.8 frame after frame where a false hit does not last.
CANDIDATE_THRESHOLD = 0.5
# Detection sees at most this many pixels on the long side; larger plates are reduced first.
DETECT_MAX_SIDE = 2048


@dataclass
class CropJob:
    """One face of one frame on its way through the restorer: where it lies in the plate, its
    input crop (fused over the temporal window) and, once restored, the network's output."""

    track: int | None
    in_size: int  # side of the restorer's input crop
    out_size: int  # side of its output: in_size x the restorer's scale
    roi: tuple[slice, slice]  # the plate region under the face
    to_out_roi: np.ndarray  # that region's pixels -> output face space
    encoded_roi: np.ndarray  # the region as the networks see it (display-encoded, clamped)
    crop: np.ndarray  # the face's crop, fused over the temporal window
    own_crop: np.ndarray | None = None  # this frame's crop before temporal fusion
    window: np.ndarray | None = None  # a window restorer's input: own crop and aligned neighbours
    restored: np.ndarray | None = None


@dataclass
class RestoreResult:
    """A frame's result as the plate plus what changed: the restored pixels and the matte over
    the region around the faces only (a 4K frame is not copied for a face a few hundred pixels
    wide). `rgb` and `matte` give whole frames, made when first asked for."""

    plate: np.ndarray  # (H, W, 3) float32, plate space: the input, not copied
    faces: list[FaceResult]
    region: tuple[slice, slice] = (slice(0, 0), slice(0, 0))  # rows, columns around the faces
    region_rgb: np.ndarray | None = None  # (h, w, 3) the output over `region`
    region_matte: np.ndarray | None = None  # (h, w) the matte over `region`, in [0, 1]
    nonfinite_pixels: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    track_mattes: dict[int, np.ndarray] = field(default_factory=dict)

    @cached_property
    def rgb(self) -> np.ndarray:
        """(H, W, 3) float32, plate space: the plate with the restored region."""
        out = np.array(self.plate, dtype=np.float32, order="C", copy=True)
        if self.region_rgb is not None:
            out[self.region] = self.region_rgb
        return out

    @cached_property
    def matte(self) -> np.ndarray:
        """(H, W) float32 in [0, 1], exactly 0 away from faces."""
        out = np.zeros(self.plate.shape[:2], np.float32)
        if self.region_matte is not None:
            out[self.region] = self.region_matte
        return out


def parse_track_list(text: str) -> set[int] | None:
    if not text.strip():
        return None
    try:
        return {int(part) for part in text.replace(" ", "").split(",") if part}
    except ValueError:
        raise FaceRestoreError(f"cannot read track list {text!r}; expected e.g. 1,3") from None


def parse_track_strengths(text: str) -> dict[int, float]:
    strengths = {}
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            track, value = part.split("=")
            strengths[int(track)] = float(value)
        except ValueError:
            raise FaceRestoreError(f"cannot read per-face strengths {text!r}; expected e.g. 1=0.5,3=0.8") from None
        if not 0.0 <= strengths[int(track)] <= 1.0:
            raise FaceRestoreError(f"per-face strength for track {track} is outside 0..1")
    return strengths


def face_roi(shape: tuple, plate_to_face: np.ndarray, size: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """Plate region under the face-space square (plus a margin), and the transform from that
    region's pixels to face space."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    footprint = transform_points(invert_affine(plate_to_face), corners)
    h, w = shape[:2]
    x0, y0 = np.floor(footprint.min(0)).astype(int) - 2
    x1, y1 = np.ceil(footprint.max(0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
    return (slice(y0, y1), slice(x0, x1)), plate_to_face @ shift


def resample(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` at `size` (width, height): area-averaged where an axis shrinks, cubic where it
    grows; one axis at a time when one shrinks and the other grows (as on a desqueezed plate),
    so the shrinking axis does not alias."""
    h, w = image.shape[:2]
    if (size[0] <= w) == (size[1] <= h):
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA if size[0] <= w else cv2.INTER_CUBIC)
    if size[0] <= w:
        image = cv2.resize(image, (size[0], h), interpolation=cv2.INTER_AREA)
        return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    image = cv2.resize(image, (w, size[1]), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)


# Ensemble modes with the coarse scale pass.
SCALE_MODES = ("flip+scale", "flip+scale-even")


def ensemble_passes(mode: str, input_size: int | None, scale: int, measured: bool) -> tuple[bool, bool]:
    """(flip pass, coarse scale pass) of an ensemble mode for a restorer of this fixed input
    size (None: any), scale, and whether the coarse pass was `measured` with it (the registry's
    `scale_ensemble`): auto adds that pass only then; flip+scale asks for it on any x4 restorer
    that takes any crop size, and is refused on others."""
    if mode == "auto":
        return (False, False) if input_size else (True, measured)
    coarse = mode in SCALE_MODES
    if coarse and (input_size or scale != 4):
        raise FaceRestoreError(f"ensemble {mode} needs a x4 restorer that takes any crop size; use flip")
    return mode == "flip" or coarse, coarse


def coarse_blend(main: np.ndarray, coarse: np.ndarray, band_sigma: float | None) -> np.ndarray:
    """The main pass with the coarse pass (both on the output grid) averaged in: below a
    Gaussian of `band_sigma` output pixels only, or at every scale when it is None."""
    if band_sigma is None:
        return 0.5 * (main + coarse)
    return main + 0.5 * cv2.GaussianBlur(coarse - main, (0, 0), band_sigma)


def _reduced(crop: np.ndarray, size: int) -> np.ndarray:
    """A square crop of any number of 3-channel frames area-averaged to `size` (OpenCV resizes
    at most 4 channels at a time)."""
    planes = [crop[..., c : c + 3] for c in range(0, crop.shape[-1], 3)]
    return np.concatenate([cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA) for p in planes], axis=2)


def check_params(params: dict) -> None:
    """What the spec's ranges cannot say about resolved node parameters (the node refuses these
    when it starts; a farm job when it is written)."""
    if params["temporal_window"] % 2 == 0:
        raise FaceRestoreError("the temporal window must be odd (1, 3, 5, ...)")
    if not PIXEL_ASPECT_RANGE[0] <= (float(params["pixel_aspect"]) or 1.0) <= PIXEL_ASPECT_RANGE[1]:
        raise FaceRestoreError("the pixel aspect must be 0 (from the plate) or between 0.25 and 4")
    parse_track_list(params["tracks"])  # text the node reads when it starts: refused here when unreadable
    parse_track_strengths(params["track_strengths"])


def check_ensemble(params: dict) -> None:
    """An ensemble the model cannot run, refused from the model's registry entry or file before
    any network is loaded (a host re-asks on every render). A model not found here is left to
    whoever loads it."""
    if params["ensemble"] not in SCALE_MODES:
        return
    found = RESTORERS.get(params["model"]) or byo.find(params["model"])
    if found is not None:
        ensemble_passes(params["ensemble"], found.input_size, found.scale, getattr(found, "scale_ensemble", False))


class Restorer(Protocol):
    """What the node needs of a restorer: a batch of crops (N, S, S, 3 x frames, float32 in
    [0, 1]) in, (N, S x scale, S x scale, 3) out. `input_size`: its fixed input side, or None
    for any; `frames`: the window it reads (1: the centre frame alone)."""

    input_size: int | None
    scale: int
    frames: int

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


# The parameters that choose what a node loads: a variant that keeps them shares the networks.
RESTORER_PARAMS = ("model", "backend", "fidelity")
DETECTOR_PARAMS = ("detection_threshold",)


class FaceRestoreNode:
    """The node: its parameters are fixed once made (`params` is read-only). A variant is a new
    node from `with_params`, and the plates' pixel aspect comes in through `for_plates`, so
    nothing outside this package changes a node under a render that uses it."""

    def __init__(
        self,
        colour: ColourPipeline,
        device: str = "cpu",
        *,
        restorer: Restorer | None = None,
        detector: RetinaFaceDetector | None = None,
        **params,
    ) -> None:
        self.params = MappingProxyType(FACE_RESTORE.resolve(params))
        check_params(self.params)
        check_ensemble(self.params)
        self.selected_tracks = parse_track_list(self.params["tracks"])
        self.track_strengths = parse_track_strengths(self.params["track_strengths"])
        self.colour = colour
        self.device = device
        self.detector = detector or RetinaFaceDetector(
            device, score_threshold=min(self.params["detection_threshold"], CANDIDATE_THRESHOLD)
        )
        self.restorer = restorer or make_restorer(
            self.params["model"], device, self.params["backend"], fidelity=self.params["fidelity"]
        )
        self._mattes: dict[int, np.ndarray] = {}
        self._ensemble_passes(self.params["ensemble"])  # a mode this restorer cannot run is refused here
        # Width over height of the plate's pixels: the parameter, or the plates' header where it
        # is 0 (`for_plates`).
        self.pixel_aspect = float(self.params["pixel_aspect"]) or 1.0

    def with_params(self, **changes) -> FaceRestoreNode:
        """This node with some parameters changed; its restorer and detector are shared when
        the change leaves what chose them as it was."""
        params = dict(self.params) | changes
        resolved = FACE_RESTORE.resolve(params)
        same = lambda names: all(resolved[n] == self.params[n] for n in names)  # noqa: E731
        node = FaceRestoreNode(
            self.colour,
            self.device,
            restorer=self.restorer if same(RESTORER_PARAMS) else None,
            detector=self.detector if same(DETECTOR_PARAMS) else None,
            **resolved,
        )
        if resolved["pixel_aspect"] == self.params["pixel_aspect"]:
            node.pixel_aspect = self.pixel_aspect  # a plate aspect taken from a header stays
        return node

    def for_plates(self, plate_pixel_aspect: float) -> FaceRestoreNode:
        """This node for plates whose header gives this pixel aspect, which counts where the
        parameter is 0 (automatic); everything loaded is shared."""
        node = copy.copy(self)
        node.pixel_aspect = float(self.params["pixel_aspect"]) or plate_pixel_aspect
        return node

    @property
    def ensemble(self) -> tuple[bool, bool]:
        """(flip pass, coarse scale pass) of the ensemble parameter for the current restorer."""
        return self._ensemble_passes(self.params["ensemble"])

    def _ensemble_passes(self, mode: str) -> tuple[bool, bool]:
        restorer = self.restorer
        measured = bool(getattr(restorer, "scale_ensemble", False))
        return ensemble_passes(mode, restorer.input_size, restorer.scale, measured)

    def crop_sizes_for(self, footprint_px: float) -> tuple[int, int]:
        """The restorer's input side for a face of this plate footprint, and the scale
        ensemble's coarse side (0: no coarse pass)."""
        size = self.input_size_for(footprint_px)
        if not self.ensemble[1]:
            return size, 0
        coarse = max(32, int(np.ceil(footprint_px / COARSE_REDUCTION / 16.0)) * 16)
        return size, coarse if coarse <= COARSE_MAX_SHARE * size else 0

    def input_size_for(self, footprint_px: float) -> int:
        """Face models take their fixed input size; x1 restorers the face at its own resolution
        (up to 512 px); x4 restorers a crop a quarter of the size they return."""
        if self.restorer.input_size:
            return self.restorer.input_size
        if self.restorer.scale == 1:
            return choose_face_resolution_size(footprint_px)
        return choose_input_size(footprint_px)

    def _matte(self, size: int) -> np.ndarray:
        if size not in self._mattes:
            self._mattes[size] = face_matte(size, self.params["matte_feather"])
        return self._mattes[size]

    def detect(self, plate_rgb: np.ndarray) -> list[FaceResult]:
        return self.detect_with_image(plate_rgb)[2]

    def detect_with_image(
        self, plate_rgb: np.ndarray, candidates: bool = False, run_detector: bool = True, timings: dict | None = None
    ) -> tuple[np.ndarray, float | np.ndarray, list[FaceResult]]:
        """Faces, plus the display-encoded (possibly reduced) image the detector saw and its scale.
        `candidates`: also the faces below the detection threshold (down to CANDIDATE_THRESHOLD),
        for a tracker that confirms them over time. `run_detector=False`: the image and scale only.
        `timings` gets "detect: reduce + encode" (the frame made ready) and "detect" (the network)."""
        timings = timings if timings is not None else defaultdict(float)
        start = time.perf_counter()
        encoded, scale = self.detection_image(plate_rgb)
        ready = time.perf_counter()
        timings["detect: reduce + encode"] += ready - start
        faces = self.detect_in_image(encoded, scale, candidates) if run_detector else []
        timings["detect"] += time.perf_counter() - ready
        return encoded, scale, faces

    def detection_image(self, plate_rgb: np.ndarray) -> tuple[np.ndarray, float | np.ndarray]:
        """The display-encoded image the detector sees (reduced first when the plate is larger than
        it takes, so only the reduced image is colour-transformed) and its scale: image pixels per
        plate pixel (across and down on an anamorphic plate). Safe to run in a reading thread."""
        h, w = plate_rgb.shape[:2]
        aspect = self.pixel_aspect
        # The detector sees the plate desqueezed (an anamorphic plate's faces as they look).
        stretch_x, stretch_y = desqueeze(aspect)
        scale = min(1.0, DETECT_MAX_SIDE / max(h * stretch_y, w * stretch_x))
        size = (round(w * scale * stretch_x), round(h * scale * stretch_y))
        if size != (w, h):
            # Non-finite pixels would spread through the reduction: neutralised first (the
            # display policy), then the reduced frame, finite, is encoded.
            if not all_finite(plate_rgb):
                finite = neutralise_nonfinite(plate_rgb)
            else:  # a half plate made float for the reduction (in bands, on the IO threads)
                finite = as_float32(plate_rgb) if plate_rgb.dtype == np.float16 else plate_rgb
            reduced = resample(finite, size)
            encoded = np.clip(self.colour.encode(reduced), 0.0, 1.0, out=reduced)
        else:
            encoded = self.colour.display(plate_rgb)
        if aspect != 1.0:  # image pixels per plate pixel, across and down
            scale = np.array([size[0] / w, size[1] / h])
        return encoded, scale

    def detect_in_image(
        self, encoded: np.ndarray, scale: float | np.ndarray, candidates: bool = False, scales=None
    ) -> list[FaceResult]:
        """The detector on a `detection_image` (or a region's, `face_search`); faces in plate
        pixels. `scales`: as `RetinaFaceDetector.detect`."""
        faces = []
        threshold = 0.0 if candidates else self.params["detection_threshold"]
        for det in self.detector.detect(encoded, scales=scales):
            if det.score < threshold:
                continue
            # A square plate's scale stays one number: float32 landmarks stay float32.
            landmarks = det.landmarks / scale
            box = det.box / (np.tile(scale, 2) if np.ndim(scale) else scale)
            size, coarse = self.crop_sizes_for(footprint_of(landmarks, self.pixel_aspect))
            faces.append(FaceResult(box, det.score, landmarks, size, coarse_size=coarse))
        return faces

    def restore_crops(
        self, plate_rgb: np.ndarray, faces: list[FaceResult], neighbours=(), timings: dict | None = None
    ) -> list[CropJob]:
        """Per face: its (temporally fused) input crop and the restorer's output. `neighbours`:
        (plate, faces, offset) of the other frames of the temporal window, the offset counted in
        the shot's rendered frames (negative: earlier). All faces of the
        frame go through the network together, so a frame's outputs never depend on which other
        frame asked for them (what makes single-frame renders equal full renders)."""
        timings = timings if timings is not None else defaultdict(float)
        start = time.perf_counter()
        jobs = [self._prepare(plate_rgb, face) for face in faces]
        timings["prepare"] += time.perf_counter() - start
        frames = self.restorer.frames
        if neighbours:
            start = time.perf_counter()
            for job, face in zip(jobs, faces):
                job.own_crop = job.crop
                aligned = align_window(job.own_crop, self._window_crops(job, face, neighbours))
                job.crop = fuse(job.own_crop, aligned)
                if frames > 1:
                    job.window = window_input(job.own_crop, aligned, frames)
            timings["temporal"] += time.perf_counter() - start
        start = time.perf_counter()
        by_size: dict[int, list[int]] = defaultdict(list)
        for index, job in enumerate(jobs):
            by_size[job.in_size].append(index)
        for indices in by_size.values():
            for chunk in range(0, len(indices), MAX_BATCH):
                members = indices[chunk : chunk + MAX_BATCH]
                restored = self._restore(np.stack([self._network_input(jobs[i]) for i in members]))
                for i, crop in zip(members, restored):
                    jobs[i].restored = crop
        self._coarse_pass(jobs, faces)
        for job in jobs:
            job.window = None  # read only by the network; jobs are cached per frame
        timings["restore"] += time.perf_counter() - start
        return jobs

    def _coarse_pass(self, jobs: list[CropJob], faces: list[FaceResult]) -> None:
        """The scale ensemble: each face's network input reduced (area-averaged, as training
        reduced its faces) to its coarse side, restored, brought to the main output's grid and
        averaged with it, equal weights, below the coarse side's resolution (COARSE_BAND)."""
        if not self.ensemble[1]:  # faces sized by a node with the pass on get none from one with it off
            return
        even = self.params["ensemble"] == "flip+scale-even"
        by_size: dict[int, list[int]] = defaultdict(list)
        for index, face in enumerate(faces):
            size = self.crop_sizes_of(face)[1]
            if size:
                by_size[size].append(index)
        for size, indices in by_size.items():
            for chunk in range(0, len(indices), MAX_BATCH):
                members = indices[chunk : chunk + MAX_BATCH]
                inputs = [_reduced(self._network_input(jobs[i]), size) for i in members]
                restored = self._restore(np.stack(inputs))
                for i, crop in zip(members, restored):
                    out = jobs[i].out_size
                    coarse = np.clip(cv2.resize(crop, (out, out), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
                    band = None if even else COARSE_BAND * jobs[i].in_size / size
                    jobs[i].restored = coarse_blend(jobs[i].restored, coarse, band)

    def _network_input(self, job: CropJob) -> np.ndarray:
        """A single-frame restorer sees the fused crop; a window restorer the face's own crop and
        its aligned neighbours (itself in their place when there are none)."""
        if self.restorer.frames == 1:
            return job.crop
        if job.window is not None:
            return job.window
        return window_input(job.crop, {}, self.restorer.frames)

    def _restore(self, batch: np.ndarray) -> np.ndarray:
        """The restorer on a batch of crops; with the flip ensemble, also on their mirror images
        (one batch), the two averaged. Measured on the held-out clips with the single-frame x4 model:
        +0.06 dB (cap13) and +0.21 dB (franck) face PSNR for twice the restore time."""
        if not self.ensemble[0]:
            return self.restorer(batch)
        both = self.restorer(np.concatenate([batch, np.ascontiguousarray(batch[:, :, ::-1])]))
        n = len(batch)
        return 0.5 * (both[:n] + both[n:, :, ::-1])

    def in_frame(self, face: FaceResult, shape: tuple) -> bool:
        """Whether any plate pixel lies under the face's crop (a hand-edited or hand-added face
        can lie wholly outside the frame: there is nothing there to restore)."""
        out_size = self.crop_sizes_of(face)[0] * self.restorer.scale
        to_out = scaled_template_transform(face.landmarks, out_size, self.pixel_aspect)
        (rows, cols), _ = face_roi(shape, to_out, out_size)
        return rows.stop > rows.start and cols.stop > cols.start

    def select(self, faces: list[FaceResult]) -> list[FaceResult]:
        if self.selected_tracks is None:
            return faces
        return [f for f in faces if f.track in self.selected_tracks]

    def process(
        self, plate_rgb: np.ndarray, faces: list[FaceResult] | None = None, track_mattes: bool = False
    ) -> RestoreResult:
        """One frame on its own: detect (unless `faces` are given), restore, composite.
        `plate_rgb` is (H, W, 3) float32 in the plate colourspace. A shot goes through
        ShotRenderer instead, which restores each frame's crops once (`restore_crops`) and fuses
        them over the temporal window (`composite`)."""
        timings: dict[str, float] = defaultdict(float)
        if faces is None:
            faces = self.detect_with_image(plate_rgb, timings=timings)[2]
        faces = self.select(faces)
        jobs = self.restore_crops(plate_rgb, faces, (), timings) if faces else []
        return self.composite(plate_rgb, faces, jobs, (), track_mattes, timings)

    def composite(
        self,
        plate_rgb: np.ndarray,
        faces: list[FaceResult],
        jobs: list[CropJob],
        neighbour_jobs: list[list[CropJob]] = (),
        track_mattes: bool = False,
        timings: dict | None = None,
    ) -> RestoreResult:
        """The frame with its restored faces put back: `jobs` are its `restore_crops` result (one
        per face of `faces`), `neighbour_jobs` those of the other frames of its temporal window,
        whose outputs are fused with this frame's before compositing."""
        timings = timings if timings is not None else defaultdict(float)
        h, w = plate_rgb.shape[:2]
        # Whole-frame work kept to one sum when the frame is finite (the usual case).
        nonfinite_pixels = nonfinite_mask(plate_rgb)
        nonfinite = 0 if nonfinite_pixels is None else int(np.count_nonzero(nonfinite_pixels))
        if not faces:
            return RestoreResult(plate_rgb, [], nonfinite_pixels=nonfinite, timings=dict(timings))
        outputs = [job.restored for job in jobs]
        if neighbour_jobs:
            start = time.perf_counter()
            for k, job in enumerate(jobs):
                pairs = [
                    (other.crop, other.restored)
                    for frame_jobs in neighbour_jobs
                    for other in frame_jobs
                    if job.track is not None and other.track == job.track
                ]
                outputs[k] = fuse_outputs(job.crop, job.restored, pairs)
            timings["temporal"] += time.perf_counter() - start

        start = time.perf_counter()
        # Accumulate over the union of the face regions only, so compositing cost follows face area.
        y0 = min(job.roi[0].start for job in jobs)
        y1 = max(job.roi[0].stop for job in jobs)
        x0 = min(job.roi[1].start for job in jobs)
        x1 = max(job.roi[1].stop for job in jobs)
        delta_sum = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
        weight_sum = np.zeros((y1 - y0, x1 - x0), np.float32)
        per_track = {}
        region = (slice(y0, y1), slice(x0, x1))
        for job, output, face in zip(jobs, outputs, faces):
            strength = self.params["strength"] * self.track_strengths.get(face.track, 1.0)
            matte_roi = self._paste(job, output, delta_sum, weight_sum, (y0, x0), np.float32(strength))
            if track_mattes and face.track is not None:
                full = per_track.setdefault(face.track, np.zeros((h, w), np.float32))
                full[job.roi] = np.maximum(full[job.roi], matte_roi)
        coverage = weight_sum > 0
        if nonfinite_pixels is not None:
            coverage &= ~nonfinite_pixels[region]
        plate_region = plate_rgb[region]
        out_region = np.array(plate_region, dtype=np.float32, order="C", copy=True)
        change = delta_sum[coverage] / np.maximum(weight_sum[coverage], 1.0)[:, None]
        out_region[coverage] = plate_region[coverage] + change
        timings["composite"] += time.perf_counter() - start
        return RestoreResult(
            plate_rgb, faces, region, out_region, np.clip(weight_sum, 0.0, 1.0), nonfinite, dict(timings), per_track
        )

    def _window_crops(self, job: CropJob, face: FaceResult, neighbours) -> dict[int, np.ndarray]:
        """The same track's input crops in the neighbouring frames, by their offset from this one."""
        crops = {}
        for plate, others, offset in neighbours:
            match = next((f for f in others if f.track is not None and f.track == face.track), None)
            if match is None:
                continue
            to_out = scaled_template_transform(match.landmarks, job.out_size, self.pixel_aspect)
            crops[offset] = self._crop(plate, input_transform(to_out, self.restorer.scale), job.in_size)
        return crops

    def _crop_interpolation(self) -> int:
        """A x4 restorer's crop: cubic (crop_sampling), as sharp as the area-reduced crops the
        networks learned from, or bilinear as before node spec 1.7. A x1 restorer's crop is
        sampled exactly like the reference its change is measured against (cubic), so a restorer
        that changes nothing changes no pixel."""
        if self.restorer.scale == 1 or self.params["crop_sampling"] == "cubic":
            return cv2.INTER_CUBIC
        return cv2.INTER_LINEAR

    def _crop(self, plate_rgb: np.ndarray, plate_to_face: np.ndarray, size: int) -> np.ndarray:
        """Display-encoded face-space crop, encoding only the plate region it reads."""
        roi, to_face_roi = face_roi(plate_rgb.shape, plate_to_face, size)
        return warp_to_face(self._encode(plate_rgb[roi]), to_face_roi, size, self._crop_interpolation())

    def crop_sizes_of(self, face: FaceResult) -> tuple[int, int]:
        """The face's restorer input side and coarse side: its own where it has them (a shot's
        renderer sizes each track once), else those its landmarks call for."""
        if face.restore_size is not None and face.coarse_size is not None:
            return face.restore_size, face.coarse_size
        own = self.crop_sizes_for(footprint_of(face.landmarks, self.pixel_aspect))
        return (
            own[0] if face.restore_size is None else face.restore_size,
            own[1] if face.coarse_size is None else face.coarse_size,
        )

    def _prepare(self, plate_rgb: np.ndarray, face: FaceResult) -> CropJob:
        in_size = self.crop_sizes_of(face)[0]
        out_size = in_size * self.restorer.scale
        to_out = scaled_template_transform(face.landmarks, out_size, self.pixel_aspect)
        roi, to_out_roi = face_roi(plate_rgb.shape, to_out, out_size)
        encoded_roi = self._encode(plate_rgb[roi])
        crop = warp_to_face(
            encoded_roi, input_transform(to_out_roi, self.restorer.scale), in_size, self._crop_interpolation()
        )
        return CropJob(face.track, in_size, out_size, roi, to_out_roi, encoded_roi, crop)

    def encode(self, plate_region: np.ndarray) -> np.ndarray:
        """The plate (or a region of it) as the networks see it."""
        return self._encode(plate_region)

    def _encode(self, plate_region: np.ndarray) -> np.ndarray:
        """What the networks see (ColourPipeline.display: one policy for non-finite values)."""
        return self.colour.display(plate_region)

    def _keep_plate_tone(
        self, job: CropJob, restored: np.ndarray, reference: np.ndarray, face_per_plate_px: float
    ) -> np.ndarray:
        """The restored face with the plate's colour and tone (see keep_colour_radius)."""
        out_size = job.out_size
        sigma_plate = self.params["keep_colour_radius"]
        if sigma_plate > 0:
            # Plate colour and tone below the radius, restorer detail above it.
            sigma = sigma_plate * face_per_plate_px
            low = reference
            if job.own_crop is not None:
                # The temporal fusion's change to the input (noise and codec flicker removed), so the
                # kept low frequencies are as steady as the restored detail above them.
                steadier = cv2.resize(job.crop - job.own_crop, (out_size, out_size), interpolation=cv2.INTER_LINEAR)
                low = low + steadier
            # The restorer's departure from the plate below the radius. Within the tolerance it stays:
            # that is where the blocks and low-frequency noise the restorer removed live (a strict
            # lock put them back). Beyond it, a tone shift, it is taken back to the tolerance.
            # Measured on the bench suite (11 cases, seed 0; radius px / tolerance): the strict lock
            # (2.5 / 0) +0.75 dB mean face PSNR gain; 2 / 0.0075 +1.08 with every case up (cap13 dark
            # +0.66 -> +1.73, the large face +0.48 -> +0.63) and identity within 0.003; 2.5 / 0.01
            # +1.09 but the large face, whose forehead the network brightens, down to +0.19.
            departure = cv2.GaussianBlur(restored, (0, 0), sigma) - cv2.GaussianBlur(low, (0, 0), sigma)
            tolerance = np.float32(self.params["colour_tolerance"])
            restored = restored - departure + np.clip(departure, -tolerance, tolerance)
        else:
            # The face's average colour stays the plate's: a tone shift of the restorer is removed
            # without putting back the artefacts a spatial low-pass of the plate would carry.
            weights = self._matte(out_size)[..., None]
            shift = ((restored - reference) * weights).sum(axis=(0, 1)) / max(float(weights.sum()), 1e-6)
            restored = restored - shift.astype(np.float32)
        return restored

    def _paste(
        self,
        job: CropJob,
        restored: np.ndarray,
        delta_sum: np.ndarray,
        weight_sum: np.ndarray,
        origin: tuple[int, int],
        strength: np.float32,
    ) -> np.ndarray:
        """Add this face's matte-weighted change into buffers whose top-left is plate `origin`;
        returns the face's matte over its region of interest."""
        out_size, roi, to_out_roi, encoded_roi = job.out_size, job.roi, job.to_out_roi, job.encoded_roi
        face_per_plate_px = affine_scale(to_out_roi)
        # The plate on the restorer's output grid: only the change against it goes back into the
        # plate, so the plate's own detail never makes a resampling round trip (a face larger
        # than the restorer's crop keeps its detail above the crop's resolution).
        # Cubic both ways: the plate's round trip (up, then back down) then nearly returns the
        # plate, so the noise the restorer removed does not come back as the round trip's loss.
        reference = warp_to_face(encoded_roi, to_out_roi, out_size, cv2.INTER_CUBIC)
        restored = self._keep_plate_tone(job, restored, reference, face_per_plate_px)
        if face_per_plate_px > 1.25:
            # Going back down to plate resolution: low-pass the restored face first so its detail
            # does not alias. Not the reference: a low-passed reference would hand the plate's
            # finest band (its noise and block edges, which the restorer removed) back unchanged.
            restored = cv2.GaussianBlur(restored, (0, 0), 0.5 * (face_per_plate_px - 1.0))
        change = restored - reference
        input_per_plate_px = face_per_plate_px / self.restorer.scale
        if input_per_plate_px < 1.0 / 1.6:
            # A face larger than the biggest crop: the restorer saw it reduced, so the plate's own
            # detail above the crop's resolution stays, not replaced by what the restorer could
            # not see (on the bench's 450 px face: +0.03 dB with the colour lock, +0.09 without).
            sigma_plate_px = 0.5 * (1.0 / input_per_plate_px - 1.0)
            change = cv2.GaussianBlur(change, (0, 0), sigma_plate_px * face_per_plate_px)
        to_plate = invert_affine(to_out_roi)
        rh, rw = encoded_roi.shape[:2]
        change_roi = cv2.warpAffine(change, to_plate, (rw, rh), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        restored_roi = np.clip(encoded_roi + change_roi, 0.0, 1.0)
        matte_roi = cv2.warpAffine(self._matte(out_size), to_plate, (rw, rh), flags=cv2.INTER_LINEAR, borderValue=0.0)
        matte_roi[matte_roi < 1e-4] = 0.0  # interpolation dust is no coverage
        if self.params["regrain"] > 0:
            missing = missing_grain(encoded_roi, restored_roi, matte_roi > 0.5) * self.params["regrain"] ** 2
            salt = -1 if job.track is None else job.track
            restored_roi = restored_roi + grain(restored_roi.shape[:2], missing, encoded_roi, salt)
        # Both sides are decoded from the same clamped encoding, so highlights above 1.0 and
        # negatives, which the restorer never saw, pass through in the plate term.
        decoded = self.colour.decode(np.concatenate([restored_roi, encoded_roi], axis=0))
        delta = decoded[:rh] - decoded[rh:]
        local = (
            slice(roi[0].start - origin[0], roi[0].stop - origin[0]),
            slice(roi[1].start - origin[1], roi[1].stop - origin[1]),
        )
        delta_sum[local] += (strength * matte_roi)[..., None] * delta
        weight_sum[local] += matte_roi
        return matte_roi
