"""Bring-your-own face restorers: our GFPGAN against the published one, ONNX face models, the
search path and `models import`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from reference_impls import codeformer_reference_class, gfpgan_reference_class

from facerestore.models import byo
from facerestore.models.codeformer import CodeFormer
from facerestore.models.errors import ModelError
from facerestore.models.gfpgan import GFPGAN
from facerestore.models.restorer import make_restorer

from helpers import channel, faces_plate, read_buf, run_cli, run_cli_here, write_exr


def random_state(net: torch.nn.Module, seed: int, std: float) -> dict:
    """Every parameter and buffer (GFPGAN's noise maps too) random, none left at its zero init,
    so each path of the network counts in a parity test. `std` must keep the output in range:
    GFPGAN at 0.05 reaches 1e22, every output pixel saturates, and a parity test then compares
    the signs of rounding noise (what failed on onnxruntime 1.32)."""
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) * std for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def gfpgan_file(tmp_path_factory):
    """Random weights saved the way official GFPGAN v1.3 / v1.4 files are (`params_ema`)."""
    path = tmp_path_factory.mktemp("models") / "GFPGANv1.4.pth"
    torch.save({"params_ema": random_state(GFPGAN(), seed=0, std=0.02)}, path)
    return path


@pytest.mark.network
@pytest.mark.slow
def test_gfpgan_matches_the_published_implementation(gfpgan_file):
    reference = gfpgan_reference_class()(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    ).eval()
    reference.load_state_dict(torch.load(gfpgan_file, weights_only=True)["params_ema"], strict=True)
    restorer = make_restorer(str(gfpgan_file), "cpu")  # our loader: identify, then a strict load
    assert restorer.input_size == 512 and restorer.scale == 1
    face = np.random.default_rng(1).random((1, 512, 512, 3), dtype=np.float32)
    with torch.inference_mode():
        # The published inference maps [0, 1] RGB to [-1, 1] and back the same way; stored noise.
        x = (torch.from_numpy(face).permute(0, 3, 1, 2) * 2 - 1).contiguous()
        expected = reference(x, randomize_noise=False)[0]
    expected = ((expected.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    ours = restorer(face)
    assert np.abs(expected - 0.5).std() > 0.01  # a real signal, not a constant
    assert 0.0 < expected.min() and expected.max() < 1.0  # nothing saturated: parity is measured
    assert np.abs(ours - expected).max() < 1e-4


@pytest.fixture(scope="module")
def codeformer_file(tmp_path_factory):
    """Random CodeFormer weights saved in the official file layout (`params_ema`)."""
    path = tmp_path_factory.mktemp("models") / "codeformer.pth"
    torch.save({"params_ema": random_state(CodeFormer(), seed=3, std=0.05)}, path)
    return path


@pytest.mark.network
@pytest.mark.slow
def test_codeformer_matches_the_published_implementation_at_its_fidelity(codeformer_file, caplog):
    reference = codeformer_reference_class()(
        dim_embd=512, codebook_size=1024, n_head=8, n_layers=9, connect_list=["32", "64", "128", "256"]
    ).eval()
    reference.load_state_dict(torch.load(codeformer_file, weights_only=True)["params_ema"], strict=True)
    model = byo.identify(codeformer_file)
    assert (model.kind, model.input_size) == ("codeformer", 512) and model.non_commercial
    restorer = make_restorer(str(codeformer_file), "cpu", fidelity=0.7)
    assert "NON-COMMERCIAL" in caplog.text  # said (logged; the CLI shows it) when the model is used
    face = np.random.default_rng(4).random((1, 512, 512, 3), dtype=np.float32)
    with torch.inference_mode():
        # The published inference: [-1, 1] in, w = fidelity, AdaIN on the codebook features.
        x = (torch.from_numpy(face).permute(0, 3, 1, 2) * 2 - 1).contiguous()
        expected = reference(x, w=0.7, adain=True)[0]
    expected = ((expected.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    ours = restorer(face)
    assert np.abs(expected - 0.5).std() > 0.01
    assert np.abs(ours - expected).max() < 1e-4
    quality_first = make_restorer(str(codeformer_file), "cpu", fidelity=0.0)(face)
    assert np.abs(quality_first - ours).max() > 1e-3  # the weight reaches the network


class FidelityBlend(torch.nn.Module):
    """A graph with CodeFormer's ONNX interface (image, fidelity weight): its output moves with
    the weight, so the test can see the weight arrive."""

    def forward(self, x, w):
        return torch.tanh(x * (1 + w))


def _gfpgan_onnx(gfpgan_file, folder):
    path = folder / "gfpgan-export.onnx"
    net = make_restorer(str(gfpgan_file), "cpu").net
    with torch.inference_mode():
        torch.onnx.export(net, (torch.zeros(1, 3, 512, 512),), str(path), opset_version=17, dynamo=False)
    return path


def _codeformer_onnx(folder):
    path = folder / "codeformer-export.onnx"
    args = (torch.zeros(1, 3, 512, 512), torch.tensor(0.5, dtype=torch.float64))
    torch.onnx.export(FidelityBlend(), args, str(path), input_names=["x", "w"], opset_version=17, dynamo=False)
    return path


@pytest.mark.slow
def test_onnx_export_of_gfpgan_runs_as_a_users_face_model(gfpgan_file, tmp_path):
    onnx_path = _gfpgan_onnx(gfpgan_file, tmp_path)
    model = byo.identify(onnx_path)
    assert (model.kind, model.input_size) == ("face-onnx", 512)
    face = np.random.default_rng(2).random((2, 512, 512, 3), dtype=np.float32)
    via_onnx = make_restorer(str(onnx_path), "cpu")(face)  # batch of 2 through a batch-1 export
    via_torch = make_restorer(str(gfpgan_file), "cpu")(face)
    assert 0.0 < via_torch.min() and via_torch.max() < 1.0  # in range, so the comparison means something
    assert np.abs(via_onnx - via_torch).max() < 1e-4


def test_codeformer_style_onnx_receives_the_fidelity_weight(tmp_path, caplog):
    path = _codeformer_onnx(tmp_path)
    model = byo.identify(path)
    assert model.kind == "codeformer-onnx" and model.non_commercial
    face = np.full((1, 512, 512, 3), 0.75, np.float32)
    low, high = (make_restorer(str(path), "cpu", fidelity=f)(face) for f in (0.0, 1.0))
    assert np.allclose(low, (np.tanh(0.5) + 1) / 2, atol=1e-5)
    assert np.allclose(high, (np.tanh(1.0) + 1) / 2, atol=1e-5)
    assert "NON-COMMERCIAL" in caplog.text  # said (logged; the CLI shows it) when one is used


@pytest.mark.slow
def test_import_search_path_and_a_render_with_a_users_gfpgan(gfpgan_file, tmp_path, monkeypatch, colour):
    monkeypatch.setenv("FACERESTORE_CACHE", str(tmp_path / "cache"))
    cli = [sys.executable, "-m", "facerestore.plugin.cli"]
    env = dict(os.environ, FACERESTORE_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(
        cli + ["models", "import", str(gfpgan_file), "--name", "studio-gfpgan"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    imported = tmp_path / "cache" / "models" / "studio-gfpgan.pth"
    record = json.loads((tmp_path / "cache" / "models" / "studio-gfpgan.pth.json").read_text())
    assert record["kind"] == "gfpgan" and record["sha256"] == byo.sha256_file(imported)
    listing = subprocess.run(cli + ["models", "list"], env=env, capture_output=True, text=True).stdout
    assert "studio-gfpgan" in listing and "yours: gfpgan" in listing and "input 512 px, RGB [-1, 1]" in listing
    assert "facerestore-face-x4" in listing and "(default); licence: Apache-2.0" in listing

    # FACERESTORE_MODEL_PATHS is searched before the cache.
    folder = tmp_path / "studio_models"
    folder.mkdir()
    (folder / "other.pth").write_bytes(gfpgan_file.read_bytes())
    monkeypatch.setenv("FACERESTORE_MODEL_PATHS", str(folder))
    assert byo.find("other").path == folder / "other.pth"

    from facerestore.nodes.face_restore import FaceRestoreNode

    node = FaceRestoreNode(colour, "cpu", model="studio-gfpgan", temporal_window=1)
    plate = faces_plate(colour)
    faces = node.detect(plate)
    assert faces and all(f.restore_size == 512 for f in faces)
    result = node.process(plate, faces)
    changed = np.abs(result.rgb - plate).max(axis=2) > 0
    assert changed.any() and not changed[result.matte == 0].any()

    # A changed file is refused rather than silently used.
    with open(imported, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelError, match="changed since it was imported"):
        byo.find("studio-gfpgan")


@pytest.mark.slow
def test_bad_model_files_get_one_line_errors(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a PyTorch state dict"):
        byo.identify(junk)
    torch.save({"params": {"quantize.embedding.weight": torch.zeros(4, 4)}}, tmp_path / "partial.pth")
    with pytest.raises(ModelError, match="unrecognised network"):
        byo.identify(tmp_path / "partial.pth")
    misfit = {
        "quantize.embedding.weight": torch.zeros(4, 4),
        "position_emb": torch.zeros(2),
        "idx_pred_layer.1.weight": torch.zeros(2),
    }
    torch.save({"params_ema": misfit}, tmp_path / "misfit.pth")
    with pytest.raises(ModelError, match="do not fit the codeformer architecture"):
        make_restorer(str(tmp_path / "misfit.pth"), "cpu")
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        make_restorer("nope", "cpu")
    done = subprocess.run(
        [sys.executable, "-m", "facerestore.plugin.cli", "models", "import", str(junk)], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not a PyTorch state dict" in done.stderr


@pytest.fixture(scope="module")
def plate_file(tmp_path_factory, colour):
    path = tmp_path_factory.mktemp("plate") / "plate.exr"
    write_exr(path, faces_plate(colour))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["codeformer", "face-onnx", "codeformer-onnx"])
def test_render_with_each_kind_of_users_model(kind, gfpgan_file, codeformer_file, plate_file, tmp_path):
    """`facerestore render --model FILE` for the kinds not rendered above (GFPGAN .pth is)."""
    model = {
        "codeformer": lambda: codeformer_file,
        "face-onnx": lambda: _gfpgan_onnx(gfpgan_file, tmp_path),
        "codeformer-onnx": lambda: _codeformer_onnx(tmp_path),
    }[kind]()
    assert byo.identify(model).kind == kind
    out = tmp_path / "out.exr"
    proc = run_cli("render", plate_file, "-o", out, "--model", model, "--fidelity", "0.5", "-q")
    assert proc.returncode == 0, proc.stderr
    assert ("NON-COMMERCIAL" in proc.stderr) == kind.startswith("codeformer")
    spec, pixels = read_buf(out)
    _, plate = read_buf(plate_file)
    matte = channel(spec, pixels, "face.mask")
    changed = np.abs(pixels[..., :3] - plate[..., :3]).max(axis=2) > 0
    assert matte.max() > 0.9 and changed[matte > 0.5].mean() > 0.5 and not changed[matte == 0].any()


def test_a_window_restorer_trained_here_loads_as_a_users_model_and_refuses_the_wrong_input(tmp_path):
    """What `facerestore train --model facerestore-face-x4-window` writes runs from its file."""
    from facerestore.models.compact import CompactNet, widened_to_window

    torch.manual_seed(1)
    path = tmp_path / "my-window.pth"
    torch.save(widened_to_window(CompactNet(num_feat=8, num_conv=2), 3).state_dict(), path)
    assert byo.identify(path).frames == 3
    restorer = make_restorer(str(path), "cpu")
    assert restorer.frames == 3 and restorer.scale == 4
    window = np.random.default_rng(0).random((1, 16, 12, 9)).astype(np.float32)
    assert restorer(window).shape == (1, 64, 48, 3)
    with pytest.raises(ModelError, match=r"takes \(N, H, W, 9\) crops") as caught:
        restorer(window[..., :3])
    assert "\n" not in str(caught.value)
    # Two frames (no centre) is no window the node can make.
    torch.save(widened_to_window(CompactNet(num_feat=8, num_conv=2), 2).state_dict(), tmp_path / "even.pth")
    with pytest.raises(ModelError, match="odd number of frames"):
        byo.identify(tmp_path / "even.pth")


@pytest.mark.parametrize("mode", ["flip+scale", "flip+scale-even"])
def test_a_farm_job_refuses_an_ensemble_the_model_cannot_run(gfpgan_file, tmp_path, colour, mode):
    """A 512 px face model has no coarse pass: refused when the job is written (one line, no job
    folder), not in every farm task."""
    for t in (1, 2):
        write_exr(tmp_path / f"s.{t:04d}.exr", faces_plate(colour))
    options = f"--render-options=--model {gfpgan_file} --ensemble {mode}"
    job = ("--job-dir", tmp_path / "job", options)
    proc = run_cli_here("farm", "openjd", tmp_path / "s.####.exr", "-o", tmp_path / "out/r.####.exr", *job)
    assert proc.returncode == 2 and f"{mode} needs a x4 restorer" in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "job").exists()


@pytest.mark.parametrize("mode", ["flip+scale", "flip+scale-even"])
def test_the_node_refuses_an_ensemble_the_model_cannot_run_before_loading_it(gfpgan_file, colour, monkeypatch, mode):
    """A host asks again on every render: the refusal comes from the model file's description,
    without building the detector or the network each time."""
    from facerestore.nodes import face_restore
    from facerestore.nodes.errors import FaceRestoreError

    def not_now(*args, **kwargs):
        raise AssertionError("a network was loaded for a refused ensemble")

    monkeypatch.setattr(face_restore, "make_restorer", not_now)
    monkeypatch.setattr(face_restore, "RetinaFaceDetector", not_now)
    with pytest.raises(FaceRestoreError, match=f"{re.escape(mode)} needs a x4 restorer"):
        face_restore.FaceRestoreNode(colour, "cpu", model=str(gfpgan_file), ensemble=mode)
