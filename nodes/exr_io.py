"""Reading and writing frames through OpenImageIO, keeping everything a compositor relies on:
every channel, per-channel pixel types (half stays half), data and display windows (overscan),
compression, tiling and all metadata, and any further parts of a multi-part EXR unchanged.
Writes are atomic: a temporary file in the destination folder, renamed when complete.
"""

from __future__ import annotations

import functools
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import OpenImageIO as oiio

from facerestore.models.weights import HOST, partial_owner, replaced_atomically
from facerestore.nodes.errors import FaceRestoreError


@dataclass
class Part:
    """One subimage: header and pixels of its data window, (H, W, C)."""

    spec: oiio.ImageSpec
    pixels: np.ndarray


@dataclass
class Frame:
    path: str
    main: Part  # pixels as stored when half or float (float16 / float32), else float32; faces are restored in it
    extra_parts: list[Part] = field(default_factory=list)  # passed through untouched, native types

    @property
    def spec(self) -> oiio.ImageSpec:
        return self.main.spec

    @property
    def pixels(self) -> np.ndarray:
        return self.main.pixels

    def rgb_indices(self) -> tuple[int, int, int]:
        return rgb_channel_indices(self.spec, self.path)

    def rgb(self) -> np.ndarray:
        """The R, G, B channels as an (H, W, 3) array of the pixels' type (float16 or float32): a
        view of the pixels when they lie side by side in that order (RGB, RGBA...: no whole-frame
        copy), else a copy. Read only."""
        r, g, b = self.rgb_indices()
        if (g, b) == (r + 1, r + 2):
            view = self.pixels[..., r : r + 3]
        else:
            view = np.ascontiguousarray(self.pixels[..., [r, g, b]])
        view.flags.writeable = False  # shared with the frame, its neighbours' crops and the writer
        return view


def rgb_channel_indices(spec: oiio.ImageSpec, path: str) -> tuple[int, int, int]:
    names = list(spec.channelnames)
    lowered = [n.lower() for n in names]
    for layer in ("", "rgba.", "rgb."):
        try:
            return tuple(lowered.index(layer + c) for c in "rgb")  # type: ignore[return-value]
        except ValueError:
            continue
    raise FaceRestoreError(f"{path}: no R, G, B channels (channels: {', '.join(names)})")


def set_io_threads(threads: int) -> None:
    """Threads OpenImageIO and OpenEXR use to decode, convert and encode one image (both are
    process-wide settings; chunks are compressed independently, so the file's bytes do not
    depend on the count)."""
    oiio.attribute("threads", int(threads))
    oiio.attribute("exr_threads", int(threads))


EXR_MAGIC = b"\x76\x2f\x31\x01"


def is_openexr(path: str) -> bool:
    """By content (the magic number), not by name."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == EXR_MAGIC
    except OSError:
        return False


def _open(path: str) -> oiio.ImageInput:
    if not os.path.exists(path):
        raise FaceRestoreError(f"{path}: no such file")
    if path.lower().endswith(".exr"):
        # OIIO opens by content: a PNG or JPEG renamed .exr would be read as a display-referred
        # image and treated as a linear plate. Plates are OpenEXR.
        try:
            with open(path, "rb") as handle:
                magic = handle.read(4)
        except OSError as exc:
            raise FaceRestoreError(f"{path}: cannot read ({exc.strerror})") from None
        if magic != EXR_MAGIC:
            raise FaceRestoreError(f"{path}: not an OpenEXR file (named .exr, but its first bytes say otherwise)")
    inp = oiio.ImageInput.open(path)
    if inp is None:
        reason = oiio.geterror().strip().split("\n")[0] or "unreadable"
        raise FaceRestoreError(f"{path}: cannot read image ({reason})")
    return inp


def read_header(path: str) -> oiio.ImageSpec:
    inp = _open(path)
    try:
        spec = inp.spec()
        if spec.deep:
            raise FaceRestoreError(f"{path}: deep images are not supported")
        return oiio.ImageSpec(spec)
    finally:
        inp.close()


def _uniform_format(spec: oiio.ImageSpec) -> str:
    formats = {str(f) for f in spec.channelformats} or {str(spec.format)}
    return formats.pop() if len(formats) == 1 else "float"


def _read_part(inp: oiio.ImageInput, path: str, subimage: int, dtype: str) -> Part:
    spec = oiio.ImageSpec(inp.spec())
    if spec.deep:
        raise FaceRestoreError(f"{path}: deep images are not supported")
    pixels = inp.read_image(subimage, 0, 0, spec.nchannels, dtype)
    if pixels is None or inp.has_error:
        reason = (inp.geterror() or oiio.geterror()).strip().split("\n")[0]
        raise FaceRestoreError(f"{path}: corrupt or truncated image data ({reason or 'read failed'})")
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3:
        raise FaceRestoreError(f"{path}: volumetric images are not supported")
    return Part(spec, pixels)


# Rows converted per thread band when a half image becomes float.
ROWS_PER_BAND = 256


@functools.cache
def _conversion_pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="facerestore-convert")


def as_float32(pixels: np.ndarray) -> np.ndarray:
    """Half pixels as float32 (exact), in bands of rows on the IO threads: OpenImageIO's own
    conversion while reading took about three times the decode itself at 4K."""
    if pixels.dtype == np.float32:
        return np.ascontiguousarray(pixels)
    out = np.empty(pixels.shape, np.float32)
    threads = max(1, int(oiio.get_int_attribute("threads", 1)))
    bands = [slice(y, y + ROWS_PER_BAND) for y in range(0, pixels.shape[0], ROWS_PER_BAND)]
    if threads == 1 or len(bands) == 1:
        out[...] = pixels
        return out

    def convert(band: slice) -> None:
        out[band] = pixels[band]

    list(_conversion_pool(threads).map(convert, bands))
    return out


def read_frame(path: str) -> Frame:
    inp = _open(path)
    try:
        # Half or float files are kept as they are stored: a half frame stays half (half the
        # memory and bytes to move; written back without a conversion), and only the regions the
        # networks see are made float. Other types are converted (and normalised) by OpenImageIO.
        stored = _uniform_format(inp.spec())
        main = _read_part(inp, path, 0, stored if stored in ("half", "float") else "float")
        main.pixels = np.ascontiguousarray(main.pixels)
        extra = []
        subimage = 1
        while inp.seek_subimage(subimage, 0):
            extra.append(_read_part(inp, path, subimage, _uniform_format(inp.spec())))
            subimage += 1
        return Frame(path, main, extra)
    finally:
        inp.close()


def remove_stale_partials(folder: str) -> list[str]:
    """Half-written frames this tool left when its process was killed (SIGKILL, power loss):
    temporary files of this machine whose process no longer runs (`partial_owner`). Others'
    files, live writers' and other machines' are kept."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        owner = partial_owner(name)
        if owner is None or owner[1] not in (None, HOST):
            continue  # not ours, or another machine's writer (shared storage)
        pid = owner[0]
        try:
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # someone else's live process
        try:
            os.remove(os.path.join(folder, name))
            removed.append(name)
        except OSError:
            pass
    return removed


def _write_error(out, folder: str, parts: list[Part]) -> str:
    """OIIO's reason, and the likely one it does not give: a full disk."""
    reason = out.geterror().strip() or "unknown error"
    try:
        if shutil.disk_usage(folder).free < sum(p.pixels.nbytes for p in parts):
            return f"no space left on device: {reason}"
    except OSError:
        pass
    return reason


def write_parts(path: str, parts: list[Part]) -> None:
    """Write all parts to `path` atomically; on failure nothing is left at `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    out = oiio.ImageOutput.create(path)  # the final name picks the format plug-in
    if out is None:
        raise FaceRestoreError(f"{path}: no image writer for this file type ({oiio.geterror().strip()})")
    try:
        with replaced_atomically(path) as tmp_path:
            tmp = str(tmp_path)
            try:
                specs = [p.spec for p in parts]
                opened = out.open(tmp, specs) if len(parts) > 1 else out.open(tmp, specs[0])
                if not opened:
                    raise FaceRestoreError(f"{path}: cannot write ({out.geterror().strip() or 'open failed'})")
                for index, part in enumerate(parts):
                    if index and not out.open(tmp, part.spec, "AppendSubimage"):
                        raise FaceRestoreError(f"{path}: cannot write part {index} ({out.geterror().strip()})")
                    if not out.write_image(np.ascontiguousarray(part.pixels)):
                        raise FaceRestoreError(f"{path}: write failed ({_write_error(out, folder, parts)})")
                if not out.close():
                    raise FaceRestoreError(f"{path}: write failed ({_write_error(out, folder, parts)})")
            except BaseException:
                out.close()
                raise
    except OSError as exc:  # the temporary file itself (name too long, quota, permissions)
        raise FaceRestoreError(f"{path}: cannot write ({exc.strerror or exc})") from None


def spec_with_channels(spec: oiio.ImageSpec, names: list[str], formats: list[str]) -> oiio.ImageSpec:
    """A copy of `spec` (windows, tiling, metadata) with a new channel list."""
    out = oiio.ImageSpec(spec)
    out.nchannels = len(names)
    out.channelnames = tuple(names)
    out.channelformats = tuple(oiio.TypeDesc(f) for f in formats)
    out.alpha_channel = names.index("A") if "A" in names else -1
    out.z_channel = names.index("Z") if "Z" in names else -1
    return out


def channel_format_names(spec: oiio.ImageSpec) -> list[str]:
    if spec.channelformats:
        return [str(f) for f in spec.channelformats]
    return [str(spec.format)] * spec.nchannels


# Compressions that change pixel values on write. PXR24 rounds 32-bit floats to 24 bits (half
# and integer channels pass exactly).
LOSSY_COMPRESSIONS = ("dwaa", "dwab", "b44", "b44a")
LOSSLESS_REPLACEMENT = "zip"
DWA_LEVEL = "openexr:dwaCompressionLevel"


def lossy_compression(spec: oiio.ImageSpec) -> str | None:
    """The plate's compression if writing it again would change untouched pixels, else None."""
    name = spec.get_string_attribute("compression").split(":")[0].lower()
    if name in LOSSY_COMPRESSIONS:
        return name
    if name == "pxr24" and "float" in channel_format_names(spec):
        return name
    return None


def with_output_compression(spec: oiio.ImageSpec, keep_lossy: bool) -> oiio.ImageSpec:
    """`spec` as it should be written: a lossy compression becomes lossless ZIP (so pixels
    outside the matte stay what the plate decodes to), unless `keep_lossy`; a kept DWA
    compression keeps its level, which OIIO would otherwise drop."""
    name = lossy_compression(spec)
    out = oiio.ImageSpec(spec)
    level = spec.getattribute(DWA_LEVEL)
    if name is None:
        return out
    if not keep_lossy:
        out.attribute("compression", LOSSLESS_REPLACEMENT)
        out.erase_attribute(DWA_LEVEL)
    elif name in ("dwaa", "dwab") and level is not None:
        out.attribute("compression", f"{name}:{float(level):g}")
    return out
