"""The Nuke adapter: init.py, menu.py, the gizmo and every button run against a FAKE `nuke`
module (tests/fake_nuke.py; Nuke cannot run here). Render-through runs the real `facerestore
render` on a real EXR shot (astronaut, NASA, public domain) and must give its exact pixels."""

import importlib
import os
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import fake_nuke
import nkparser
import numpy as np
import pytest
import yaml

from facerestore.plugin.hostspec import spec_json
from facerestore.plugin.nuke_gizmo import gizmo_text

from helpers import ROOT, channel, read_buf, run_cli, write_moving_face_shot

NUKE_DIR = ROOT / "plugin" / "nuke"
SPEC = spec_json()


@pytest.fixture
def nuke(monkeypatch, tmp_path):
    """The fake module as `nuke`, a saved script in tmp_path, the plug-in path set as NUKE_PATH
    would set it, and the facerestore command of this environment."""
    fake_nuke.reset(script=str(tmp_path / "comp.nk"))
    fake_nuke.plugin_path.append(str(NUKE_DIR))
    monkeypatch.setitem(sys.modules, "nuke", fake_nuke)
    monkeypatch.setenv("FACERESTORE_CMD", f"{shlex.quote(sys.executable)} -m facerestore.plugin.cli")
    monkeypatch.syspath_prepend(str(NUKE_DIR))
    sys.modules.pop("facerestore_nuke", None)
    yield fake_nuke
    sys.modules.pop("facerestore_nuke", None)


@pytest.fixture(scope="module")
def shot(tmp_path_factory, colour):
    folder = tmp_path_factory.mktemp("nuke_shot")
    write_moving_face_shot(folder, colour, 4)
    return folder


def read_node(nuke, shot, raw=True):
    read = nuke.createNode("Read")
    for name, value in (("file", str(shot / "s.####.exr")), ("first", 1), ("last", 4), ("raw", raw)):
        read[name].setValue(value)
    return read


def parsed_gizmo():
    """nkparser reads a gizmo's nodes and connections; its Group model expects children inside
    the braces (Nuke writes them after), so the closing end_group is left out for it."""
    text = (NUKE_DIR / "FaceRestore.gizmo").read_text()
    script = nkparser.Script.from_string(text.replace("\nend_group", "\n"))
    assert not script.errors(), script.errors()
    return text, {n.name or n.class_name: n for n in script.all_nodes()}


def test_the_gizmo_is_generated_from_the_spec_and_wraps_the_ofx_node_with_the_matte_in_face_mask():
    text, nodes = parsed_gizmo()
    assert text == gizmo_text(SPEC), "FaceRestore.gizmo drifted: python -m facerestore.plugin.hostspec --write"
    assert "add_layer {face face.mask}" in text
    ofx = nodes["FaceRestoreOFX"]
    assert ofx.class_name == "OFXcom.facerestore.FaceRestore_v1" == SPEC["node"]["nuke_ofx_class"]
    assert ofx.get("output") == "both"
    links = [k.value.raw for k in nodes["Gizmo"].knobs if k.name == "addUserKnob" and k.value.raw.startswith("{41 ")]
    for param in SPEC["params"]:
        assert f"{{41 {param['id']} l " in " ".join(links) and f"T FaceRestoreOFX.{param['id']}}}" in " ".join(links)
        inner = ofx.knob(param["id"]).value
        typed = inner.as_number() if param["type"] in ("float", "int") else inner.as_string()
        typed = inner.raw if typed is None else typed
        assert typed == param["default"], param["id"]
    for control in SPEC["ofx_controls"]:  # Analyse shot and Status: the OFX node's own knobs, linked
        assert f"{{41 {control['id']} l " in " ".join(links) and f"T FaceRestoreOFX.{control['id']}}}" in " ".join(links)
    copy = nodes["MatteToLayer"]
    assert copy.class_name == "Copy" and copy.get("from3") == "rgba.alpha" and copy.get("to3") == "face.mask"
    # B (input 0, passed through: plate alpha and layers) is the plate; A is the OFX node.
    assert [n.name for n in copy.inputs] == ["Input1", "FaceRestoreOFX"]
    assert [n.name for n in nodes["Output1"].inputs] == ["MatteToLayer"]
    assert "{{!parent.restore_faces}}" in copy.get("disable") and "{{!parent.restore_faces}}" in ofx.get("disable")


def test_init_and_menu_run_in_a_session_and_every_menu_entry_works(nuke):
    runpy.run_path(str(NUKE_DIR / "init.py"))
    assert nuke.defaults == {"OFXcom.facerestore.FaceRestore_v1.output": "both"}
    import facerestore_nuke  # importable as the gizmo's buttons import it

    runpy.run_path(str(NUKE_DIR / "menu.py"))
    menu = nuke.menus["Nodes"].menu("FaceRestore")
    assert set(menu.commands) == {
        "FaceRestore",
        "Render through facerestore",
        "Pick faces...",
        "Submit to farm...",
        "Bake to Group",
        "ToolSets/FaceRestore with face grade",
    }
    exec(menu.commands["FaceRestore"], {})
    node = nuke.nodes[-1]
    assert node.Class() == "FaceRestore" and node["strength"].value() == 1.0
    menu.commands["Render through facerestore"]()  # nothing selected
    assert nuke.messages[-1] == "FaceRestore: select a FaceRestore node first"
    node["selected"].setValue(True)
    menu.commands["Bake to Group"]()
    assert nuke.toNode(node.name()).Class() == "Group"
    menu.commands["ToolSets/FaceRestore with face grade"]()
    toolset = nuke.executed[-1][1]
    assert os.path.exists(toolset) and "FaceRestore {" in Path(toolset).read_text()
    assert facerestore_nuke.GIZMO == "FaceRestore"


def test_every_button_of_the_gizmo_calls_an_existing_callback(nuke):
    import facerestore_nuke

    node = nuke.createNode("FaceRestore")
    buttons = {k.name(): k.code for k in node.knobs().values() if k.kind == 22}
    assert set(buttons) == {"pick_faces", "render_through", "submit_to_farm", "bake_to_group"}
    for name, code in buttons.items():
        assert code == f"import facerestore_nuke\nfacerestore_nuke.{name}(nuke.thisNode())"
        assert callable(getattr(facerestore_nuke, name))
    node["render_through"].execute()  # no input: a message, nothing started
    assert nuke.messages == ["FaceRestore: connect a plate to the FaceRestore input first"]
    node["pick_faces"].execute()  # nothing rendered yet
    assert "no shot analysis yet" in nuke.messages[-1]


@pytest.mark.slow
def test_render_through_gives_the_pixels_of_facerestore_render_and_reads_them_back(nuke, shot, tmp_path):
    import facerestore_nuke

    node = nuke.createNode("FaceRestore")
    node.setInput(0, read_node(nuke, shot, raw=False))  # not raw: the range is written out first
    node["strength"].setValue(0.8)
    node["per_face_mattes"].setValue(True)
    downstream = nuke.createNode("Grade")
    downstream.setInput(0, node)
    run = facerestore_nuke.render_through(node, wait=True)
    assert nuke.messages == [] and run.error is None
    assert ("execute", "Write1", 1, 4) in nuke.executed and not nuke.toNode("Write1")  # written, then removed
    read = run.read
    assert read.name() == "FaceRestore1_restored" and read["file"].value() == run.output
    task = nuke.progress_tasks[-1]
    assert task.progress[-1] == 100 and "rendering: frame 4 of 4" in task.messages

    reference = tmp_path / "reference"
    run_cli("render", shot / "s.####.exr", "-o", reference / "r.####.exr", "--strength", "0.8", "--track-mattes",
            "-q", check=True)
    for frame in range(1, 5):
        spec, pixels = read_buf(run.output.replace("####", f"{frame:04d}"))
        ref_spec, ref = read_buf(reference / f"r.{frame:04d}.exr")
        assert list(spec.channelnames) == list(ref_spec.channelnames)
        assert "face.mask" in spec.channelnames and "face.mask1" in spec.channelnames
        assert np.array_equal(pixels, ref)
        assert channel(spec, pixels, "face.mask").max() > 0.9

    # The shot's tracks, picked from the analysis render-through wrote.
    nuke.panel_answers.append({})  # every face ticked: the knob stays "all"
    facerestore_nuke.pick_faces(node)
    assert node["tracks"].value() == ""

    # Submit to farm writes an OpenJD job for the same range and options.
    nuke.panel_answers.append({"engine": "openjd", "frames per task": "2"})
    job_dir = facerestore_nuke.submit_to_farm(node)
    template = yaml.safe_load((Path(job_dir) / "template.yaml").read_text())
    params = {p["name"]: p for p in template["parameterDefinitions"]}
    assert params["Frames"]["default"] == "1-4" and params["ChunkSize"]["default"] == 2
    render_args = template["steps"][1]["script"]["actions"]["onRun"]["args"]
    assert render_args[render_args.index("--strength") + 1] == "0.8"


@pytest.mark.slow
def test_a_raw_exr_read_renders_in_place_and_failures_and_cancel_leave_no_result(nuke, shot, tmp_path):
    import facerestore_nuke

    node = nuke.createNode("FaceRestore")
    node.setInput(0, read_node(nuke, shot, raw=True))
    node["model"].setValue("no-such-model")
    run = facerestore_nuke.render_through(node, wait=True)
    assert run.plates == str(shot / "s.####.exr") and not [e for e in nuke.executed if e[0] == "execute"]
    assert nuke.messages[-1].startswith("FaceRestore: facerestore: error: unknown model 'no-such-model'")
    assert run.read is None and not nuke.toNode("FaceRestore1_restored")

    node["model"].setValue(SPEC["params"][1]["default"])
    nuke.ProgressTask.cancel_after = 3  # the artist presses cancel while it starts
    run = facerestore_nuke.render_through(node, wait=True)
    assert nuke.messages[-1] == "FaceRestore: facerestore: cancelled"
    assert run.read is None
    assert not list(Path(run.folder).glob("restored.*.exr")) and not list(Path(run.folder).glob("*partial*"))


def test_unsaved_script_without_render_folder_is_a_message(nuke, shot):
    import facerestore_nuke

    nuke.reset(script="Root")
    nuke.plugin_path.append(str(NUKE_DIR))
    node = nuke.createNode("FaceRestore")
    node.setInput(0, read_node(nuke, shot))
    assert facerestore_nuke.render_through(node) is None
    assert nuke.messages == ["FaceRestore: save the script first, or set the Render folder"]


@pytest.mark.slow
def test_the_nuke_folder_type_checks_against_the_published_nuke_stubs():
    importlib.import_module("mypy")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-error-summary", "--follow-imports=silent",
         *(str(p) for p in sorted(NUKE_DIR.glob("*.py")))],
        capture_output=True, text=True, cwd=ROOT / "plugin" / "hostside",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_argument_parsers_own_errors_reach_the_artist(nuke, shot, tmp_path):
    import facerestore_nuke

    facerestore_host = facerestore_nuke.host
    job = facerestore_host.Job(facerestore_host.render_args(str(shot / "s.####.exr"), str(tmp_path / "r.####.exr"),
                                                            {"backend": "cuda"}, frames=(-3, 2)))
    with pytest.raises(facerestore_host.HostError, match="invalid choice: 'cuda'"):
        job.wait()
    assert "--frames=-3-2" in job.command  # a negative first frame stays one argument
