"""`facerestore demo`: builds a short linear EXR shot from a real face photo, restores it, and
writes a before / after / matte contact sheet.

The face is scikit-image's `astronaut` (Eileen Collins, NASA portrait; public domain). The shot
is made the way real plates lose detail: camera blur, reduced resolution, sensor noise and
codec compression in the display encoding, then brought to scene linear. A small highlight
at 6.0 shows that values above 1.0 survive.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import OpenImageIO as oiio

from facerestore.nodes.colour import ColourPipeline
from facerestore.nodes.exr_io import Part, read_frame, write_parts
from facerestore.plugin.render import RenderOptions, format_timings, render

DEMO_FRAMES = tuple(range(1001, 1007))
DEMO_SIZE = (768, 432)  # width, height
HIGHLIGHT_VALUE = 6.0


def astronaut_srgb() -> np.ndarray:
    from skimage import data

    return data.astronaut().astype(np.float32) / 255.0


def degrade_display(image: np.ndarray, rng: np.random.Generator, factor: int = 2, quality: int = 55) -> np.ndarray:
    """Blur, downscale, noise, JPEG, upscale back: the usual loss chain, in display encoding."""
    h, w = image.shape[:2]
    soft = cv2.GaussianBlur(image, (0, 0), 1.0)
    small = cv2.resize(soft, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    small = np.clip(small + rng.normal(0.0, 3.0 / 255.0, small.shape), 0.0, 1.0)
    ok, encoded = cv2.imencode(
        ".jpg", (small[..., ::-1] * 255.0 + 0.5).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    small = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def demo_frame_display(index: int, clean: bool = False, seed: int = 7) -> np.ndarray:
    """Frame `index` (0-based) of the demo shot, display-encoded: the photo drifts and zooms."""
    width, height = DEMO_SIZE
    photo = astronaut_srgb()
    zoom = height / photo.shape[0] * (1.0 + 0.012 * index)
    tx = 170.0 + 7.0 * index
    ty = -0.5 * (zoom * photo.shape[0] - height) + 2.0 * index
    matrix = np.array([[zoom, 0.0, tx], [0.0, zoom, ty]])
    backdrop = np.linspace(0.18, 0.32, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    frame = cv2.warpAffine(
        photo, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_TRANSPARENT, dst=backdrop.copy()
    )
    if clean:
        return np.clip(frame, 0.0, 1.0)
    return degrade_display(np.clip(frame, 0.0, 1.0), np.random.default_rng(seed + index))


def write_demo_shot(folder: str, colour: ColourPipeline) -> str:
    """Write the demo plate as half-float, PIZ-compressed scene-linear EXRs; returns the pattern."""
    os.makedirs(folder, exist_ok=True)
    pattern = os.path.join(folder, "plate.####.exr")
    width, height = DEMO_SIZE
    for index, frame in enumerate(DEMO_FRAMES):
        linear = colour.decode(demo_frame_display(index))
        cv2.circle(linear, (width - 60, 50), 9, (HIGHLIGHT_VALUE,) * 3, -1)
        spec = oiio.ImageSpec(width, height, 4, "half")
        spec.channelnames = ("R", "G", "B", "A")
        spec.alpha_channel = 3
        spec.attribute("compression", "piz")
        spec.attribute("FramesPerSecond", oiio.TypeDesc("rational2i"), (24, 1))
        spec.attribute("facerestore:source", "scikit-image astronaut (NASA portrait, public domain), degraded")
        spec.attribute("oiio:ColorSpace", colour.plate_space)
        pixels = np.concatenate([linear, np.ones((height, width, 1), np.float32)], axis=2)
        write_parts(pattern.replace("####", f"{frame:04d}"), [Part(spec, pixels)])
    return pattern


def face_window(matte: np.ndarray, margin: float = 0.25) -> tuple[slice, slice]:
    ys, xs = np.nonzero(matte > 0)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    my, mx = int((y1 - y0) * margin), int((x1 - x0) * margin)
    h, w = matte.shape
    return slice(max(0, y0 - my), min(h, y1 + my)), slice(max(0, x0 - mx), min(w, x1 + mx))


def contact_sheet(
    plates: list[str],
    outputs: list[str],
    colour: ColourPipeline,
    path: str,
    mask_channel: str = "face.mask",
    tile_height: int = 320,
) -> None:
    """One row per frame: plate face, restored face (same window, enlarged), matte over the plate."""

    def display(rgb: np.ndarray) -> np.ndarray:
        return colour.display(rgb)

    def fit(image: np.ndarray, interpolation=cv2.INTER_CUBIC) -> np.ndarray:
        h, w = image.shape[:2]
        resized = cv2.resize(image, (max(1, round(w * tile_height / h)), tile_height), interpolation=interpolation)
        return np.clip(resized, 0.0, 1.0)  # cubic overshoot would wrap around in the 8-bit cast

    rows = []
    for plate_path, out_path in zip(plates, outputs):
        plate, out = read_frame(plate_path), read_frame(out_path)
        names = list(out.spec.channelnames)
        matte = out.pixels[..., names.index(mask_channel)]
        before = display(plate.rgb())
        after = display(out.rgb())
        window = face_window(matte) if matte.any() else (slice(None), slice(None))
        overlay = before * 0.45 + np.array([0.1, 0.9, 0.3], np.float32) * matte[..., None] * 0.55
        tiles = [fit(before[window]), fit(after[window]), fit(np.clip(overlay, 0, 1), cv2.INTER_AREA)]
        rows.append(np.concatenate([np.pad(t, ((4, 4), (4, 4), (0, 0)), constant_values=1.0) for t in tiles], 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in rows]
    sheet = (np.concatenate([np.ones((36, width, 3), np.float32)] + rows, 0)[..., ::-1] * 255.0 + 0.5).astype(np.uint8)
    sheet = np.ascontiguousarray(sheet)
    for column, label in enumerate(("plate (face, enlarged)", "restored", "face matte over plate")):
        x = 8 + sum(t.shape[1] + 8 for t in tiles[:column])
        cv2.putText(sheet, label, (x, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    if not cv2.imwrite(path, sheet):
        raise OSError(f"cannot write {path}")


def run_demo(folder: str, device: str = "auto", progress: bool = True) -> dict[str, str]:
    colour = ColourPipeline.create()
    plate_pattern = write_demo_shot(os.path.join(folder, "plate"), colour)
    output_pattern = os.path.join(folder, "restored", "restored.####.exr")
    report = render(RenderOptions(input=plate_pattern, output=output_pattern, device=device, progress=progress))
    picks = [DEMO_FRAMES[0], DEMO_FRAMES[len(DEMO_FRAMES) // 2], DEMO_FRAMES[-1]]
    sheet = os.path.join(folder, "contact_sheet.png")
    contact_sheet(
        [plate_pattern.replace("####", f"{f:04d}") for f in picks],
        [output_pattern.replace("####", f"{f:04d}") for f in picks],
        colour,
        sheet,
    )
    if progress:
        print(format_timings(report))
    print(f"demo plate:    {plate_pattern}")
    print(f"restored shot: {output_pattern} (RGB restored, matte in channel face.mask)")
    print(f"contact sheet: {sheet}")
    return {"plate": plate_pattern, "output": output_pattern, "contact_sheet": sheet}
