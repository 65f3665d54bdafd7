"""The render job end to end on real EXR files: exactness away from faces, HDR, channels,
windows and metadata, output modes, and every bad-input case from the foundation issue."""

import hashlib
import os
import re

import numpy as np
import OpenImageIO as oiio
import pytest

from facerestore.nodes.errors import FaceRestoreError
from facerestore.plugin.render import RenderOptions, render

from helpers import channel, faces_plate, read_buf, run_cli, write_exr

# The `node` fixture with the ensemble off (one network pass a face where auto runs four):
# the tests here that are about the ensemble take `default_node` or make their own.
NODE_ENSEMBLE = "off"


def render_with(node, src, dst, **kw):
    return render(RenderOptions(input=str(src), output=str(dst), progress=False, **kw), node=node)


def squeezed_plate(colour, positions=((180, 30),), seed=1) -> np.ndarray:
    """A 480x240 plate with an astronaut head, squeezed to 240x240: what a 2x anamorphic plate
    holds (write it with spec_edit=ANAMORPHIC)."""
    import cv2

    square = faces_plate(colour, width=480, height=240, face_width=110, positions=positions, seed=seed)
    return np.ascontiguousarray(cv2.resize(square, (240, 240), interpolation=cv2.INTER_AREA))


def ANAMORPHIC(spec):  # noqa: N802 (a constant-like spec edit)
    spec.attribute("PixelAspectRatio", 2.0)


def hdr_plate(colour, seed=0):
    """Faces on a backdrop with values in [-0.5, 20], plus a 20.0 highlight on the face."""
    plate = faces_plate(colour, positions=((40, 50), (190, 60)), face_width=80, seed=seed)
    rng = np.random.default_rng(seed)
    backdrop = rng.uniform(-0.5, 20.0, plate.shape).astype(np.float32)
    plate[:45] = backdrop[:45]
    plate[:, 290:] = backdrop[:, 290:]
    plate[105:108, 75:78] = 20.0  # specular highlight on the first face's cheek
    return plate.astype(np.float16).astype(np.float32)


def test_bit_exact_outside_the_matte_and_hdr_survives(tmp_path, node, colour):
    plate = hdr_plate(colour)
    src = write_exr(tmp_path / "in.exr", plate)
    render_with(node, src, tmp_path / "out.exr")
    spec, out = read_buf(tmp_path / "out.exr")
    _, original = read_buf(src)
    matte = channel(spec, out, "face.mask")
    outside = matte == 0
    assert outside.mean() > 0.6 and (matte > 0.99).sum() > 500
    rgb_out, rgb_in = out[..., :3], original[..., :3]
    assert np.array_equal(rgb_out[outside], rgb_in[outside])  # bit-identical
    assert rgb_in.max() == 20.0 and rgb_in.min() < -0.4
    assert np.abs(rgb_out[matte > 0.99] - rgb_in[matte > 0.99]).mean() > 1e-3  # the faces did change
    # Highlight above 1.0 inside the face survives; the restorer never saw it.
    assert matte[106, 76] > 0.9 and rgb_out[106, 76].min() > 15.0


def test_channels_windows_metadata_and_types_are_kept(tmp_path, node, colour):
    plate = faces_plate(colour, width=300, height=220)
    depth = np.random.default_rng(3).uniform(0, 1e4, plate.shape[:2]).astype(np.float32)
    alpha = np.ones(plate.shape[:2], np.float32)

    def edit(spec):
        spec.x, spec.y = -10, -6
        spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, 280, 208
        spec.attribute("studio:shot", "ab_0010")
        spec.attribute("FramesPerSecond", oiio.TypeDesc("rational2i"), (24, 1))

    src = write_exr(tmp_path / "in.exr", plate, extra={"A": alpha, "Z": depth}, spec_edit=edit)
    render_with(node, src, tmp_path / "out.exr", mask_channel="faces.matte")
    spec_in, px_in = read_buf(src)
    spec_out, px_out = read_buf(tmp_path / "out.exr")
    assert sorted(spec_out.channelnames) == sorted(list(spec_in.channelnames) + ["faces.matte"])
    types = dict(zip(spec_out.channelnames, map(str, spec_out.channelformats)))
    assert types["R"] == "half" and types["Z"] == "float" and types["faces.matte"] == "half"
    assert (spec_out.x, spec_out.y, spec_out.full_width, spec_out.full_height) == (-10, -6, 280, 208)
    assert spec_out.getattribute("studio:shot") == "ab_0010"
    assert spec_out.getattribute("FramesPerSecond") == (24, 1)
    assert spec_out.get_string_attribute("compression") == spec_in.get_string_attribute("compression")
    for name in ("A", "Z"):
        assert np.array_equal(channel(spec_out, px_out, name), channel(spec_in, px_in, name))
    matte = channel(spec_out, px_out, "faces.matte")
    assert matte.max() == 1.0 and matte.min() == 0.0


def test_output_modes_and_zero_strength(tmp_path, node, colour):
    src = write_exr(tmp_path / "in.exr", faces_plate(colour))
    render_with(node, src, tmp_path / "both.exr")
    render_with(node, src, tmp_path / "mask.exr", output_mode="mask")
    render_with(node, src, tmp_path / "restored.exr", output_mode="restored")
    spec_b, both = read_buf(tmp_path / "both.exr")
    spec_m, mask = read_buf(tmp_path / "mask.exr")
    spec_r, restored = read_buf(tmp_path / "restored.exr")
    assert list(spec_m.channelnames) == ["face.mask"]
    assert "face.mask" not in spec_r.channelnames
    assert np.array_equal(mask[..., 0], channel(spec_b, both, "face.mask"))
    assert np.array_equal(restored[..., :3], both[..., :3])
    render_with(node.with_params(strength=0.0), src, tmp_path / "zero.exr")
    _, original = read_buf(src)
    _, zero = read_buf(tmp_path / "zero.exr")
    assert np.array_equal(zero[..., :3], original[..., :3])


def test_no_faces_returns_the_input_and_an_empty_matte(tmp_path, node):
    plate = np.random.default_rng(0).uniform(-0.5, 20, (120, 160, 3)).astype(np.float32)
    src = write_exr(tmp_path / "in.exr", plate)
    render_with(node, src, tmp_path / "out.exr")
    spec, out = read_buf(tmp_path / "out.exr")
    _, original = read_buf(src)
    assert np.array_equal(out[..., :3], original[..., :3])
    assert not channel(spec, out, "face.mask").any()


def test_nan_and_inf_pixels_are_left_untouched(tmp_path, node, colour):
    plate = faces_plate(colour)
    plate[5:8, 5:8] = np.nan
    plate[100:102, 150:152] = np.inf  # on the face
    plate[120, 140] = -np.inf
    src = write_exr(tmp_path / "in.exr", plate, half=False)
    render_with(node, src, tmp_path / "out.exr")
    spec, out = read_buf(tmp_path / "out.exr")
    rgb = out[..., :3]
    assert (
        np.isnan(rgb[5:8, 5:8]).all() and np.isposinf(rgb[100:102, 150:152]).all() and np.isneginf(rgb[120, 140]).all()
    )
    assert np.isfinite(rgb).sum() == np.isfinite(plate).sum()
    assert channel(spec, out, "face.mask").max() == 1.0  # the face was still restored


def test_twenty_faces_in_one_frame_all_restored_in_batches(tmp_path, default_node, colour, monkeypatch):
    positions = [(10 + 62 * c, 8 + 76 * r) for r in range(4) for c in range(6)]  # 24 faces
    plate = faces_plate(colour, width=384, height=312, face_width=48, positions=positions, degrade=False)
    src = write_exr(tmp_path / "crowd.exr", plate)
    batches = []
    real_call = type(default_node.restorer).__call__
    monkeypatch.setattr(
        type(default_node.restorer), "__call__", lambda self, b: batches.append(len(b)) or real_call(self, b)
    )
    report = render_with(default_node, src, tmp_path / "out.exr")
    assert report.faces_per_frame[None] >= 20
    # Each face and its mirror image; faces this small (~49 px) get no coarse pass (32 px is its floor).
    assert all(face.coarse_size == 0 for face in default_node.detect(plate))
    assert sum(batches) == 2 * report.faces_per_frame[None] and len(batches) <= 3  # batched, not one by one
    spec, out = read_buf(tmp_path / "out.exr")
    import cv2

    count, _ = cv2.connectedComponents((channel(spec, out, "face.mask") > 0.5).astype(np.uint8))
    assert count - 1 >= 20


def test_restoration_is_visibly_cleaner_and_closer_to_the_truth(tmp_path, default_node, colour):
    """Degraded astronaut face: the restored face is closer to the clean one (PSNR), its fine
    detail closer to the clean face's than the plate's is, and not softer than the plate."""
    from facerestore.plugin.demo import demo_frame_display

    clean = demo_frame_display(0, clean=True)
    degraded = demo_frame_display(0)
    src = write_exr(tmp_path / "in.exr", colour.decode(degraded), half=False)
    render_with(default_node, src, tmp_path / "out.exr")
    spec, out = read_buf(tmp_path / "out.exr")
    matte = channel(spec, out, "face.mask") > 0.99
    restored = np.clip(colour.encode(np.ascontiguousarray(out[..., :3])), 0, 1)

    def psnr(image):
        return 10 * np.log10(1.0 / np.mean((image[matte] - clean[matte]) ** 2))

    import cv2

    def detail(image):
        return cv2.Laplacian(image.mean(2).astype(np.float32), cv2.CV_32F)

    def sharpness(image):
        return float(np.abs(detail(image))[matte].mean())

    def detail_error(image):  # codec blocks and noise count here; so does detail that is missing
        return float(np.abs(detail(image) - detail(clean))[matte].mean())

    assert psnr(restored) > psnr(degraded) + 0.5
    assert detail_error(restored) < detail_error(degraded)
    assert sharpness(restored) > sharpness(degraded)


def test_a_frame_of_another_resolution_stops_before_anything_is_written(tmp_path, node, colour):
    (tmp_path / "in").mkdir()
    for f in (1, 2):
        write_exr(tmp_path / "in" / f"s.{f:04d}.exr", faces_plate(colour))
    write_exr(tmp_path / "in" / "s.0003.exr", faces_plate(colour, width=300))
    with pytest.raises(FaceRestoreError, match="s.0003.exr"):
        render_with(node, tmp_path / "in" / "s.####.exr", tmp_path / "out" / "s.####.exr")
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_truncated_frame_is_an_error_and_leaves_no_partial_output(tmp_path, node, colour):
    src = write_exr(tmp_path / "s.0001.exr", faces_plate(colour), compression="none")
    data = open(src, "rb").read()
    open(src, "wb").write(data[: len(data) * 2 // 3])
    with pytest.raises(FaceRestoreError, match="s.0001.exr"):
        render_with(node, tmp_path / "s.####.exr", tmp_path / "out" / "o.####.exr")
    assert not (tmp_path / "out").exists()  # the folder it made for the run is gone with it


def test_missing_frames_named_or_skipped(tmp_path, node, colour):
    for f in (1001, 1002, 1004):
        write_exr(tmp_path / f"s.{f}.exr", faces_plate(colour, degrade=False))
    with pytest.raises(FaceRestoreError, match="1003"):
        render_with(node, tmp_path / "s.%04d.exr", tmp_path / "o.%04d.exr", frames="1001-1004")
    report = render_with(node, tmp_path / "s.$F4.exr", tmp_path / "o.@@@@.exr", frames="1001-1004", skip_missing=True)
    assert [j.frame for j in report.jobs] == [1001, 1002, 1004]
    assert sorted(p.name for p in tmp_path.glob("o.*.exr")) == ["o.1001.exr", "o.1002.exr", "o.1004.exr"]


def test_refuses_to_overwrite_its_input(tmp_path, node, colour):
    src = write_exr(tmp_path / "s.0001.exr", faces_plate(colour, degrade=False))
    digest = hashlib.sha256(open(src, "rb").read()).hexdigest()
    with pytest.raises(FaceRestoreError, match="overwrite"):
        render_with(node, tmp_path / "s.####.exr", tmp_path / "s.%04d.exr")
    with pytest.raises(FaceRestoreError, match="overwrite"):
        render_with(node, src, tmp_path)  # a folder: same name, same place
    assert hashlib.sha256(open(src, "rb").read()).hexdigest() == digest


def test_bad_requests_are_clear_errors(tmp_path, node, colour):
    src = write_exr(tmp_path / "s.0001.exr", faces_plate(colour, degrade=False))
    (tmp_path / "file").write_text("x")
    cases = {
        "empty": dict(input=tmp_path / "s.####.exr", output=tmp_path / "o.####.exr", frames="1005-1001"),
        "not writable": dict(input=src, output=tmp_path / "file" / "o.exr"),
        "no frames": dict(input=tmp_path / "none.####.exr", output=tmp_path / "o.####.exr"),
        "sequence to file": dict(input=tmp_path / "s.####.exr", output=tmp_path / "o.exr"),
    }
    messages = {}
    for name, kw in cases.items():
        with pytest.raises(FaceRestoreError) as info:
            render_with(node, kw.pop("input"), kw.pop("output"), **kw)
        messages[name] = str(info.value)
    assert "empty" in messages["empty"]
    assert "output folder" in messages["not writable"]
    assert "no frames match" in messages["no frames"]
    assert "frame token" in messages["sequence to file"]
    assert all("\n" not in m for m in messages.values())


def test_rendering_is_deterministic(tmp_path, node, colour):
    src = write_exr(tmp_path / "in.exr", faces_plate(colour))
    render_with(node, src, tmp_path / "a.exr")
    render_with(node, src, tmp_path / "b.exr")
    assert np.array_equal(read_buf(tmp_path / "a.exr")[1], read_buf(tmp_path / "b.exr")[1])


class PassThroughRestorer:
    """An x1 restorer of any size that returns its input exactly (as an untrained
    FaceResolutionNet does, whose last convolution is zero, without its cost): what the
    compositing then does to the plate is the compositing's own."""

    scale, input_size, frames = 1, None, 1

    def __call__(self, batch):
        return batch[..., :3].copy()


@pytest.mark.parametrize("face_width", [70, 640])
def test_a_restorer_that_changes_nothing_changes_no_pixel(colour, face_width):
    """Only the restorer's change goes back into the plate: the plate's own pixels make no
    resampling round trip, even for a face larger than the largest crop (512 px)."""
    from facerestore.nodes.face_restore import FaceRestoreNode

    node = FaceRestoreNode(colour, "cpu", restorer=PassThroughRestorer(), keep_colour_radius=0.0, temporal_window=1)
    size = max(320, face_width + 120)
    plate = faces_plate(colour, width=size, height=size, face_width=face_width, positions=((60, 30),))
    faces = node.detect(plate)
    from facerestore.nodes.align import footprint_of

    footprint = footprint_of(faces[0].landmarks)
    assert faces[0].restore_size == (512 if footprint > 512 else 16 * int(np.ceil(footprint / 16)))
    assert (footprint > 600) == (face_width == 640)
    result = node.process(plate, faces)
    assert result.matte.max() == 1.0
    assert np.array_equal(result.rgb, plate)
    locked = node.with_params(keep_colour_radius=2.5)
    assert locked.restorer is node.restorer
    assert np.abs(locked.process(plate, faces).rgb - plate).max() < 1e-4


class ShiftingRestorer:
    """Returns its input plus a constant: a pure tone shift of `shift` display-encoded values."""

    scale, input_size, frames = 1, None, 1

    def __init__(self, shift: float) -> None:
        self.shift = np.float32(shift)

    def __call__(self, batch):
        return batch + self.shift


@pytest.mark.parametrize("shift", [0.003, -0.003, 0.08])
def test_the_colour_tolerance_keeps_small_departures_and_takes_back_tone_shifts(colour, shift):
    """Below the keep-colour radius the restorer may move the plate by up to the tolerance (what it
    removed: blocks, low-frequency noise); a larger shift is taken back to the tolerance."""
    from facerestore.nodes.face_restore import FaceRestoreNode

    plate = faces_plate(colour, width=320, height=320, face_width=120, positions=((100, 60),))
    results = {}
    for tolerance in (0.0, 0.005):
        node = FaceRestoreNode(
            colour,
            "cpu",
            restorer=ShiftingRestorer(shift),
            temporal_window=1,
            ensemble="off",
            colour_tolerance=tolerance,
        )
        result = node.process(plate, node.detect(plate))
        inner = result.matte > 0.999
        moved = colour.encode(result.rgb[inner]) - colour.encode(plate[inner])
        results[tolerance] = float(np.median(moved))
    assert abs(results[0.0]) < 2e-4  # strict lock: the plate's tone, whatever the restorer did
    expected = float(np.clip(shift, -0.005, 0.005))  # a small shift stays; a large one stops at the tolerance
    assert abs(results[0.005] - expected) < 5e-4, (results, expected)


def test_the_flip_ensemble_averages_the_restorer_and_its_mirror(colour):
    from facerestore.nodes.face_restore import FaceRestoreNode

    node = FaceRestoreNode(colour, "cpu", ensemble="flip")
    crops = np.random.default_rng(4).random((2, 32, 32, 3 * node.restorer.frames)).astype(np.float32)
    single = node.restorer(crops)
    mirrored = node.restorer(np.ascontiguousarray(crops[:, :, ::-1]))[:, :, ::-1]
    assert np.allclose(node._restore(crops), 0.5 * (single + mirrored), atol=1e-6)
    assert not np.allclose(single, mirrored, atol=1e-3)  # the network is not mirror-symmetric: the pass matters
    off = FaceRestoreNode(colour, "cpu", ensemble="off")
    assert np.array_equal(off._restore(crops), single)


def test_the_scale_ensemble_averages_the_face_and_its_coarser_restoration(colour):
    import dataclasses

    import cv2

    from facerestore.nodes.face_restore import COARSE_BAND, FaceRestoreNode, _reduced

    node = FaceRestoreNode(colour, "cpu", temporal_window=1)  # auto: flip+scale for the default x4 network
    plate = faces_plate(colour)
    faces = node.detect(plate)
    assert faces and 32 <= faces[0].coarse_size <= 0.8 * faces[0].restore_size
    job = node.restore_crops(plate, faces)[0]
    main_input = node._network_input(job)
    main = node._restore(main_input[None])[0]
    coarse = node._restore(_reduced(main_input, faces[0].coarse_size)[None])[0]
    up = np.clip(cv2.resize(coarse, (job.out_size, job.out_size), interpolation=cv2.INTER_CUBIC), 0, 1)
    band = COARSE_BAND * job.in_size / faces[0].coarse_size
    assert np.allclose(job.restored, main + 0.5 * cv2.GaussianBlur(up - main, (0, 0), band), atol=1e-5)
    assert np.abs(job.restored - main).mean() > 1e-3  # the coarse pass changes the result
    # Asked for by name, the same blend as auto's; flip+scale-even, node spec 1.4 / 1.5's blend:
    # the plain average at every scale.
    named = FaceRestoreNode(colour, "cpu", temporal_window=1, ensemble="flip+scale")
    assert np.array_equal(named.restore_crops(plate, faces)[0].restored, job.restored)
    even = FaceRestoreNode(colour, "cpu", temporal_window=1, ensemble="flip+scale-even")
    assert np.allclose(even.restore_crops(plate, faces)[0].restored, 0.5 * (main + up), atol=1e-5)
    # A face given without a coarse side (an API caller's) gets the one its landmarks call for.
    unsized = [dataclasses.replace(faces[0], coarse_size=None)]
    assert np.array_equal(node.restore_crops(plate, unsized)[0].restored, job.restored)
    # Flip alone: the main pass only; the same face and crop.
    flip = FaceRestoreNode(colour, "cpu", temporal_window=1, ensemble="flip")
    faces_flip = flip.detect(plate)
    assert faces_flip[0].coarse_size == 0
    assert np.allclose(flip.restore_crops(plate, faces_flip)[0].restored, main, atol=1e-6)


def test_the_coarse_blend_averages_below_its_band_and_keeps_the_main_pass_above_it():
    """What a sharp plate's main pass has and the reduced pass cannot (its finest detail) stays;
    what both see (tone, shapes) is averaged."""
    import cv2

    from facerestore.nodes.face_restore import coarse_blend

    rng = np.random.default_rng(7)
    main = rng.random((128, 128, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(rng.random((128, 128, 3)).astype(np.float32), (0, 0), 12)
    coarse = cv2.GaussianBlur(main, (0, 0), 3) + 0.2 * smooth  # main's detail lost, a broad difference added
    blended = coarse_blend(main, coarse, 1.6)

    def fine(image):
        return image - cv2.GaussianBlur(image, (0, 0), 1.6)

    assert np.abs(fine(blended) - fine(main)).mean() < 0.3 * np.abs(fine(coarse) - fine(main)).mean()
    wide = (slice(16, -16), slice(16, -16))  # away from the borders' replicated edges
    broad = cv2.GaussianBlur(blended - main, (0, 0), 6)[wide]
    assert np.allclose(broad, 0.5 * cv2.GaussianBlur(coarse - main, (0, 0), 6)[wide], atol=0.01)
    assert np.array_equal(coarse_blend(main, coarse, None), 0.5 * (main + coarse))
    offset = coarse_blend(main, main + 0.1, 1.6)  # a flat difference is halved everywhere
    assert np.allclose(offset - main, 0.05, atol=1e-6)


def test_the_coarse_pass_runs_in_batches_of_its_own_size(colour, monkeypatch):
    from facerestore.nodes.face_restore import FaceRestoreNode

    node = FaceRestoreNode(colour, "cpu", temporal_window=1)
    positions = [(10 + 100 * i, 10 + 120 * r) for r in range(3) for i in range(6)]  # 18 faces of ~90 px
    plate = faces_plate(colour, width=620, height=370, face_width=90, positions=positions, degrade=False)
    faces = node.detect(plate)
    assert len(faces) == 18 and {(f.restore_size, f.coarse_size) for f in faces} == {(64, 48)}
    shapes = []
    real_call = type(node.restorer).__call__
    monkeypatch.setattr(
        type(node.restorer), "__call__", lambda self, b: shapes.append(b.shape[:2]) or real_call(self, b)
    )
    jobs = node.restore_crops(plate, faces)
    # Main crops, then coarse ones; 16 faces a batch, each with its mirror image.
    assert shapes == [(32, 64), (4, 64), (32, 48), (4, 48)]
    assert all(job.restored.shape == (256, 256, 3) for job in jobs)


def test_the_coarse_pass_is_sized_from_the_face_and_skipped_near_the_main_size(colour, default_node):
    from facerestore.nodes.face_restore import FACE_RESTORE, FaceRestoreNode

    assert default_node.crop_sizes_for(250.0) == (256, 112)  # 250 / 2.5 = 100, up to a step of 16
    assert default_node.crop_sizes_for(180.0) == (128, 80)
    assert default_node.crop_sizes_for(499.0) == (256, 0)  # 208 px would be 0.81 of 256: skipped
    assert default_node.crop_sizes_for(40.0) == (32, 0)  # no coarser crop than 32 px
    # Hosts save a choice by its index: the choices of earlier specs keep theirs.
    ensemble = next(param for param in FACE_RESTORE.params if param.id == "ensemble")
    assert ensemble.choices[:4] == ("auto", "flip", "off", "flip+scale")
    off = FaceRestoreNode(colour, "cpu", ensemble="off")
    assert off.ensemble == (False, False) and off.crop_sizes_for(250.0) == (256, 0)
    # Restorers without the node's own network (stand-ins for their attributes): a GFPGAN-like
    # fixed 512 px model, an x1 model of any size, another x4 network (Real-ESRGAN, a user's).
    kinds = {"fixed": (512, 1), "x1": (None, 1), "x4": (None, 4)}
    for kind, (input_size, scale) in kinds.items():
        stand_in = type(kind, (), {"input_size": input_size, "scale": scale})()
        other = FaceRestoreNode(colour, "cpu", restorer=stand_in, detector=off.detector, ensemble="off")
        auto = other._ensemble_passes("auto")
        assert auto == ((False, False) if kind == "fixed" else (True, False))  # auto adds no coarse pass
        assert other._ensemble_passes("flip") == (True, False)
        for mode in ("flip+scale", "flip+scale-even"):
            if kind == "x4":
                assert other._ensemble_passes(mode) == (True, True)  # asked for: any x4 of any size
            else:
                with pytest.raises(FaceRestoreError, match=f"{re.escape(mode)} needs a x4 restorer"):
                    other._ensemble_passes(mode)


@pytest.mark.slow
def test_each_frame_is_read_once_and_written_in_the_background(tmp_path, node, colour, monkeypatch):
    """The frame being rendered and its temporal neighbours come from one read-ahead: with the
    shot's analysis on disk, a render reads every plate exactly once (it read them twice)."""
    from facerestore.plugin import render as render_module

    for t in range(1, 7):
        write_exr(tmp_path / f"p.{t:04d}.exr", faces_plate(colour, positions=((100 + 2 * t, 40),), seed=t))
    first = render_with(node, tmp_path / "p.####.exr", tmp_path / "first/r.####.exr")
    reads = []
    original = render_module.read_frame
    monkeypatch.setattr(render_module, "read_frame", lambda path: reads.append(path) or original(path))
    report = render_with(node, tmp_path / "p.####.exr", tmp_path / "second/r.####.exr", analysis=first.analysis_path)
    assert sorted(reads) == sorted(str(tmp_path / f"p.{t:04d}.exr") for t in range(1, 7))
    assert len(report.jobs) == 6 and "read (waiting)" in report.timings and "write (waiting)" in report.timings
    # The same render one step after another (what the benchmark compares with): still one read
    # per plate, the same frames.
    reads.clear()
    render_with(
        node, tmp_path / "p.####.exr", tmp_path / "third/r.####.exr", analysis=first.analysis_path, overlap_io=False
    )
    assert sorted(reads) == sorted(str(tmp_path / f"p.{t:04d}.exr") for t in range(1, 7))
    for t in range(1, 7):
        expected = read_buf(tmp_path / "first" / f"r.{t:04d}.exr")[1]
        assert np.array_equal(expected, read_buf(tmp_path / "second" / f"r.{t:04d}.exr")[1])
        assert np.array_equal(expected, read_buf(tmp_path / "third" / f"r.{t:04d}.exr")[1])


@pytest.mark.slow
def test_frames_held_in_memory_stay_within_the_temporal_window(tmp_path, node, colour, monkeypatch):
    """A long shot holds no more plates, restored crops or read-ahead frames than the window
    needs, however many frames it has (what bounds a 4K render's memory)."""
    from facerestore.nodes.shot import ShotRenderer
    from facerestore.plugin import render as render_module

    for t in range(1, 15):
        write_exr(tmp_path / f"p.{t:04d}.exr", faces_plate(colour, positions=((100 + 2 * t, 40),), seed=t))
    held = []
    original_render, original_get = ShotRenderer.render, render_module.FrameReader.get

    def counting_render(self, frame, *args, **kwargs):
        result = original_render(self, frame, *args, **kwargs)
        held.append(("plates", len(self.plates)))
        held.append(("crops", len(self.outputs)))
        return result

    def counting_get(self, frame):
        held.append(("read", len(self.pending)))
        return original_get(self, frame)

    monkeypatch.setattr(ShotRenderer, "render", counting_render)
    monkeypatch.setattr(render_module.FrameReader, "get", counting_get)
    render_with(node, tmp_path / "p.####.exr", tmp_path / "r.####.exr")
    radius = node.params["temporal_window"] // 2
    most = {kind: max(n for k, n in held if k == kind) for kind in ("plates", "crops", "read")}
    # Plates: the window's reach either side (the crops of a neighbour need its own neighbours).
    assert most["plates"] <= 4 * radius + 1 and most["crops"] <= 2 * radius + 1, most
    assert most["read"] <= 2 * radius + 2, most


@pytest.mark.slow
def test_an_anamorphic_plate_is_restored_desqueezed_as_its_header_says(tmp_path, node, colour):
    """A 2x anamorphic plate (PixelAspectRatio 2: the picture squeezed to half its width): faces
    are found and fitted as they look, so the matte and the restored face are the square
    render's, squeezed; pixels outside the matte are untouched."""
    import cv2

    square = faces_plate(colour, width=480, height=240, face_width=110, positions=((180, 30),))
    squeezed = squeezed_plate(colour)
    write_exr(tmp_path / "sq.0001.exr", square, half=False)
    write_exr(tmp_path / "ana.0001.exr", squeezed, half=False, spec_edit=ANAMORPHIC)
    square_report = render_with(node, tmp_path / "sq.####.exr", tmp_path / "sq_out.####.exr")
    report = render_with(node, tmp_path / "ana.####.exr", tmp_path / "ana_out.####.exr")
    assert report.faces_per_frame[1] == square_report.faces_per_frame[1] == 1
    assert node.pixel_aspect == 1.0  # the plate's aspect was for that render only
    said = run_cli("render", tmp_path / "ana.####.exr", "-o", tmp_path / "cli_out.####.exr", check=True).stderr
    assert "pixel aspect 2 (the plates' PixelAspectRatio)" in said
    spec, out = read_buf(tmp_path / "ana_out.0001.exr")
    matte = channel(spec, out, "face.mask")
    square_matte = channel(*read_buf(tmp_path / "sq_out.0001.exr"), "face.mask")
    expected = cv2.resize(square_matte, (240, 240), interpolation=cv2.INTER_AREA)
    inside, expected_inside = matte > 0.5, expected > 0.5
    overlap = (inside & expected_inside).sum() / (inside | expected_inside).sum()
    assert overlap > 0.9, overlap  # the same face region, squeezed
    untouched = matte == 0
    assert np.array_equal(out[..., :3][untouched], squeezed[untouched])
    # The restored face is the square render's, squeezed (within what resampling changes).
    restored = cv2.resize(read_buf(tmp_path / "sq_out.0001.exr")[1][..., :3], (240, 240), interpolation=cv2.INTER_AREA)
    core = matte > 0.99
    change_here = np.abs(out[..., :3] - squeezed)[core].mean()
    difference = np.abs(out[..., :3] - restored)[core].mean()
    assert difference < 0.35 * change_here, (difference, change_here)  # measured 0.21
    # Forced square, the same plate's face is fitted squeezed: a different, narrower matte.
    render_with(
        node.with_params(pixel_aspect=1.0),
        tmp_path / "ana.####.exr",
        tmp_path / "flat_out.####.exr",
        analysis=str(tmp_path / "flat.json"),
    )
    flat = channel(*read_buf(tmp_path / "flat_out.0001.exr"), "face.mask") > 0.5
    assert (flat & expected_inside).sum() / (flat | expected_inside).sum() < 0.8  # measured 0.61 (0.98 desqueezed)


def test_a_square_plate_wider_than_the_detector_keeps_float32_landmarks(node, colour):
    """Reduced for the detector, a square plate's landmarks are divided by one number, so they
    stay float32 and renders stay bit-identical to those before anamorphic support."""
    plate = faces_plate(colour, width=2500, height=300, face_width=110, positions=((1000, 30),))
    faces = node.detect(plate)
    assert faces and faces[0].landmarks.dtype == np.float32 and faces[0].box.dtype == np.float32


def test_pixel_aspect_is_part_of_the_shot_and_of_its_analysis(tmp_path, node, colour):
    """Frames with another pixel aspect are not mixed into a render; a sidecar made for one
    pixel aspect is not reused for another (either way round); a bad value is a one-line error."""
    squeezed = squeezed_plate(colour)
    write_exr(tmp_path / "a.0001.exr", squeezed, half=False, spec_edit=ANAMORPHIC)
    write_exr(tmp_path / "a.0002.exr", squeezed, half=False)
    with pytest.raises(FaceRestoreError, match="pixel aspect 1 differs .* pixel aspect 2"):
        render_with(node, tmp_path / "a.####.exr", tmp_path / "o.####.exr")
    write_exr(tmp_path / "a.0002.exr", squeezed, half=False, spec_edit=ANAMORPHIC)
    sidecar = str(tmp_path / "shot.json")
    from facerestore.nodes.tracking import Analysis

    def made_for() -> float:
        return Analysis.load(sidecar).settings["determined_by"].get("pixel_aspect", 1.0)

    render_with(node, tmp_path / "a.####.exr", tmp_path / "o.####.exr", analysis=sidecar)
    assert made_for() == 2.0
    render_with(node.with_params(pixel_aspect=1.0), tmp_path / "a.####.exr", tmp_path / "s.####.exr", analysis=sidecar)
    assert made_for() == 1.0  # not the anamorphic analysis reused: analysed again
    render_with(node, tmp_path / "a.####.exr", tmp_path / "o.####.exr", analysis=sidecar)
    assert made_for() == 2.0
    from facerestore.nodes.face_restore import FaceRestoreNode

    with pytest.raises(FaceRestoreError, match="pixel aspect must be 0"):
        FaceRestoreNode(colour, "cpu", pixel_aspect=0.1)


@pytest.mark.slow
def test_an_anamorphic_shot_is_tracked_as_one_face_and_any_frame_alone_equals_the_full_render(tmp_path, node, colour):
    """Five frames of a moving face on a 2x anamorphic plate: one track through the shot (the
    tracker and the temporal window work on it desqueezed), and a frame rendered alone is the
    full render's frame."""
    from facerestore.nodes.tracking import Analysis

    for t in range(1, 6):
        squeezed = squeezed_plate(colour, positions=((150 + 8 * t, 30 + 2 * t),), seed=t)
        write_exr(tmp_path / f"a.{t:04d}.exr", squeezed, half=False, spec_edit=ANAMORPHIC)
    sidecar = str(tmp_path / "shot.json")
    full = render_with(node, tmp_path / "a.####.exr", tmp_path / "full/o.####.exr", analysis=sidecar)
    assert full.tracks == [1] and all(n == 1 for n in full.faces_per_frame.values())
    assert Analysis.load(sidecar).settings["determined_by"]["pixel_aspect"] == 2.0
    render_with(node, tmp_path / "a.####.exr", tmp_path / "alone/o.####.exr", analysis=sidecar, frames="3")
    assert np.array_equal(read_buf(tmp_path / "full/o.0003.exr")[1], read_buf(tmp_path / "alone/o.0003.exr")[1])


def test_the_stages_add_up_to_the_wall_time(tmp_path, node, colour):
    """Every part of a render is in one stage of its report (what the benchmark's shares of the
    wall time rest on): with the analysis made in the render and with it read from its sidecar."""
    for t in range(1, 5):
        write_exr(tmp_path / f"p.{t:04d}.exr", faces_plate(colour, positions=((100 + 2 * t, 40),), seed=t))
    first = render_with(node, tmp_path / "p.####.exr", tmp_path / "a/r.####.exr")
    again = render_with(node, tmp_path / "p.####.exr", tmp_path / "b/r.####.exr", analysis=first.analysis_path)
    for report in (first, again):
        stages = sum(report.timings.values())
        assert abs(stages - report.wall_seconds) <= 0.05 * report.wall_seconds, (stages, report.wall_seconds)
        assert min(report.timings.values()) >= 0.0, report.timings
    assert {"analyse: read + reduce + encode (waiting)", "analyse: detect"} <= set(first.timings)
    assert {"read (waiting)", "restore", "composite", "write (waiting)"} <= set(first.timings)
    assert "analyse: detect" not in again.timings  # the sidecar was used


@pytest.mark.slow
def test_a_render_that_analyses_decodes_each_plate_once_and_keeps_a_bounded_number(tmp_path, node, colour, monkeypatch):
    """The frames the analysis decodes are handed to the render instead of being read again, up
    to a memory budget: beyond it, the first frames are kept and the rest read again."""
    from facerestore.plugin import render as render_module

    for t in range(1, 7):
        write_exr(tmp_path / f"p.{t:04d}.exr", faces_plate(colour, positions=((100 + 2 * t, 40),), seed=t))
    reads = []
    original = render_module.read_frame
    monkeypatch.setattr(render_module, "read_frame", lambda path: reads.append(path) or original(path))
    once = render_with(node, tmp_path / "p.####.exr", tmp_path / "once/r.####.exr")
    assert sorted(reads) == sorted(str(tmp_path / f"p.{t:04d}.exr") for t in range(1, 7))
    # A render of the last frame alone: its window (two radii back) kept from the analysis, not read again.
    reads.clear()
    render_with(node, tmp_path / "p.####.exr", tmp_path / "last/r.####.exr", frames="6", reanalyse=True)
    assert sorted(reads) == sorted(str(tmp_path / f"p.{t:04d}.exr") for t in range(1, 7))
    reads.clear()
    frame_bytes = 320 * 240 * 3 * 4
    monkeypatch.setattr(render_module, "KEEP_CAP_BYTES", 2 * frame_bytes)  # room for two frames
    render_with(node, tmp_path / "p.####.exr", tmp_path / "two/r.####.exr", analysis=str(tmp_path / "new.json"))
    assert len(reads) == 6 + 4 and {reads.count(str(tmp_path / f"p.{t:04d}.exr")) for t in (1, 2)} == {1}
    for t in range(1, 7):
        expected = read_buf(tmp_path / "once" / f"r.{t:04d}.exr")[1]
        assert np.array_equal(expected, read_buf(tmp_path / "two" / f"r.{t:04d}.exr")[1])
    assert once.faces_per_frame == {t: 1 for t in range(1, 7)}
