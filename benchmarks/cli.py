"""`facerestore bench`, registered with the CLI through the `facerestore.commands` entry point."""

from __future__ import annotations

import os
import sys

from facerestore.benchmarks.cases import CASES, SETTINGS
from facerestore.benchmarks.people import people_markdown, run_people
from facerestore.benchmarks.run import add_to_training_record, run_benchmark
from facerestore.benchmarks.suite import run_suite
from facerestore.models.errors import ModelError
from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.face_restore import FACE_RESTORE


def register(sub) -> None:
    bench = sub.add_parser("bench", help="quality and speed against baselines on a degraded real clip")
    bench.add_argument("--out", default="facerestore-bench", help="folder for results (JSON, markdown, plots)")
    bench.add_argument("--frames", type=int, default=8, help="clip length in frames (default 8)")
    bench.add_argument(
        "--data", help="built-in clip (cap13, franck) or an EXR sequence pattern or video file (default: cap13)"
    )
    bench.add_argument("--model", help="the restorer facerestore uses (default: the product's default)")
    bench.add_argument(
        "--compare-model",
        action="append",
        default=[],
        metavar="NAME",
        help="also run facerestore with this restorer and report the difference (repeatable)",
    )
    bench.add_argument(
        "--setting", choices=SETTINGS, default="protocol", help="degradation setting (default: protocol)"
    )
    bench.add_argument(
        "--case",
        choices=CASES,
        default="clip",
        help="clip as is, zoomed large face, reduced small face, or a group shot",
    )
    bench.add_argument(
        "--suite",
        action="store_true",
        help="both held-out clips under every setting, the large-face, small-face and group cases: one table and sheet",
    )
    bench.add_argument(
        "--people",
        metavar="FACES",
        help="the held-out-people case set instead: each of the 26 held-out people's still (from the folder "
        "`facerestore data build` wrote) made into a short shot under the next setting in turn, restored by --model "
        "and every --compare-model",
    )
    bench.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PARAM=VALUE",
        help="a node parameter for every facerestore run, by its spec id (e.g. keep_colour_radius=0); repeatable",
    )
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    bench.add_argument("--seed", type=int, default=2024, help="degradation seed")
    bench.add_argument("--no-scaling", action="store_true", help="skip the 1080p / 4K timing")
    bench.add_argument("--no-whole-frame", action="store_true", help="skip the whole-frame baseline (slow on CPU)")
    bench.add_argument(
        "--record",
        metavar="JSON",
        help="add this run's figures to a training record (e.g. models/trained/facerestore-face-x4.json)",
    )
    bench.set_defaults(handler=run)


def run(args) -> int:
    if args.frames < 2:
        raise FaceRestoreError("--frames must be at least 2 (temporal metrics need pairs)")
    if args.record and not os.path.isfile(args.record):
        raise FaceRestoreError(f"{args.record}: no such training record")
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    settings = node_settings(args.set)
    if args.people:
        if args.suite or args.record:
            raise FaceRestoreError("--people is a case set of its own: not with --suite or --record")
        models = tuple(dict.fromkeys([args.model or FACE_RESTORE.defaults()["model"], *args.compare_model]))
        try:
            results = run_people(
                args.out,
                models,
                args.frames,
                args.seed,
                args.people,
                args.device,
                node_settings=settings,
                progress=progress,
            )
        except ModelError as exc:
            raise FaceRestoreError(str(exc)) from None
        print(people_markdown(results))
        return 0
    if args.suite:
        if args.record:
            raise FaceRestoreError("--record takes one benchmark run, not --suite")
        suite = run_suite(
            args.out,
            args.frames,
            args.device,
            args.seed,
            args.model,
            tuple(args.compare_model),
            whole_frame=not args.no_whole_frame,
            progress=progress,
            node_settings=settings,
        )
        print(suite["table"])
        print("files: " + ", ".join(suite["files"]))
        return 0
    results = run_benchmark(
        args.out,
        args.frames,
        args.data,
        args.device,
        args.seed,
        scaling=not args.no_scaling,
        whole_frame=not args.no_whole_frame,
        progress=progress,
        model=args.model,
        compare_models=tuple(args.compare_model),
        setting=args.setting,
        case=args.case,
        node_settings=settings,
    )
    if args.record:
        add_to_training_record(args.record, results)
        print(f"figures added to {args.record}")
    with open(os.path.join(args.out, "results.md")) as handle:
        print(handle.read())
    print("files: " + ", ".join(results["files"]))
    return 0


def node_settings(texts: list[str]) -> dict:
    """`--set id=value` pairs as node parameters, typed like the spec's defaults."""

    params = {p.id: p for p in FACE_RESTORE.params}
    settings = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or name not in params:
            raise FaceRestoreError(f"--set {text}: expected PARAM=VALUE with PARAM one of {', '.join(params)}")
        kind = type(params[name].default)
        try:
            settings[name] = kind(value)
        except ValueError:
            raise FaceRestoreError(f"--set {text}: {value!r} is not a {kind.__name__}") from None
    return settings
