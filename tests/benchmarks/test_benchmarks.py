"""The benchmark's parts measure what they claim, and the whole runs on real EXR data."""

import json
import shutil
import sys

import numpy as np
import pytest

from facerestore.benchmarks import cases, metrics
from facerestore.models.degrade import Degradation, degrade_clip, gaussian_kernel, h264_available
from facerestore.models.weights import DEFAULT_RESTORER
from facerestore.plugin.demo import demo_frame_display

from helpers import run_cli


def test_degradation_is_seeded_and_within_the_protocol():
    a, b = Degradation.sample(7), Degradation.sample(7)
    assert a == b and a != Degradation.sample(8)
    for seed in range(20):
        p = Degradation.sample(seed)
        assert 2 <= p.scale <= 4 and 18 <= p.crf <= 25 and p.sigma_x > 0
    kernel = gaussian_kernel(2.0, 0.7, 0.5)
    assert abs(kernel.sum() - 1) < 1e-5 and not np.allclose(kernel, kernel.T)  # anisotropic


@pytest.mark.skipif(not h264_available(), reason="imageio-ffmpeg not installed")
def test_h264_degradation_loses_detail_reproducibly():
    frames = [demo_frame_display(i, clean=True) for i in range(3)]
    params = Degradation.sample(3)
    first, second = degrade_clip(frames, params, 3), degrade_clip(frames, params, 3)
    assert all(np.array_equal(x, y) for x, y in zip(first, second))
    mask = np.ones(frames[0].shape[:2], bool)
    assert 18 < metrics.psnr(first[0], frames[0], mask) < 40
    assert first[0].shape == frames[0].shape


@pytest.mark.skipif(not h264_available(), reason="imageio-ffmpeg not installed")
def test_the_mild_setting_is_a_nearly_clean_plate():
    frames = [demo_frame_display(i, clean=True) for i in range(2)]
    _, mild, description = cases.degrade(frames, "mild", 0)
    _, block, _ = cases.degrade(frames, "block", 0)
    assert description["scale"] == 1.0 and description["codec"] == "h264" and mild[0].shape == frames[0].shape
    mask = np.ones(frames[0].shape[:2], bool)
    closeness = metrics.psnr(mild[0], frames[0], mask)
    assert closeness > 32 and closeness > metrics.psnr(block[0], frames[0], mask) + 3
    assert not np.array_equal(mild[0], frames[0])


def test_warping_error_is_zero_for_a_still_shot_and_grows_with_flicker():
    still = [demo_frame_display(0, clean=True)] * 3
    flows = metrics.ground_truth_flows(still)
    regions = [np.ones(still[0].shape[:2], bool)] * 3
    assert max(metrics.warping_errors(still, flows, regions)) == 0.0
    flicker = [f + 0.05 * (i % 2) for i, f in enumerate(still)]
    assert min(metrics.warping_errors(flicker, flows, regions)) > 0.002


def test_landmark_metrics():
    ref = [np.array([[10.0, 10], [20, 10], [15, 15], [11, 20], [19, 20]])]
    shifted = [ref[0] + [3.0, 4.0]]
    assert metrics.landmark_distance(ref, shifted) == pytest.approx(5.0)
    steady = metrics.landmark_motion_error([ref, ref], [shifted, shifted])
    jitter = metrics.landmark_motion_error([ref, ref], [ref, shifted])
    assert steady == 0.0 and jitter == pytest.approx(5.0)


def test_identity_model_tells_people_apart():
    model = metrics.identity_model()
    if model is None:
        pytest.skip("identity extra not installed")
    from facerestore.models.detector import RetinaFaceDetector

    face = demo_frame_display(0, clean=True)
    box = RetinaFaceDetector("cpu").detect(face)[0].box
    same = model.similarity(face, np.clip(face * 0.9 + 0.03, 0, 1), box)
    other = model.similarity(face, face[:, ::-1].copy() * 0 + 0.5, box)
    assert same > 0.95 and other < same


@pytest.mark.slow
def test_bench_command_on_an_exr_sequence(tmp_path):
    record_path = tmp_path / "record.json"
    record_path.write_text(json.dumps({"losses": []}))
    proc = run_cli("demo", "--out", tmp_path / "demo", "--device", "cpu", "-q")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "bench",
        "--data",
        tmp_path / "demo" / "plate" / "plate.####.exr",
        "--frames",
        "2",
        "--out",
        tmp_path / "bench",
        "--no-scaling",
        "--no-whole-frame",
        "--device",
        "cpu",
        "--compare-model",
        "realesr-animevideov3-x4",
        "--record",
        record_path,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert results["untouched_max_abs"] == 0.0
    compared = "facerestore [realesr-animevideov3-x4]"
    assert set(results["methods"]) == {"degraded input", "facerestore", "facerestore per-frame", compared}
    assert f"Model {DEFAULT_RESTORER} against realesr-animevideov3-x4 (both temporal): PSNR" in proc.stdout
    record = json.loads(record_path.read_text())
    assert record["losses"] == [] and [b["clip"] for b in record["benchmark"]] == ["plate.####.exr"]
    assert record["benchmark"][0]["methods"][compared]["psnr"] == results["methods"][compared]["summary"]["psnr"]
    product = results["methods"]["facerestore"]
    assert len(product["per_frame"]["psnr"]) == 2 and len(product["per_frame"]["warping_error"]) == 1
    assert product["stages_ms"]["restore"] > 0
    assert "| facerestore |" in proc.stdout
    for name in ("crops.png", "psnr.png", "warping_error.png", "results.md"):
        assert (tmp_path / "bench" / name).stat().st_size > 1000 or name == "results.md"


@pytest.mark.slow
def test_the_small_face_case_is_found_and_restored(tmp_path):
    """A face box of about 37x51 px, degraded by the protocol on top (about the 40 px faces the
    detection goal covers): the render must find it in every frame and gain over the plate."""
    proc = run_cli(
        "bench", "--data", "cap13", "--case", "small-face", "--frames", "2", "--out", tmp_path / "bench",
        "--no-scaling", "--no-whole-frame", "--device", "cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    [found] = results["detection_recall"]
    assert 30 <= found["box_px"][0] <= 45 and found["recall"] == 1.0
    psnr = {name: method["summary"]["psnr"] for name, method in results["methods"].items()}
    assert psnr["facerestore"] - psnr["degraded input"] > 1.0, psnr
    assert results["untouched_max_abs"] == 0.0


def test_crops_sheet_keeps_long_method_names_inside_their_tile(tmp_path):
    import cv2

    from facerestore.benchmarks.run import MethodResult, crops_sheet

    truth = [np.full((120, 90, 3), 0.5, np.float32)]
    region = np.zeros((120, 90), bool)
    region[20:100, 20:70] = True  # an 80x50 face window: tiles ~160 px wide, narrower than the long label
    long_name = "facerestore [realesr-animevideov3-x4]"
    methods = [MethodResult(long_name, truth), MethodResult("", truth)]
    path = tmp_path / "crops.png"
    crops_sheet(truth, methods, region, 0, str(path))
    sheet = cv2.imread(str(path))
    tile_width = sheet.shape[1] // 3  # truth and two methods: equal widths
    header = sheet[:44].min(axis=2) < 128  # dark text pixels
    columns_with_text = np.nonzero(header.any(axis=0))[0]
    second_tile = columns_with_text[(columns_with_text >= tile_width) & (columns_with_text < 2 * tile_width)]
    assert second_tile.size, "the long label was not drawn"
    third_tile = columns_with_text[(columns_with_text >= 2 * tile_width) & (columns_with_text < 3 * tile_width)]
    assert third_tile.size == 0, "the long label ran into the next tile"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None or sys.platform != "linux", reason="needs cc on Linux")
def test_the_host_speed_benchmark_runs_the_bundle_and_the_cli(tmp_path):
    from facerestore.benchmarks import bench_host

    assert bench_host.main(["--frames", "3", "--json", str(tmp_path / "host.json")]) == 0
    figures = json.loads((tmp_path / "host.json").read_text())
    assert figures["frames"] == 3 and figures["cli_s_per_frame"] > 0 and figures["host_s_per_frame"] > 0
    assert figures["host_over_cli"] == pytest.approx(figures["host_s_per_frame"] / figures["cli_s_per_frame"])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None or sys.platform != "linux", reason="needs cc on Linux")
def test_the_first_frame_benchmark_times_a_short_and_a_long_shot(tmp_path):
    from facerestore.benchmarks import bench_host_first_frame

    assert bench_host_first_frame.main(["--json", str(tmp_path / "first.json")]) == 0
    figures = json.loads((tmp_path / "first.json").read_text())
    assert figures["first_render_6_frames_s"] > 0 and figures["first_render_48_frames_s"] > 0
    assert figures["ratio_48_over_6"] == pytest.approx(
        figures["first_render_48_frames_s"] / figures["first_render_6_frames_s"]
    )


@pytest.mark.slow
def test_the_farm_scaling_benchmark_gives_the_same_frames_with_every_worker_count(tmp_path):
    from facerestore.benchmarks import bench_farm

    assert bench_farm.main(["--frames", "8", "--chunk", "4", "--workers", "1", "2", "--json", str(tmp_path / "f.json")]) == 0
    runs = json.loads((tmp_path / "f.json").read_text())["runs"]
    assert [r["workers"] for r in runs] == [1, 2] and all(r["identical_to_one_worker"] for r in runs)
    assert all(0 < r["analysis_share"] < 1 and r["speed_up"] > 0 for r in runs)


@pytest.mark.slow
def test_the_frame_path_benchmark_accounts_for_the_wall_time_and_renders_as_in_turn(tmp_path):
    from facerestore.benchmarks import bench_frame_path

    argv = ["--frames", "2", "--sizes", "1080p", "--cases", "one face", "--repeats", "2", "--json", str(tmp_path / "p.json")]
    assert bench_frame_path.main(argv) == 0
    figures = json.loads((tmp_path / "p.json").read_text())["cases"]["1080p"]["one face"]
    assert figures["faces_per_frame"] == 1 and figures["sequential_render_identical"]
    assert figures["stage_sum"] == pytest.approx(figures["wall"], rel=0.05)
    assert 0 < figures["outside_networks"] < figures["outside_issue_definition"] < figures["wall"]
    assert figures["ratio"] == pytest.approx(figures["outside_networks"] / figures["copy_floor"])
    assert len(figures["outside_networks_each"]) == 2 and len(figures["copy_floors"]) == 3


def test_a_model_given_as_a_path_renders_into_a_folder_of_the_case(tmp_path):
    import os

    from facerestore.benchmarks.run import method_folder

    case = str(tmp_path / "case")
    for name in ("/home/me/models/my face.pth", "../m.onnx", "facerestore-face-x4-v3", "..", ""):
        folder = os.path.join(case, method_folder(name))
        assert os.path.dirname(folder) == case and method_folder(name) not in ("", ".", "..")
    assert method_folder("facerestore-face-x4-v3") == "facerestore-face-x4-v3"
