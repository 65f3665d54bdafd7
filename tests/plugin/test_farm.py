"""Farm jobs: an Open Job Description job written by `facerestore farm openjd`, checked and run
locally with the real `openjd` CLI (astronaut, NASA, public domain)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from facerestore.plugin.farm import JOB_MANIFEST

from helpers import TESTS, read_buf, run_cli, write_moving_face_shot

OPENJD = Path(sys.executable).parent / "openjd"


@pytest.fixture(scope="module")
def shot(tmp_path_factory, colour):
    folder = tmp_path_factory.mktemp("farm_shot")
    write_moving_face_shot(folder, colour, 13)
    return folder


def test_the_job_has_an_analyse_step_and_chunked_renders_with_every_default_filled(shot, tmp_path):
    proc = run_cli("farm", "openjd", shot / "s.####.exr", "-o", tmp_path / "out/r.####.exr", "--frames", "2-13",
                   "--chunk", "4", "--job-dir", tmp_path / "job", "--render-options", "--strength 0.8", check=True)
    assert "openjd run" in proc.stdout
    template = yaml.safe_load((tmp_path / "job" / "template.yaml").read_text())
    assert template["extensions"] == ["TASK_CHUNKING"]
    analyse, render = template["steps"]
    assert analyse["name"] == "Analyse" and "--analyse-only" in analyse["script"]["actions"]["onRun"]["args"]
    assert render["dependencies"] == [{"dependsOn": "Analyse"}]
    chunks = render["parameterSpace"]["taskParameterDefinitions"][0]
    assert chunks["type"] == "CHUNK[INT]" and chunks["chunks"]["rangeConstraint"] == "CONTIGUOUS"
    args = render["script"]["actions"]["onRun"]["args"]
    assert args[args.index("--strength") + 1] == "0.8" and "--analysis-frozen" in args
    params = {p["name"]: p for p in template["parameterDefinitions"]}
    assert params["Frames"]["default"] == "2-13" and params["ChunkSize"]["default"] == 4
    assert params["Input"]["type"] == "PATH" and params["Output"]["dataFlow"] == "OUT"  # path mapping applies
    values = {v["name"]: v["value"] for v in yaml.safe_load((tmp_path / "job" / "parameter_values.yaml").read_text())[
        "parameterValues"]}
    assert values.keys() == params.keys() and values["Frames"] == "2-13" and values["ChunkSize"] == 4
    assert values["Input"] == str(shot / "s.####.exr") and "default" not in params["Input"]
    assert yaml.safe_load((tmp_path / "job" / "openjd_params.yaml").read_text()) == values
    check = subprocess.run([str(OPENJD), "check", str(tmp_path / "job" / "template.yaml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    "extra, message",
    [(["--render-options=--frames 1-3"], "set by the job itself"), (["--render-options=--strenght 1"], "not understood"),
     (["--chunk", "0"], "at least 1"),
     # What the node refuses when it starts is refused when the job is written, not in every task.
     (["--render-options=--temporal-window 4"], "must be odd"), (["--render-options=--strength 2"], "outside"),
     (["--render-options=--model realesr-animevideov3-x4 --ensemble flip+scale --backend torch"], None)],
)
def test_bad_job_options_are_one_line_errors(shot, tmp_path, extra, message):
    proc = run_cli("farm", "openjd", shot / "s.####.exr", "-o", tmp_path / "out/r.####.exr", "--job-dir",
                   tmp_path / "job", *extra)
    if message is None:  # a valid combination (flip+scale on a x4 network of any crop size) is written
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "job").exists()


@pytest.mark.slow
def test_openjd_run_of_the_job_equals_one_render_bit_for_bit(shot, tmp_path):
    run_cli("farm", "openjd", shot / "s.####.exr", "-o", tmp_path / "farm/r.####.exr", "--chunk", "4",
            "--job-dir", tmp_path / "job", "--render-options=--temporal-window 5", check=True)
    job = subprocess.run(
        [str(OPENJD), "run", str(tmp_path / "job" / "template.yaml"), "--job-param",
         f"file://{tmp_path / 'job' / 'openjd_params.yaml'}", "--step", "Render", "--run-dependencies"],
        capture_output=True, text=True, timeout=900,
    )
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert job.stdout.count("Running step") == 2
    run_cli("render", shot / "s.####.exr", "-o", tmp_path / "one/r.####.exr", "--temporal-window", "5", "-q", check=True)
    for t in range(1, 14):
        _, farm = read_buf(tmp_path / "farm" / f"r.{t:04d}.exr")
        _, one = read_buf(tmp_path / "one" / f"r.{t:04d}.exr")
        assert np.array_equal(farm, one), t
    assert not [p for p in (tmp_path / "farm").iterdir() if ".partial-" in p.name]


def read_info(path: Path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


@pytest.mark.slow
def test_deadline_jobs_run_as_its_commandline_plugin_would_equal_one_render(shot, tmp_path):
    """Deadline 10 cannot run here: its CommandLine plugin is stood in for by substituting the
    frame tokens per chunk and running the arguments, as the plugin documents."""
    import shlex

    proc = run_cli("farm", "deadline", shot / "s.####.exr", "-o", tmp_path / "farm out/r.####.exr", "--chunk", "5",
                   "--job-dir", tmp_path / "job", check=True)
    assert "deadlinecommand -SubmitMultipleJobs -dependent" in proc.stdout
    analyse, render = read_info(tmp_path / "job" / "analyse.job"), read_info(tmp_path / "job" / "render.job")
    assert analyse["Plugin"] == render["Plugin"] == "CommandLine" and analyse["BatchName"] == render["BatchName"]
    assert render["Frames"] == "1-13" and render["ChunkSize"] == "5"
    plugin = read_info(tmp_path / "job" / "render_plugin.job")
    assert "--frames=<STARTFRAME>-<ENDFRAME>" in plugin["Arguments"] and "--analysis-frozen" in plugin["Arguments"]

    def run(plugin_file: str, start: int, end: int) -> None:
        info = read_info(tmp_path / "job" / plugin_file)
        args = info["Arguments"].replace("<STARTFRAME>", str(start)).replace("<ENDFRAME>", str(end))
        subprocess.run([info["Executable"], *shlex.split(args)], check=True, timeout=600)

    run("analyse_plugin.job", 1, 1)
    for start in range(1, 14, 5):  # the chunks Deadline makes of 1-13 by 5
        run("render_plugin.job", start, min(start + 4, 13))
    run_cli("render", shot / "s.####.exr", "-o", tmp_path / "one/r.####.exr", "-q", check=True)
    for t in range(1, 14):
        assert np.array_equal(read_buf(tmp_path / "farm out" / f"r.{t:04d}.exr")[1],
                              read_buf(tmp_path / "one" / f"r.{t:04d}.exr")[1]), t


GOLDEN = TESTS / "golden" / "farm"


def normalised(text: str, tmp_path: Path, shot: Path) -> str:
    """Machine-specific parts replaced: the test's folders, this interpreter, the submitting user."""
    import getpass
    import re

    text = text.replace(str(shot), "$SHOT").replace(str(tmp_path), "$TMP").replace(sys.executable, "$PYTHON")
    text = re.sub(r"<user>[^<]*</user>", "<user>$USER</user>", text.replace(getpass.getuser(), "$USER"))
    return re.sub(r"<uid>\d+</uid>", "<uid>$UID</uid>", text)


@pytest.mark.parametrize("engine", ["opencue", "deadline"])
def test_job_files_match_the_golden_files(engine, shot, tmp_path):
    """The exact files a farm gets; after an intended change: FACERESTORE_UPDATE_GOLDEN=1 pytest -k golden."""
    import os

    run_cli("farm", engine, shot / "s.####.exr", "-o", tmp_path / "out dir/r.####.exr", "--frames", "2-13", "--chunk",
            "4", "--job-dir", tmp_path / "job", "--render-options", "--strength 0.8", check=True)
    # The job folder's manifest (what `farm` wrote there, for its own later rewrites) is not sent
    # to the farm, and its checksums follow the machine's paths: left out of the comparison.
    job_files = [p for p in sorted((tmp_path / "job").iterdir()) if p.name != JOB_MANIFEST]
    for written in job_files:
        shot_text = normalised(written.read_text(), tmp_path, shot)
        golden = GOLDEN / engine / written.name
        if os.environ.get("FACERESTORE_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(shot_text)
        assert shot_text == golden.read_text(), written.name
    assert sorted(p.name for p in (GOLDEN / engine).iterdir()) == [p.name for p in job_files]
    assert (tmp_path / "job" / JOB_MANIFEST).is_file()


@pytest.mark.slow
def test_opencue_job_spec_has_the_layers_dependency_and_chunks_and_its_commands_equal_one_render(shot, tmp_path):
    """OpenCue cannot run here (no cuebot / RQD): its substitution of #FRAME_START# / #FRAME_END#
    per chunk is stood in for, and each layer's command run as RQD would run it."""
    import shlex
    import xml.etree.ElementTree as ET

    proc = run_cli("farm", "opencue", shot / "s.####.exr", "-o", tmp_path / "farm out/r.####.exr", "--chunk", "5",
                   "--job-dir", tmp_path / "job", check=True)
    assert "opencue.api.launchSpec" in proc.stdout
    spec = ET.parse(tmp_path / "job" / "opencue_job.xml").getroot()
    layers = {layer.get("name"): layer for layer in spec.iter("layer")}
    assert list(layers) == ["Analyse", "Render"]
    assert layers["Analyse"].findtext("range") == "1" and layers["Analyse"].findtext("chunk") == "1"
    assert layers["Render"].findtext("range") == "1-13" and layers["Render"].findtext("chunk") == "5"
    depend = spec.find("depends/depend")
    assert depend.get("type") == "LAYER_ON_LAYER"
    assert (depend.findtext("deplayer"), depend.findtext("onlayer")) == ("Render", "Analyse")
    render_cmd = layers["Render"].findtext("cmd")
    assert "--frames=#FRAME_START#-#FRAME_END#" in render_cmd and "--analysis-frozen" in render_cmd

    def run(layer: str, start: int, end: int) -> None:
        cmd = layers[layer].findtext("cmd").replace("#FRAME_START#", str(start)).replace("#FRAME_END#", str(end))
        subprocess.run(shlex.split(cmd), check=True, timeout=600)

    run("Analyse", 1, 1)
    for start in range(1, 14, 5):
        run("Render", start, min(start + 4, 13))
    run_cli("render", shot / "s.####.exr", "-o", tmp_path / "one/r.####.exr", "-q", check=True)
    for t in range(1, 14):
        assert np.array_equal(read_buf(tmp_path / "farm out" / f"r.{t:04d}.exr")[1],
                              read_buf(tmp_path / "one" / f"r.{t:04d}.exr")[1]), t
