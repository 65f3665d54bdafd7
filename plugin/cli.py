"""The `facerestore` command line. Bad input ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import logging
import os
import signal
import sys
from pathlib import Path

from facerestore.models import byo, face_data, recipes
from facerestore.models.device import resolve_torch_device
from facerestore.models.errors import ModelError
from facerestore.models.restorer import ensure_converted_weights, ensure_onnx
from facerestore.models.weights import (
    ALIGNMENT_TEMPLATE,
    DEFAULT_RESTORER,
    RESTORERS,
    RETINAFACE_LICENCE,
    retinaface_onnx_bytes,
)
from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.face_restore import FACE_RESTORE, parse_track_list
from facerestore.nodes.manual_faces import parse_added_face
from facerestore.plugin.demo import run_demo
from facerestore.plugin.hostspec import cli_flag
from facerestore.plugin.render import OUTPUT_MODES, RenderOptions, format_timings, render

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


def _add_node_params(parser: argparse.ArgumentParser) -> None:
    """CLI flags rendered from the node spec, so labels and hints live in one place."""
    for param in FACE_RESTORE.params:
        flag = cli_flag(param)
        kwargs = {"dest": param.id, "default": None, "help": f"{param.hint} Default: {param.default}."}
        if param.choices:
            kwargs["choices"] = param.choices
        elif isinstance(param.default, str):
            kwargs["metavar"] = "TEXT"
        else:
            kwargs["type"] = type(param.default)
            kwargs["metavar"] = f"{param.minimum:g}..{param.maximum:g}"
        parser.add_argument(flag, **kwargs)


def first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n")).strip()
    return " ".join(text.split())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerestore", description=FACE_RESTORE.hint)
    sub = parser.add_subparsers(dest="command", required=True)

    # No abbreviations: the farm re-parses these options and refuses the ones its job sets
    # (--frames, -o...), which `--fr` would otherwise slip past.
    render = sub.add_parser("render", help="restore the faces of an EXR shot", allow_abbrev=False)
    render.add_argument("input", help="frame pattern (shot.####.exr, %%04d, $F4, @@@@) or one file")
    render.add_argument(
        "-o", dest="output", required=True, metavar="OUTPUT", help="output pattern, file, or existing folder"
    )
    render.add_argument("--frames", help="frame range, e.g. 1001-1100 (default: every frame found)")
    render.add_argument("--skip-missing", action="store_true", help="skip missing frames instead of failing")
    render.add_argument("--colorspace", help="the plate's OCIO colourspace (default: the scene_linear role)")
    render.add_argument("--ocio", help="OCIO config (default: $OCIO, else the pinned built-in studio config)")
    render.add_argument("--restore-colorspace", help="display-referred space the restorer sees (default: sRGB)")
    render.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    render.add_argument("--mask-channel", default="face.mask", help="name of the matte channel")
    render.add_argument(
        "--analyse-only",
        action="store_true",
        help="build the shot's analysis sidecar (tracks of every frame on disk) and write no frame: "
        "the first step of a farm job, whose chunks then render with --analysis-frozen",
    )
    render.add_argument(
        "--allow-non-exr",
        action="store_true",
        help="read plates in other formats OIIO knows (TIFF, DPX...) as scene-linear; default: OpenEXR only",
    )
    render.add_argument(
        "--resume",
        action="store_true",
        help="skip frames already rendered by a render with the same options, model and analysis (the key in "
        "their header) that decode whole: go on after an interrupted render",
    )
    render.add_argument(
        "--analysis-frozen",
        action="store_true",
        help="use the analysis sidecar as it is (hand-edited tracks): an error, not a new analysis, when the plates "
        "or settings no longer fit it",
    )
    render.add_argument(
        "--replace-channel",
        action="store_true",
        help="let the matte overwrite a channel of that name already in the plate (an earlier render's matte)",
    )
    render.add_argument(
        "--keep-lossy-compression",
        action="store_true",
        help="write DWAA/DWAB/B44 plates with their own lossy compression; pixels outside the matte then change "
        "(default: lossless ZIP, so they stay bit-identical)",
    )
    render.add_argument(
        "--output",
        dest="output_mode",
        choices=OUTPUT_MODES,
        default="both",
        help="restored RGB, the matte alone, or both (default)",
    )
    render.add_argument(
        "--temporal",
        choices=("on", "off"),
        default="on",
        help="fuse each face over neighbouring frames (default on); off = per-frame",
    )
    render.add_argument("--analysis", help="tracks sidecar to write or reuse (default: beside the output)")
    render.add_argument("--reanalyse", action="store_true", help="analyse the shot again even if a sidecar exists")
    render.add_argument(
        "--track-mattes",
        action="store_true",
        help="also write one matte channel per track (face.mask1, face.mask2, ...)",
    )
    render.add_argument(
        "--add-face",
        action="append",
        default=[],
        metavar="FRAME:BOX",
        help="a face the detector missed: FRAME:X0,Y0,X1,Y1 (plate pixels) or FRAME: and its five points "
        "(eyes, nose tip, mouth corners: ten numbers); followed through the shot; repeatable",
    )
    render.add_argument(
        "--drop-tracks", default="", metavar="IDS", help="remove false faces from the analysis, e.g. 2,5"
    )
    render.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar, timings or notes (warnings are still shown)"
    )
    render.add_argument(
        "--progress",
        choices=("bar", "json"),
        default="bar",
        help="bar: for people; json: one JSON object a line on stderr "
        '({"progress": {"stage", "done", "total", "frame", "faces", "elapsed"}}), for programs',
    )
    _add_node_params(render)

    models = sub.add_parser("models", help="list, verify and prepare the models, or import one of yours")
    models.add_argument("action", choices=("list", "verify", "import"))
    models.add_argument("file", nargs="?", help="import: a .pth or .onnx face restorer (GFPGAN, CodeFormer, GPEN...)")
    models.add_argument("--name", help="import: the name to use with --model (default: the file name)")

    train = sub.add_parser("train", help="train a face restorer on registry footage (reduced on a CPU)")
    train.add_argument(
        "--model", choices=recipes.MODELS, default=recipes.X4, help="which of facerestore's own models to train"
    )
    train.add_argument(
        "--recipe",
        choices=recipes.NAMES,
        default="broad",
        help="the stage to train; the recipes (model, stage -> what it writes, reduced steps): "
        + recipes.described().replace("%", "%%"),
    )
    train.add_argument(
        "--faces", help="recipes that learn the licensed people: the folder `facerestore data build` wrote"
    )
    train.add_argument("--out", default="facerestore-train", help="folder for the weights and the training record")
    train.add_argument(
        "--resume", action="store_true", help="go on from the checkpoint in --out (a run longer than a session)"
    )
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    size = train.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the full schedule (meant for a GPU)")
    size.add_argument("--steps", type=int, help="steps of the reduced schedule (each recipe's own: see --recipe)")

    data = sub.add_parser("data", help="build the licensed training faces from local copies of their repositories")
    data.add_argument("action", choices=("build",))
    data.add_argument("--interfaces", required=True, help="a clone or snapshot of github cjdowner/interfaces")
    data.add_argument("--webmorph", required=True, help="a clone or snapshot of github debruine/webmorphR.stim")
    data.add_argument("--out", default="facerestore-faces", help="folder for the aligned faces")

    demo = sub.add_parser("demo", help="run the whole job on a built-in shot and write a contact sheet")
    demo.add_argument("--out", default="facerestore-demo", help="folder for the demo shot and results")
    demo.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    demo.add_argument("-q", "--quiet", action="store_true")
    add_command_plugins(sub)
    return parser


def add_command_plugins(sub) -> None:
    """Subcommands that layers above the nodes register under the `facerestore.commands` entry
    point group (`bench`, `worker`), so this module never imports them by name."""

    for entry in importlib.metadata.entry_points(group="facerestore.commands"):
        try:
            entry.load()(sub)
        except Exception as exc:  # a broken command is reported, never silently missing
            print(f"facerestore: warning: command {entry.name!r} unavailable: {first_line(exc)}", file=sys.stderr)


def node_params(args) -> dict:
    """The node parameters of a parsed `render` command line, resolved against the spec."""
    params = {p.id: getattr(args, p.id) for p in FACE_RESTORE.params}
    if args.temporal == "off":
        params["temporal_window"] = 1
    return FACE_RESTORE.resolve(params)


def render_options_from_args(args) -> RenderOptions:
    """The RenderOptions of a parsed `render` command line (the farm checks its jobs' options
    through this too, so the two can never read them differently)."""
    return RenderOptions(
        input=args.input,
        output=args.output,
        frames=args.frames,
        skip_missing=args.skip_missing,
        colorspace=args.colorspace,
        ocio=args.ocio,
        restore_colorspace=args.restore_colorspace,
        device=args.device,
        mask_channel=args.mask_channel,
        output_mode=args.output_mode,
        node_params=node_params(args),
        progress=not args.quiet,
        progress_format=args.progress,
        analysis=args.analysis,
        reanalyse=args.reanalyse,
        track_mattes=args.track_mattes,
        replace_channel=args.replace_channel,
        analysis_frozen=args.analysis_frozen,
        resume=args.resume,
        allow_non_exr=args.allow_non_exr,
        analyse_only=args.analyse_only,
        keep_lossy_compression=args.keep_lossy_compression,
        added_faces=tuple(parse_added_face(text) for text in args.add_face),
        dropped_tracks=tuple(sorted(parse_track_list(args.drop_tracks) or ())),
    )


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "handler"):
        return args.handler(args)
    if args.command == "render":
        if args.quiet:  # the bar and the notes go; warnings stay
            logging.getLogger("facerestore").setLevel(logging.WARNING)
        options = render_options_from_args(args)
        report = render(options)
        if not args.quiet:
            print(format_timings(report))
            faces = sum(report.faces_per_frame.values())
            print(f"faces restored: {faces} over {len(report.jobs)} frame(s); output: {options.output}")
        return 0
    if args.command == "models":
        return run_models(args)
    if args.command == "train":
        return run_train(args)
    if args.command == "data":
        return run_data(args)
    if args.command == "demo":
        run_demo(args.out, device=args.device, progress=not args.quiet)
        return 0
    return EXIT_BAD_INPUT


def run_models(args) -> int:
    if args.action != "import" and args.file:
        raise FaceRestoreError(f"models {args.action} takes no file")
    try:
        if args.action == "import":
            if not args.file:
                raise FaceRestoreError("models import needs a FILE (.pth or .onnx)")
            model = byo.import_model(Path(args.file), args.name)
            print(f"imported {model.name!r} ({model.kind}) to {model.path}; use --model {model.name}")
            print(f"licence: {model.licence}")
            return 0
        if args.action == "list":
            for entry in RESTORERS.values():
                default = " (default)" if entry.name == DEFAULT_RESTORER else ""
                size = f"{entry.input_size} px" if entry.input_size else "sized to each face (32/64/128/256 px)"
                if entry.frames > 1:
                    size += f", with the face's aligned crops from {entry.frames - 1} neighbouring frames"
                print(f"{entry.name:<26} {entry.architecture}{default}; licence: {entry.licence}")
                print(f"{'':<26} {entry.summary}")
                print(f"{'':<26} input {size}, x{entry.scale}; {entry.normalisation}; {entry.template}")
                print(f"{'':<26} weights {entry.weights_bytes / 1e6:.1f} MB, sha256 {entry.sources[-1].sha256[:16]}...")
            for path in byo.available():
                try:
                    model = byo.identify(path)
                    size = f"{model.input_size} px, RGB [-1, 1]" if model.input_size else "sized to each face"
                    if model.frames > 1:
                        size += f", with {model.frames - 1} aligned neighbouring frames"
                    print(f"{model.name:<26} yours: {model.kind} ({path}); licence: {model.licence}")
                    print(f"{'':<26} input {size}, x{model.scale}; {ALIGNMENT_TEMPLATE}")
                except ModelError as exc:
                    print(f"{path.stem:<26} yours, unusable: {exc}")
            print(f"{'retinaface':<26} face detector (mobilenet 0.25); licence: {RETINAFACE_LICENCE}")
            return 0
        retinaface_onnx_bytes()
        print("retinaface: checksum ok")
        for entry in RESTORERS.values():
            print(f"{entry.name}: checksum ok, weights at {ensure_converted_weights(entry)}")
            print(f"{entry.name}: ONNX export at {ensure_onnx(entry)}")
        for path in byo.available():
            byo.verify_import_record(path)
            print(f"{path.stem}: {byo.identify(path).kind}, sha256 {byo.sha256_file(path)[:16]}... ok")
    except ModelError as exc:
        raise FaceRestoreError(str(exc)) from None
    return 0


def run_train(args) -> int:
    recipe = recipes.find(args.model, args.recipe)
    if recipe is None:
        owners = " or ".join(r.model for r in recipes.stages_named(args.recipe))
        raise FaceRestoreError(f"--recipe {args.recipe} is a stage of {owners}, not of {args.model}")
    if recipe.needs_faces != bool(args.faces):
        needing = ", ".join(r.name for r in recipes.RECIPES if r.needs_faces)
        raise FaceRestoreError(
            f"--faces (the folder `facerestore data build` wrote) is for the recipes {needing}, and they need it"
        )
    if args.resume and not recipe.resumable:
        raise FaceRestoreError(f"--resume: recipe {recipe.name} of {recipe.model} writes no checkpoints")
    config = recipe.full if args.full else recipe.reduced
    if recipe.needs_faces:
        config = dataclasses.replace(config, faces=str(Path(args.faces).resolve()))
    if args.steps is not None:
        if args.steps < 1:
            raise FaceRestoreError("--steps must be at least 1")
        config = dataclasses.replace(config, steps=args.steps)
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        device = resolve_torch_device(args.device)
        record = recipe.run(config, Path(args.out), device, args.resume, progress)
    except ModelError as exc:
        raise FaceRestoreError(str(exc)) from None
    print(f"weights: {Path(args.out) / record['weights']} (sha256 {record['sha256']})")
    return 0


def run_data(args) -> int:
    roots = {
        face_data.SOURCES["interfaces"].repo: Path(args.interfaces),
        face_data.SOURCES["london"].repo: Path(args.webmorph),
    }
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        index = face_data.build_faces(roots, Path(args.out), progress=progress)
    except ModelError as exc:
        raise FaceRestoreError(str(exc)) from None
    held_out = sum(entry["split"] == "held_out" for entry in index["faces"])
    print(f"faces: {len(index['faces'])} in {args.out} ({held_out} of held-out people)")
    return 0


def show_library_notes() -> None:
    """The nodes and models print nothing; what they log (licence notes, say) is shown here."""

    logger = logging.getLogger("facerestore")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("facerestore: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _terminated(signum, frame):
    # A farm's kill is a SIGTERM: stop like Ctrl-C, so the frame being written is removed.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _terminated)
    show_library_notes()
    try:
        return run(argv)
    except FaceRestoreError as exc:
        print(f"facerestore: error: {first_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("facerestore: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback for users; one line, and a way to get the detail
        if os.environ.get("FACERESTORE_DEBUG"):
            raise
        print(
            f"facerestore: internal error: {type(exc).__name__}: {first_line(exc)} (set FACERESTORE_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
