"""The licensed face data: the committed manifest, the build from local copies, the refusals.
The local copy is tests/data/faces (see helpers.licensed_faces_copy)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from facerestore.models import face_data
from facerestore.models.errors import ModelError

from helpers import licensed_faces_copy

INTERFACES = face_data.SOURCES["interfaces"]


def test_the_committed_manifest_holds_out_26_people_by_person_across_the_sets():
    manifest = face_data.load_manifest()
    images = manifest["images"]
    people = {image["person"] for image in images}
    held_out = {image["person"] for image in images if image["split"] == "held_out"}
    trained = {image["person"] for image in images if image["split"] == "train"}
    assert len(people) == 242 and len(held_out) == 26 and held_out == set(face_data.HELD_OUT)
    assert not held_out & trained  # a London person's neutral and smiling images share a split
    assert {p.split("-")[0] for p in held_out} == {"interfaces", "london", "canada"}
    assert len({image["sha256"] for image in images}) == len(images)
    # Only the three allowed folders: never the educational-use-only 3dsk or the composites.
    folders = {image["path"].rsplit("/", 1)[0] + "/" for image in images}
    assert folders == {"1000 x 1000/", "inst/neutral_front/", "inst/smiling_front/", "inst/canada/"}
    assert {image["licence"] for image in images} == {"CC0-1.0", "CC-BY-4.0"}


def test_build_aligns_every_face_and_keeps_the_held_out_stills(tmp_path):
    roots, manifest = licensed_faces_copy(tmp_path)
    index = face_data.build_faces(roots, tmp_path / "built", manifest, progress=lambda line: None)
    assert len(index["faces"]) == 3 and not index["no_face_found"]
    built = face_data.open_built_faces(tmp_path / "built", manifest)
    (held,) = built.faces("held_out")
    assert held["person"] == "interfaces-005" and len(built.faces("train")) == 2
    crop = built.crop(held)
    # A crop at the face's own resolution (never enlarged past the bank side), face-centred.
    assert crop.shape[0] == crop.shape[1] and 64 <= crop.shape[0] <= face_data.BANK_SIDE
    assert crop.shape[0] <= held["footprint"]
    still = built.still(held)
    landmarks = np.array(held["landmarks"])
    assert (landmarks > 0).all() and (landmarks[:, 0] < still.shape[1]).all()
    assert all("still" not in entry for entry in built.faces("train"))  # trained people: crops only
    assert index["credits"] == list(face_data.CREDITS)


def test_build_refuses_a_file_whose_bytes_are_not_the_manifests(tmp_path):
    roots, manifest = licensed_faces_copy(tmp_path)
    victim = roots[INTERFACES.repo] / "1000 x 1000" / "039.jpg"
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="039.jpg: checksum differs"):
        face_data.build_faces(roots, tmp_path / "built", manifest, progress=lambda line: None)
    assert not (tmp_path / "built" / "index.json").exists()  # no index: nothing counts as built


@pytest.mark.parametrize(
    "change, message",
    [
        ({"licence": "CC-BY-NC-4.0"}, "licence"),
        (
            {
                "path": "inst/3dsk/001.jpg",
                "source": "london",
                "repo": "debruine/webmorphR.stim",
                "commit": face_data.SOURCES["london"].commit,
                "licence": "CC-BY-4.0",
            },
            "outside",
        ),
        ({"path": "1000 x 1000/../../etc/passwd"}, "outside"),
        ({"commit": "0" * 40}, "not from"),
        ({"split": "validation"}, "split"),
        ({"source": "elsewhere"}, "not a face manifest"),
    ],
)
def test_a_manifest_entry_out_of_its_source_licence_or_folders_is_refused(tmp_path, change, message):
    _, manifest = licensed_faces_copy(tmp_path)
    data = json.loads(manifest.read_text())
    data["images"][0] |= change
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message):
        face_data.load_manifest(bad)


def test_faces_built_from_another_manifest_are_refused(tmp_path):
    roots, manifest = licensed_faces_copy(tmp_path)
    face_data.build_faces(roots, tmp_path / "built", manifest, progress=lambda line: None)
    other = copy.deepcopy(json.loads(manifest.read_text()))
    other["images"].pop()
    changed = tmp_path / "other.json"
    changed.write_text(json.dumps(other))
    with pytest.raises(ModelError, match="another face manifest"):
        face_data.open_built_faces(tmp_path / "built", changed)
    with pytest.raises(ModelError, match="no built faces"):
        face_data.open_built_faces(tmp_path / "nowhere", manifest)
