"""Sandbox backends: where an untrusted kernel runs. See :mod:`gradekit.sandbox.base`
(the contract), :mod:`gradekit.sandbox.registry` (backends by name), ``process/`` and
``docker/`` (the built-in backends) and :mod:`gradekit.sandbox.gpus` (GPU leases)."""
from __future__ import annotations

from .base import Sandbox, SandboxUnavailable

__all__ = ["Sandbox", "SandboxUnavailable"]
