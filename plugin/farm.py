"""`facerestore farm openjd|opencue|deadline INPUT -o OUTPUT --job-dir DIR [--frames A-B] [--chunk N] [--render-options '...']`

Writes an Open Job Description job (also an AWS Deadline Cloud job bundle) that renders one shot
on many machines: step `Analyse` builds the shot's analysis sidecar once (`render
--analyse-only`), step `Render` depends on it and renders contiguous chunks of frames with the
sidecar frozen (`render --frames A-B --analysis-frozen`). Any frame rendered alone equals the
full render bit for bit (each chunk reads the neighbours its temporal window needs and writes
only its own frames, atomically), so a chunk re-run after a failure or on another machine gives
the same frames and a killed chunk leaves no partial frame.

Render options (`--render-options`, one quoted argument) are those of `facerestore render` (one spec: they are parsed by the
render command's own parser when the job is written, so a typo fails here, not on the farm; so does
what the node would refuse when it starts, `check_node_params`).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from facerestore.models.errors import ModelError
from facerestore.models.weights import write_atomically
from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.face_restore import check_ensemble, check_params
from facerestore.nodes.sequence import describe_frames
from facerestore.plugin.cli import build_parser, node_params
from facerestore.plugin.render import RenderOptions, default_analysis_path, plan_jobs

TEMPLATE = "template.yaml"
VALUES = "parameter_values.yaml"  # Deadline Cloud job bundle format
OPENJD_PARAMS = "openjd_params.yaml"  # the same values as `openjd run --job-param file://` takes them


def register(sub) -> None:
    farm = sub.add_parser("farm", help="write a render-farm job for a shot (Open Job Description / Deadline Cloud)")
    farm.add_argument(
        "engine",
        choices=("openjd", "opencue", "deadline"),
        help="openjd: Open Job Description (and Deadline Cloud bundles); opencue: an OpenCue job spec built "
        "with pyoutline; deadline: Deadline 10 CommandLine jobs",
    )
    farm.add_argument("input", help="frame pattern of the plates, as for render")
    farm.add_argument("-o", dest="output", required=True, metavar="OUTPUT", help="output pattern, as for render")
    farm.add_argument("--job-dir", required=True, help="folder for the job (template and parameter values)")
    farm.add_argument("--frames", help="frame range to render, e.g. 1001-1100 (default: every frame on disk)")
    farm.add_argument("--chunk", type=int, default=10, help="frames per task (default 10)")
    farm.add_argument("--analysis", help="analysis sidecar path (default: beside the output, as for render)")
    farm.add_argument(
        "--render-options",
        default="",
        metavar="'OPTIONS'",
        help="options of facerestore render for every task, quoted as one argument (e.g. '--strength 0.8')",
    )
    farm.set_defaults(handler=run)


def run(args) -> int:
    shot = plan_farm_shot(
        args.input, args.output, args.frames, args.chunk, args.analysis, shlex.split(args.render_options)
    )
    job_dir = Path(os.path.abspath(args.job_dir))
    if args.engine == "opencue":
        spec = write_opencue_job(shot, job_dir)
        print(f"job: {spec}")
        code = f"import opencue; opencue.api.launchSpec(open({str(spec)!r}).read())"
        print(f"launch:  {OPENCUE_LAUNCH.format(code=shlex.quote(code))}")
        return 0
    if args.engine == "deadline":
        files, submit = write_deadline_jobs(shot, job_dir)
        print("jobs: " + ", ".join(str(f) for f in files))
        print(f"submit:  {submit}")
        return 0
    job = write_openjd_job(shot, job_dir)
    print(f"job: {job}")
    params = shlex.quote(f"file://{job.parent / OPENJD_PARAMS}")
    print(f"run it here:  openjd run {shlex.quote(str(job))} --job-param {params} --step Render --run-dependencies")
    print(f"Deadline Cloud:  deadline bundle submit {shlex.quote(str(job.parent))}")
    return 0


def render_options(input_pattern: str, output: str, options: list[str]) -> list[str]:
    """The pass-through render options, checked by the render command's own parser."""

    options = list(options)
    owned = {"--frames", "--analysis", "--analysis-frozen", "--analyse-only", "--reanalyse", "-o", "--resume"}
    taken = [o for o in options if o.split("=")[0] in owned]
    if taken:
        raise FaceRestoreError(f"farm: {taken[0]} is set by the job itself")
    try:
        args = build_parser().parse_args(["render", input_pattern, "-o", output, *options])
    except SystemExit:
        raise FaceRestoreError(f"farm: render options not understood: {' '.join(options)}") from None
    check_node_params(args)
    return options


def check_node_params(args) -> None:
    """What the node would refuse when it starts, refused here instead of in every farm task:
    values out of range, what `check_params` refuses (an even temporal window, a pixel aspect
    outside 0.25-4), an ensemble the model cannot run (from the model's registry entry or file,
    without loading the networks). A model this machine does not have is left to the farm, whose
    machines may see other model folders."""
    params = node_params(args)
    check_params(params)
    try:
        check_ensemble(params)
    except ModelError as exc:
        raise FaceRestoreError(f"farm: {exc}") from None


@dataclass(frozen=True)
class FarmShot:
    """What every engine's job is written from: absolute paths, the contiguous frame range,
    the chunk size and the checked pass-through render options."""

    input: str
    output: str
    sidecar: str
    first: int
    last: int
    chunk: int
    options: list[str]


def plan_farm_shot(
    input_pattern: str, output: str, frames: str | None, chunk: int, analysis: str | None, options: list[str]
) -> FarmShot:
    """The shot as a job will render it, checked as render checks it (frames on disk, output
    never over input) before any job file is written."""

    if chunk < 1:
        raise FaceRestoreError("--chunk must be at least 1")
    input_pattern, output = os.path.abspath(input_pattern), os.path.abspath(output)
    extra = render_options(input_pattern, output, options)
    planned = RenderOptions(input=input_pattern, output=output, frames=frames, analysis=analysis)
    numbers = [j.frame for j in plan_jobs(planned)]
    if None in numbers:
        raise FaceRestoreError("farm: the input must be a frame sequence (e.g. shot.####.exr)")
    if numbers != list(range(numbers[0], numbers[-1] + 1)):
        raise FaceRestoreError(f"farm: frames {describe_frames(numbers)} are not one contiguous range")
    sidecar = os.path.abspath(analysis or default_analysis_path(planned))
    return FarmShot(input_pattern, output, sidecar, numbers[0], numbers[-1], chunk, extra)


def write_deadline_jobs(shot: FarmShot, job_dir: Path) -> tuple[list[Path], str]:
    """Deadline 10: two CommandLine-plugin jobs (job info + plugin info files), the render job
    dependent on the analyse job, submitted together with `deadlinecommand -SubmitMultipleJobs
    -dependent`. The render job's tasks are chunks of `chunk` frames, given to facerestore through
    the plugin's <STARTFRAME> / <ENDFRAME> tokens. Written from Deadline's documentation; not run
    against a Deadline repository here."""

    name = f"facerestore {Path(shot.input).name}"

    def arguments(*render_args: str) -> str:
        words = ["-m", "facerestore.plugin.cli", "render", shot.input, "-o", shot.output, "--analysis", shot.sidecar,
                 *render_args, *shot.options, "-q"]
        # Tokens stay bare; everything else quoted as Windows and POSIX command lines both read it.
        return " ".join(w if "<STARTFRAME>" in w or not needs_quotes(w) else f'"{w}"' for w in words)

    def info(values: dict) -> bytes:
        return "".join(f"{key}={value}\n" for key, value in values.items()).encode()

    files = {
        "analyse.job": {"Plugin": "CommandLine", "Name": f"{name} - analyse", "BatchName": name, "Frames": shot.first,
                        "ChunkSize": 1},
        "analyse_plugin.job": {"Executable": sys.executable, "Arguments": arguments("--analyse-only"),
                               "Shell": "default", "ShellExecute": "False"},
        "render.job": {"Plugin": "CommandLine", "Name": f"{name} - render", "BatchName": name,
                       "Frames": f"{shot.first}-{shot.last}", "ChunkSize": shot.chunk,
                       "OutputDirectory0": os.path.dirname(shot.output),
                       "OutputFilename0": os.path.basename(shot.output)},
        "render_plugin.job": {"Executable": sys.executable,
                              "Arguments": arguments("--frames=<STARTFRAME>-<ENDFRAME>", "--analysis-frozen"),
                              "Shell": "default", "ShellExecute": "False"},
    }
    job_dir.mkdir(parents=True, exist_ok=True)
    for file_name, values in files.items():
        write_atomically(job_dir / file_name, info(values))
    paths = [job_dir / f for f in files]
    submit = "deadlinecommand -SubmitMultipleJobs -dependent " + " ".join(
        f"-job {shlex.quote(str(paths[i]))} {shlex.quote(str(paths[i + 1]))}" for i in (0, 2)
    )
    write_atomically(job_dir / "submit.sh", f"#!/bin/sh\n{submit}\n".encode())
    return paths, submit


OPENCUE_SPEC = "opencue_job.xml"
OPENCUE_LAUNCH = "CUEBOT_HOSTS=<your cuebot> python -c {code}"


def write_opencue_job(shot: FarmShot, job_dir: Path) -> Path:
    """OpenCue: an outline of two Shell layers built with pyoutline, `Analyse` (one frame) and
    `Render` (the range in chunks, given to facerestore through OpenCue's #FRAME_START# /
    #FRAME_END# tokens) with a layer-on-layer dependency, serialised to the job spec XML that
    cuebot takes. Never contacts a cuebot."""
    try:
        import outline
        import outline.cuerun
        from outline.modules.shell import Shell
    except ImportError:
        raise FaceRestoreError("farm opencue needs pyoutline: pip install 'facerestore[farm]'") from None

    def command(*render_args: str) -> str:
        words = [sys.executable, "-m", "facerestore.plugin.cli", "render", shot.input, "-o", shot.output,
                 "--analysis", shot.sidecar, *render_args, *shot.options, "-q"]
        return " ".join(w if w.startswith("--frames=#FRAME_") else shlex.quote(w) for w in words)

    name = "facerestore_" + "".join(c if c.isalnum() else "_" for c in Path(shot.input).name.split(".")[0])
    job = outline.Outline(name, shot=os.environ.get("SHOT", "shot"), show=os.environ.get("SHOW", "facerestore"))
    analyse = Shell("Analyse", command=command("--analyse-only"), range=str(shot.first), chunk=1)
    render = Shell("Render", command=command("--frames=#FRAME_START#-#FRAME_END#", "--analysis-frozen"),
                   range=f"{shot.first}-{shot.last}", chunk=shot.chunk)
    render.depend_all(analyse)
    job.add_layer(analyse)
    job.add_layer(render)
    spec = outline.cuerun.OutlineLauncher(job, nomail=True).serialize(use_pycuerun=False)
    job_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(job_dir / OPENCUE_SPEC, spec.encode())
    return job_dir / OPENCUE_SPEC


def needs_quotes(word: str) -> bool:
    return not word or any(c in word for c in ' "\'$&|;<>()*?#')


def write_openjd_job(shot: FarmShot, job_dir: Path) -> Path:
    def command(*render_args: str) -> dict:
        return {
            "command": "{{Param.Python}}",
            "args": ["-m", "facerestore.plugin.cli", "render", "{{Param.Input}}", "-o", "{{Param.Output}}",
                     "--analysis", "{{Param.Analysis}}", *render_args, *shot.options, "-q"],
        }

    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "extensions": ["TASK_CHUNKING"],
        "name": f"facerestore {Path(shot.input).name}",
        "description": "Analyse the shot once, then render contiguous chunks with the analysis frozen.",
        "parameterDefinitions": [
            # PATH parameters, so a farm maps them between machines. OpenJD allows a PATH default
            # only inside the template's folder, so their values are in parameter_values.yaml
            # (Deadline Cloud reads it) and openjd_params.yaml (`openjd run --job-param file://...`).
            path_parameter("Input", "IN", "Plates (frame pattern)"),
            path_parameter("Output", "OUT", "Restored frames (frame pattern)"),
            path_parameter("Analysis", "INOUT", "The shot's analysis sidecar"),
            {"name": "Frames", "type": "STRING", "default": f"{shot.first}-{shot.last}", "description": "Frames to render"},
            {"name": "ChunkSize", "type": "INT", "default": shot.chunk, "minValue": 1, "description": "Frames per task"},
            {"name": "Python", "type": "STRING", "default": sys.executable,
             "description": "The Python with facerestore installed, as the farm's workers see it"},
        ],
        "steps": [
            {
                "name": "Analyse",
                "script": {"actions": {"onRun": command("--analyse-only")}},
            },
            {
                "name": "Render",
                "dependencies": [{"dependsOn": "Analyse"}],
                "parameterSpace": {
                    "taskParameterDefinitions": [
                        {
                            "name": "Frame",
                            "type": "CHUNK[INT]",
                            "range": "{{Param.Frames}}",
                            "chunks": {"defaultTaskCount": "{{Param.ChunkSize}}", "rangeConstraint": "CONTIGUOUS"},
                        }
                    ]
                },
                "script": {"actions": {"onRun": command("--frames={{Task.Param.Frame}}", "--analysis-frozen")}},
            },
        ],
    }
    paths = {"Input": shot.input, "Output": shot.output, "Analysis": shot.sidecar}
    everything = {p["name"]: paths.get(p["name"], p.get("default")) for p in template["parameterDefinitions"]}
    values = {"parameterValues": [{"name": name, "value": value} for name, value in everything.items()]}

    job_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(job_dir / TEMPLATE, dump_yaml(template))
    write_atomically(job_dir / VALUES, dump_yaml(values))
    write_atomically(job_dir / OPENJD_PARAMS, dump_yaml(everything))
    return job_dir / TEMPLATE


def path_parameter(name: str, flow: str, description: str) -> dict:
    return {"name": name, "type": "PATH", "dataFlow": flow, "description": description}


def dump_yaml(data: dict) -> bytes:
    try:
        import yaml
    except ImportError:  # JSON is YAML too; the farm extra brings PyYAML for a readable file

        return (json.dumps(data, indent=2) + "\n").encode()
    return yaml.safe_dump(data, sort_keys=False, width=120).encode()
