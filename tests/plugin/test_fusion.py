"""The Fusion / DaVinci Resolve adapter: the macro (.setting) read back with a small Lua-table
reader, and the two menu scripts run against FAKE Fusion and Resolve objects (tests/fake_fusion.py;
neither application can run here). Render-through runs the real `facerestore render` on a real
EXR shot (astronaut, NASA, public domain) and must give its exact pixels."""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import inspect
import io
import os
import re
import runpy
import shlex
import shutil
import sys
from pathlib import Path

import fake_fusion
import numpy as np
import pytest

from facerestore.plugin.fusion_macro import INPUT_ROUTER, MATTE_TOOL, OFX_TOOL, RGB_TOOL, macro_text
from facerestore.plugin.hostspec import spec_json

from helpers import ROOT, channel, read_buf, run_cli, write_moving_face_shot

FUSION_DIR = ROOT / "plugin" / "fusion"
COMP_SCRIPT = FUSION_DIR / "Scripts" / "Comp" / "FaceRestore Render.py"
RESOLVE_SCRIPT = FUSION_DIR / "Scripts" / "Utility" / "FaceRestore Resolve Render.py"
SPEC = spec_json()

sys.path.insert(0, str(FUSION_DIR))
import facerestore_fusion  # noqa: E402  (host-side module: found on the host's script path)

# ---- a small Lua-table reader (what Fusion's .setting files are) ----

LUA_TOKEN = re.compile(
    r'\s+|--[^\n]*|(?P<str>"(?:\\.|[^"\\])*")|(?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)'
    r"|(?P<name>[A-Za-z_][\w.]*)|(?P<sym>[{}=,;()\[\]])"
)


class LuaTable(dict):
    """A table: named fields by name, positional items under 1, 2, ...; `type_name` is its
    constructor (`InstanceInput`, `ordered()`, an OFX id...) or ""."""

    type_name = ""


def lua_tokens(text: str) -> list:
    tokens, pos = [], 0
    while pos < len(text):
        match = LUA_TOKEN.match(text, pos)
        assert match, f"cannot read Lua at {text[pos:pos + 40]!r}"
        pos = match.end()
        if match.lastgroup:
            tokens.append((match.lastgroup, match.group(match.lastgroup)))
    return tokens


def read_lua(text: str):
    tokens = lua_tokens(text)
    pos = 0

    def peek(offset=0):
        return tokens[pos + offset] if pos + offset < len(tokens) else (None, None)

    def take(expected=None):
        nonlocal pos
        token = tokens[pos]
        assert expected is None or token[1] == expected, f"expected {expected!r}, got {token!r}"
        pos += 1
        return token

    def value():
        kind, text = take()
        if kind == "str":
            return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), text[1:-1])
        if kind == "num":
            return float(text) if re.search(r"[.eE]", text) else int(text)
        if kind == "name" and text in ("true", "false", "nil"):
            return {"true": True, "false": False, "nil": None}[text]
        if kind == "name":  # a constructor: Type { ... } or ordered() { ... }
            if peek()[1] == "(":
                take("(")
                take(")")
                text += "()"
            take("{")
            return table(text)
        assert text == "{", f"unexpected {text!r}"
        return table("")

    def table(type_name):
        result, index = LuaTable(), 1
        result.type_name = type_name
        while peek()[1] != "}":
            if peek()[1] == "[":
                take("[")
                key = value()
                take("]")
                take("=")
            elif peek()[0] == "name" and peek(1)[1] == "=":
                key = take()[1]
                take("=")
            else:
                key, index = index, index + 1
            assert key not in result, f"duplicate key {key!r}"
            result[key] = value()
            if peek()[1] in (",", ";"):
                take()
        take("}")
        return result

    result = value()
    assert pos == len(tokens), f"text after the table: {tokens[pos:pos + 5]}"
    return result


def test_the_lua_reader_reads_what_fusion_writes():
    text = '{ Tools = ordered() { A = ofx.x.Y { Pos = { 1, -2.5 }, S = "a \\"q\\"" }, }, ["K.k"] = true; }'
    data = read_lua(text)
    assert data["Tools"].type_name == "ordered()" and data["Tools"]["A"].type_name == "ofx.x.Y"
    assert data["Tools"]["A"]["Pos"] == {1: 1, 2: -2.5} and data["Tools"]["A"]["S"] == 'a "q"'
    assert data["K.k"] is True


# ---- the macro ----


@pytest.fixture(scope="module")
def macro():
    setting = read_lua((FUSION_DIR / "FaceRestore.setting").read_text())
    assert setting["ActiveTool"] == "FaceRestore"
    group = setting["Tools"]["FaceRestore"]
    assert group.type_name == "MacroOperator" and setting["Tools"].type_name == "ordered()"
    return group


def test_the_macro_file_is_generated_from_the_spec():
    assert (FUSION_DIR / "FaceRestore.setting").read_text() == macro_text(
        SPEC
    ), "regenerate: python -m facerestore.plugin.hostspec --write"


def test_the_macro_wraps_the_ofx_node_and_publishes_every_parameter_with_its_default(macro):
    ofx = macro["Tools"][OFX_TOOL]
    assert ofx.type_name == SPEC["node"]["fusion_ofx_id"] == "ofx.com.facerestore.FaceRestore"
    ofx_only = {p["id"]: p for p in SPEC["ofx_params"]}
    published = SPEC["params"] + [ofx_only["colorspace"], ofx_only["analysis"]]
    controls = [c["id"] for c in SPEC["ofx_controls"]]
    assert controls == ["analyse_shot", "analysis_status"]
    assert [k for k in macro["Inputs"] if k != "MainInput1"] == [p["id"] for p in published] + controls
    for control in SPEC["ofx_controls"]:  # the OFX node's Analyse shot button and Status, as they are
        knob = macro["Inputs"][control["id"]]
        assert (knob["SourceOp"], knob["Source"], knob["Name"]) == (OFX_TOOL, control["id"], control["label"])
    for param in published:
        default = param["choices"].index(param["default"]) if param["type"] == "choice" else param["default"]
        knob = macro["Inputs"][param["id"]]
        assert knob.type_name == "InstanceInput" and knob["SourceOp"] == OFX_TOOL, param["id"]
        assert knob["Source"] == param["id"] and knob["Name"] == param["label"], param["id"]
        # (Lua has one number type: 1 and 1.0 are the same value; a text must stay a text)
        assert knob["Default"] == default and isinstance(knob["Default"], str) == isinstance(default, str), param["id"]
        assert ofx["Inputs"][param["id"]]["Value"] == default, param["id"]
    assert ofx["Inputs"]["output"]["Value"] == ofx_only["output"]["choices"].index("both")


def test_the_macro_gives_restored_rgb_with_plate_alpha_and_the_matte_on_its_own_output(macro):
    tools = macro["Tools"]

    def source(tool, input_name):
        link = tools[tool]["Inputs"][input_name]
        return link["SourceOp"], link["Source"]

    assert macro["Inputs"]["MainInput1"] == {"SourceOp": INPUT_ROUTER, "Source": "Input"}
    assert tools[INPUT_ROUTER].type_name == "PipeRouter"
    assert source(OFX_TOOL, "Source") == (INPUT_ROUTER, "Output")
    outputs = macro["Outputs"]
    assert set(outputs) == {"MainOutput1", "MatteOut"}
    assert outputs["MainOutput1"]["SourceOp"] == RGB_TOOL and outputs["MatteOut"]["SourceOp"] == MATTE_TOOL
    rgb, matte = tools[RGB_TOOL], tools[MATTE_TOOL]
    assert rgb.type_name == matte.type_name == "Custom"
    assert source(RGB_TOOL, "Image1") == (OFX_TOOL, "Output") and source(RGB_TOOL, "Image2") == (INPUT_ROUTER, "Output")
    expressions = [rgb["Inputs"][c + "Expression"]["Value"] for c in ("Red", "Green", "Blue", "Alpha")]
    assert expressions == ["r1", "g1", "b1", "a2"]  # restored RGB, the plate's alpha
    assert source(MATTE_TOOL, "Image1") == (OFX_TOOL, "Output")
    assert [matte["Inputs"][c + "Expression"]["Value"] for c in ("Red", "Green", "Blue", "Alpha")] == ["a1"] * 4
    for name, tool in tools.items():  # every link names a tool of the macro
        for key, value in tool.get("Inputs", {}).items():
            if isinstance(value, dict) and "SourceOp" in value:
                assert value["SourceOp"] in tools, (name, key)


# ---- the fakes against the published API ----


def stub_methods() -> dict:
    """Class -> method -> parameter-name lists (one per overload) from fusionscript-stubs."""
    try:
        dist = importlib.metadata.distribution("fusionscript-stubs")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fusionscript-stubs is not installed (pip install fusionscript-stubs==21.0.0)")
    tree = ast.parse(Path(dist.locate_file("fusionscript-stubs/fusionscript.pyi")).read_text())
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            methods = classes.setdefault(node.name, {})
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef):
                    names = [a.arg for a in fn.args.args[1:]] + (["*" + fn.args.vararg.arg] if fn.args.vararg else [])
                    methods.setdefault(fn.name, []).append(names)
    return classes


@pytest.mark.parametrize("fake", fake_fusion.FAKES, ids=lambda f: f.__name__)
def test_every_api_method_of_the_fakes_is_in_the_published_stubs_with_its_parameters(fake):
    documented = stub_methods()[fake.API]
    if not documented:
        pytest.skip(f"the stubs document no methods of {fake.API} (checked against the Fusion Scripting Guide by hand)")
    methods = [n for n, f in vars(fake).items() if n[0].isupper() and inspect.isfunction(f)]
    assert methods
    for name in methods:
        params = list(inspect.signature(getattr(fake, name)).parameters.values())[1:]
        names = [("*" if p.kind is p.VAR_POSITIONAL else "") + p.name for p in params]
        assert name in documented, f"{fake.API}.{name} is not in the published API"
        assert names in documented[name], f"{fake.API}.{name}{tuple(names)}: the API has {documented[name]}"


# ---- host-side code ----

HOST_SIDE = [FUSION_DIR / "facerestore_fusion.py", COMP_SCRIPT, RESOLVE_SCRIPT]


@pytest.mark.parametrize("path", HOST_SIDE, ids=lambda p: p.name)
def test_host_side_code_is_python_3_7_and_imports_only_the_standard_library(path):
    tree = ast.parse(path.read_text(), feature_version=(3, 7))  # Fusion and Resolve run 3.7 and later
    allowed = set(sys.stdlib_module_names) | {"facerestore_host", "facerestore_fusion", "DaVinciResolveScript"}
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        for name in names:
            assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_the_loader_is_the_active_tool_or_the_one_selected_loader():
    comp = fake_fusion.FakeComp((1, 5), {})
    first, second = comp.make_tool("Loader"), comp.make_tool("Loader")
    merge = comp.make_tool("Merge")
    comp.selected = [first, merge]
    assert facerestore_fusion.find_loader(comp) is first  # the active tool is the Merge
    comp.active = second
    assert facerestore_fusion.find_loader(comp) is second
    comp.active, comp.selected = merge, [first, second]
    with pytest.raises(facerestore_fusion.HostError, match="2 Loaders are selected"):
        facerestore_fusion.find_loader(comp)


# ---- sequences and paths ----


def test_fusion_first_frame_paths_become_frame_patterns():
    assert facerestore_fusion.exr_pattern("/s/sh.1001.exr") == ("/s/sh.####.exr", 1001)
    assert facerestore_fusion.exr_pattern("/s/v002/name00012.EXR") == ("/s/v002/name#####.EXR", 12)
    for path in ("/s/sh.1001.dpx", "/s/still.exr"):
        with pytest.raises(facerestore_fusion.HostError, match="not a numbered EXR sequence"):
            facerestore_fusion.exr_pattern(path)
    assert facerestore_fusion.frame_path("/s/r.####.exr", 7) == "/s/r.0007.exr"
    assert facerestore_fusion.printf_pattern("/s/r.#####.exr") == "/s/r.%05d.exr"
    assert facerestore_fusion.output_pattern("/s/sh.####.exr") == os.path.join("/s", "facerestore", "sh.####.exr")
    assert facerestore_fusion.analysis_path("/s/facerestore/sh.####.exr") == "/s/facerestore/sh.analysis.json"
    assert facerestore_fusion.analysis_path("/s/facerestore/name####.exr") == "/s/facerestore/name.analysis.json"


def test_resolve_file_paths_become_patterns_and_ranges(tmp_path):
    for t in (3, 4, 5):
        (tmp_path / f"sh.{t:04d}.exr").touch()
    sequence = facerestore_fusion.resolve_sequence
    pattern = str(tmp_path / "sh.####.exr")
    assert sequence(str(tmp_path / "sh.[0004-0005].exr")) == (pattern, (4, 5))
    assert sequence(str(tmp_path / "sh.%04d.exr")) == (pattern, (3, 5))
    assert sequence(str(tmp_path / "sh.0003.exr")) == (pattern, (3, 5))
    for path, message in [
        (str(tmp_path / "clip.mov"), "not an EXR sequence"),
        ("", "no file path"),
        (str(tmp_path / "other.0001.exr"), "no frames"),
    ]:
        with pytest.raises(facerestore_fusion.HostError, match=message):
            sequence(path)


# ---- render-through ----


@pytest.fixture(scope="module", autouse=True)
def facerestore_command():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACERESTORE_CMD", f"{shlex.quote(sys.executable)} -m facerestore.plugin.cli")
        yield


@pytest.fixture(scope="module")
def shot(tmp_path_factory, colour):
    folder = tmp_path_factory.mktemp("fusion_shot")
    write_moving_face_shot(folder, colour, 5)
    return folder


def copy_shot(shot, folder: Path) -> Path:
    shutil.copytree(shot, folder, ignore=shutil.ignore_patterns("facerestore"))
    return folder


def loader_comp(clip: Path, answers: dict | None, global_in=10, render_range=(11, 14)):
    """A comp whose active tool is a Loader of `clip` placed at `global_in`; `answers`: what the
    artist enters in the options dialog (None: cancels it)."""
    comp = fake_fusion.FakeComp(render_range, answers)
    loader = comp.make_tool("Loader", x=3, y=2)
    loader.SetInput("Clip", str(clip))
    loader.SetInput("GlobalIn", global_in)
    return comp, loader


def run_script(path: Path, **host_globals) -> list:
    """Run a menu script as the host does (with its globals set); returns the console lines."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(path), init_globals=host_globals, run_name="__main__")
    return out.getvalue().splitlines()


@pytest.fixture(scope="module")
def comp_render(shot):
    """The Comp script on a Loader of frames 1-5 at comp frames 10-14, render range 11-14,
    strength 0.8 entered in the dialog: plate frames 2-5."""
    comp, loader = loader_comp(shot / "s.0001.exr", {"strength": 0.8})
    lines = run_script(COMP_SCRIPT, comp=comp, fusion=fake_fusion.FakeFusion(comp))
    return comp, loader, lines


@pytest.mark.slow
def test_the_comp_script_adds_a_loader_of_exactly_what_facerestore_render_gives(shot, comp_render, tmp_path):
    comp, loader, lines = comp_render
    assert len(comp.added) == 1, lines
    result = comp.added[0]
    assert result.ID == "Loader" and comp.locked_when_added == [True]
    assert comp.undo == [("start", "FaceRestore"), ("end", True)] and comp.lock_depth == 0
    assert comp.CurrentFrame.FlowView.GetPosTable(result) == {1: 4, 2: 2}  # beside the plate's Loader
    assert result.GetInput("Clip") == str(shot / "facerestore" / "s.0002.exr")
    assert (result.GetInput("GlobalIn"), result.GetInput("GlobalOut")) == (11, 14)  # lined up with the plate
    assert result.GetInput("Clip1.OpenEXRFormat.AlphaName") == "face.mask"
    assert result.Name == "Loader1_FaceRestore"
    assert any("rendering" in line and "4/4" in line for line in lines), lines
    assert (shot / "facerestore" / "s.analysis.json").exists()  # the analysis, named explicitly
    assert not (shot / "facerestore" / "s.0001.exr").exists()  # outside the render range
    run_cli(
        "render",
        shot / "s.####.exr",
        "-o",
        tmp_path / "r.####.exr",
        "--frames",
        "2-5",
        "--strength",
        "0.8",
        "-q",
        check=True,
    )
    for t in range(2, 6):
        spec, pixels = read_buf(shot / "facerestore" / f"s.{t:04d}.exr")
        _, reference = read_buf(tmp_path / f"r.{t:04d}.exr")
        assert np.array_equal(pixels, reference), t
        assert channel(spec, pixels, "face.mask").max() > 0.5, t


def test_the_options_dialog_offers_every_parameter_with_its_default_and_reads_menus_back():
    comp = fake_fusion.FakeComp((1, 5), {"backend": 2.0, "temporal_window": 7.0, "track_mattes": 1.0})
    values, colorspace, track_mattes = facerestore_fusion.ask_options(comp, SPEC)
    title, dialog = comp.dialogs[0]
    assert title == "FaceRestore Render"
    entries = {entry[1]: entry for entry in dialog.values()}
    assert list(entries) == [p["id"] for p in SPEC["params"]] + ["colorspace", "track_mattes"]
    for param in SPEC["params"]:
        entry = entries[param["id"]]
        kind = {"choice": "Dropdown", "float": "Slider", "int": "Slider", "str": "Text"}[param["type"]]
        assert entry[2] == kind and entry["Name"] == param["label"], param["id"]
        if kind == "Dropdown":
            assert list(entry["Options"].values()) == param["choices"]
            assert entry["Default"] == param["choices"].index(param["default"])
        else:
            assert entry["Default"] == param["default"], param["id"]
    assert values["backend"] == "onnx" and values["strength"] == 1.0 and colorspace is None and track_mattes
    args = facerestore_fusion.host.render_args("p.####.exr", "o.####.exr", values, track_mattes=track_mattes)
    assert args[4:] == ["--progress", "json", "--backend", "onnx", "--temporal-window", "7", "--track-mattes"]


def test_a_selection_that_is_not_a_loader_is_one_line_and_changes_nothing():
    comp = fake_fusion.FakeComp((1, 5), {})
    comp.make_tool("Merge")
    lines = run_script(COMP_SCRIPT, comp=comp)
    assert lines == ["facerestore: Merge1 is a Merge, not a Loader: select the Loader of the plates to restore"]
    comp.active, comp.selected = None, []
    assert run_script(COMP_SCRIPT, comp=comp) == [
        "facerestore: no Loader is selected: select the Loader of the plates to restore"
    ]
    assert run_script(COMP_SCRIPT, comp=None, fusion=fake_fusion.FakeFusion(None)) == [
        "facerestore: no composition is open"
    ]
    assert not comp.added and not comp.dialogs and not comp.undo


def test_a_loader_of_another_format_or_outside_the_render_range_is_one_line(tmp_path):
    (tmp_path / "s.0001.dpx").touch()
    comp, _ = loader_comp(tmp_path / "s.0001.dpx", {})
    assert run_script(COMP_SCRIPT, comp=comp)[-1].endswith("is not a numbered EXR sequence (like shot.1001.exr)")
    (tmp_path / "s.0001.exr").touch()
    comp, _ = loader_comp(tmp_path / "s.0001.exr", {}, global_in=50)
    assert run_script(COMP_SCRIPT, comp=comp) == [
        "facerestore: the Loader Loader1 (frames 50-50) is outside the render range 11-14"
    ]
    assert not comp.added and not comp.dialogs


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "facerestore: error: missing frames 4 of"),
        ("strength", "facerestore: error: Strength: 1.5 is outside 0..1"),
        ("corrupt", "s.0003.exr: not an OpenEXR file"),
        ("cancel", "facerestore: cancelled"),
    ],
)
def test_failures_are_one_line_in_the_console_and_add_nothing(shot, tmp_path, case, message):
    folder = copy_shot(shot, tmp_path / "shot")
    answers = {"strength": 1.5} if case == "strength" else None if case == "cancel" else {}
    comp, _ = loader_comp(folder / "s.0001.exr", answers)
    if case == "missing":
        (folder / "s.0004.exr").unlink()  # gone since the Loader read the sequence
    if case == "corrupt":
        (folder / "s.0003.exr").write_bytes(b"not an exr" * 100)
    lines = run_script(COMP_SCRIPT, comp=comp)
    assert lines[-1].startswith("facerestore: ") and message in lines[-1], lines
    assert sum(line.startswith("facerestore: error") for line in lines) <= 1
    assert not comp.added and not comp.undo and comp.lock_depth == 0
    assert not list(folder.glob("facerestore/*.exr"))


# ---- DaVinci Resolve ----


def test_the_resolve_script_imports_the_restored_sequence_into_the_media_pool(shot, tmp_path):
    folder = copy_shot(shot, tmp_path / "shot")
    resolve = fake_fusion.make_resolve(str(folder / "s.[0002-0004].exr"))
    lines = run_script(RESOLVE_SCRIPT, resolve=resolve)
    pool = resolve.GetProjectManager().GetCurrentProject().GetMediaPool()
    output = folder / "facerestore" / "s.%04d.exr"
    assert pool.imported == [[{"FilePath": str(output), "StartIndex": 2, "EndIndex": 4}]], lines
    assert len(pool.items) == 1
    assert (
        lines[-1]
        == f"facerestore: imported {folder / 'facerestore' / 's.####.exr'} frames 2-4 into the media pool as s.%04d.exr"
    )
    assert sorted(p.name for p in (folder / "facerestore").glob("*.exr")) == ["s.0002.exr", "s.0003.exr", "s.0004.exr"]
    spec, pixels = read_buf(folder / "facerestore" / "s.0003.exr")
    assert channel(spec, pixels, "face.mask").max() > 0.5


@pytest.mark.parametrize(
    "state, message",
    [
        ({"project": False}, "facerestore: no project is open in Resolve"),
        ({"timeline": False}, "facerestore: the project Shots has no timeline open"),
        ({"clip": False}, "facerestore: no video clip under the playhead in Timeline 1"),
        ({"file_path": "/media/clip.mov"}, "facerestore: /media/clip.mov is not an EXR sequence"),
        ({"file_path": "SHOT/s.[0001-0007].exr"}, "facerestore: error: missing frames 6-7 of"),
    ],
)
def test_resolve_failures_are_one_line_and_import_nothing(shot, state, message, monkeypatch):
    state = dict(state)
    path = state.pop("file_path", "SHOT/s.[0001-0005].exr").replace("SHOT", str(shot))
    resolve = fake_fusion.make_resolve(path, **state)
    # From outside Resolve the script reaches it through DaVinciResolveScript.
    monkeypatch.setitem(sys.modules, "DaVinciResolveScript", fake_fusion.resolve_script_module(resolve))
    lines = run_script(RESOLVE_SCRIPT)
    assert lines[-1].startswith(message), lines
    project = resolve.GetProjectManager().GetCurrentProject()
    assert project is None or not project.GetMediaPool().imported


def test_without_resolve_the_script_says_how_to_reach_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "DaVinciResolveScript", None)  # not importable
    assert run_script(RESOLVE_SCRIPT)[-1].startswith("facerestore: cannot reach Resolve: run this from")
    monkeypatch.setitem(sys.modules, "DaVinciResolveScript", fake_fusion.resolve_script_module(None))
    assert run_script(RESOLVE_SCRIPT) == [
        "facerestore: cannot reach Resolve: is it running, with external scripting allowed?"
    ]


def test_the_farm_script_writes_a_job_for_the_loaders_range_and_says_how_to_submit_it(shot, tmp_path):
    clip = copy_shot(shot, tmp_path / "plates")
    comp, loader = loader_comp(clip / "s.0001.exr", {"engine": 1, "chunk": 2})  # OpenCue, 2 frames a task
    lines = run_script(COMP_SCRIPT.with_name("FaceRestore Submit to farm.py"), comp=comp, fusion=fake_fusion.FakeFusion(comp))
    spec = (tmp_path / "plates" / "facerestore" / "farm_job" / "opencue_job.xml").read_text()
    assert "<range>2-5</range><chunk>2</chunk>" in spec  # comp frames 11-14 of the Loader at 10
    assert any("opencue.api.launchSpec" in line for line in lines)
    comp, loader = loader_comp(clip / "s.0001.exr", None)
    assert run_script(COMP_SCRIPT.with_name("FaceRestore Submit to farm.py"), comp=comp) == ["facerestore: cancelled"]
