"""What every host adapter (Nuke, Fusion, Resolve) shares: the node spec, the facerestore
command, render-through in a background process with progress and cancel, the shot's tracks,
and farm jobs.

It runs inside the host's own Python (3.7 or newer, standard library only): facerestore itself
(numpy, torch, OpenImageIO) lives in its own environment and is driven as a subprocess, so a
host's interpreter never loads binaries built for another Python.

Where the facerestore command is found, first match wins:
1. `FACERESTORE_CMD` (a shell-quoted command line, e.g. `/opt/facerestore/.venv/bin/facerestore`);
2. `facerestore_host.json` beside this file, written by `facerestore install`;
3. `facerestore` on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC_NAME = "facerestore_spec.json"
CONFIG_NAME = "facerestore_host.json"
ERROR_LINE = re.compile(r"^facerestore[\w ]*: (?:error|internal error|interrupted)")


class HostError(Exception):
    """A failure to show the artist as it is: one line, no traceback."""


def load_spec() -> dict:
    """The node spec (generated from facerestore's own; see plugin/hostspec.py)."""
    for folder in (HERE, os.path.join(HERE, "..", "hostside")):
        path = os.path.join(folder, SPEC_NAME)
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    raise HostError(SPEC_NAME + " is missing beside " + __file__ + "; reinstall with `facerestore install`")


def facerestore_command() -> list:
    configured = os.environ.get("FACERESTORE_CMD", "").strip()
    if configured:
        return shlex.split(configured)
    config = os.path.join(HERE, CONFIG_NAME)
    if os.path.exists(config):
        with open(config) as f:
            command = json.load(f).get("command")
        if command:
            return list(command)
    found = shutil.which("facerestore")
    if found:
        return [found]
    raise HostError(
        "facerestore cannot be found: run `facerestore install` for this host, or set FACERESTORE_CMD "
        "to the facerestore command"
    )


def param_flags(values: dict, spec: dict | None = None) -> list:
    """`facerestore render` flags for the node parameters that differ from their defaults (an
    empty text parameter means "all", e.g. every track)."""
    spec = spec or load_spec()
    flags = []
    for param in spec["params"]:
        if param["id"] not in values:
            continue
        value = values[param["id"]]
        if param["type"] == "float":
            value = float(value)
            if abs(value - float(param["default"])) < 1e-9:
                continue
            text = repr(round(value, 6))
        elif param["type"] == "int":
            value = int(round(float(value)))
            if value == param["default"]:
                continue
            text = str(value)
        else:
            text = str(value)
            if text == str(param["default"]) or text == "":
                continue
        flags += [param["flag"], text]
    return flags


def render_args(
    plates: str,
    output: str,
    values: dict,
    frames: tuple | None = None,
    analysis: str | None = None,
    colorspace: str | None = None,
    track_mattes: bool = False,
) -> list:
    """Arguments of `facerestore render` for a shot, after the command itself."""
    # JSON lines for progress: read as data, so the bar's wording is free to change.
    args = ["render", plates, "-o", output, "--progress", "json"] + param_flags(values)
    if frames:
        args.append("--frames=%d-%d" % (int(frames[0]), int(frames[1])))  # "=": a negative first frame
    if analysis:
        args += ["--analysis", analysis]
    if colorspace:
        args += ["--colorspace", colorspace]
    if track_mattes:
        args.append("--track-mattes")
    return args


def farm_args(engine: str, plates: str, output: str, job_dir: str, values: dict, frames=None, chunk=10) -> list:
    args = ["farm", engine, plates, "-o", output, "--job-dir", job_dir, "--chunk", str(int(chunk))]
    if frames:
        args.append("--frames=%d-%d" % (int(frames[0]), int(frames[1])))
    options = param_flags(values)
    if options:
        args += ["--render-options", " ".join(shlex.quote(o) for o in options)]
    return args


def progress_event(line: str):
    """The progress object of one `--progress json` line, or None for any other line."""
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line).get("progress")
    except (ValueError, AttributeError):
        return None
    return event if isinstance(event, dict) and "done" in event and "total" in event else None


class Job:
    """One facerestore command running in the background.

    `on_progress(done, total, stage)` is called from a reader thread as frames complete
    (stage: "analysing" or "rendering", from the render's `--progress json` lines); `cancel()` stops
    it the way a farm kill does (SIGTERM: the frame being written is removed, none is half
    written); `wait()` returns when it has ended and raises HostError with facerestore's own
    message if it failed."""

    def __init__(self, args: list, on_progress=None, on_line=None) -> None:
        self.command = facerestore_command() + list(args)
        self.on_progress, self.on_line = on_progress, on_line
        self.lines: list = []
        self.cancelled = False
        try:
            self.process = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                universal_newlines=True,
                bufsize=1,
            )
        except OSError as exc:
            raise HostError("cannot start facerestore (%s): %s" % (self.command[0], exc)) from None
        self.reader = threading.Thread(target=self._read, name="facerestore-output", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in self.process.stdout:
            for line in raw.replace("\r", "\n").splitlines():
                line = line.strip()
                if not line:
                    continue
                event = progress_event(line)
                if event is not None:
                    if self.on_progress:
                        self.on_progress(int(event["done"]), int(event["total"]), event.get("stage", "rendering"))
                    continue
                self.lines.append(line)
                if self.on_line:
                    self.on_line(line)

    def running(self) -> bool:
        return self.process.poll() is None

    def cancel(self) -> None:
        if self.running():
            self.cancelled = True
            if os.name == "posix":
                self.process.send_signal(signal.SIGTERM)
            else:
                self.process.terminate()

    def wait(self, timeout: float | None = None) -> list:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            code = self.process.wait(30)
        self.reader.join(5)
        if self.cancelled:
            raise HostError("facerestore: cancelled")
        if code != 0:
            # facerestore's own errors, and the argument parser's ("facerestore render: error: ...").
            errors = [line for line in self.lines if ERROR_LINE.match(line)]
            raise HostError(errors[-1] if errors else "facerestore failed (exit %d)" % code)
        return self.lines


def list_tracks(sidecar: str) -> list:
    """The shot's face tracks from its analysis sidecar: dicts with the track id, its first and
    last frame, how many frames it is in and its median face width in plate pixels."""
    try:
        with open(sidecar) as f:
            data = json.load(f)
        faces = data["faces"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HostError("cannot read the shot analysis %s: %s" % (sidecar, exc)) from None
    tracks: dict = {}
    for frame_key, frame_faces in faces.items():
        frame = json.loads(frame_key)
        for face in frame_faces:
            box = face["box"]
            tracks.setdefault(face["track"], []).append((frame, box[2] - box[0]))
    listed = []
    for track in sorted(tracks):
        seen = sorted(tracks[track], key=lambda item: str(item[0]))
        widths = sorted(width for _, width in seen)
        frames = [frame for frame, _ in seen]
        listed.append(
            {
                "track": track,
                "first": min(frames),
                "last": max(frames),
                "frames": len(frames),
                "width": round(widths[len(widths) // 2]),
            }
        )
    return listed


def describe_track(track: dict) -> str:
    return "face %d: frames %s-%s (%d), ~%d px wide" % (
        track["track"],
        track["first"],
        track["last"],
        track["frames"],
        track["width"],
    )
