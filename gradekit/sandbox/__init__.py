"""Sandbox backends: where an untrusted kernel runs. See :mod:`gradekit.sandbox.base`."""
from __future__ import annotations

from .base import Job, Limits, Sandbox, SandboxUnavailable

BACKENDS = ("docker", "process")


def get_sandbox(name: str, *, torch: bool = True, **options) -> Sandbox:
    """The backend called ``name``. ``torch`` says whether the kernel needs torch (docker
    then picks the full grading image rather than the light one)."""
    if name == "process":
        from .process import ProcessSandbox
        return ProcessSandbox()
    if name == "docker":
        from .docker import DockerSandbox
        return DockerSandbox(torch=torch, **options)
    raise ValueError(f"unknown sandbox {name!r}; choose from {', '.join(BACKENDS)}")


__all__ = ["Job", "Limits", "Sandbox", "SandboxUnavailable", "get_sandbox", "BACKENDS"]
