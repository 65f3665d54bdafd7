"""The FaceRestore gizmo's buttons and menu actions in Nuke.

Render-through needs no OpenFX install: the gizmo's input range is written to EXR (or read in
place when the input is already a Read of EXR plates), `facerestore render` runs in a background
process with a Nuke progress task (cancel stops it; it never leaves a half-written frame), and a
Read of the result (RGB, plate alpha, the `face.mask` layer and, on request, `face.mask1..N`) is
placed beside the node. facerestore is driven as a command, never imported: Nuke's Python cannot
load the binaries facerestore's own environment is built for.
"""

from __future__ import annotations

import os
import threading

import nuke

try:
    import facerestore_host as host
except ImportError:  # a checkout on NUKE_PATH: the shared host module lives in ../hostside
    import sys

    sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hostside"))
    import facerestore_host as host

GIZMO = "FaceRestore"


def create_node() -> nuke.Node:
    return nuke.createNode(GIZMO)


def node_values(node: nuke.Node) -> dict:
    """The spec's parameters as the node holds them (Link knobs onto the OFX node's)."""
    return {p["id"]: node[p["id"]].value() for p in host.load_spec()["params"]}


def work_folder(node: nuke.Node) -> str:
    folder = node["render_folder"].value()
    if not folder:
        script = nuke.root().name()
        if not script or script == "Root":
            raise host.HostError("save the script first, or set the Render folder")
        folder = os.path.join(os.path.dirname(script), "facerestore")
    return os.path.join(folder, node.name())


def exr_plates_of(node: nuke.Node) -> str | None:
    """The input's own EXR files when it is a Read of EXR plates read raw (no colour change on
    the way in), so render-through reads them in place, bit for bit."""
    source = node.input(0)
    if source is None or source.Class() != "Read":
        return None
    path = source["file"].value()
    raw = source.knob("raw")
    if path.lower().endswith(".exr") and raw is not None and raw.value():
        return path
    return None


def write_plates(node: nuke.Node, folder: str, first: int, last: int) -> str:
    """Write the node's input range as linear EXR (every channel, no colour conversion)."""
    plates = os.path.join(folder, "plate.####.exr")
    write = nuke.createNode("Write", inpanel=False)
    try:
        write.setInput(0, node.input(0))
        for name, value in (("file", plates), ("file_type", "exr"), ("channels", "all"), ("raw", True)):
            write[name].setValue(value)
        nuke.execute(write, first, last)
    finally:
        nuke.delete(write)
    return plates


def result_read(node: nuke.Node, output: str, first: int, last: int) -> nuke.Node:
    """A Read of the restored frames beside the node (reused on a second render-through)."""
    name = node.name() + "_restored"
    read = nuke.toNode(name) or nuke.createNode("Read", inpanel=False)
    read.setName(name)
    for knob, value in (("file", output), ("first", first), ("last", last), ("raw", True)):
        read[knob].setValue(value)
    read.setXYpos(node.xpos() + 150, node.ypos())
    reload = read["reload"]
    if isinstance(reload, nuke.Script_Knob):  # a button: re-read frames a second render replaced
        reload.execute()
    return read


class RenderThrough:
    """One render-through of a node: prepare in the main thread, render in the background."""

    def __init__(self, node: nuke.Node) -> None:
        if node.input(0) is None:
            raise host.HostError("connect a plate to the FaceRestore input first")
        self.node = node
        self.first, self.last = int(node.firstFrame()), int(node.lastFrame())
        self.folder = work_folder(node)
        os.makedirs(self.folder, exist_ok=True)
        self.plates = exr_plates_of(node) or write_plates(node, self.folder, self.first, self.last)
        self.output = os.path.join(self.folder, "restored.####.exr")
        self.analysis = node["analysis"].value() or os.path.join(self.folder, "restored.analysis.json")
        self.args = host.render_args(
            self.plates,
            self.output,
            node_values(node),
            frames=(self.first, self.last),
            analysis=self.analysis,
            colorspace=node["colorspace"].value() or None,
            track_mattes=bool(node["per_face_mattes"].value()),
        )
        self.read: nuke.Node | None = None
        self.error: str | None = None

    def run(self) -> None:
        """Runs in a background thread: the render, then the Read in the main thread."""
        task = nuke.ProgressTask("FaceRestore " + self.node.name())
        task.setMessage("analysing and restoring frames %d-%d" % (self.first, self.last))

        def progress(done: int, total: int, stage: str) -> None:
            task.setProgress(int(100 * done / max(total, 1)))
            task.setMessage("%s: frame %d of %d" % (stage, done, total))

        job = host.Job(self.args, on_progress=progress)
        watcher = threading.Thread(target=self._cancel_when_asked, args=(task, job), daemon=True)
        watcher.start()
        try:
            job.wait()
        except host.HostError as exc:
            self.error = str(exc)
            nuke.executeInMainThreadWithResult(nuke.message, ("FaceRestore: " + self.error,))
            return
        finally:
            del task  # closes Nuke's progress bar
        self.read = nuke.executeInMainThreadWithResult(
            result_read, (self.node, self.output, self.first, self.last)
        )

    @staticmethod
    def _cancel_when_asked(task, job) -> None:
        while job.running():
            if task.isCancelled():
                job.cancel()
                return
            threading.Event().wait(0.2)


def render_through(node: nuke.Node, wait: bool = False) -> RenderThrough | None:
    """The "Render through facerestore" button. `wait` blocks until done (for `nuke -t`)."""
    try:
        run = RenderThrough(node)
    except (host.HostError, RuntimeError, OSError) as exc:
        nuke.message("FaceRestore: %s" % exc)
        return None
    if wait or nuke.env.get("gui") is False:
        run.run()
    else:
        threading.Thread(target=run.run, name="facerestore-render", daemon=True).start()
    return run


def pick_faces(node: nuke.Node) -> None:
    """List the shot's tracks (from its analysis) and set the Faces knob to the ones ticked."""
    sidecar = node["analysis"].value()
    if not sidecar:
        try:
            sidecar = os.path.join(work_folder(node), "restored.analysis.json")
        except host.HostError as exc:
            nuke.message("FaceRestore: %s" % exc)
            return
    if not os.path.exists(sidecar):
        nuke.message("FaceRestore: no shot analysis yet (%s); press Analyse shot, render through once, or set Analysis file" % sidecar)
        return
    try:
        tracks = host.list_tracks(sidecar)
    except host.HostError as exc:
        nuke.message("FaceRestore: %s" % exc)
        return
    chosen = {int(t) for t in node["tracks"].value().replace(" ", "").split(",") if t}
    panel = nuke.Panel("FaceRestore: faces to restore")
    labels = [host.describe_track(t) for t in tracks]
    for track, label in zip(tracks, labels):
        panel.addBooleanCheckBox(label, not chosen or track["track"] in chosen)  # type: ignore[attr-defined]  # the stub misspells it
    if not panel.show():
        return
    ticked = [t["track"] for t, label in zip(tracks, labels) if panel.value(label)]  # type: ignore[attr-defined]
    node["tracks"].setValue("" if len(ticked) == len(tracks) else ",".join(str(t) for t in ticked))


def submit_to_farm(node: nuke.Node) -> str | None:
    """Write a farm job (Open Job Description / Deadline Cloud, or Deadline 10) for the node's
    input range with its parameters; say where it is and how to submit it."""
    panel = nuke.Panel("FaceRestore: submit to farm")
    panel.addEnumerationPulldown("engine", "openjd deadline")
    panel.addSingleLineInput("frames per task", "10")
    if not panel.show():
        return None
    try:
        run = RenderThrough(node)
        job_dir = os.path.join(run.folder, "farm_job")
        args = host.farm_args(
            panel.value("engine"),  # type: ignore[attr-defined]
            run.plates,
            run.output,
            job_dir,
            node_values(node),
            frames=(run.first, run.last),
            chunk=int(panel.value("frames per task")),  # type: ignore[attr-defined]
        )
        lines = host.Job(args).wait()
    except (host.HostError, ValueError, OSError) as exc:
        nuke.message("FaceRestore: %s" % exc)
        return None
    nuke.message("FaceRestore farm job written:\n" + "\n".join(lines))
    return job_dir


def bake_to_group(node: nuke.Node) -> nuke.Node:
    """Replace the gizmo by an equivalent Group, so the script opens where facerestore's Nuke
    folder is not installed (the OFX plug-in is still needed to render)."""
    name, x, y = node.name(), node.xpos(), node.ypos()
    inputs = [node.input(i) for i in range(node.inputs())]
    dependents = [(d, i) for d in node.dependent(nuke.INPUTS) for i in range(d.inputs()) if d.input(i) is node]
    group = node.makeGroup()  # type: ignore[attr-defined]  # Gizmo.makeGroup
    nuke.delete(node)
    group.setName(name)
    group.setXYpos(x, y)
    for i, source in enumerate(inputs):
        group.setInput(i, source)
    for dependent, i in dependents:
        dependent.setInput(i, group)
    return group
