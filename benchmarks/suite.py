"""`facerestore bench --suite`: every held-out clip under every degradation setting, plus the
large-face, small-face and group cases, in one run; one table and one contact sheet for all of
them."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np

from facerestore.benchmarks.cases import SETTINGS
from facerestore.benchmarks.run import DEGRADED, PER_FRAME, PRODUCT, WHOLE_FRAME, run_benchmark
from facerestore.models.weights import write_atomically

SUITE = [(clip, "clip", setting) for clip in ("cap13", "franck") for setting in SETTINGS] + [
    ("cap13", "large-face", "protocol"),
    ("cap13", "small-face", "protocol"),
    ("franck", "small-face", "protocol"),
    (None, "group", "protocol"),
    (None, "group", "dark"),
]


def run_suite(
    out: str,
    frames: int,
    device: str,
    seed: int,
    model: str | None,
    compare_models: tuple[str, ...],
    whole_frame: bool,
    progress=print,
    node_settings: dict | None = None,
) -> dict:
    os.makedirs(out, exist_ok=True)
    rows, sheets = [], []
    for index, (clip, case, setting) in enumerate(SUITE, 1):
        name = f"{clip or 'group'}-{case}-{setting}" if case != "group" else f"group-{setting}"
        progress(f"suite {index}/{len(SUITE)}: {name}")
        results = run_benchmark(
            os.path.join(out, name),
            frames,
            clip,
            device,
            seed,
            scaling=False,
            whole_frame=whole_frame,
            progress=progress,
            model=model,
            compare_models=compare_models,
            setting=setting,
            case=case,
            node_settings=node_settings,
        )
        rows.append(summary_row(name, results))
        sheets.append(os.path.join(out, name, "crops.png"))
    table = suite_markdown(rows, compare_models)
    write_atomically(os.path.join(out, "suite.md"), table.encode())
    write_atomically(os.path.join(out, "suite.json"), (json.dumps(rows, indent=2, default=float) + "\n").encode())
    stack_sheets(sheets, [row["case"] for row in rows], os.path.join(out, "suite.png"))
    return {
        "rows": rows,
        "table": table,
        "files": [os.path.join(out, n) for n in ("suite.md", "suite.json", "suite.png")],
    }


def summary_row(name: str, results: dict) -> dict:
    methods = results["methods"]
    degraded = methods[DEGRADED]["summary"]
    row = {
        "case": name,
        "size": results["clip"]["size"],
        "degraded_psnr": degraded["psnr"],
        "degraded_identity": degraded["identity"],
        "degraded_warping": degraded["warping_error"],
        "recall": [r["recall"] for r in results.get("detection_recall", [])],
        "seconds_per_frame": methods[PRODUCT]["seconds_per_frame"],
        "gains": {},
    }
    for method, entry in methods.items():
        if method == DEGRADED:
            continue
        s = entry["summary"]
        row["gains"][method] = {
            "psnr_gain": s["psnr"] - degraded["psnr"],
            "identity": s["identity"],
            "warping_error": s["warping_error"],
        }
    return row


def suite_markdown(rows: list[dict], compare_models: tuple[str, ...]) -> str:
    def fmt(value, digits=2, sign=False):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "n/a"
        return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"

    columns = [PRODUCT, PER_FRAME, *(f"{PRODUCT} [{m}]" for m in compare_models), WHOLE_FRAME]
    columns = [c for c in columns if any(c in row["gains"] for row in rows)]
    head = " | ".join(f"{c}: dB" for c in columns)
    lines = [
        "Face PSNR gain over the degraded input (dB, face boxes); identity (cosine, dlib) of the degraded input "
        f"and of {PRODUCT}; flow warping error x1e3 of the degraded input, {PRODUCT} and per-frame; share of "
        "frames each face was found.",
        "",
        f"| case | size | degraded dB | {head} | identity degraded / {PRODUCT} | warp degraded / {PRODUCT} / "
        "per-frame | faces found | s/frame |",
        "|---|---|---|" + "---|" * len(columns) + "---|---|---|---|",
    ]
    for row in rows:
        gains = row["gains"]
        cells = " | ".join(fmt(gains.get(c, {}).get("psnr_gain"), sign=True) for c in columns)
        product, per_frame = gains.get(PRODUCT, {}), gains.get(PER_FRAME, {})
        warps = "n/a"
        if product and per_frame:
            warps = " / ".join(
                fmt(v * 1000, 2)
                for v in (row["degraded_warping"], product["warping_error"], per_frame["warping_error"])
            )
        lines.append(
            f"| {row['case']} | {row['size']} | {fmt(row['degraded_psnr'])} | {cells} | "
            f"{fmt(row['degraded_identity'], 3)} / {fmt(product.get('identity'), 3)} | {warps} | "
            f"{', '.join(f'{r:.0%}' for r in row['recall']) or 'n/a'} | {fmt(row['seconds_per_frame'])} |"
        )
    return "\n".join(lines) + "\n"


def stack_sheets(paths: list[str], labels: list[str], path: str) -> None:
    """Every case's crops sheet (ground truth, degraded, per-frame, product, compared models,
    whole frame) one under another, each with its case name."""
    images = [cv2.imread(p) for p in paths]
    width = max(image.shape[1] for image in images)
    rows = []
    for image, label in zip(images, labels):
        band = np.full((24, width, 3), 255, np.uint8)
        cv2.putText(band, label, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        padded = np.pad(image, ((0, 0), (0, width - image.shape[1]), (0, 0)), constant_values=255)
        rows += [band, padded]
    if not cv2.imwrite(path, np.concatenate(rows, 0)):
        raise OSError(f"cannot write {path}")
