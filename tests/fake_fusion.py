"""Fakes of Fusion's and DaVinci Resolve's scripting objects, because neither application can
run here (no licence, no display, no GPU build). They are shaped after the published APIs:
Resolve's classes after the `fusionscript-stubs` package (test_fusion checks every API method
defined here against it, by name and parameter names), Fusion's comp and tools after the Fusion
Scripting Guide (the stubs leave `Fusion` and `FusionComp` undocumented, so those are checked by
hand only). They record what the code under test does: tools added, inputs set, undo and lock
calls, dialogs shown, media imported.

Convention: methods named as in the API are CamelCase; the fakes' own helpers are lower case.
Each fake's `API` names its class in the stubs.
"""

from __future__ import annotations

import os
import re
import types

NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")


# ---- Fusion ----


class FakeTool:
    """A tool in a comp: inputs by name, attributes (TOOLS_*), SetInput calls recorded."""

    def __init__(self, comp: FakeComp, reg_id: str, name: str) -> None:
        self.comp, self.ID = comp, reg_id
        self.inputs: dict = {}
        self.attrs = {"TOOLS_RegID": reg_id, "TOOLS_Name": name}
        self.set_calls: list = []

    @property
    def Name(self) -> str:
        return self.attrs["TOOLS_Name"]

    def GetAttrs(self, name=None):
        return self.attrs.get(name) if name else dict(self.attrs)

    def SetAttrs(self, attrs: dict) -> None:
        self.attrs.update(attrs)

    def GetInput(self, id, time=None):
        return self.inputs.get(id)

    def SetInput(self, id, value, time=None) -> None:
        self.set_calls.append((id, value))
        self.inputs[id] = value


class FakeLoader(FakeTool):
    """A Loader: setting its Clip reads the sequence from disk as Fusion does (start frame, length,
    trims) and places it at the comp's render start; moving Global In moves the whole clip."""

    def SetInput(self, id, value, time=None) -> None:
        if id == "GlobalIn" and "GlobalIn" in self.inputs:
            self.inputs["GlobalOut"] += value - self.inputs["GlobalIn"]
        super().SetInput(id, value, time)
        if id == "Clip":
            self.read_clip(value)

    def read_clip(self, path: str) -> None:
        folder, name = os.path.split(path)
        match = NUMBERED.match(name)
        start, length = None, 1
        if match:
            head, digits, ext = match.groups()
            start = int(digits)
            while os.path.exists(os.path.join(folder, "%s%0*d%s" % (head, len(digits), start + length, ext))):
                length += 1
        self.attrs.update(
            {
                "TOOLST_Clip_Name": {1.0: path},
                "TOOLIT_Clip_StartFrame": {1.0: start if start is not None else 0},
                "TOOLIT_Clip_Length": {1.0: length},
                "TOOLIT_Clip_TrimIn": {1.0: 0},
                "TOOLIT_Clip_TrimOut": {1.0: length - 1},
            }
        )
        first = self.comp.attrs["COMPN_RenderStart"]
        self.inputs.update({"GlobalIn": first, "GlobalOut": first + length - 1})


class FakeFlowView:
    def __init__(self) -> None:
        self.positions: dict = {}

    def GetPosTable(self, tool):
        x, y = self.positions[tool]
        return {1.0: float(x), 2.0: float(y)}

    def SetPos(self, tool, x, y) -> None:
        self.positions[tool] = (x, y)


class FakeComp:
    """A composition. `answers`: what the artist enters in AskUser dialogs (None: cancels)."""

    API = "FusionComp"

    def __init__(self, render_range=(1, 100), answers: dict | None = None) -> None:
        self.attrs = {
            "COMPN_RenderStart": float(render_range[0]),
            "COMPN_RenderEnd": float(render_range[1]),
            "COMPN_GlobalStart": float(render_range[0]),
            "COMPN_GlobalEnd": float(render_range[1]),
        }
        self.tools: list = []
        self.selected: list = []
        self.active = None
        self.answers = answers
        self.dialogs: list = []
        self.added: list = []  # tools added by the code under test
        self.undo: list = []
        self.lock_depth = 0
        self.locked_when_added: list = []
        self.CurrentFrame = types.SimpleNamespace(FlowView=FakeFlowView())

    # helpers for tests
    def make_tool(self, reg_id: str, x: float = 0, y: float = 0, select=True):
        count = sum(reg_id == t.ID for t in self.tools) + 1
        tool = (FakeLoader if reg_id == "Loader" else FakeTool)(self, reg_id, f"{reg_id}{count}")
        self.tools.append(tool)
        self.CurrentFrame.FlowView.SetPos(tool, x, y)
        if select:
            self.selected, self.active = [tool], tool
        return tool

    # the API
    @property
    def ActiveTool(self):
        return self.active

    def GetAttrs(self, name=None):
        return self.attrs.get(name) if name else dict(self.attrs)

    def GetToolList(self, selected=False, type=None) -> dict:
        tools = self.selected if selected else self.tools
        return {float(i + 1): t for i, t in enumerate(t for t in tools if type is None or type == t.ID)}

    def MapPath(self, path: str) -> str:
        return path

    def AddTool(self, id, xpos=-32768, ypos=-32768):
        tool = self.make_tool(id, xpos, ypos, select=False)
        self.added.append(tool)
        self.locked_when_added.append(self.lock_depth > 0)
        return tool

    def Lock(self) -> None:
        self.lock_depth += 1

    def Unlock(self) -> None:
        self.lock_depth -= 1

    def StartUndo(self, name) -> None:
        self.undo.append(("start", name))

    def EndUndo(self, keep) -> None:
        self.undo.append(("end", keep))

    def AskUser(self, title, dialog):
        """Answers with the dialog's defaults, overridden by `answers` (None: the artist cancels)."""
        self.dialogs.append((title, dialog))
        if self.answers is None:
            return None
        result = {entry[1]: entry.get("Default") for entry in dialog.values()}
        result.update(self.answers)
        return result


class FakeFusion:
    API = "Fusion"

    def __init__(self, comp: FakeComp | None) -> None:
        self.comp = comp

    def GetCurrentComp(self):
        return self.comp

    def MapPath(self, path: str) -> str:
        return path


# ---- DaVinci Resolve ----


class FakeMediaPoolItem:
    API = "MediaPoolItem"

    def __init__(self, name: str, properties: dict) -> None:
        self.name, self.properties = name, properties

    def GetName(self) -> str:
        return self.name

    def GetClipProperty(self, propertyName=None):
        return self.properties.get(propertyName, "") if propertyName else dict(self.properties)


class FakeMediaPool:
    """Imports what exists on disk: a clip info's first frame must be there, as Resolve needs."""

    API = "MediaPool"

    def __init__(self) -> None:
        self.imported: list = []  # every ImportMedia argument
        self.items: list = []

    def ImportMedia(self, items):
        self.imported.append(items)
        created = []
        for item in items:
            path = item["FilePath"] % item["StartIndex"] if isinstance(item, dict) else item
            if os.path.exists(path):
                name = os.path.basename(item["FilePath"] if isinstance(item, dict) else item)
                created.append(FakeMediaPoolItem(name, {"File Path": path}))
        self.items += created
        return created


class FakeTimelineItem:
    API = "TimelineItem"

    def __init__(self, name: str, media: FakeMediaPoolItem | None) -> None:
        self.name, self.media = name, media

    def GetName(self) -> str:
        return self.name

    def GetMediaPoolItem(self):
        return self.media


class FakeTimeline:
    API = "Timeline"

    def __init__(self, name: str, current: FakeTimelineItem | None) -> None:
        self.name, self.current = name, current

    def GetName(self) -> str:
        return self.name

    def GetCurrentVideoItem(self):
        return self.current


class FakeProject:
    API = "Project"

    def __init__(self, name: str, timeline: FakeTimeline | None) -> None:
        self.name, self.timeline, self.media_pool = name, timeline, FakeMediaPool()

    def GetName(self) -> str:
        return self.name

    def GetCurrentTimeline(self):
        return self.timeline

    def GetMediaPool(self):
        return self.media_pool


class FakeProjectManager:
    API = "ProjectManager"

    def __init__(self, project: FakeProject | None) -> None:
        self.project = project

    def GetCurrentProject(self):
        return self.project


class FakeResolve:
    API = "Resolve"

    def __init__(self, project: FakeProject | None) -> None:
        self.project_manager = FakeProjectManager(project)

    def GetProjectManager(self):
        return self.project_manager


def make_resolve(file_path: str | None = None, project=True, timeline=True, clip=True) -> FakeResolve:
    """Resolve with a project, a timeline and, under the playhead, a clip of `file_path` (each
    level can be left out, as when nothing is open)."""
    media = FakeMediaPoolItem(os.path.basename(file_path or ""), {"File Path": file_path or ""})
    item = FakeTimelineItem("clip", media) if clip else None
    line = FakeTimeline("Timeline 1", item) if timeline else None
    return FakeResolve(FakeProject("Shots", line) if project else None)


def resolve_script_module(resolve: FakeResolve | None) -> types.ModuleType:
    """A stand-in for Resolve's `DaVinciResolveScript` module: scriptapp("Resolve") is `resolve`."""
    module = types.ModuleType("DaVinciResolveScript")
    module.scriptapp = lambda app: resolve if app == "Resolve" else None
    return module


FAKES = (
    FakeComp,
    FakeFusion,
    FakeMediaPoolItem,
    FakeMediaPool,
    FakeTimelineItem,
    FakeTimeline,
    FakeProject,
    FakeProjectManager,
    FakeResolve,
)
