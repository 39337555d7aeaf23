"""A matplotlib figure of the student's kernel, as data: what a grader needs to check that a
plot shows what it should (how many panels, how many points each, how many classes).

The kernel sends each panel's title and each scatter's points, mapped values and face colours
(:meth:`gradekit.bridge.host.Submission.figure`); :func:`figure_data` checks the reply's shape,
since the student's code made every byte of it.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .protocol import SHIM_LIMITS, BridgeDecodeError


@dataclasses.dataclass(frozen=True)
class Scatter:
    """One ``ax.scatter`` call: ``offsets`` (N, 2) the points; ``values`` (N,) the numbers
    mapped to colours through a colormap (``c=`` numbers), or None; ``colors`` (N, 4) RGBA, or
    (1, 4) when every point has the same colour."""
    offsets: np.ndarray
    values: np.ndarray | None
    colors: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)

    def classes(self) -> int:
        """How many colours tell the points apart: distinct mapped values, else distinct RGBA."""
        if self.values is not None and len(self.values) == len(self.offsets):
            return len(np.unique(self.values[~np.isnan(self.values)]))
        return len(np.unique(np.round(self.colors, 6), axis=0)) if len(self.offsets) else 0


@dataclasses.dataclass(frozen=True)
class Panel:
    """One axes of the figure."""
    title: str
    scatters: tuple[Scatter, ...]

    def points(self) -> int:
        return sum(len(s) for s in self.scatters)


@dataclasses.dataclass(frozen=True)
class FigureData:
    panels: tuple[Panel, ...]

    def panel(self, title_contains: str) -> Panel | None:
        """The first panel whose title holds ``title_contains`` (None if none does)."""
        return next((p for p in self.panels if title_contains in p.title), None)


def _array(x, what: str, ndim: int) -> np.ndarray:
    if not (isinstance(x, np.ndarray) and x.ndim == ndim and x.dtype == np.float64):
        raise BridgeDecodeError(f"the figure's data is malformed ({what})")
    return x


def figure_data(reply, what: str) -> FigureData:
    """The reply of the kernel's ``figure`` request, checked and typed."""
    if not isinstance(reply, list) or len(reply) > SHIM_LIMITS["max_layers"]:  # the shim cuts at this number
        raise BridgeDecodeError(f"the reply describing {what} is malformed")
    panels = []
    for p in reply:
        if not (isinstance(p, dict) and isinstance(p.get("title"), str) and isinstance(p.get("scatters"), list)
                and len(p["scatters"]) <= SHIM_LIMITS["max_layers"]):
            raise BridgeDecodeError(f"the reply describing {what} is malformed")
        scatters = []
        for s in p["scatters"]:
            if not isinstance(s, dict):
                raise BridgeDecodeError(f"the reply describing {what} is malformed")
            offsets = _array(s.get("offsets"), "points", 2)
            values = None if s.get("values") is None else _array(s.get("values"), "colour values", 1)
            colors = _array(s.get("colors"), "colours", 2)
            if offsets.shape[1] != 2 or colors.shape[1] != 4:
                raise BridgeDecodeError(f"the figure's data is malformed (points {offsets.shape}, colours {colors.shape})")
            scatters.append(Scatter(offsets, values, colors))
        panels.append(Panel(p["title"][:200], tuple(scatters)))
    return FigureData(tuple(panels))
