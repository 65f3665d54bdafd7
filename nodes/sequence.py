"""Frame sequence patterns and frame ranges.

Patterns accept the conventions compositors type: ``shot.####.exr`` (Nuke: one digit per #),
``shot.%04d.exr`` (printf), ``shot.$F4.exr`` (Houdini), ``shot.@@@@.exr`` (one digit per @).
A path with no frame token is a single frame.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from facerestore.nodes.errors import FaceRestoreError

TOKEN = re.compile(r"(#+)|(@+)|%(0?\d*)d|\$F(\d*)")


@dataclass(frozen=True)
class FramePattern:
    text: str
    prefix: str = ""
    suffix: str = ""
    padding: int = 0
    has_token: bool = False

    @classmethod
    def parse(cls, text: str) -> FramePattern:
        matches = list(TOKEN.finditer(os.path.basename(text)))
        if not matches:
            return cls(text)
        if len(matches) > 1:
            raise FaceRestoreError(f"{text}: more than one frame-number token in the file name")
        match = matches[0]
        hashes, ats, printf, houdini = match.groups()
        if hashes:
            padding = len(hashes)
        elif ats:
            padding = len(ats)
        elif printf is not None:
            padding = int(printf) if printf else 0
        else:
            padding = int(houdini) if houdini else 0
        start = len(text) - len(os.path.basename(text)) + match.start()
        end = start + len(match.group(0))
        return cls(text, text[:start], text[end:], padding, True)

    def path(self, frame: int | None) -> str:
        if not self.has_token or frame is None:
            return self.text
        digits = f"{frame:0{self.padding}d}" if frame >= 0 else f"-{-frame:0{self.padding}d}"
        return f"{self.prefix}{digits}{self.suffix}"

    def existing_frames(self) -> list[int]:
        """Frame numbers of files on disk that match the pattern."""
        if not self.has_token:
            return []
        folder = Path(self.prefix).parent if os.path.dirname(self.prefix) else Path(".")
        head, tail = os.path.basename(self.prefix), self.suffix
        digits = r"-?\d+" if self.padding <= 1 else rf"-?\d{{{self.padding},}}"
        name = re.compile(re.escape(head) + f"({digits})" + re.escape(tail) + "$")
        if not folder.is_dir():
            return []
        frames = []
        for entry in os.listdir(folder):
            match = name.match(entry)
            if match:
                frames.append(int(match.group(1)))
        return sorted(set(frames))


# More frames than any shot has: a typo such as 1-2000000000 is an error, not hours of stat calls.
MAX_FRAMES = 1_000_000


def parse_frame_range(text: str) -> list[int]:
    """'1001-1100', '1001', '1001-1100x2' or comma-separated lists of those."""
    frames: list[int] = []
    for part in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?", part)
        if not match:
            raise FaceRestoreError(f"cannot read frame range {text!r}; expected e.g. 1001-1100")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3) or 1)
        if step < 1:
            raise FaceRestoreError(f"frame range {text!r}: step must be at least 1")
        if last < first:
            raise FaceRestoreError(f"frame range {text!r} is empty (end before start)")
        if len(frames) + len(range(first, last + 1, step)) > MAX_FRAMES:
            raise FaceRestoreError(f"frame range {text!r} names more than {MAX_FRAMES:,} frames; render it in parts")
        frames.extend(range(first, last + 1, step))
    if not frames:
        raise FaceRestoreError(f"frame range {text!r} is empty")
    return sorted(set(frames))


def describe_frames(frames: list[int]) -> str:
    """Compact form for messages: 1001-1003, 1007."""
    runs: list[str] = []
    start = prev = None
    for frame in sorted(frames):
        if start is None:
            start = prev = frame
        elif frame == prev + 1:
            prev = frame
        else:
            runs.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = frame
    if start is not None:
        runs.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ", ".join(runs)
