"""Node specifications: what a host needs to draw a node and its parameters.

Parameter ids are permanent (they are saved in .nk and .comp scripts); labels and hints
may change. The CLI, the OpenFX plugin and host adapters all render this one spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from facerestore.nodes.errors import FaceRestoreError


@dataclass(frozen=True)
class Param:
    id: str
    label: str
    hint: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def validate(self, value: Any) -> Any:
        if self.choices and value not in self.choices:
            raise FaceRestoreError(f"{self.label}: {value!r} is not one of {', '.join(self.choices)}")
        if self.minimum is not None and not (self.minimum <= value <= self.maximum):
            raise FaceRestoreError(f"{self.label}: {value} is outside {self.minimum:g}..{self.maximum:g}")
        return value


@dataclass(frozen=True)
class HostControl:
    """A control a host node shows beside the parameters, holding no value of the node's: a
    button (`kind` "button") or a line of text the host node writes ("status", `default` first)."""

    id: str
    label: str
    hint: str
    kind: str
    default: str = ""


@dataclass(frozen=True)
class NodeSpec:
    id: str  # reverse-DNS, permanent
    version: tuple[int, int]  # major: broke compatibility; minor: fixed or faster
    label: str
    hint: str
    params: tuple[Param, ...] = field(default_factory=tuple)

    def defaults(self) -> dict[str, Any]:
        return {p.id: p.default for p in self.params}

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        unknown = set(values) - {p.id for p in self.params}
        if unknown:
            raise KeyError(f"unknown parameters: {', '.join(sorted(unknown))}")
        merged = self.defaults() | {k: v for k, v in values.items() if v is not None}
        return {p.id: p.validate(merged[p.id]) for p in self.params}
