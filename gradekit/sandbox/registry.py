"""Sandbox backends by name: the built-in ones, and any a package registers.

A package adds a backend with an entry point in the ``gradekit.backends`` group::

    [project.entry-points."gradekit.backends"]
    ssh = "mycourse.sandbox:SshSandbox"

The CLI's ``--sandbox`` choices are :func:`names`. Built-ins are listed here as well as in
gradekit's own entry points, because an engine copied without its package metadata (the
Gradescope autograder) must still find them.
"""
from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from ..model import BackendChoice
from .base import Sandbox

GROUP = "gradekit.backends"
BUILTIN = {
    "docker": "gradekit.sandbox.docker.backend:DockerSandbox",
    "process": "gradekit.sandbox.process.backend:ProcessSandbox",
}


def _targets() -> dict[str, str]:
    found = dict(BUILTIN)
    try:
        for ep in metadata.entry_points(group=GROUP):
            found.setdefault(ep.name, ep.value)
    except Exception:  # broken metadata of some other package: the built-ins still work
        pass
    return found


def names() -> list[str]:
    """Every backend name, sorted."""
    return sorted(_targets())


def backend_class(name: str) -> type[Sandbox]:
    targets = _targets()
    if name not in targets:
        raise ValueError(f"unknown sandbox {name!r}; choose from {', '.join(sorted(targets))}")
    module, _, attr = targets[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def make(choice: BackendChoice | str, **options: Any) -> Sandbox:
    """The backend a :class:`BackendChoice` names, made with its options."""
    if isinstance(choice, str):
        choice = BackendChoice(choice, options)
    return backend_class(choice.name)(**choice.options)
