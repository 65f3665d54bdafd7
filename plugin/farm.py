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

import contextlib
import dataclasses
import io
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
from facerestore.plugin.cli import build_parser, node_params, render_options_from_args
from facerestore.plugin.manifest import check_writable, digest, read_manifest
from facerestore.plugin.render import check_render, default_analysis_path

TEMPLATE = "template.yaml"
VALUES = "parameter_values.yaml"  # Deadline Cloud job bundle format
OPENJD_PARAMS = "openjd_params.yaml"  # the same values as `openjd run --job-param file://` takes them
# What `farm` wrote into --job-dir (and their checksums): its own files it may replace, no others.
JOB_MANIFEST = ".facerestore-farm.json"


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
    job_dir = Path(os.path.abspath(args.job_dir))
    if os.path.lexists(job_dir) and not job_dir.is_dir():
        raise FaceRestoreError(f"--job-dir {args.job_dir} exists and is not a folder")
    try:
        options = shlex.split(args.render_options)
    except ValueError as exc:
        raise FaceRestoreError(f"farm: cannot read --render-options ({exc})") from None
    shot = plan_farm_shot(args.input, args.output, args.frames, args.chunk, args.analysis, options)
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


# What the job itself sets on every task's command line, by the parsed option's name.
OWNED = {"input": "INPUT", "output": "-o", "frames": "--frames", "analysis": "--analysis",
         "analysis_frozen": "--analysis-frozen", "analyse_only": "--analyse-only", "reanalyse": "--reanalyse",
         "resume": "--resume"}


def parse_render_args(words: list[str]):
    """`facerestore render` WORDS parsed by the render command's own parser (no abbreviations);
    its complaint, if any, as one line."""
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint), contextlib.redirect_stdout(complaint):  # --help too
            return build_parser().parse_args(["render", *words])
    except SystemExit as exc:
        lines = complaint.getvalue().strip().splitlines()
        raise FaceRestoreError(lines[-1] if exc.code and lines else "a request for help, not options") from None


def render_options(input_pattern: str, output: str, options: list[str]):
    """The pass-through render options, read by the render command's own parser: what the job
    sets itself is compared after parsing, so no spelling of it (`--frames=`, `-o/path`) gets past."""

    options = list(options)
    base = parse_render_args([input_pattern, "-o", output])
    try:
        args = parse_render_args([input_pattern, "-o", output, *options])
    except FaceRestoreError as exc:
        raise FaceRestoreError(f"farm: render options not understood: {' '.join(options)} ({exc})") from None
    taken = [flag for name, flag in OWNED.items() if getattr(args, name) != getattr(base, name)]
    if taken:
        raise FaceRestoreError(f"farm: {taken[0]} is set by the job itself")
    check_node_params(args)
    return options, args


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
    # A newline or other control character ends a line of a job file or a command: no job format
    # here can carry it as it is.
    words = [("INPUT", input_pattern), ("-o", output), ("--analysis", analysis or "")]
    for what, word in words + [("--render-options", option) for option in options]:
        if any(ord(c) < 32 or ord(c) == 127 for c in word):
            raise FaceRestoreError(f"farm: {what} {word!r} contains a newline or other control character")
    extra, args = render_options(input_pattern, output, options)
    # Checked as `render` checks them before it writes anything (the frames, where they go, the
    # plates' channels, added faces), with the job's own frames and sidecar.
    planned = dataclasses.replace(render_options_from_args(args), frames=frames, analysis=analysis)
    numbers = [j.frame for j in check_render(planned)[0]]
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
        return " ".join(w if "<STARTFRAME>" in w else deadline_quote(w) for w in words)

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
    paths = [job_dir / f for f in files]
    submit = "deadlinecommand -SubmitMultipleJobs -dependent " + " ".join(
        f"-job {shlex.quote(str(paths[i]))} {shlex.quote(str(paths[i + 1]))}" for i in (0, 2)
    )
    contents = {name: info(values) for name, values in files.items()}
    write_job_files(job_dir, contents | {"submit.sh": f"#!/bin/sh\n{submit}\n".encode()})
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
    write_job_files(job_dir, {OPENCUE_SPEC: spec.encode()})
    return job_dir / OPENCUE_SPEC


def write_job_files(job_dir: Path, files: dict[str, bytes]) -> None:
    """The job's files into `job_dir`, each atomically, never over a file this command did not
    write (the rule `install` keeps: its own earlier files, listed with their checksums in
    JOB_MANIFEST, may be replaced; anything else there stops the job before any write)."""
    manifest_path = job_dir / JOB_MANIFEST
    manifest = read_manifest(manifest_path, job_dir)
    for name in files:
        check_writable(job_dir, name, manifest, "facerestore farm")
    try:
        job_dir.mkdir(parents=True, exist_ok=True)
        # The manifest first: whatever is then written, a later job knows it as its own.
        listed = manifest["files"] | {name: digest(data) for name, data in files.items()}
        write_atomically(manifest_path, (json.dumps({"files": listed}, indent=1) + "\n").encode())
        for name, data in files.items():
            write_atomically(job_dir / name, data)
    except OSError as exc:
        raise FaceRestoreError(f"cannot write the job in {job_dir}: {exc.strerror or exc}") from None


def needs_quotes(word: str) -> bool:
    return not word or any(c in word for c in ' "\'$&|;<>()*?#\\')


def deadline_quote(word: str) -> str:
    """One word of a Deadline CommandLine `Arguments` line, read the same by the Windows rules
    Deadline splits it with and by a POSIX shell-style split: double-quoted when it needs it,
    a quote escaped as \\" (backslashes before a quote or at the end doubled). Two backslashes
    in a row elsewhere read differently under the two rules: refused."""
    if "\\\\" in word:
        raise FaceRestoreError(
            f"farm deadline: {word!r} has two backslashes in a row, which Deadline would not pass as they are"
        )
    if not needs_quotes(word):
        return word
    quoted, backslashes = [], 0
    for c in word:
        if c == "\\":
            backslashes += 1
            continue
        quoted.append("\\" * (2 * backslashes + 1) + '"' if c == '"' else "\\" * backslashes + c)
        backslashes = 0
    return '"' + "".join(quoted) + "\\" * (2 * backslashes) + '"'


def write_openjd_job(shot: FarmShot, job_dir: Path) -> Path:
    check_openjd_words(shot.options)
    def command(*render_args: str) -> dict:
        return {
            "command": "{{Param.Python}}",
            "args": ["-m", "facerestore.plugin.cli", "render", "{{Param.Input}}", "-o", "{{Param.Output}}",
                     "--analysis", "{{Param.Analysis}}", *render_args, *shot.options, "-q"],
        }

    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "extensions": ["TASK_CHUNKING"],
        "name": openjd_job_name(shot.input),
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

    write_job_files(
        job_dir, {TEMPLATE: dump_yaml(template), VALUES: dump_yaml(values), OPENJD_PARAMS: dump_yaml(everything)}
    )
    return job_dir / TEMPLATE


def openjd_job_name(input_pattern: str) -> str:
    """The job's name, a format string in OpenJD: the plate's name without braces (`{{` would
    start an expression), within the 128 characters a name may have."""
    name = "".join(c for c in Path(input_pattern).name if c not in "{}")
    return f"facerestore {name}"[:128]


def check_openjd_words(words: list[str]) -> None:
    """Words put into the template's command lines are format strings there: `{{` or `}}` in
    them would be read as an expression (`{{Param.Bogus}}`) and OpenJD has no escape for it."""
    for word in words:
        if "{{" in word or "}}" in word:
            raise FaceRestoreError(
                f"farm openjd: {word!r} has '{{{{' or '}}}}', which a job template reads as an expression"
            )


def path_parameter(name: str, flow: str, description: str) -> dict:
    return {"name": name, "type": "PATH", "dataFlow": flow, "description": description}


def dump_yaml(data: dict) -> bytes:
    try:
        import yaml
    except ImportError:  # JSON is YAML too; the farm extra brings PyYAML for a readable file

        return (json.dumps(data, indent=2) + "\n").encode()
    return yaml.safe_dump(data, sort_keys=False, width=120).encode()
