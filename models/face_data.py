"""The licensed face collections the v3 restorer learns from, reproducibly and without shipping them.

Two public collections whose licences allow training and commercial use:
- `cjdowner/interfaces` (inter-faces 1.4 by Chris Downer): 100 people, one portrait each, from
  Pexels; CC0 1.0. Credits to each photographer are in the repository's CREDITS.md.
- `debruine/webmorphR.stim`, three folders only: `inst/neutral_front` and `inst/smiling_front`
  (the Face Research Lab London Set, 102 people each neutral and smiling) and `inst/canada` (40
  more people, "Young Adult White Faces with Manipulated Versions"), by Lisa DeBruine and
  Benedict Jones, CC BY 4.0: every model trained on them credits them (`CREDITS`). The package's
  `inst/3dsk` (educational use only) and `inst/composite` (averaged faces) are never read.

The committed manifest (`data/faces_v3.json`) names every image used: source repository and
commit, path, sha256, licence, person and split. `build_faces` reads local copies of the two
repositories (a clone or snapshot; nothing is downloaded), refuses any file whose checksum,
folder or licence is not the manifest's, and writes the aligned face crops the training bank is
made of (and the held-out people's stills the benchmark makes shots of). Held-out people are
held out by person: a London person's neutral and smiling images share one split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facerestore.models.align import footprint_of, scaled_template_transform, warp_to_face
from facerestore.models.detector import RetinaFaceDetector, largest_face
from facerestore.models.errors import ModelError
from facerestore.models.weights import sha256_file, write_atomically

MANIFEST_PATH = Path(__file__).parent / "data" / "faces_v3.json"
BANK_SIDE = 320  # the training bank's face-space side (every bank crop, licensed or not)
# Held-out stills are kept with the face at most this footprint: the benchmark's shots place it
# at 90-260 px, so the truth is always reduced from the still, never upsampled.
STILL_FOOTPRINT = 420


@dataclass(frozen=True)
class Source:
    repo: str  # github owner/name
    commit: str
    folders: tuple[str, ...]  # the only folders read
    licence: str
    credit: str


SOURCES = {
    "interfaces": Source(
        "cjdowner/interfaces",
        "2166b2273fd050699e112e95a251f0519cce58c3",
        ("1000 x 1000/",),
        "CC0-1.0",
        "inter-faces 1.4 by Chris Downer (100 portraits from Pexels; photographers credited in its CREDITS.md), "
        "CC0 1.0",
    ),
    "london": Source(
        "debruine/webmorphR.stim",
        "fa8b78fda2d659bb74ce62fcd99c4407551d2a77",
        ("inst/neutral_front/", "inst/smiling_front/"),
        "CC-BY-4.0",
        "Face Research Lab London Set, Lisa DeBruine and Benedict Jones (2017), figshare, "
        "doi:10.6084/m9.figshare.5047666.v5, CC BY 4.0 (via webmorphR.stim)",
    ),
    "canada": Source(
        "debruine/webmorphR.stim",
        "fa8b78fda2d659bb74ce62fcd99c4407551d2a77",
        ("inst/canada/",),
        "CC-BY-4.0",
        "Young Adult White Faces with Manipulated Versions (the Face Research Lab's Canada set), Lisa DeBruine "
        "and Benedict Jones (2017), figshare, doi:10.6084/m9.figshare.4220517.v1, CC BY 4.0 (via webmorphR.stim)",
    ),
}
ALLOWED_LICENCES = ("CC0-1.0", "CC-BY-4.0")
CREDITS = tuple(source.credit for source in SOURCES.values())

# 26 people never trained on, mixed across the three sets, sexes, ages and skin tones. London
# by its own table (data-raw/london_info.csv): white 001, 014, 083 female and 004, 017, 063
# male; black 025 female, 042 male; east Asian 030 female, 024 male; west Asian 006 female, 008
# male. Canada (all white in its table): 2 female, 2 male. inter-faces chosen by eye from its
# contact sheet for the same mix of sexes, ages and skin tones (it has no table).
HELD_OUT = (
    *(f"london-{i:03d}" for i in (1, 4, 6, 8, 14, 17, 24, 25, 30, 42, 63, 83)),
    "canada-003f",
    "canada-031f",
    "canada-095m",
    "canada-121m",
    *(f"interfaces-{i:03d}" for i in (5, 6, 28, 39, 47, 57, 62, 71, 83, 88)),
)


def person_of(source: str, path: str) -> str:
    stem = Path(path).stem
    if source == "london":
        return f"london-{stem.split('_')[0]}"
    return f"{source}-{stem}"


def local_files(roots: dict[str, Path]) -> list[tuple[str, str]]:
    """(source, path) of every image in the sources' folders under the local copies `roots`
    (keyed by repository): macOS resource forks (`._*`) and non-images are not images."""
    found = []
    for key, source in SOURCES.items():
        root = roots.get(source.repo)
        if root is None:
            raise ModelError(f"no local copy of {source.repo} given")
        for folder in source.folders:
            base = Path(root) / folder
            if not base.is_dir():
                raise ModelError(
                    f"{base}: not a folder; give a clone or snapshot of {source.repo} at {source.commit[:7]}"
                )
            for path in sorted(base.iterdir()):
                if path.suffix.lower() == ".jpg" and not path.name.startswith("._"):
                    found.append((key, folder + path.name))
    return found


def make_manifest(roots: dict[str, Path]) -> dict:
    """The manifest of every image in the local copies, with checksums and splits (how the
    committed one was made; `build_faces` checks files against the committed one)."""
    images = []
    for key, path in local_files(roots):
        source = SOURCES[key]
        person = person_of(key, path)
        images.append(
            {
                "source": key,
                "repo": source.repo,
                "commit": source.commit,
                "path": path,
                "sha256": sha256_file(Path(roots[source.repo]) / path),
                "licence": source.licence,
                "person": person,
                "split": "held_out" if person in HELD_OUT else "train",
            }
        )
    missing = set(HELD_OUT) - {image["person"] for image in images}
    if missing:
        raise ModelError(f"held-out people missing from the copies: {', '.join(sorted(missing))}")
    sources = {
        key: {"repo": s.repo, "commit": s.commit, "licence": s.licence, "credit": s.credit}
        for key, s in SOURCES.items()
    }
    return {"version": 1, "sources": sources, "held_out": list(HELD_OUT), "images": images}


def load_manifest(path: Path = MANIFEST_PATH) -> dict:
    """The manifest, checked for shape: every image from a known source, in one of its folders,
    under an allowed licence, with a sha256."""
    try:
        manifest = json.loads(Path(path).read_text())
        images = manifest["images"]
        if not isinstance(images, list):
            raise TypeError("images is not a list")
        for image in images:
            source = SOURCES[image["source"]]
            if image["licence"] != source.licence or image["licence"] not in ALLOWED_LICENCES:
                raise ValueError(f"{image['path']}: licence {image['licence']!r} is not its source's")
            if image["repo"] != source.repo or image["commit"] != source.commit:
                raise ValueError(f"{image['path']}: not from {source.repo} at {source.commit[:7]}")
            if ".." in Path(image["path"]).parts or not image["path"].startswith(source.folders):
                raise ValueError(f"{image['path']}: outside {', '.join(source.folders)}")
            if len(image["sha256"]) != 64 or image["split"] not in ("train", "held_out"):
                raise ValueError(f"{image['path']}: no sha256 or split")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not a face manifest ({exc})") from None
    return manifest


def manifest_digest(path: Path = MANIFEST_PATH) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def verified_image(root: Path, image: dict) -> np.ndarray:
    """The manifest image from the local copy `root` as sRGB float32 in [0, 1], refused unless
    its bytes are the manifest's."""
    path = Path(root) / image["path"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror})") from None
    if hashlib.sha256(data).hexdigest() != image["sha256"]:
        raise ModelError(f"{path}: checksum differs from the manifest's; refusing it")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ModelError(f"{path}: not an image")
    return decoded[..., ::-1].astype(np.float32) / 255.0


def aligned_face(image: np.ndarray, detector, interpolation: int = cv2.INTER_LINEAR):
    """The largest face of `image` aligned to face space at its own footprint, capped at the
    bank side (reduced from larger, never enlarged): (crop, landmarks, footprint), or None
    without a face of at least 64 px."""
    face = largest_face(detector, image)
    if face is None:
        return None
    footprint = float(footprint_of(face.landmarks))
    side = int(min(BANK_SIDE, footprint)) // 2 * 2
    if side < 64:
        return None
    crop = warp_to_face(image, scaled_template_transform(face.landmarks, side), side, interpolation)
    return crop, face.landmarks, footprint


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", to_uint8(image)[..., ::-1])
    if not ok:
        raise ModelError(f"{path}: cannot encode")
    write_atomically(path, data.tobytes())


def build_faces(roots: dict[str, Path], out: Path, manifest_path: Path = MANIFEST_PATH, progress=print) -> dict:
    """Aligned face crops of every manifest image (train and held-out) under `out/crops`, the
    held-out people's stills under `out/stills`, and `out/index.json` listing them with the
    manifest's digest. Already built files whose source checksum matches are kept."""
    manifest = load_manifest(manifest_path)
    for key in {image["source"] for image in manifest["images"]}:
        source = SOURCES[key]
        root = roots.get(source.repo)
        if root is None or not all((Path(root) / folder).is_dir() for folder in source.folders):
            raise ModelError(
                f"{root or 'no folder'}: not a copy of {source.repo} (needs {', '.join(source.folders)}); give a clone "
                f"or snapshot at {source.commit[:7]}"
            )
    out = Path(out)
    index_path = out / "index.json"
    previous = {}
    if index_path.is_file():
        try:
            previous = {entry["sha256"]: entry for entry in json.loads(index_path.read_text())["faces"]}
        except (ValueError, KeyError, TypeError):
            previous = {}
    detector = None
    entries, skipped = [], []
    for number, image in enumerate(manifest["images"], 1):
        root = roots.get(image["repo"])
        if root is None:
            raise ModelError(f"no local copy of {image['repo']} given")
        stem = f"{image['person']}__{Path(image['path']).stem}"
        kept = previous.get(image["sha256"])
        if kept and (out / kept["crop"]).is_file() and (not kept.get("still") or (out / kept["still"]).is_file()):
            entries.append(kept)
            continue
        still = verified_image(root, image)
        detector = detector or RetinaFaceDetector("cpu", score_threshold=0.8)
        found = aligned_face(still, detector, cv2.INTER_CUBIC)
        if found is None:
            skipped.append(image["path"])
            continue
        crop, landmarks, footprint = found
        entry = {
            "person": image["person"],
            "split": image["split"],
            "source": image["source"],
            "path": image["path"],
            "sha256": image["sha256"],
            "crop": f"crops/{stem}.png",
            "footprint": round(footprint, 1),
        }
        _write_png(out / entry["crop"], crop)
        if image["split"] == "held_out":
            # The still reduced (never enlarged) to a face of at most STILL_FOOTPRINT px.
            factor = min(1.0, STILL_FOOTPRINT / footprint)
            reduced = cv2.resize(still, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            entry["still"] = f"stills/{stem}.png"
            entry["landmarks"] = np.round(landmarks * factor, 2).tolist()
            _write_png(out / entry["still"], reduced)
        entries.append(entry)
        if number % 20 == 0:
            progress(f"faces: {number}/{len(manifest['images'])}")
    index = {
        "manifest_sha256": manifest_digest(manifest_path),
        "faces": entries,
        "no_face_found": skipped,
        "credits": list(CREDITS),
    }
    write_atomically(index_path, (json.dumps(index, indent=1) + "\n").encode())
    progress(f"faces: {len(entries)} aligned ({len(skipped)} without a usable face) in {out}")
    return index


@dataclass(frozen=True)
class BuiltFaces:
    root: Path
    index: dict

    def faces(self, split: str) -> list[dict]:
        return [entry for entry in self.index["faces"] if entry["split"] == split]

    def crop(self, entry: dict) -> np.ndarray:
        """An aligned crop, uint8 RGB."""
        return _read_png(self.root / entry["crop"])

    def still(self, entry: dict) -> np.ndarray:
        return _read_png(self.root / entry["still"])


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ModelError(f"{path}: missing or unreadable; rebuild with `facerestore data build`")
    return np.ascontiguousarray(image[..., ::-1])


def open_built_faces(root: Path | str, manifest_path: Path | None = None) -> BuiltFaces:
    """The faces `build_faces` wrote under `root`, refused when they were built from another
    manifest than `manifest_path` (default: the committed one)."""
    manifest_path = manifest_path or MANIFEST_PATH
    index_path = Path(root) / "index.json"
    try:
        index = json.loads(index_path.read_text())
        digest = index["manifest_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelError(f"{root}: no built faces (run `facerestore data build --out {root}`)") from None
    if digest != manifest_digest(manifest_path):
        raise ModelError(f"{root}: built from another face manifest; rebuild with `facerestore data build`")
    return BuiltFaces(Path(root), index)
