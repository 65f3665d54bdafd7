"""The worker behind the OpenFX plug-in: `python -m facerestore.ofx_bridge.worker --socket PATH`.

One process per host, started by the plug-in on its first render and reused by every
instance. Control is one JSON line per request and per answer on a Unix socket; pixels are in
POSIX shared memory (`/dev/shm/NAME`): the window's frames, then room for the result, each
RGBA float32, rows top to bottom. Models load once per set of parameters and stay loaded.

A shot is analysed on demand: the node's Analyse shot button makes the plug-in stream the clip's
frames in order (`op: analyse`, a few at a time, from the host's instanceChanged action, where
the OpenFX spec lets it fetch any frame); the worker tracks the whole shot once, as `facerestore
render` does, and writes the analysis file. A render with a current analysis file equals the
CLI's full render, and reuses each unchanged frame's restored crops (LRU), so a frame's
neighbours are not restored again. A render without one is a preview: the faces are tracked
over the frames the render was given (its own temporal window, all the host announced), so the
first frame costs the same whatever the shot's length; a final render (`final: true`) without
a current analysis is refused, never silently a preview.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import hashlib
import json
import os
import queue
import re
import signal
import socket
import stat
import struct
import sys
import threading
import time
import uuid
from collections import OrderedDict
from functools import lru_cache

import numpy as np

from facerestore.models.device import resolve_torch_device
from facerestore.models.weights import cache_dir
from facerestore.nodes.colour import ColourPipeline
from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.face_restore import FACE_RESTORE, FaceRestoreNode, pack_rgba
from facerestore.nodes.shot import AnalysisStore, ShotRenderer, analyse_shot, analysis_determinants, look_of
from facerestore.nodes.tracking import Analysis

NODE_PARAMS = {p.id for p in FACE_RESTORE.params}
_lock = threading.Lock()  # one render at a time: models are shared
# The plug-in's own segment names (pid, counter, random): never a path, so a request cannot
# make the worker write into any other file.
SHM_NAME = re.compile(r"facerestore-[0-9]+-[0-9]+-[0-9a-f]{16}")
MAX_REQUEST_BYTES = 1 << 20  # a render request is a few hundred bytes; a longer line is refused
# The plug-in sends its first request as soon as it connects, then keeps the connection between
# renders; a connection that says nothing at all within this is closed (it holds a thread and a
# descriptor for nothing).
FIRST_LINE_TIMEOUT = float(os.environ.get("FACERESTORE_WORKER_FIRST_LINE_TIMEOUT", "60"))


class BadRequest(Exception):
    """A request the worker answers with an error and then closes the connection on."""


MAX_SHOTS = 64  # analysed shots whose restored crops are kept (bounded by bytes below)
MAX_CACHED_FRAMES = 48  # restored crops kept per shot
FEED_TIMEOUT = 600.0  # an analysis the plug-in stopped feeding ends after this


def cached_bytes(shot: Shot) -> int:
    arrays = ("crop", "own_crop", "encoded_roi", "restored")
    return sum(
        getattr(job, name).nbytes
        for _, crops in shot.outputs.values()
        for job in crops
        for name in arrays
        if getattr(job, name) is not None
    )


def trim_crop_caches() -> None:
    """Restored crops of every shot together stay under MAX_CACHED_BYTES: the least recently
    used shots' oldest frames go first."""
    sizes = {key: cached_bytes(shot) for key, shot in _shots.items()}
    total = sum(sizes.values())
    for shot in _shots.values():  # least recently used first
        while total > MAX_CACHED_BYTES and shot.outputs:
            before = cached_bytes(shot)
            shot.outputs.popitem(last=False)
            total -= before - cached_bytes(shot)


def log_request(entry: dict) -> None:
    """FACERESTORE_WORKER_LOG=PATH: one JSON line per request (what was analysed, restored or
    reused), to see why a host render is slow; the host speed test reads it."""
    path = os.environ.get("FACERESTORE_WORKER_LOG")
    if path:
        with open(path, "a") as log:
            log.write(json.dumps(entry) + "\n")


def digest(plate: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(plate).data, digest_size=16).digest()


class StreamedAnalysis:
    """`analyse_shot` over frames that arrive a few at a time: it runs in a thread whose
    `plate_of` takes each frame as it is fed, in order, so the clip is never all in memory."""

    def __init__(self, node, frames: list) -> None:
        self.frames, self.next = frames, 0
        self.incoming: queue.Queue = queue.Queue(maxsize=2)
        self.stopped = threading.Event()
        self.result, self.error = None, None

        def plate_of(frame):
            waited = 0.0
            while True:
                if self.stopped.is_set() or waited > FEED_TIMEOUT:
                    raise FaceRestoreError("shot analysis stopped")
                try:
                    item = self.incoming.get(timeout=0.5)
                    break
                except queue.Empty:
                    waited += 0.5
            if item is None or item[0] != frame:
                raise FaceRestoreError("shot analysis stopped")
            return item[1]

        def run():
            try:
                self.result = analyse_shot(node, frames, plate_of)
            except Exception as exc:  # handed to whoever feeds the last frame
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True, name="shot-analysis")
        self.thread.start()

    def feed(self, frame, plate: np.ndarray) -> bool:
        """Give the next frame; True once the whole shot is analysed."""
        if self.next >= len(self.frames) or frame != self.frames[self.next]:
            raise FaceRestoreError(f"shot analysis expected frame {self.frames[self.next]}, got {frame}")
        self.next += 1
        item = (frame, plate.copy())
        waited = 0.0
        while True:  # short waits: a failed analysis is reported at once, not after the timeout
            if self.error is not None:
                raise self.error
            if not self.thread.is_alive():
                break
            try:
                self.incoming.put(item, timeout=0.2)
                break
            except queue.Full:
                waited += 0.2
                if waited > FEED_TIMEOUT:
                    raise FaceRestoreError("shot analysis stopped taking frames") from None
        if self.next < len(self.frames):
            return False
        self.thread.join()
        if self.error is not None:
            raise self.error
        return True

    def stop(self) -> None:
        self.stopped.set()


class Shot:
    """What the worker keeps of one analysed shot between renders: restored crops by frame."""

    def __init__(self) -> None:
        self.outputs: OrderedDict = OrderedDict()  # (frame, crop parameters) -> (digest, restored crops)
        self.digests: dict = {}  # frame -> content digest last seen


_shots: OrderedDict = OrderedDict()  # (instance, analysis file, its mtime) -> Shot
# What restored crops depend on besides the frame: the restorer and what it is given.
CROP_PARAMS = (
    "colorspace",
    "detection_threshold",
    "pixel_aspect",
    "model",
    "backend",
    "fidelity",
    "temporal_window",
    "ensemble",
    "tracks",
)
MAX_CACHED_BYTES = 2 << 30  # restored crops kept, all shots together


def shot_state(key: tuple) -> Shot:
    if key not in _shots:
        _shots[key] = Shot()
        while len(_shots) > MAX_SHOTS:
            _shots.popitem(last=False)
    _shots.move_to_end(key)
    return _shots[key]


class Analysing:
    """An Analyse shot in progress for one plug-in instance."""

    def __init__(self, node, frames: list, path: str) -> None:
        self.node, self.path = node, path
        self.streaming = StreamedAnalysis(node, frames)


_analysing: dict = {}  # plug-in instance -> Analysing


def clip_frames(clip_range) -> list[int]:
    if (
        not isinstance(clip_range, list)
        or len(clip_range) != 2
        or not all(isinstance(t, int | float) and np.isfinite(t) for t in clip_range)
    ):
        raise BadRequest(f"bad clip range {clip_range!r}")
    first, last = (int(round(float(t))) for t in clip_range)
    if last < first or last - first > 100_000:
        raise BadRequest(f"bad clip range {clip_range!r}")
    return list(range(first, last + 1))


def new_analysis_path() -> str:
    """Where Analyse shot writes when the node names no file: FACERESTORE_ANALYSIS_DIR, else the
    cache's analyses/ folder; a new name each time, so no other node's file is replaced."""
    folder = os.environ.get("FACERESTORE_ANALYSIS_DIR") or os.path.join(cache_dir(), "analyses")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"shot-{uuid.uuid4().hex[:16]}.analysis.json")


def refuse_to_replace(path: str) -> None:
    """The Analysis file may name an existing analysis, which Analyse shot replaces; anything
    else there (a plate picked by mistake, a folder) is refused before the shot is read."""
    if not path or not os.path.lexists(path):
        return
    try:
        Analysis.load(path)
    except FaceRestoreError:
        raise FaceRestoreError(f"{path} is there and is not a facerestore analysis; refusing to replace it") from None


def analyse(request: dict) -> dict:
    """One batch of a shot's frames, in order from its first frame; the last batch writes the
    analysis and answers where, with a summary for the node's Status."""
    instance = str(request.get("instance", ""))
    if request.get("cancel"):
        running = _analysing.pop(instance, None)
        if running:
            running.streaming.stop()
        log_request({"op": "analyse", "cancelled": running is not None})
        return {}
    frames = clip_frames(request.get("range"))
    times = [int(round(float(t))) for t in request["times"]]
    height, width = int(request["height"]), int(request["width"])
    shared = open_segment(str(request["shm"]), (len(times), height, width, 4))
    params = dict(request["params"])
    params.pop("output", None), params.pop("analysis", None)
    if times and times[0] == frames[0]:  # a (new) analysis starts
        if instance in _analysing:
            _analysing.pop(instance).streaming.stop()
        path = str(request.get("path") or "")
        refuse_to_replace(path)
        node = node_for(json.dumps({k: v for k, v in sorted(params.items())}))
        _analysing[instance] = Analysing(node, frames, path)
    running = _analysing.get(instance)
    if running is None:
        raise FaceRestoreError("shot analysis must start at the clip's first frame and end at its last")
    try:
        done = False
        for i, frame in enumerate(times):
            done = running.streaming.feed(frame, np.ascontiguousarray(shared[i, :, :, :3]))
    except Exception:
        _analysing.pop(instance, None)
        running.streaming.stop()
        raise
    log_request({"op": "analyse", "frames": times, "complete": done})
    if not done:
        return {}
    del _analysing[instance]
    analysis = running.streaming.result
    path = running.path or new_analysis_path()
    AnalysisStore(path, analysis_determinants(running.node)).save(analysis)  # the host's plates: no files
    tracks = len(analysis.track_ids())
    summary = f"frames {frames[0]}-{frames[-1]}, {tracks} face track{'s' if tracks != 1 else ''}; renders equal facerestore render's"
    return {"path": path, "summary": summary}


@lru_cache(maxsize=4)
def node_for(params_key: str):
    params = json.loads(params_key)
    colour = ColourPipeline.create(plate_space=params.pop("colorspace") or None)
    node_params = {k: v for k, v in params.items() if k in NODE_PARAMS}
    return FaceRestoreNode(colour, resolve_torch_device(os.environ.get("FACERESTORE_DEVICE", "auto")), **node_params)


@lru_cache(maxsize=4)
def stored_analysis(path: str, mtime_ns: int):
    return Analysis.load(path)


_looks: OrderedDict = OrderedDict()


def checked_look(node, path: str, mtime_ns: int, frame, plate: np.ndarray, plate_digest: bytes) -> list[int]:
    """`look_of` the plate, remembered by its pixels' digest (a host re-asks for the same frame
    many times; the look costs a reduce and an encode of the whole plate)."""
    key = (path, mtime_ns, frame, plate_digest)
    if key not in _looks:
        _looks[key] = look_of(node, plate)
        while len(_looks) > 256:
            _looks.popitem(last=False)
    return _looks[key]


def render(request: dict) -> dict:
    times = [float(t) for t in request["times"]]
    height, width = int(request["height"]), int(request["width"])
    shared = open_segment(str(request["shm"]), (len(times) + 1, height, width, 4))
    params = dict(request["params"])
    output_mode = params.pop("output", "both")
    analysis_path = params.pop("analysis", "")
    node = node_for(json.dumps({k: v for k, v in sorted(params.items())}))
    frame_of = {int(round(t)): i for i, t in enumerate(times)}
    centre_time = times[request["centre"]]
    centre = int(round(centre_time))

    def plate_of(frame) -> np.ndarray:
        if frame not in frame_of:
            raise FaceRestoreError(f"the host did not provide frame {frame}, which the temporal window needs")
        return np.ascontiguousarray(shared[frame_of[frame], :, :, :3])

    analysis, why = None, None
    digests: dict = {}  # frame -> its plate's digest, each computed once a render
    if abs(centre_time - centre) > 1e-6:
        # Motion blur or a retime downstream: not a frame of the shot, tracked over its window.
        why = "a time between frames"
    elif not analysis_path:
        why = "the shot is not analysed"
    elif not os.path.exists(analysis_path):
        why = f"no analysis at {analysis_path}"
    else:
        mtime = os.stat(analysis_path).st_mtime_ns
        current = analysis_determinants(node)
        # Faces added by hand (`facerestore render --add-face`) belong to the analysis, not the node.
        del current["added_faces"]
        store = AnalysisStore(analysis_path, current)
        # The host's plates are pixels, not files: each frame is checked against what the analysis
        # saw once, while its pixels stay the same (a sidecar of other plates is not used).
        digests[centre] = digest(plate_of(centre))
        looks = {centre: checked_look(node, analysis_path, mtime, centre, plate_of(centre), digests[centre])}
        analysis, problem = store.load(looks, loader=lambda path: stored_analysis(path, mtime))
        why = problem and problem.replace(f"{analysis_path} was", "the analysis was")
    if why and request.get("final") and why != "a time between frames":
        raise FaceRestoreError(
            f"{why}: a final render needs the analysed shot. Press Analyse shot on the node (or set Analysis file "
            "to the sidecar of a `facerestore render` of these plates), then render again"
        )
    shot = window = None
    if analysis is None:  # a preview: tracked over the frames this render was given
        frames = sorted(frame_of)
        analysis = analyse_shot(node, frames, plate_of)
    else:
        frames = analysis.frames
        shot = shot_state((str(request.get("instance", "")), analysis_path, mtime))
        window = {frame: digests.get(frame) or digest(plate_of(frame)) for frame in frame_of if frame in analysis.faces}
        if any(shot.digests.get(f, d) != d for f, d in window.items()):
            # A frame changed upstream: a restored crop also depends on its neighbours' plates.
            shot.outputs.clear()
        shot.digests.update(window)
    renderer = ShotRenderer(node, analysis, frames, plate_of)
    crop_key = json.dumps([params.get(p) for p in CROP_PARAMS])
    if shot is not None:  # crops restored by earlier renders, for frames that have not changed
        renderer.outputs.update(
            {f: crops for (f, k), (d, crops) in shot.outputs.items() if k == crop_key and window.get(f) == d}
        )
    reused = set(renderer.outputs)
    result = renderer.render(centre)
    log_request(
        {
            "op": "render",
            "frame": centre,
            "mode": "preview" if why else "shot",
            "frames": sorted(frame_of),
            "restored": sorted(set(renderer.outputs) - reused),
        }
    )
    if shot is not None:
        for frame, crops in renderer.outputs.items():
            if frame in window:
                shot.outputs[(frame, crop_key)] = (window[frame], crops)
                shot.outputs.move_to_end((frame, crop_key))
        while len(shot.outputs) > MAX_CACHED_FRAMES:
            shot.outputs.popitem(last=False)
        trim_crop_caches()
    pack_rgba(output_mode, result.rgb, result.matte, shared[request["centre"]][..., 3], shared[len(times)])
    shared.flush()
    return {"mode": "preview", "why": why} if why else {"mode": "shot"}


def open_segment(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The plug-in's shared-memory segment `name`, of exactly `shape` float32: only names the
    plug-in makes, no symbolic link, owned by this user."""
    if not SHM_NAME.fullmatch(name):
        raise BadRequest(f"not a facerestore shared-memory name: {name[:80]!r}")
    fd = os.open(os.path.join("/dev/shm", name), os.O_RDWR | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        expected = int(np.prod(shape)) * 4
        if info.st_uid != os.getuid() or info.st_size != expected:
            raise BadRequest(f"shared memory {name} has {info.st_size} bytes, not the {expected} the request says")
        return np.memmap(os.fdopen(os.dup(fd), "r+b"), dtype=np.float32, mode="r+", shape=shape)
    finally:
        os.close(fd)


def stop_once_for_tests() -> None:
    """FACERESTORE_WORKER_STOP_ONCE=PATH: stop (SIGSTOP) on a request once, the wedged worker
    of the plug-in's timeout test, leaving PATH behind so the next worker serves."""
    flag = os.environ.get("FACERESTORE_WORKER_STOP_ONCE")
    if flag and not os.path.exists(flag):
        open(flag, "w").close()
        os.kill(os.getpid(), signal.SIGSTOP)


def die_once_for_tests() -> None:
    """FACERESTORE_WORKER_DIE_ONCE=PATH: die abruptly mid-render once (the test of the plug-in's
    error path), leaving PATH behind so the next worker lives."""
    flag = os.environ.get("FACERESTORE_WORKER_DIE_ONCE")
    if flag and not os.path.exists(flag):
        open(flag, "w").close()
        os._exit(9)


def peer_uid(conn: socket.socket) -> int:
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


def parse_request(line: bytes) -> dict:
    if not line.endswith(b"\n"):
        raise BadRequest(f"request longer than {MAX_REQUEST_BYTES} bytes, or cut short")
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"malformed request: {exc}") from None
    if not isinstance(request, dict) or request.get("op") not in ("render", "analyse"):
        raise BadRequest("malformed request: not a render or analyse request")
    return request


def log(message: str) -> None:
    """One line on the worker's stderr (the host's log), never a traceback."""
    print(f"facerestore worker: {message}", file=sys.stderr, flush=True)


def preload_analysis(request: dict) -> None:
    """A render's analysis file, read before the render takes the worker's lock: a path that is
    not a regular file (a FIFO, a device, a folder) is refused without opening it for reading,
    so it can neither block the request nor every other render waiting for the lock."""
    params = request.get("params")
    path = params.get("analysis") if isinstance(params, dict) else None
    if request.get("op") != "render" or not path or not os.path.lexists(str(path)):
        return  # no file: the render says so (a preview, or a final render refused)
    try:
        info = os.stat(str(path))
    except OSError as exc:
        raise FaceRestoreError(f"analysis {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise FaceRestoreError(f"analysis {path}: not a regular file")
    stored_analysis(str(path), info.st_mtime_ns)


def serve_connection(conn: socket.socket) -> None:
    """One JSON line per request, one per answer. A bad request is answered with an error and
    the connection closed: the plug-in never waits for an answer that will not come."""
    try:
        _serve_connection(conn)
    except OSError as exc:  # the client went away (closed early, reset): its business, one line
        log(f"connection ended: {exc.strerror or type(exc).__name__}")
    finally:
        conn.close()


def _serve_connection(conn: socket.socket) -> None:
    with conn:
        if peer_uid(conn) != os.getuid():
            return
        reader = conn.makefile("rb")
        conn.settimeout(FIRST_LINE_TIMEOUT)
        while True:
            try:
                line = reader.readline(MAX_REQUEST_BYTES + 1)
            except TimeoutError:
                log(f"closed a connection that sent no request within {FIRST_LINE_TIMEOUT:g} s")
                return
            if not line:
                return
            conn.settimeout(None)  # it spoke: the plug-in's own connection, idle between renders
            answer: dict = {"id": None}
            close = False
            try:
                request = parse_request(line)
                answer["id"] = request.get("id")
                stop_once_for_tests()
                die_once_for_tests()
                preload_analysis(request)
                with _lock:
                    answer |= (analyse if request["op"] == "analyse" else render)(request)
                answer["ok"] = True
            except BadRequest as exc:
                answer |= {"ok": False, "error": str(exc)}
                close = True
            except FaceRestoreError as exc:
                answer |= {"ok": False, "error": str(exc)}
            except Exception as exc:  # reported to the host as a message, never a silent failure
                answer |= {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            conn.sendall((json.dumps(answer, separators=(",", ":")) + "\n").encode())
            if close:
                drain_and_close(conn)
                return


def drain_and_close(conn: socket.socket, limit_seconds: float = 1.0) -> None:
    """Closing with unread input resets the connection and can drop the error just sent:
    stop writing, discard what is still arriving (bounded in time), then close."""
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(limit_seconds)
    try:
        while conn.recv(1 << 16):
            pass
    except OSError:
        pass


def register(sub) -> None:
    """`facerestore worker`, through the CLI's `facerestore.commands` entry point."""
    worker = sub.add_parser("worker", help="serve the OpenFX plug-in (started by the plug-in itself)")
    worker.add_argument("--socket", required=True, help="Unix socket to listen on")
    worker.set_defaults(handler=serve)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facerestore-worker", description=__doc__.split("\n")[0])
    parser.add_argument("--socket", required=True)
    try:
        return serve(parser.parse_args(argv))
    except FaceRestoreError as exc:
        print(f"facerestore worker: error: {exc}", file=sys.stderr)
        return 2


def claim_socket_path(path: str) -> None:
    """Make room for the socket at `path`: nothing there, or a stale socket of this user (a
    worker that died) that no one answers on. A file, a folder, another user's socket or a live
    worker's is refused, never removed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FaceRestoreError(f"--socket {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        raise FaceRestoreError(
            f"--socket {path}: something that is not a socket of this user is there; refusing to replace it"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # stale: its worker is gone
        return
    except OSError as exc:
        raise FaceRestoreError(f"--socket {path}: cannot tell whether a worker serves it ({exc.strerror})") from None
    finally:
        probe.close()
    raise FaceRestoreError(f"--socket {path}: another worker is serving there")


ACCEPT_BACKOFF = 0.5  # seconds to wait after a failed accept() (out of descriptors) before the next
# accept() wakes this often to look for a stop: a signal the kernel hands to another thread
# (the serving threads, torch's) only runs its Python handler once the main thread runs again.
STOP_POLL = 0.5


class Stopping:
    """SIGINT asks the accept loop to end (the loop cleans up). SIGTERM is the plug-in stopping
    its worker, which it waits for (2 s, then SIGKILL): the worker removes its socket and goes at
    once, as the default action would have, without waiting for the interpreter's shutdown."""

    def __init__(self, remove_socket) -> None:
        self.asked, self.remove_socket = False, remove_socket
        signal.signal(signal.SIGINT, self.ask)
        signal.signal(signal.SIGTERM, self.terminate)

    def ask(self, signum, frame) -> None:
        self.asked = True

    def terminate(self, signum, frame) -> None:
        self.remove_socket()
        os._exit(0)


def serve(args) -> int:
    claim_socket_path(args.socket)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)  # private from the moment it exists, not after a chmod
    try:
        server.bind(args.socket)
    except OSError as exc:
        server.close()
        raise FaceRestoreError(f"--socket {args.socket}: cannot listen there ({exc.strerror})") from None
    finally:
        os.umask(old_umask)
    own = os.lstat(args.socket)

    def remove_own_socket() -> None:
        # Only the socket this worker made: whatever has taken the path since is left alone.
        with contextlib.suppress(OSError):
            now = os.lstat(args.socket)
            if (now.st_dev, now.st_ino) == (own.st_dev, own.st_ino):
                os.unlink(args.socket)

    server.listen(8)
    server.settimeout(STOP_POLL)
    stopping = Stopping(remove_own_socket)
    # `kill -USR1` writes every thread's stack to the host's log: a worker that seems stuck says where.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    failing = False
    try:
        while not stopping.asked:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError as exc:  # EMFILE, ENFILE, ENOMEM...: the worker stays; new clients wait a moment
                if not failing:  # one line per spell of failures, not one per retry
                    log(f"cannot accept a connection ({exc.strerror or exc}); retrying")
                failing = True
                time.sleep(ACCEPT_BACKOFF)
                continue
            failing = False
            conn.settimeout(None)  # its own timeouts are set per request, not inherited from the poll
            threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()
        return 0
    except KeyboardInterrupt:  # a SIGINT before the handler was set
        return 0
    finally:
        server.close()
        remove_own_socket()


if __name__ == "__main__":
    sys.exit(main())
