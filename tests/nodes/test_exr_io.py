import os

import numpy as np
import OpenImageIO as oiio
import pytest

from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.exr_io import Part, read_frame, write_parts

from helpers import read_buf, write_exr


def overscan(spec):
    spec.x, spec.y = -16, -8
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, 32, 24
    spec.attribute("studio:shot", "ab_0010")
    spec.attribute("FramesPerSecond", oiio.TypeDesc("rational2i"), (24, 1))


def test_round_trip_keeps_half_windows_metadata_and_every_channel(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.uniform(-0.5, 20, (40, 64, 3)).astype(np.float16).astype(np.float32)
    depth = rng.uniform(0, 1e4, (40, 64)).astype(np.float32)
    src = write_exr(tmp_path / "in.exr", rgb, extra={"Z": depth}, spec_edit=overscan, compression="zip")
    frame = read_frame(src)
    write_parts(str(tmp_path / "out.exr"), [frame.main])
    spec_in, px_in = read_buf(src)
    spec_out, px_out = read_buf(tmp_path / "out.exr")
    assert list(spec_out.channelnames) == list(spec_in.channelnames)
    assert [str(f) for f in spec_out.channelformats] == [str(f) for f in spec_in.channelformats]
    assert "half" in [str(f) for f in spec_out.channelformats]
    assert (spec_out.x, spec_out.y, spec_out.width, spec_out.height) == (-16, -8, 64, 40)
    assert (spec_out.full_x, spec_out.full_y, spec_out.full_width, spec_out.full_height) == (0, 0, 32, 24)
    assert spec_out.get_string_attribute("compression") == "zip"
    assert spec_out.getattribute("studio:shot") == "ab_0010"
    assert spec_out.getattribute("FramesPerSecond") == (24, 1)
    assert np.array_equal(px_in, px_out)


def test_multipart_extra_parts_pass_through(tmp_path):
    spec_a = oiio.ImageSpec(8, 6, 3, "half")
    spec_b = oiio.ImageSpec(8, 6, 1, "float")
    spec_b.channelnames = ("Y",)
    a = np.random.default_rng(1).uniform(0, 2, (6, 8, 3)).astype(np.float32)
    b = np.random.default_rng(2).uniform(0, 9, (6, 8, 1)).astype(np.float32)
    write_parts(str(tmp_path / "mp.exr"), [Part(spec_a, a), Part(spec_b, b)])
    frame = read_frame(str(tmp_path / "mp.exr"))
    assert len(frame.extra_parts) == 1
    assert np.array_equal(frame.extra_parts[0].pixels.astype(np.float32), b)


def test_truncated_file_is_a_clear_error(tmp_path):
    rgb = np.random.default_rng(0).uniform(0, 1, (64, 64, 3)).astype(np.float32)
    src = write_exr(tmp_path / "full.exr", rgb, half=False, compression="none")
    data = open(src, "rb").read()
    cut = tmp_path / "cut.exr"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FaceRestoreError, match="cut.exr"):
        read_frame(str(cut))
    junk = tmp_path / "junk.exr"
    junk.write_bytes(b"not an exr at all" * 10)
    with pytest.raises(FaceRestoreError, match="junk.exr"):
        read_frame(str(junk))


def test_failed_write_leaves_nothing_behind(tmp_path):
    spec = oiio.ImageSpec(4, 4, 3, "half")
    bad = np.zeros((2, 2, 3), np.float32)  # wrong size: the writer must fail
    target = tmp_path / "out.exr"
    with pytest.raises((FaceRestoreError, ValueError, RuntimeError)):
        write_parts(str(target), [Part(spec, bad)])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("threads", [1, 2])
def test_a_half_frame_stays_half_and_makes_the_floats_openimageio_gives_every_bit_kept(tmp_path, threads):
    """read_frame keeps a half frame half (the bits as stored); where the networks need floats,
    `as_float32` must give OpenImageIO's, bit for bit: NaN payloads, infinities, subnormals."""
    from facerestore.nodes.exr_io import as_float32, set_io_threads

    every_half = np.arange(1 << 16, dtype=np.uint16).view(np.float16)  # every bit pattern there is
    rgb = np.resize(every_half, 600 * 40 * 3).reshape(600, 40, 3)  # 600 rows: several bands
    path = str(tmp_path / "all.exr")
    spec = oiio.ImageSpec(40, 600, 3, "half")
    out = oiio.ImageOutput.create(path)
    assert out.open(path, spec) and out.write_image(rgb) and out.close()
    set_io_threads(threads)
    try:
        frame = read_frame(path)
        ours = as_float32(frame.rgb())
    finally:
        set_io_threads(os.cpu_count() or 1)
    assert frame.pixels.dtype == np.float16 and np.array_equal(frame.pixels.view(np.uint16), rgb.view(np.uint16))
    inp = oiio.ImageInput.open(path)
    theirs = inp.read_image(0, 0, 0, 3, "float")
    inp.close()
    assert ours.dtype == np.float32 and ours.flags["C_CONTIGUOUS"]
    assert np.array_equal(ours.view(np.uint32), np.asarray(theirs, np.float32).view(np.uint32))


def test_numpy_rounds_float_to_half_as_openimageio_does_bit_for_bit(tmp_path):
    """A render fills a half output in half itself (`build_output_parts`): numpy's rounding must
    be OpenImageIO's, ties, overflow, subnormals and NaN payloads included."""
    rng = np.random.default_rng(0)
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float64)
    finite = halves[np.isfinite(halves)]
    ties = np.sort(finite)
    ties = ((ties[:-1] + ties[1:]) / 2).astype(np.float32).view(np.uint32)
    bits = np.concatenate(
        [
            rng.integers(0, 1 << 32, 500_000, dtype=np.uint64).astype(np.uint32),
            halves.astype(np.float32).view(np.uint32),
            ties - 1,
            ties,
            ties + 1,
        ]
    )
    values = np.resize(bits, 1000 * (-(-len(bits) // 1000))).view(np.float32).reshape(-1, 1000, 1)
    path = str(tmp_path / "h.exr")
    out = oiio.ImageOutput.create(path)
    assert out.open(path, oiio.ImageSpec(1000, values.shape[0], 1, "half")) and out.write_image(values) and out.close()
    inp = oiio.ImageInput.open(path)
    theirs = inp.read_image(0, 0, 0, 1, "half")
    inp.close()
    with np.errstate(over="ignore"):
        ours = values.astype(np.float16)
    assert np.array_equal(ours.view(np.uint16), np.asarray(theirs).view(np.uint16))
