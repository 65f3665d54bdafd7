"""The held-out-people case set: 26 people no facerestore model trained on (models.face_data's
held-out split), each still turned into a short shot and degraded under one of the bench's
settings, restored by each model asked for, scored on the face.

A shot from a still: the face placed in a 640x360 frame at 120-300 px footprint (a face box of
about 60-150 px), then moved as a held camera and a talking head move: a sub-pixel drift with
jitter, a roll of up to a degree or two, a slow scale change of a few percent, and a light
flicker of about 1.5 %. Past the still's edges the frame repeats its border pixels (a
mirrored border would add mirrored faces). The truth is the still reduced into the frame (never enlarged), so it is
sharp at the frame's resolution. Each person gets the next setting in turn (protocol, block,
strong-x4, dark, mild, ...), with its own seed, so the 26 shots cover every setting five times
or more; `settings` picks others.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facerestore.benchmarks import cases, metrics
from facerestore.benchmarks.run import DEGRADED, MethodResult, method_folder, run_product, write_linear_sequence
from facerestore.models.detector import RetinaFaceDetector
from facerestore.models.device import resolve_torch_device
from facerestore.models.face_data import MANIFEST_PATH, BuiltFaces, open_built_faces
from facerestore.nodes.align import footprint_of
from facerestore.nodes.colour import ColourPipeline
from facerestore.nodes.face_restore import FaceRestoreNode

FRAME_SIZE = (640, 360)
FOOTPRINT_RANGE = (120.0, 300.0)


@dataclass
class PersonShot:
    person: str
    setting: str
    seed: int
    truth: list[np.ndarray]  # display-encoded sRGB in [0, 1]
    degraded: list[np.ndarray]


def shot_from_still(
    still: np.ndarray, landmarks: np.ndarray, frames: int, rng: np.random.Generator, footprint: float | None = None
) -> list[np.ndarray]:
    """`frames` frames (float32 sRGB, 640x360) of the still's face moving as in a real shot;
    the face at `footprint` px (default: drawn from FOOTPRINT_RANGE)."""
    still = still.astype(np.float32) / 255.0 if still.dtype == np.uint8 else still
    w, h = FRAME_SIZE
    if footprint is None:
        footprint = float(np.exp(rng.uniform(*np.log(FOOTPRINT_RANGE))))
    base_scale = footprint / footprint_of(landmarks)
    centre = landmarks.mean(axis=0)
    # The face a little off centre, as framed.
    target = np.array([w / 2, h / 2]) + rng.uniform(-0.15, 0.15, 2) * np.array([w, h]) * 0.5
    # Low-passed once for the reduction (the scale changes by a few percent only), as
    # models.align.warp_to_face does, so the truth does not alias.
    sigma = 0.5 * (1.0 / base_scale - 1.0) if base_scale < 0.8 else 0.0
    source = cv2.GaussianBlur(still, (0, 0), sigma) if sigma > 0 else still
    drift = rng.normal(0, 0.5, 2)  # px per frame
    roll_rate = rng.normal(0, 0.3)  # degrees per frame
    zoom_rate = rng.normal(0, 0.006)
    position, roll = np.zeros(2), rng.normal(0, 2.0)
    out = []
    for t in range(frames):
        position = position + drift + rng.normal(0, 0.35, 2)
        roll = roll + roll_rate + rng.normal(0, 0.2)
        scale = base_scale * (1.0 + zoom_rate * t)
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(roll), float(scale))
        matrix[:, 2] += target + position - centre
        frame = cv2.warpAffine(source, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        gain = np.float32(1.0 + rng.normal(0, 0.015))
        out.append(np.ascontiguousarray(np.clip(frame * gain, 0.0, 1.0)))
    return out


def person_shots(
    built: BuiltFaces, frames: int, seed: int, settings: tuple[str, ...] = cases.SETTINGS, people: int | None = None
) -> list[PersonShot]:
    """The held-out people's shots, each degraded under its setting (in turn from `settings`)."""
    shots = []
    for entry in sorted(built.faces("held_out"), key=lambda e: (e["person"], e["path"])):
        if people is not None and len(shots) == people:
            break
        if any(shot.person == entry["person"] for shot in shots):
            continue  # one still a person (a London person's neutral one)
        own_seed = seed * 1000 + len(shots)
        rng = np.random.default_rng(own_seed)
        clean = shot_from_still(built.still(entry), np.array(entry["landmarks"], np.float32), frames, rng)
        setting = settings[len(shots) % len(settings)]
        truth, degraded, _ = cases.degrade(clean, setting, own_seed)
        shots.append(PersonShot(entry["person"], setting, own_seed, truth, degraded))
    return shots


def high_frequency_ratio(out: np.ndarray, truth: np.ndarray, mask: np.ndarray, sigma: float = 1.0) -> float:
    """Energy of the image's detail finer than a Gaussian of `sigma` px, over the truth's, in the
    face region: 1 is as sharp as the truth, a soft face well under 1 (an over-sharpened one over)."""
    detail_out = out - cv2.GaussianBlur(out, (0, 0), sigma)
    detail_truth = truth - cv2.GaussianBlur(truth, (0, 0), sigma)
    return float(np.mean(detail_out[mask] ** 2) / max(np.mean(detail_truth[mask] ** 2), 1e-12))


def run_people(
    out: str,
    models: tuple[str, ...],
    frames: int,
    seed: int,
    faces_root: str,
    device: str,
    settings: tuple[str, ...] = cases.SETTINGS,
    people: int | None = None,
    node_settings: dict | None = None,
    progress=print,
    manifest_path: Path = MANIFEST_PATH,
) -> dict:
    """Every held-out person's shot restored by each of `models` (the temporal render, as a
    user runs it) and scored against the truth; results.json, results.md and a contact sheet."""
    os.makedirs(out, exist_ok=True)
    built = open_built_faces(faces_root, manifest_path)
    device = resolve_torch_device(device)
    colour = ColourPipeline.create()
    nodes = {name: FaceRestoreNode(colour, device, **(node_settings or {}), model=name) for name in models}
    detector = RetinaFaceDetector(device, score_threshold=0.8)
    identity = metrics.identity_model()
    shots = person_shots(built, frames, seed, settings, people)
    rows, sheet_rows = [], []
    for number, shot in enumerate(shots, 1):
        started = time.perf_counter()
        folder = os.path.join(out, shot.person)
        pattern = write_linear_sequence(shot.degraded, os.path.join(folder, "degraded"), colour)
        truth_faces = [detector.detect(f) for f in shot.truth]
        regions = [metrics.face_boxes(f.shape[:2], [d.box for d in faces]) for f, faces in zip(shot.truth, truth_faces)]
        flows = metrics.ground_truth_flows(shot.truth)
        methods = [MethodResult(DEGRADED, shot.degraded)]
        for name, node in nodes.items():
            window = node.params["temporal_window"]
            result, _ = run_product(
                node, pattern, os.path.join(folder, method_folder(name)), colour, frames, window, name
            )
            methods.append(result)
        row = {
            "person": shot.person,
            "setting": shot.setting,
            "seed": shot.seed,
            "faces_found": min(map(len, truth_faces)),
        }
        for method in methods:
            psnrs = [metrics.psnr(o, t, r) for o, t, r in zip(method.frames, shot.truth, regions)]
            sharp = [high_frequency_ratio(o, t, r) for o, t, r in zip(method.frames, shot.truth, regions)]
            sims = []
            if identity is not None:
                sims = [
                    identity.similarity(o, t, fs[0].box)
                    for o, t, fs in zip(method.frames, shot.truth, truth_faces)
                    if fs
                ]
            row[method.name] = {
                "psnr": float(np.mean(psnrs)),
                "sharpness": float(np.mean(sharp)),
                "identity": float(np.mean(sims)) if sims else None,
                "warping_error": float(np.nanmean(metrics.warping_errors(method.frames, flows, regions))),
            }
        rows.append(row)
        middle = frames // 2
        box = truth_faces[middle][0].box if truth_faces[middle] else None
        if box is not None:
            sheet_rows.append(_sheet_row([m.frames[middle] for m in methods] + [shot.truth[middle]], box))
        gains = ", ".join(f"{name} {row[name]['psnr'] - row[DEGRADED]['psnr']:+.2f}" for name in models)
        progress(
            f"people {number}/{len(shots)}: {shot.person} ({shot.setting}): {gains} dB ({time.perf_counter() - started:.0f} s)"
        )
    results = {
        "case": "held-out people",
        "frames": frames,
        "seed": seed,
        "frame_size": list(FRAME_SIZE),
        "models": list(models),
        "node_settings": node_settings or {},
        "faces_manifest_sha256": built.index["manifest_sha256"],
        "identity_model": "dlib ResNet v1" if identity else None,
        "rows": rows,
        "summary": summarise(rows, (DEGRADED, *models)),
    }
    with open(os.path.join(out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    with open(os.path.join(out, "results.md"), "w") as handle:
        handle.write(people_markdown(results))
    if sheet_rows:
        labels = [DEGRADED, *models, "truth"]
        cv2.imwrite(os.path.join(out, "people.png"), _sheet(sheet_rows, labels))
    return results


def summarise(rows: list[dict], names: tuple[str, ...]) -> dict:
    """Per method: mean face PSNR gain over the degraded plate, sharpness, identity and warping
    error, over all shots and per setting."""
    degraded = names[0]

    def over(selected: list[dict]) -> dict:
        out = {}
        for name in names:
            entries = [row[name] for row in selected]
            ids = [e["identity"] for e in entries if e["identity"] is not None]
            out[name] = {
                "psnr_gain": float(np.mean([row[name]["psnr"] - row[degraded]["psnr"] for row in selected])),
                "sharpness": float(np.mean([e["sharpness"] for e in entries])),
                "identity": float(np.mean(ids)) if ids else None,
                "warping_error": float(np.mean([e["warping_error"] for e in entries])),
            }
        return out

    settings = sorted({row["setting"] for row in rows})
    return {"all": over(rows), **{s: over([r for r in rows if r["setting"] == s]) for s in settings}}


def people_markdown(results: dict) -> str:
    names = ["degraded input", *results["models"]]
    lines = [
        f"Held-out people: {len(results['rows'])} shots of {results['frames']} frames, seed {results['seed']}",
        "",
        "| shots | method | face PSNR gain (dB) | sharpness (1 = truth) | identity | warping error |",
        "|---|---|---|---|---|---|",
    ]
    for group, by_name in results["summary"].items():
        for name in names:
            entry = by_name[name]
            identity = "-" if entry["identity"] is None else f"{entry['identity']:.3f}"
            lines.append(
                f"| {group} | {name} | {entry['psnr_gain']:+.2f} | {entry['sharpness']:.2f} | {identity} | "
                f"{entry['warping_error'] * 1e4:.2f}e-4 |"
            )
    return "\n".join(lines) + "\n"


def _sheet_row(images: list[np.ndarray], box: np.ndarray, side: int = 160) -> np.ndarray:
    """The face box (with a margin) of each image, side by side, BGR uint8."""
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.65 * max(x1 - x0, y1 - y0)
    tiles = []
    for image in images:
        h, w = image.shape[:2]
        ya, yb = int(max(0, cy - half)), int(min(h, cy + half))
        xa, xb = int(max(0, cx - half)), int(min(w, cx + half))
        crop = cv2.resize(image[ya:yb, xa:xb], (side, side), interpolation=cv2.INTER_CUBIC)
        tiles.append((np.clip(crop, 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1])
    return np.hstack(tiles)


def _sheet(rows: list[np.ndarray], labels: list[str]) -> np.ndarray:
    width = rows[0].shape[1] // len(labels)
    header = np.full((24, rows[0].shape[1], 3), 255, np.uint8)
    for k, label in enumerate(labels):
        cv2.putText(header, label[:22], (k * width + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1)
    return np.vstack([header, *rows])
