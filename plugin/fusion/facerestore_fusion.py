"""FaceRestore in Fusion and DaVinci Resolve: render a shot through facerestore from the comp
(the selected Loader) or from Resolve's timeline (the clip under the playhead), and bring the
result back as a Loader or a media pool clip.

Shared by the menu scripts `Scripts/Comp/FaceRestore Render.py` and `Scripts/Utility/FaceRestore
Resolve Render.py`. It runs in the host's Python (3.7 or newer) with the standard library and
facerestore_host only: facerestore itself runs as a subprocess, since the host's interpreter
cannot load facerestore's binaries. The functions take the host objects (comp, resolve) as
arguments, so the tests drive them with fakes.
"""

from __future__ import annotations

import os
import re
import sys

try:
    import facerestore_host as host
except ImportError:  # a checkout: the shared host module lives in plugin/hostside
    sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hostside"))
    import facerestore_host as host

HostError = host.HostError
OUTPUT_FOLDER = "facerestore"  # results go to <plate folder>/facerestore/
# A numbered file, `shot.1001.exr` or `shot1001.exr`: name, frame number, extension.
NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")
# Resolve names an image sequence by its range: `shot.[1001-1100].exr`.
BRACKETED = re.compile(r"^(.*)\[(\d+)-(\d+)\](\.[A-Za-z0-9]+)$")
PRINTF = re.compile(r"%0?(\d*)d")
HASHES = re.compile(r"#+")
AUTO_POSITION = -32768  # AddTool's "place it where you like"


def one_line(error) -> str:
    text = " ".join(str(error).split())
    return text if text.startswith("facerestore") else "facerestore: " + text


# ---- sequences ----


def exr_pattern(path: str) -> tuple:
    """A numbered EXR frame (Fusion names a Loader's sequence by one of its frames) as a
    `####` pattern and that frame's number: /s/sh.1001.exr -> (/s/sh.####.exr, 1001)."""
    folder, name = os.path.split(path)
    match = NUMBERED.match(name)
    if not match or match.group(3).lower() != ".exr":
        raise HostError(f"{path} is not a numbered EXR sequence (like shot.1001.exr)")
    head, digits, ext = match.groups()
    return os.path.join(folder, head + "#" * len(digits) + ext), int(digits)


def frame_path(pattern: str, frame: int) -> str:
    return HASHES.sub(lambda m: str(frame).zfill(len(m.group(0))), pattern, count=1)


def printf_pattern(pattern: str) -> str:
    """`####` as `%04d`, the form Resolve's ImportMedia takes."""
    return HASHES.sub(lambda m: f"%0{len(m.group(0))}d", pattern, count=1)


def frames_on_disk(pattern: str) -> list:
    folder, name = os.path.split(pattern)
    match = HASHES.search(name)
    head, tail = name[: match.start()], name[match.end() :]
    numbered = re.compile(re.escape(head) + r"(\d{" + str(len(match.group(0))) + ",})" + re.escape(tail) + "$")
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(numbered.match, names) if m)


def output_pattern(plates: str) -> str:
    folder, name = os.path.split(plates)
    return os.path.join(folder, OUTPUT_FOLDER, name)


def analysis_path(output: str) -> str:
    """The shot's analysis sidecar beside the result: r.####.exr -> r.analysis.json."""
    folder, name = os.path.split(output)
    stem = HASHES.split(name)[0].rstrip("._") or "shot"
    return os.path.join(folder, stem + ".analysis.json")


# ---- rendering ----


def render(plates: str, frames: tuple, values: dict, colorspace=None, track_mattes=False, log=print) -> str:
    """Render frames `frames` (first, last) of `plates` through facerestore into the folder
    beside them; returns the output pattern. The analysis sidecar is named explicitly, so a
    later render of the same shot (or the OFX node's Analysis file) reuses it."""
    output = output_pattern(plates)
    args = host.render_args(
        plates,
        output,
        values,
        frames=frames,
        analysis=analysis_path(output),
        colorspace=colorspace or None,
        track_mattes=track_mattes,
    )
    log(f"facerestore: rendering {plates} frames {frames[0]}-{frames[1]} into {os.path.dirname(output)}")

    def progress(done: int, total: int, stage: str) -> None:
        log(f"facerestore: {stage} {done}/{total}")

    job = host.Job(args, on_progress=progress)
    try:
        job.wait()
    except KeyboardInterrupt:  # the script was stopped: stop facerestore too (no half-written frame)
        job.cancel()
        job.wait()
    return output


# ---- Fusion ----


def first_value(table, default=None):
    """Item 1 of a Lua table as Fusion's Python returns it ({1.0: value}), e.g. a clip attribute."""
    if isinstance(table, dict) and table:
        return table.get(1, default)
    return default


def find_loader(comp):
    """The Loader to restore: the active tool, else the one selected Loader."""
    active = comp.ActiveTool
    if active is not None and active.GetAttrs()["TOOLS_RegID"] == "Loader":
        return active
    loaders = list((comp.GetToolList(True, "Loader") or {}).values())
    if len(loaders) == 1:
        return loaders[0]
    if loaders:
        raise HostError(f"{len(loaders)} Loaders are selected: make the plate's Loader the active tool")
    if active is not None:
        attrs = active.GetAttrs()
        raise HostError(
            f"{attrs['TOOLS_Name']} is a {attrs['TOOLS_RegID']}, not a Loader: select the Loader of the plates to restore"
        )
    raise HostError("no Loader is selected: select the Loader of the plates to restore")


def loader_shot(comp, loader) -> tuple:
    """(plates pattern, (first, last) frame on disk, first comp frame) of the Loader's frames
    inside the comp's render range. Hold, reverse and loop settings are not followed: the
    plates are taken frame for frame from the Loader's trim in."""
    attrs = loader.GetAttrs()
    clip = first_value(attrs.get("TOOLST_Clip_Name")) or loader.GetInput("Clip")
    if not clip:
        raise HostError(f"the Loader {attrs['TOOLS_Name']} has no clip")
    plates, named = exr_pattern(comp.MapPath(clip))
    start = int(first_value(attrs.get("TOOLIT_Clip_StartFrame"), named))
    trim_in = int(first_value(attrs.get("TOOLIT_Clip_TrimIn"), 0))
    global_in, global_out = int(loader.GetInput("GlobalIn")), int(loader.GetInput("GlobalOut"))
    comp_attrs = comp.GetAttrs()
    render_start, render_end = int(comp_attrs["COMPN_RenderStart"]), int(comp_attrs["COMPN_RenderEnd"])
    first, last = max(global_in, render_start), min(global_out, render_end)
    if first > last:
        raise HostError(
            f"the Loader {attrs['TOOLS_Name']} (frames {global_in}-{global_out}) is outside the render range "
            f"{render_start}-{render_end}"
        )
    offset = start + trim_in - global_in  # comp frame -> frame number on disk
    return plates, (first + offset, last + offset), first


def ask_options(comp, spec: dict):
    """The facerestore options, asked with Fusion's dialog (spec defaults; choices as menus):
    (values, colorspace, track_mattes), or None when the artist cancels."""
    dialog = {}
    for param in spec["params"]:
        entry = {1: param["id"], "Name": param["label"], "Default": param["default"]}
        if param["type"] == "choice":
            entry.update(
                {
                    2: "Dropdown",
                    "Default": param["choices"].index(param["default"]),
                    "Options": {i + 1: c for i, c in enumerate(param["choices"])},
                }
            )
        elif param["type"] in ("float", "int"):
            entry.update({2: "Slider", "Min": param["min"], "Max": param["max"], "Integer": param["type"] == "int"})
        else:
            entry.update({2: "Text", "Lines": 1})
        dialog[len(dialog) + 1] = entry
    dialog[len(dialog) + 1] = {
        1: "colorspace",
        2: "Text",
        "Name": "Plate colourspace (empty: scene_linear)",
        "Default": "",
        "Lines": 1,
    }
    dialog[len(dialog) + 1] = {1: "track_mattes", 2: "Checkbox", "Name": "Also one matte per face", "Default": 0}
    answers = comp.AskUser("FaceRestore Render", dialog)
    if answers is None:
        return None
    values = {}
    for param in spec["params"]:
        value = answers.get(param["id"], param["default"])
        values[param["id"]] = param["choices"][int(value)] if param["type"] == "choice" else value
    return values, answers.get("colorspace") or None, bool(answers.get("track_mattes"))


def add_result_loader(comp, source, output: str, frames: tuple, comp_first: int, matte_channel: str):
    """A Loader of the result beside `source`, on the same comp frames, with the face matte as
    its alpha (the restored RGB stays RGB)."""
    try:
        pos = comp.CurrentFrame.FlowView.GetPosTable(source)
    except AttributeError:  # no flow view (a headless comp): let Fusion place it
        pos = None
    x, y = (pos[1] + 1, pos[2]) if pos else (AUTO_POSITION, AUTO_POSITION)
    # Locked, a new Loader opens no file browser; one undo step removes it again.
    comp.Lock()
    comp.StartUndo("FaceRestore")
    try:
        loader = comp.AddTool("Loader", x, y)
        loader.SetInput("Clip", frame_path(output, frames[0]))
        loader.SetInput("GlobalIn", comp_first)
        loader.SetInput("GlobalOut", comp_first + frames[1] - frames[0])
        loader.SetInput("Clip1.OpenEXRFormat.AlphaName", matte_channel)
        loader.SetAttrs({"TOOLS_Name": source.GetAttrs()["TOOLS_Name"] + "_FaceRestore"})
    finally:
        comp.EndUndo(True)
        comp.Unlock()
    return loader


def restore_loader(comp, loader, values=None, colorspace=None, track_mattes=False, log=print):
    """Restore the Loader's frames in the render range; returns the result's Loader."""
    plates, frames, comp_first = loader_shot(comp, loader)
    output = render(plates, frames, values or {}, colorspace, track_mattes, log)
    result = add_result_loader(comp, loader, output, frames, comp_first, host.load_spec()["matte_channel"])
    log(f"facerestore: done: {result.GetAttrs()['TOOLS_Name']} reads {output}")
    return result


def comp_and_loader(comp, fusion) -> tuple:
    """The comp a menu script runs in and the Loader to work on, checked before any dialog: a
    wrong selection or clip is reported at once."""
    if comp is None and fusion is not None:
        comp = fusion.GetCurrentComp()
    if comp is None:
        raise HostError("no composition is open")
    loader = find_loader(comp)
    loader_shot(comp, loader)
    return comp, loader


def comp_main(comp=None, fusion=None, log=print):
    """Script > FaceRestore Render: ask the options, render, add the Loader. Errors are one line
    in the console and change nothing in the comp."""
    try:
        comp, loader = comp_and_loader(comp, fusion)
        options = ask_options(comp, host.load_spec())
        if options is None:
            log("facerestore: cancelled")
            return None
        values, colorspace, track_mattes = options
        return restore_loader(comp, loader, values, colorspace, track_mattes, log)
    except HostError as error:
        log(one_line(error))
        return None


def submit_loader_to_farm(comp, loader, engine="openjd", chunk=10, values=None, log=print) -> str:
    """Write a farm job (Open Job Description / Deadline Cloud, OpenCue or Deadline 10) for the
    Loader's frames in the render range, with the given parameters; returns the job folder."""
    plates, frames, _ = loader_shot(comp, loader)
    output = output_pattern(plates)
    job_dir = os.path.join(os.path.dirname(output), "farm_job")
    lines = host.Job(host.farm_args(engine, plates, output, job_dir, values or {}, frames=frames, chunk=chunk)).wait()
    for line in lines:
        log("facerestore: " + line)
    return job_dir


def farm_main(comp=None, fusion=None, log=print):
    """Script > FaceRestore Submit to farm: the selected Loader's range as a farm job, with the
    node's parameters and the engine and chunk asked in one dialog."""
    try:
        comp, loader = comp_and_loader(comp, fusion)
        engines = ("openjd", "opencue", "deadline")
        answers = comp.AskUser(
            "FaceRestore: submit to farm",
            {
                1: {1: "engine", 2: "Dropdown", "Name": "Farm", "Default": 0, "Options": {i + 1: e for i, e in enumerate(engines)}},
                2: {1: "chunk", 2: "Slider", "Name": "Frames per task", "Default": 10, "Min": 1, "Max": 100, "Integer": True},
            },
        )
        if answers is None:
            log("facerestore: cancelled")
            return None
        return submit_loader_to_farm(comp, loader, engines[int(answers["engine"])], int(answers["chunk"]), log=log)
    except HostError as error:
        log(one_line(error))
        return None


# ---- DaVinci Resolve ----


def resolve_sequence(path: str) -> tuple:
    """A media pool clip's File Path as (plates pattern, (first, last) frame): Resolve writes an
    image sequence as `shot.[1001-1100].exr`; a `%04d` pattern or one numbered frame is taken
    with every frame of it on disk."""
    if not path:
        raise HostError("the clip has no file path (a compound clip, title or generator?)")
    folder, name = os.path.split(path)
    bracketed = BRACKETED.match(name)
    if bracketed and bracketed.group(4).lower() == ".exr":
        head, first, last, ext = bracketed.groups()
        return os.path.join(folder, head + "#" * len(first) + ext), (int(first), int(last))
    printf = PRINTF.search(name)
    if printf and name.lower().endswith(".exr"):
        plates = os.path.join(folder, PRINTF.sub("#" * max(1, int(printf.group(1) or 1)), name, count=1))
    else:
        try:
            plates = exr_pattern(path)[0]
        except HostError:
            raise HostError(f"{path} is not an EXR sequence") from None
    frames = frames_on_disk(plates)
    if not frames:
        raise HostError(f"no frames of {plates} are on disk")
    return plates, (frames[0], frames[-1])


def render_resolve(resolve, values=None, colorspace=None, track_mattes=False, log=print) -> list:
    """Restore the clip under the playhead in the current timeline and import the result into
    the current media pool folder; returns the imported media pool items."""
    project = resolve.GetProjectManager().GetCurrentProject()
    if not project:
        raise HostError("no project is open in Resolve")
    timeline = project.GetCurrentTimeline()
    if not timeline:
        raise HostError(f"the project {project.GetName()} has no timeline open")
    item = timeline.GetCurrentVideoItem()
    if not item:
        raise HostError(f"no video clip under the playhead in {timeline.GetName()}")
    media = item.GetMediaPoolItem()
    if not media:
        raise HostError(f"{item.GetName()} has no media (a title or generator?)")
    plates, frames = resolve_sequence(media.GetClipProperty("File Path"))
    output = render(plates, frames, values or {}, colorspace, track_mattes, log)
    clip = {"FilePath": printf_pattern(output), "StartIndex": frames[0], "EndIndex": frames[1]}
    imported = project.GetMediaPool().ImportMedia([clip])
    if not imported:
        raise HostError(f"Resolve did not import {output} (frames {frames[0]}-{frames[1]})")
    log(f"facerestore: imported {output} frames {frames[0]}-{frames[1]} into the media pool as {imported[0].GetName()}")
    return imported


def resolve_main(resolve=None, log=print):
    """Workspace > Scripts > FaceRestore Resolve Render, with the spec's default options;
    errors are one line in the console and import nothing."""
    try:
        if resolve is None:
            try:
                import DaVinciResolveScript as dvr
            except ImportError:
                raise HostError(
                    "cannot reach Resolve: run this from Resolve's Workspace > Scripts menu, "
                    "or put Resolve's scripting Modules folder on PYTHONPATH"
                ) from None
            resolve = dvr.scriptapp("Resolve")
        if resolve is None:
            raise HostError("cannot reach Resolve: is it running, with external scripting allowed?")
        return render_resolve(resolve, log=log)
    except HostError as error:
        log(one_line(error))
        return None
