"""The kernel's environment: one package list for every backend.

``scripts/image/requirements.txt`` (and, for assignments with ``torch = true``, the torch
and torchvision pins beside it) defines what a student's kernel has. The Docker image is
built from these files, the Gradescope autograder installs them, and ``make venv``
installs them into the venv the process backend's kernels use. A backend that cannot
match the list (the process backend on a machine set up by hand) says how it differs,
and the report carries that.
"""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from .docker.image import source_root

LISTS = ("requirements.txt",)
TORCH_LISTS = ("requirements-torch.txt", "requirements-torchvision.txt")


def _name(pin: str) -> str:
    return re.split(r"[=<>!~;\[ ]", pin, maxsplit=1)[0].strip().lower().replace("-", "_")


def read_pins(path: Path) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()
            if line.split("#", 1)[0].strip()]


def kernel_pins(torch: bool) -> dict[str, str] | None:
    """Package name -> pinned version of the kernel's environment; None when gradekit runs
    without its source tree (installed as a package) and the list is not at hand."""
    root = source_root()
    if root is None:
        return None
    folder = root / "scripts" / "image"
    pins: dict[str, str] = {}
    for name in LISTS + (TORCH_LISTS if torch else ()):
        for pin in read_pins(folder / name):
            if "==" in pin:
                pins[_name(pin)] = pin.split("==", 1)[1].split(";")[0].strip()
    return pins


def installed() -> dict[str, str]:
    """Packages of this interpreter's environment (the process backend's kernels use it)."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            found[_name(name)] = dist.version
    return found


def differences(pins: dict[str, str] | None, have: dict[str, str] | None) -> list[str]:
    """How ``have`` differs from ``pins``, in plain words (empty when it matches)."""
    if pins is None or have is None:
        return []
    out = []
    for name, version in sorted(pins.items()):
        got = have.get(name)
        if got is None:
            out.append(f"{name} is missing (the kernel environment lists {version})")
        elif got.split("+")[0] != version.split("+")[0]:
            out.append(f"{name} is {got}, the kernel environment lists {version}")
    return out
