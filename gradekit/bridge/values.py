"""What values look like on the trusted side after they crossed the bridge.

Plain data comes back as Python and numpy values; these few classes stand for what cannot
be data: a value of another type (:class:`Unsupported`), an ``nn.Module``
(:class:`ModuleSummary`), a tensor's torch details (:class:`TorchArray`), an object that
stays in the kernel (:class:`Handle`), a tensor argument to send (:class:`as_torch`), and
"the parameters of this model" as an argument (:class:`ParamsOf`).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Unsupported:
    """A value of a type that cannot cross as data; only its type name and repr come back."""
    type: str
    repr: str

    def __str__(self) -> str:
        if self.type == "ellipsis":
            return "`...` (not answered yet)"
        return f"a {self.type} ({self.repr})"


@dataclasses.dataclass(frozen=True)
class ModuleSummary:
    """A torch.nn.Module described as data: its parameters, buffers and sub-modules."""
    cls: str
    parameters: tuple[tuple[str, tuple[int, ...], bool], ...]
    buffers: tuple[tuple[str, tuple[int, ...]], ...]
    modules: tuple[tuple[str, str], ...]
    training: bool
    repr: str

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(math.prod(shape) for _, shape, grad in self.parameters if grad or not trainable_only)


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """What came with an array that was a torch tensor in the kernel."""
    dtype: str
    requires_grad: bool
    device: str


class TorchArray(np.ndarray):
    """An array that was a torch tensor in the student's kernel (``.torch`` says how)."""
    torch: TensorInfo | None = None


class as_torch:  # noqa: N801 - reads as a conversion in grader code
    """Wrap an array argument so it arrives in the student's kernel as a torch tensor."""

    def __init__(self, array):
        self.array = np.asarray(array)


@dataclasses.dataclass(frozen=True)
class Handle:
    """An object that lives in the student's kernel, made by :meth:`Submission.new`."""
    submission: object  # the bridge.host.Submission it came from
    ref: str
    cls: str

    def call(self, method: str, *args, **kwargs):
        return self.submission.call(f"@{self.ref}.{method}", *args, **kwargs)

    def get(self, attr: str):
        return self.submission.get(f"@{self.ref}.{attr}")


@dataclasses.dataclass(frozen=True)
class ParamsOf:
    """An argument that arrives in the kernel as ``list(model.parameters())`` of a model there:
    ``ref`` is a global's name or ``"@"`` and a handle's ref (made by :meth:`Submission.params_of`)."""
    ref: str
