import pytest

from facerestore.nodes.errors import FaceRestoreError
from facerestore.nodes.sequence import FramePattern, describe_frames, parse_frame_range


@pytest.mark.parametrize("pattern", ["/s/sh.####.exr", "/s/sh.%04d.exr", "/s/sh.$F4.exr", "/s/sh.@@@@.exr"])
def test_every_pattern_style_names_the_same_file(pattern):
    assert FramePattern.parse(pattern).path(1001) == "/s/sh.1001.exr"
    assert FramePattern.parse(pattern).path(7) == "/s/sh.0007.exr"


def test_unpadded_and_single_file():
    assert FramePattern.parse("a.%d.exr").path(5) == "a.5.exr"
    assert FramePattern.parse("a.$F.exr").path(12) == "a.12.exr"
    single = FramePattern.parse("plate.exr")
    assert not single.has_token and single.path(3) == "plate.exr"


def test_existing_frames_found_on_disk(tmp_path):
    for f in (1001, 1002, 1004):
        (tmp_path / f"p.{f:04d}.exr").write_bytes(b"")
    (tmp_path / "p.0012.tif").write_bytes(b"")
    assert FramePattern.parse(str(tmp_path / "p.####.exr")).existing_frames() == [1001, 1002, 1004]


def test_frame_ranges():
    assert parse_frame_range("1001-1004") == [1001, 1002, 1003, 1004]
    assert parse_frame_range("1-9x4,20") == [1, 5, 9, 20]
    for bad in ("1100-1001", "abc", ""):
        with pytest.raises(FaceRestoreError):
            parse_frame_range(bad)
    assert describe_frames([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"


def test_two_tokens_rejected():
    with pytest.raises(FaceRestoreError):
        FramePattern.parse("a.####.%04d.exr")
