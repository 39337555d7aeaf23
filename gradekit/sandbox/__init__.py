"""Sandbox backends: where an untrusted kernel runs. See :mod:`gradekit.sandbox.base`."""
from __future__ import annotations

from .base import Job, Limits, Sandbox, SandboxUnavailable

BACKENDS = ("docker", "process")


def get_sandbox(name: str, **options) -> Sandbox:
    """The backend called ``name``; ``auto`` is docker when an engine answers, else process."""
    if name == "process":
        from .process import ProcessSandbox
        return ProcessSandbox()
    if name == "docker":
        from .docker import DockerSandbox
        return DockerSandbox(**options)
    raise ValueError(f"unknown sandbox {name!r}; choose from {', '.join(BACKENDS)}")


__all__ = ["Job", "Limits", "Sandbox", "SandboxUnavailable", "get_sandbox", "BACKENDS"]
