"""Rendering a shot: plan the frames, check them all before touching any output, then restore
and write each frame atomically with progress and per-stage timings."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from facerestore.models import byo
from facerestore.models.device import resolve_torch_device
from facerestore.models.errors import ModelError
from facerestore.models.weights import RESTORERS
from facerestore.nodes.colour import ColourPipeline, colour_pool
from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.exr_io import (
    Part,
    channel_format_names,
    is_openexr,
    lossy_compression,
    read_frame,
    read_header,
    remove_stale_partials,
    rgb_channel_indices,
    set_io_threads,
    spec_with_channels,
    with_output_compression,
    write_parts,
)
from facerestore.nodes.face_restore import OUTPUT_MODES, PIXEL_ASPECT_RANGE, FaceRestoreNode, output_planes
from facerestore.nodes.face_search import searches_by_keyframes
from facerestore.nodes.manual_faces import check_added_faces
from facerestore.nodes.sequence import FramePattern, describe_frames, parse_frame_range
from facerestore.nodes.shot import AnalysisStore, ShotRenderer, analyse_shot
from facerestore.nodes.shot import analysis_determinants as shot_determinants
from facerestore.nodes.tracking import file_fingerprint

# Notes and warnings go through logging, apart from the progress bar: `-q` silences the bar and the
# notes, never a warning (the CLI shows the "facerestore" logger on stderr).
log = logging.getLogger("facerestore.render")



@dataclass
class RenderOptions:
    input: str
    output: str
    frames: str | None = None
    skip_missing: bool = False
    colorspace: str | None = None
    ocio: str | None = None
    restore_colorspace: str | None = None
    device: str = "auto"
    mask_channel: str = "face.mask"
    output_mode: str = "both"
    node_params: dict = field(default_factory=dict)
    progress: bool = True
    # "bar": a bar for people (one line a frame off a terminal); "json": one JSON object a line,
    # {"progress": {"stage", "done", "total", "frame", "faces"}}, what the host adapters read.
    progress_format: str = "bar"
    analysis: str | None = None  # sidecar path; default: next to the output
    reanalyse: bool = False
    track_mattes: bool = False  # one matte channel per track beside the combined one
    added_faces: tuple = ()  # manual_faces.AddedFace: faces the detector missed, given by hand
    dropped_tracks: tuple[int, ...] = ()  # false faces to remove from the analysis
    analyse_only: bool = False  # build the shot's analysis sidecar and stop (a farm job's first step)
    allow_non_exr: bool = False  # read TIFF, DPX... as linear plates (OIIO), on request only
    resume: bool = False  # skip frames whose output is whole and newer than its plate and the analysis
    analysis_frozen: bool = False  # use the sidecar as it is; anything that no longer fits is an error
    replace_channel: bool = False  # a matte channel that already exists in the plate may be overwritten
    keep_lossy_compression: bool = False  # write DWA/B44 plates with their own (lossy) compression
    overlap_io: bool = True  # read ahead and write behind in threads; False: one step after another (benchmarks)


@dataclass
class FrameJob:
    frame: int | None
    source: str
    target: str


@dataclass
class RenderReport:
    jobs: list[FrameJob]
    faces_per_frame: dict
    timings: dict
    device: str
    wall_seconds: float
    analysis_path: str | None = None
    tracks: list[int] = field(default_factory=list)


def default_analysis_path(options: RenderOptions) -> str:
    """Beside the output: `restored.####.exr` -> `restored.analysis.json`."""
    target = FramePattern.parse(options.output)
    if os.path.isdir(options.output) or options.output.endswith(os.sep):
        folder, name = options.output, os.path.basename(FramePattern.parse(options.input).prefix or options.input)
    else:
        folder, name = (
            os.path.dirname(options.output),
            os.path.basename(target.prefix if target.has_token else options.output),
        )
    stem = name.rstrip("._-") or "shot"
    stem = os.path.splitext(stem)[0] if not target.has_token else stem
    return os.path.join(folder or ".", f"{stem}.analysis.json")


def frame_shape(spec) -> tuple:
    """What every frame of a shot must share: data window, channel names and pixel aspect."""
    return (spec.x, spec.y, spec.width, spec.height, tuple(spec.channelnames), plate_pixel_aspect(spec))


def matching_frames(shot: list[FrameJob], spec, require_exr: bool = True) -> tuple[list[FrameJob], list[int]]:
    """Frames beyond the render range that the analysis would read are checked like the range
    (windows and channels); a frame that does not match is left out, not silently mixed in."""
    shape = frame_shape(spec)
    kept, excluded = [], []
    for job in shot:
        if job.target:  # in the render range: already checked
            kept.append(job)
            continue
        try:
            if require_exr and not is_openexr(job.source):
                raise FaceRestoreError(job.source)
            same = frame_shape(read_header(job.source)) == shape
        except FaceRestoreError:
            same = False
        (kept if same else excluded).append(job if same else job.frame)
    return kept, excluded


def shot_frames(options: RenderOptions, jobs: list[FrameJob]) -> list[FrameJob]:
    """Every frame of the shot on disk: the analysis covers the whole shot whatever is rendered,
    so a frame's result does not depend on the render range."""
    source = FramePattern.parse(options.input)
    if not source.has_token:
        return jobs
    rendered = {j.frame: j for j in jobs}
    return [rendered.get(f) or FrameJob(f, source.path(f), "") for f in source.existing_frames()]


def analysis_determinants(options: RenderOptions, node) -> dict:
    """Everything the stored tracks depend on; a change to any of them means analysing again."""
    return shot_determinants(node, options.added_faces)


def obtain_analysis(
    options: RenderOptions, node, shot: list[FrameJob], progress_enabled: bool | str, timings: dict, kept: DecodedFrames
):
    """The shot's analysis: the sidecar when it fits, else the shot analysed (and saved). Frames
    the analysis decodes go into `kept`, for the render to use rather than decode them again."""
    path = options.analysis or default_analysis_path(options)
    fingerprint = file_fingerprint([j.source for j in shot], colour_pool(machine_threads()).map)
    store = AnalysisStore(path, analysis_determinants(options, node), [j.frame for j in shot], fingerprint)
    dropped = sorted(set(options.dropped_tracks))
    if options.analysis_frozen and not os.path.isfile(path):
        raise FaceRestoreError(f"--analysis-frozen: no analysis at {path}")
    if os.path.isfile(path) and not options.reanalyse:
        analysis, problem = store.load()
        if problem and options.analysis_frozen:
            raise FaceRestoreError(f"--analysis-frozen: {problem}")
        if analysis is not None:
            if dropped and analysis.settings.get("dropped_tracks", []) != dropped:
                # Dropping a false face keeps every other track's ID: applied to the stored analysis.
                gone = set(dropped) - set(analysis.track_ids()) - set(analysis.settings.get("dropped_tracks", []))
                if gone:
                    raise FaceRestoreError(f"--drop-tracks: no track {', '.join(map(str, sorted(gone)))} in {path}")
                analysis.faces = {f: [t for t in fs if t.track not in set(dropped)] for f, fs in analysis.faces.items()}
                analysis.settings["dropped_tracks"] = sorted(
                    set(analysis.settings.get("dropped_tracks", [])) | set(dropped)
                )
                analysis.save(path)
            return analysis, path
        log.info("note: %s; analysing again", problem)
    paths = {j.frame: j.source for j in shot}
    order = [j.frame for j in shot]
    position = {f: i for i, f in enumerate(order)}
    bar = Progress(len(shot), progress_enabled, "analysing")

    def prepare(frame):
        decoded = kept.get(frame) or read_frame(paths[frame])
        rgb = decoded.rgb()
        return decoded, None if searches_by_keyframes(node, rgb.shape) else node.detection_image(rgb)

    # The frames ahead are read, and their detection images made (reduced, then encoded) where
    # every frame is searched whole, in threads while the detector runs on the current one; each
    # frame decoded here is offered to the render (`kept`).
    threads = machine_threads()
    ahead: dict = {}
    detector_timings: dict = defaultdict(float)
    with ThreadPoolExecutor(min(threads, 4), thread_name_prefix="facerestore-analyse") as pool:

        def ready(frame):
            start = time.perf_counter()
            here = position[frame]
            for other in order[here : here + min(threads, 4) + 1]:
                if other not in ahead:
                    ahead[other] = pool.submit(prepare, other)
            decoded, image = ahead.pop(frame).result()
            kept.offer(frame, decoded)
            timings["analyse: read + reduce + encode (waiting)"] += time.perf_counter() - start
            return decoded, image

        def plate_of(frame) -> np.ndarray:  # a large plate's search, and a second pass (added faces)
            start = time.perf_counter()
            decoded = kept.get(frame)
            timings["analyse: read"] += time.perf_counter() - start
            return (decoded or ready(frame)[0]).rgb()

        try:
            analysis = analyse_shot(
                node,
                order,
                plate_of,
                lambda done, _: bar.update(done, ""),
                added=options.added_faces,
                dropped=dropped,
                timings=detector_timings,
                image_of=lambda frame: ready(frame)[1],
            )
        finally:
            for future in ahead.values():
                future.cancel()
    for stage, seconds in detector_timings.items():
        timings[f"analyse: {stage}"] += seconds
    bar.close()
    store.save(analysis)
    return analysis, path


def output_path_for(output: FramePattern, source: str, frame: int | None) -> str:
    if os.path.isdir(output.text) or output.text.endswith(os.sep):
        return os.path.join(output.text, os.path.basename(source))
    if frame is not None and not output.has_token:
        raise FaceRestoreError(f"output {output.text} needs a frame token such as #### for a sequence")
    return output.path(frame)


def plan_jobs(options: RenderOptions) -> list[FrameJob]:
    source = FramePattern.parse(options.input)
    target = FramePattern.parse(options.output)
    if source.has_token:
        if options.frames:
            frames = parse_frame_range(options.frames)
        else:
            frames = source.existing_frames()
            if not frames:
                raise FaceRestoreError(f"no frames match {options.input}")
        missing = [f for f in frames if not os.path.isfile(source.path(f))]
        if missing and not options.skip_missing:
            raise FaceRestoreError(
                f"missing frames {describe_frames(missing)} of {options.input} (use --skip-missing to skip them)"
            )
        absent = set(missing)
        frames = [f for f in frames if f not in absent]
        if not frames:
            raise FaceRestoreError(f"no frames of {options.input} in range {options.frames}")
    else:
        if options.frames:
            raise FaceRestoreError(f"--frames given but {options.input} has no frame token such as ####")
        if not os.path.isfile(options.input):
            raise FaceRestoreError(f"{options.input}: no such file")
        frames = [None]
    jobs = [FrameJob(f, source.path(f), output_path_for(target, source.path(f), f)) for f in frames]
    inputs = {os.path.realpath(j.source) for j in jobs}
    for job in jobs:
        check_writable_target(job.target, inputs, "output frame")
    if len({os.path.realpath(j.target) for j in jobs}) != len(jobs):
        raise FaceRestoreError(f"output {options.output} maps several frames to one file")
    sidecar = options.analysis or default_analysis_path(options)
    check_writable_target(sidecar, inputs, "analysis sidecar")
    # The sidecar is written first and every frame after it: one of the frames would replace it.
    if os.path.realpath(sidecar) in {os.path.realpath(j.target) for j in jobs}:
        raise FaceRestoreError(
            f"the analysis sidecar {sidecar} is one of the output frames; give --analysis another path"
        )
    return jobs


def check_writable_target(path: str, inputs: set[str], what: str) -> None:
    """Every file a run writes: never an input (or a link to one), never something that is
    not a regular file (a folder, a device, a pipe)."""
    if os.path.realpath(path) in inputs:
        raise FaceRestoreError(f"refusing to overwrite input file {path} with the {what}")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise FaceRestoreError(f"{path}: the {what} would replace something that is not a regular file")


def prepare_output_folders(jobs: list[FrameJob]) -> tuple[list[str], list[str]]:
    """Creates the output folders; returns those it created (removed again if the run fails
    before writing into them) and the stale half-written frames it removed."""
    created, stale = [], []
    for folder in sorted({os.path.dirname(os.path.abspath(j.target)) for j in jobs}):
        missing = []
        parent = folder
        while not os.path.exists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise FaceRestoreError(f"cannot create output folder {folder}: {exc.strerror}") from None
        created += missing
        if not os.access(folder, os.W_OK | os.X_OK):
            raise FaceRestoreError(f"output folder {folder} is not writable")
        stale += [os.path.join(folder, name) for name in remove_stale_partials(folder)]
    return created, stale


def remove_if_empty(folders: list[str]) -> None:
    for folder in sorted(folders, key=len, reverse=True):  # deepest first
        try:
            os.rmdir(folder)
        except OSError:
            pass


# The EXR header attribute that says which render wrote a frame (see render_key).
RENDER_KEY_ATTRIBUTE = "facerestore:render_key"


def model_identity(name: str) -> str:
    """The restorer's weights as a render depends on them: a registry model's checksum, a
    user's file by path, size and time (a model imported again under the same name differs)."""
    entry = RESTORERS.get(name)
    if entry is not None:
        return f"{name} {entry.sources[-1].sha256}"
    user = byo.find(name)
    if user is None:
        return name
    stat = user.path.stat()
    return f"{user.path.resolve()} {stat.st_size} {stat.st_mtime_ns}"


def render_key(options: RenderOptions, node, analysis_path: str) -> str:
    """A digest of everything a frame's pixels depend on besides its plates (which the
    analysis's fingerprint covers): the options that shape the output, the node's parameters,
    the model's weights, the colour pipeline, the device and the analysis itself. Written into
    every frame's header; --resume keeps only frames that carry the same key."""
    with open(analysis_path, "rb") as handle:
        analysis_digest = hashlib.sha256(handle.read()).hexdigest()
    try:
        version = importlib.metadata.version("facerestore")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    record = {
        "facerestore": version,
        "output": [
            options.output_mode,
            options.mask_channel,
            options.track_mattes,
            options.replace_channel,
            options.keep_lossy_compression,
        ],
        "params": dict(node.params),
        "pixel_aspect": node.pixel_aspect,
        "model": model_identity(node.params["model"]),
        "colour": node.colour.identity(),
        "device": str(node.device),
        "analysis": analysis_digest,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def already_rendered(job: FrameJob, analysis_path: str, key: str) -> bool:
    """--resume: the output decodes whole, was written by a render with the same options, model
    and analysis (its header's render key), and is newer than its plate and the analysis (a frame
    cut short or damaged after it was written, or one of another render, is rendered again)."""
    try:
        target = os.stat(job.target).st_mtime_ns
        if target < os.stat(job.source).st_mtime_ns or target < os.stat(analysis_path).st_mtime_ns:
            return False
        if read_header(job.target).get_string_attribute(RENDER_KEY_ATTRIBUTE) != key:
            return False
        read_frame(job.target)  # every pixel, every part: a truncated frame does not decode
        return True
    except (OSError, FaceRestoreError):
        return False


def check_headers(jobs: list[FrameJob], require_exr: bool = True):
    """Every frame must share the first frame's windows and channels, and be an OpenEXR unless
    other formats were asked for; checked before any write. Returns the first frame's header."""
    first = None
    for job in jobs:
        if require_exr and not is_openexr(job.source):
            raise FaceRestoreError(
                f"{job.source}: not an OpenEXR file; plates are scene-linear EXRs "
                "(--allow-non-exr reads other formats OIIO knows, as linear)"
            )
        spec = read_header(job.source)
        rgb_channel_indices(spec, job.source)
        shape = frame_shape(spec)
        if first is None:
            first, first_spec = (job, shape), spec
        elif shape != first[1]:
            raise FaceRestoreError(
                f"{job.source}: {spec.width}x{spec.height} at ({spec.x},{spec.y}) with channels "
                f"{','.join(spec.channelnames)}, pixel aspect {shape[5]:g} differs from {first[0].source} "
                f"({first[1][2]}x{first[1][3]} at ({first[1][0]},{first[1][1]}) with channels {','.join(first[1][4])}, "
                f"pixel aspect {first[1][5]:g})"
            )
    return first_spec


def check_matte_channels(spec, options: RenderOptions, names: list[str]) -> None:
    """A matte written over a channel the plate already has (R, A, Z, an AOV, an earlier
    matte) replaces it: only when asked for."""
    if options.output_mode != "both" or options.replace_channel:
        return
    taken = [name for name in names if name in spec.channelnames]
    if taken:
        raise FaceRestoreError(
            f"the plate already has a channel {taken[0]!r}: choose another --mask-channel, "
            "or --replace-channel to overwrite it"
        )


def build_output_parts(frame, result, options: RenderOptions, tracks: list[int] = (), key: str = "") -> list[Part]:
    """The frame's parts as written: the plate's channels, the restored RGB over the face region
    only and the mattes, in one buffer filled once (the plate's other channels are not rebuilt)."""
    spec = with_output_compression(frame.spec, options.keep_lossy_compression)
    if key:  # a header attribute only: the pixels are the same with or without it
        spec.attribute(RENDER_KEY_ATTRIBUTE, key)
    names = list(spec.channelnames)
    formats = channel_format_names(spec)
    r, g, b = frame.rgb_indices()
    matte_format = "float" if formats[r] == "float" else "half"
    region = result.region
    planes = output_planes(options.output_mode)
    if not planes.restored_rgb:  # the matte alone
        return [Part(spec_with_channels(spec, [options.mask_channel], [matte_format]), result.matte[..., None])]
    mattes = {}
    if planes.matte:
        mattes = {options.mask_channel: result.region_matte}
        if options.track_mattes:
            mattes |= {f"{options.mask_channel}{t}": result.track_mattes.get(t) for t in tracks}
    # Mattes into channels the plate already has (re-rendering an earlier output) replace them.
    added = [name for name in mattes if name not in names]
    h, w = frame.pixels.shape[:2]
    names, formats = names + added, formats + [matte_format] * len(added)
    # Filled in the file's own type where every channel is half: half the bytes to fill, and no
    # conversion while writing (numpy's float-to-half rounding is OpenImageIO's, bit for bit: tested).
    pixels = np.empty((h, w, len(names)), np.float16 if set(formats) == {"half"} else np.float32)
    pixels[..., : len(names) - len(added)] = frame.pixels
    pixels[..., len(names) - len(added) :] = 0.0
    if result.region_rgb is not None:
        for index, channel in zip((r, g, b), range(3)):
            pixels[region + (index,)] = result.region_rgb[..., channel]
    for name, values in mattes.items():
        index = names.index(name)
        if name not in added:  # an earlier matte, replaced (added channels start at zero)
            pixels[..., index] = 0.0
        if values is None:  # no face (of this track) here: the matte is empty
            continue
        if values.shape == pixels.shape[:2]:  # a track's matte, whole frame
            pixels[..., index] = values
        else:
            pixels[region + (index,)] = values
    main = Part(spec_with_channels(spec, names, formats), pixels)
    extra = [Part(with_output_compression(p.spec, options.keep_lossy_compression), p.pixels) for p in frame.extra_parts]
    return [main] + extra


def machine_threads() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on macOS
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory free for use now, where the system says; else None."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# Frames the analysis decodes are kept for the render up to this share of the memory free when
# the render starts, and never more than the cap: a short shot is decoded once, a long one keeps
# its first frames and decodes the rest again, in bounded memory.
KEEP_MEMORY_SHARE = 0.25
KEEP_CAP_BYTES = 2 << 30


class DecodedFrames:
    """Frames decoded by the analysis, kept (in the order offered) until their bytes would pass
    `budget`; the render takes each once (`take`), which frees it."""

    def __init__(self, wanted: set, budget: int) -> None:
        self.wanted, self.budget = wanted, budget
        self.frames: dict = {}
        self.bytes = 0

    @staticmethod
    def size(decoded) -> int:
        return decoded.pixels.nbytes + sum(p.pixels.nbytes for p in decoded.extra_parts)

    def offer(self, frame, decoded) -> None:
        if frame in self.wanted and frame not in self.frames and self.bytes + self.size(decoded) <= self.budget:
            self.frames[frame] = decoded
            self.bytes += self.size(decoded)

    def get(self, frame):
        return self.frames.get(frame)

    def keep_only(self, frames: set) -> None:
        """Forget every frame but these (the render will not read the others)."""
        self.wanted &= frames
        for frame in [f for f in self.frames if f not in frames]:
            self.take(frame)

    def take(self, frame):
        decoded = self.frames.pop(frame, None)
        if decoded is not None:
            self.bytes -= self.size(decoded)
        return decoded


def frames_needed(order: list, jobs: list[FrameJob], reach: int) -> set:
    """The frames a render of `jobs` reads: each job's frame and the shot's frames within `reach`
    of it (a frame's temporal neighbours need their own neighbours' plates: two radii)."""
    position = {f: i for i, f in enumerate(order)}
    needed = {j.frame for j in jobs}
    for job in jobs:
        here = position.get(job.frame)
        if here is not None:
            needed.update(order[max(0, here - reach) : here + reach + 1])
    return needed


def keep_budget() -> int:
    free = available_memory()
    return KEEP_CAP_BYTES if free is None else min(KEEP_CAP_BYTES, int(free * KEEP_MEMORY_SHARE))


class FrameReader:
    """Reads each frame once, ahead of need, in background threads (OpenImageIO releases the
    interpreter lock while it decodes: several frames decode at once, each on OpenEXR's own
    threads too), for both the frame being rendered and its temporal neighbours. Frames the
    analysis kept (`DecodedFrames`) are handed over instead of read."""

    def __init__(self, sources: dict, background: bool = True, workers: int = 1, kept: DecodedFrames | None = None):
        self.sources, self.background = sources, background
        self.kept = kept or DecodedFrames(set(), 0)
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="facerestore-read")
        self.pending: dict = {}

    def prefetch(self, frame) -> None:
        if frame in self.pending or frame not in self.sources:
            return
        decoded = self.kept.take(frame)
        if decoded is not None:
            self.pending[frame] = Future()
            self.pending[frame].set_result(decoded)
        elif self.background:
            self.pending[frame] = self.pool.submit(read_frame, self.sources[frame])

    def get(self, frame):
        self.prefetch(frame)
        if frame not in self.pending:  # read when asked for, in this thread (still once)
            self.pending[frame] = Future()
            self.pending[frame].set_result(read_frame(self.sources[frame]))
        return self.pending[frame].result()

    def forget_up_to(self, renderer, frame) -> None:
        """Drop frames up to the one just rendered: the renderer keeps the plates it may still
        need, and nothing behind is read again in an in-order render."""
        here = renderer.position.get(frame)
        for other in [f for f in self.pending if here is None or renderer.position.get(f, here) <= here]:
            del self.pending[other]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class FrameWriter:
    """Writes frames in background threads, up to `in_flight` at once (each encoded on OpenEXR's
    threads too), so the next frames are computed while the last ones are encoded. Each file is
    written whole by one thread, so the bytes are those of a write in the foreground. A failed
    write stops the render at the next frame (or at the end) with its own error; every frame is
    still written atomically."""

    def __init__(self, background: bool = True, in_flight: int = 1) -> None:
        self.in_flight, self.background = max(1, in_flight), background
        self.pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="facerestore-write")
        self.writing: deque[Future] = deque()

    def write(self, path: str, parts: Callable[[], list]) -> None:
        """Writes the parts `parts()` makes (made in the writing thread too: filling a 4K frame's
        output buffer is part of writing it)."""
        if not self.background:
            write_parts(path, parts())
            return
        while self.writing and (len(self.writing) >= self.in_flight or self.writing[0].done()):
            self.writing.popleft().result()  # bounded memory; errors surface early
        self.writing.append(self.pool.submit(lambda: write_parts(path, parts())))

    def finish(self) -> None:
        """Waits for the frames still being written (their errors raised)."""
        while self.writing:
            self.writing.popleft().result()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                self.finish()
        finally:
            self.pool.shutdown(wait=True)


class StageClock:
    """Splits a render's wall time into stages with no gap: each `lap` gives the time since the
    last one to a stage, less what nested stages (a node's own timings, added to the same dict)
    recorded meanwhile. So the stages add up to the wall time."""

    def __init__(self, timings: dict, start: float) -> None:
        self.timings, self.mark = timings, start
        self.nested = sum(timings.values())

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        recorded = sum(self.timings.values())
        self.timings[stage] += (now - self.mark) - (recorded - self.nested)
        self.mark, self.nested = now, sum(self.timings.values())


PROGRESS_FORMATS = ("bar", "json")


def progress_mode(options: RenderOptions) -> str | bool:
    """What a render's progress looks like: False (none), "bar" or "json"."""
    if options.progress_format not in PROGRESS_FORMATS:
        raise FaceRestoreError(f"--progress must be one of {', '.join(PROGRESS_FORMATS)}")
    return options.progress and options.progress_format


class Progress:
    """`mode`: False or "off" (nothing), True or "bar" (a bar on stderr, redrawn on a terminal),
    "json" (one JSON object a line on stderr, for programs: its words are not an interface)."""

    def __init__(self, total: int, mode: bool | str, title: str = "rendering") -> None:
        mode = {True: "bar", False: "off"}.get(mode, mode)
        self.total, self.start, self.title = total, time.perf_counter(), title
        self.enabled, self.json = mode != "off", mode == "json"
        self.tty = sys.stderr.isatty() and not self.json

    def update(self, done: int, label: str, **fields) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        if self.json:
            event = {"stage": self.title, "done": done, "total": self.total, **fields, "elapsed": round(elapsed, 3)}
            print(json.dumps({"progress": event}, default=str), file=sys.stderr, flush=True)
            return
        eta = elapsed / done * (self.total - done) if done else 0.0
        width = 30
        bar = "#" * round(width * done / self.total) + "-" * (width - round(width * done / self.total))
        line = f"{self.title} [{bar}] {done}/{self.total} {label}  {elapsed:.1f}s elapsed, ~{eta:.0f}s left"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.break_line()

    def break_line(self) -> None:
        """Ends the bar's line on a terminal, so a warning starts on a line of its own."""
        if self.enabled and self.tty:
            print(file=sys.stderr)


def check_render(options: RenderOptions):
    """Everything about a render that can be refused before a model loads or a file is
    written (the farm refuses a job's options with this too): the frames and where they go,
    the plates' headers, the matte channel, the added faces. Returns (jobs, first plate header)."""
    if options.output_mode not in OUTPUT_MODES:
        raise FaceRestoreError(f"--output must be one of {', '.join(OUTPUT_MODES)}")
    if not options.mask_channel or any(c in options.mask_channel for c in " ,"):
        raise FaceRestoreError(f"invalid matte channel name {options.mask_channel!r}")
    progress_mode(options)
    jobs = plan_jobs(options)
    first_spec = check_headers(jobs, require_exr=not options.allow_non_exr)
    check_matte_channels(first_spec, options, [options.mask_channel])
    check_added_faces(options.added_faces, first_spec.width, first_spec.height)
    return jobs, first_spec


def render(options: RenderOptions, node=None) -> RenderReport:
    """Render a shot. `node` may be passed in to reuse loaded models across calls."""
    wall = time.perf_counter()
    clock = StageClock(defaultdict(float), wall)
    jobs, first_spec = check_render(options)
    gaps = sequence_gaps(options, jobs)
    created, stale = prepare_output_folders(jobs)
    if gaps:
        log.info("note: frames %s are not on disk; rendering the %d that are", describe_frames(gaps), len(jobs))
    if stale:
        log.info("note: removed %d half-written frame(s) of killed runs", len(stale))
    clock.lap("check")
    try:
        return _render(options, node, jobs, first_spec, wall, clock)
    except BaseException:
        remove_if_empty(created)
        raise


def sequence_gaps(options: RenderOptions, jobs: list[FrameJob]) -> list[int]:
    """Frames missing inside the sequence when no range was given (said, not silently skipped)."""
    frames = [j.frame for j in jobs if j.frame is not None]
    if options.frames or len(frames) < 2:
        return []
    present = set(frames)
    return [f for f in range(frames[0], frames[-1] + 1) if f not in present]


def _render(options: RenderOptions, node, jobs: list[FrameJob], first_spec, wall: float, clock) -> RenderReport:
    try:
        if node is None:
            colour = ColourPipeline.create(options.ocio, options.colorspace, options.restore_colorspace)
            node = FaceRestoreNode(colour, resolve_torch_device(options.device), **options.node_params)
    except ModelError as exc:
        raise FaceRestoreError(str(exc)) from None
    clock.lap("load models")
    # Pixel aspect: the parameter when set, else the plate's header.
    node = node.for_plates(plate_pixel_aspect(first_spec))
    if node.pixel_aspect != 1.0:
        source = "--pixel-aspect" if node.params["pixel_aspect"] else "the plates' PixelAspectRatio"
        log.info("note: pixel aspect %g (%s): faces are found and restored desqueezed", node.pixel_aspect, source)
    return _render_shot(options, node, jobs, first_spec, wall, clock)


def plate_pixel_aspect(spec) -> float:
    """The EXR header's PixelAspectRatio: 1 without one, or with one outside the range the node
    takes (PIXEL_ASPECT_RANGE; the render says which it used)."""
    value = spec.getattribute("PixelAspectRatio")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 1.0
    low, high = PIXEL_ASPECT_RANGE
    return value if low <= value <= high else 1.0


def _render_shot(options: RenderOptions, node, jobs: list[FrameJob], first_spec, wall: float, clock) -> RenderReport:
    timings = clock.timings
    shot, excluded = matching_frames(shot_frames(options, jobs), first_spec, require_exr=not options.allow_non_exr)
    if excluded:
        log.info(
            "note: frames %s outside the range differ in size or channels; left out of the analysis and the "
            "temporal window",
            describe_frames(excluded),
        )
    # Frames this render reads: the range and, for the temporal window, the rest of the shot.
    sources = {j.frame: j.source for j in shot} | {j.frame: j.source for j in jobs}
    reach = 2 * (node.params["temporal_window"] // 2)
    needed = set() if options.analyse_only else frames_needed([j.frame for j in shot], jobs, reach)
    kept = DecodedFrames(needed, keep_budget())
    clock.lap("check")
    analysis, analysis_path = obtain_analysis(options, node, shot, progress_mode(options), timings, kept)
    clock.lap("analyse: track + sidecar")
    tracks = analysis.track_ids()
    known = ", ".join(map(str, tracks)) or "none"
    if node.selected_tracks is not None and not node.selected_tracks <= set(tracks):
        missing = ", ".join(map(str, sorted(node.selected_tracks - set(tracks))))
        raise FaceRestoreError(f"no track {missing} in this shot (tracks: {known})")
    if not set(node.track_strengths) <= set(tracks):  # a strength for no face would change nothing, silently
        missing = ", ".join(map(str, sorted(set(node.track_strengths) - set(tracks))))
        raise FaceRestoreError(f"--track-strengths: no track {missing} in this shot (tracks: {known})")
    if options.analyse_only:
        clock.lap("finish")
        return RenderReport([], {}, dict(timings), node.device, clock.mark - wall, analysis_path, tracks)
    if options.track_mattes:
        check_matte_channels(first_spec, options, [f"{options.mask_channel}{t}" for t in tracks])
    lossy = lossy_compression(first_spec)
    if lossy:
        log.warning(
            "warning: the plates use lossy %s compression; %s",
            lossy.upper(),
            "keeping it (--keep-lossy-compression): pixels outside the matte will change on write"
            if options.keep_lossy_compression
            else "writing ZIP so pixels outside the matte stay bit-identical (--keep-lossy-compression keeps it)",
        )
    key = render_key(options, node, analysis_path)
    if options.resume:
        skipped = [j for j in jobs if already_rendered(j, analysis_path, key)]
        jobs = [j for j in jobs if j not in skipped]
        if skipped:
            log.info("resume: %d frame(s) already rendered, %d to go", len(skipped), len(jobs))
            kept.keep_only(frames_needed([j.frame for j in shot], jobs, reach))
    # Sized to the machine: decoding and encoding run on OpenEXR's threads, and this many frames
    # are read and written at once besides (each whole, in one thread: the same bytes as in turn).
    threads = machine_threads()
    set_io_threads(threads)
    reader = FrameReader(sources, background=options.overlap_io, workers=min(threads, 4), kept=kept)
    renderer = ShotRenderer(node, analysis, [j.frame for j in shot], lambda f: reader.get(f).rgb(), timings)
    # Frames a render in order touches next: the job ahead and its temporal reach (two radii).
    reach = 2 * renderer.radius + 1
    progress = Progress(len(jobs), progress_mode(options))
    faces_per_frame = {}
    clock.lap("check")
    with FrameWriter(background=options.overlap_io, in_flight=min(threads, 3)) as writer, contextlib.closing(reader):
        for done, job in enumerate(jobs, 1):
            for ahead in jobs[done : done + 1]:
                reader.prefetch(ahead.frame)
            here = renderer.position.get(job.frame, 0)
            for f in renderer.frames[here : here + reach]:
                reader.prefetch(f)
            frame = reader.get(job.frame)
            clock.lap("read (waiting)")
            result = renderer.render(job.frame, frame.rgb(), track_mattes=options.track_mattes)
            for stage, seconds in result.timings.items():
                timings[stage] += seconds
            # The rest of the frame's restoration: its neighbours' plates, the finite check.
            clock.lap("restore: other")
            if result.nonfinite_pixels:
                progress.break_line()
                log.warning("warning: %s: %d NaN/inf pixels left untouched", job.source, result.nonfinite_pixels)
            writer.write(job.target, functools.partial(build_output_parts, frame, result, options, tracks, key))
            clock.lap("write (waiting)")
            reader.forget_up_to(renderer, job.frame)
            faces_per_frame[job.frame] = len(result.faces)
            progress.update(done, f"frame {job.frame if job.frame is not None else ''} faces {len(result.faces)}",
                            frame=job.frame, faces=len(result.faces))
            clock.lap("progress")
        writer.finish()
        clock.lap("write (waiting)")
    progress.close()
    clock.lap("finish")
    return RenderReport(jobs, faces_per_frame, dict(timings), node.device, clock.mark - wall, analysis_path, tracks)


def once_per_shot(stage: str) -> bool:
    """Stages a render runs once for the whole shot (the rest run per frame)."""
    return stage in ("check", "load models", "finish") or stage.startswith("analyse")


def format_timings(report: RenderReport) -> str:
    n = max(1, len(report.jobs))
    lines = [f"rendered {len(report.jobs)} frame(s) on {report.device} in {report.wall_seconds:.1f}s"]
    if report.analysis_path:
        lines.append(f"  analysis     {report.analysis_path} (tracks: {', '.join(map(str, report.tracks)) or 'none'})")
    width = max([12] + [len(stage) for stage in report.timings])
    for stage, seconds in report.timings.items():
        per = "" if once_per_shot(stage) else f"  ({1000 * seconds / n:.0f} ms/frame)"
        lines.append(f"  {stage:<{width}} {seconds:7.2f}s{per}")
    return "\n".join(lines)
