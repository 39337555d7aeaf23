"""The sandbox contract: how an untrusted kernel is started, confined and removed.

A backend supplies the jupyter_client *provisioner* that starts a job's kernel
(:meth:`Sandbox.provisioner`). The default, :class:`~gradekit.sandbox.provisioner.CommandProvisioner`,
turns the ordinary kernel command (``python -m ipykernel_launcher -f CONNECTION_FILE``)
into one that runs confined (:meth:`Sandbox.wrap`): as an unprivileged user in new
namespaces (``process``), or in a hardened container (``docker``); the kernel then
listens on IPC sockets in ``job.ipc_dir``, needs no network, and no TCP port is opened.
A backend whose kernels live on another machine returns a provisioner of its own that
starts the kernel there and hands back its connection info (ARCHITECTURE.md says how).
Everything else (talking to the kernel, interrupting it) is jupyter_client's job.

Backends are found by name in :mod:`gradekit.sandbox.registry`; a backend's constructor
takes only JSON-serialisable keyword options, so a choice of backend (name + options)
travels in a :class:`~gradekit.model.Job` to the worker that grades.

What a backend must guarantee (DESIGN.md, "The trust boundary"):

* ``job.hidden_paths`` (graders, reference code, master notebooks, report folders) are
  neither readable nor listable from inside;
* nothing inside can reach the network, the host's other processes, or another job;
* the limits in ``job.limits`` hold, and breaking one ends as an exit that
  :meth:`Sandbox.describe_exit` can explain in plain words;
* :meth:`Sandbox.cleanup` leaves nothing behind (processes, containers), and is safe to
  call twice.
"""
from __future__ import annotations

import abc
import signal
from typing import Any

from ..model import KernelJob, Limits


class SandboxUnavailable(RuntimeError):
    """The backend cannot run on this machine; the message says what the user must do."""


class Sandbox(abc.ABC):
    """A way of running an untrusted kernel. Subclasses are small; see the module doc."""

    name: str = "abstract"
    #: True when the backend isolates the kernel from the graders' files and the network.
    isolated: bool = True
    #: The backend's own mode, for the report ("namespaces", "uid-drop", a container image).
    mode: str = ""
    #: Said to the person who runs gradekit, when the backend runs with weaker isolation.
    warning: str | None = None
    #: The keyword options the backend was made with (JSON data; see the module doc).
    options: dict[str, Any]

    def __init__(self, **options: Any):
        self.options = dict(options)

    def provisioner(self, job: KernelJob, **kwargs):
        """The jupyter_client provisioner that starts ``job``'s kernel (``kwargs``: the
        provisioner's own, from the kernel manager). Default: run :meth:`wrap`'s command here."""
        from .provisioner import CommandProvisioner
        return CommandProvisioner(sandbox=self, job=job, **kwargs)

    def kernel_packages(self) -> dict[str, str] | None:
        """Versions of the kernel's packages (name -> version), where the backend can tell
        without starting a kernel; None where it cannot."""
        return None

    def check(self) -> None:
        """Raise :class:`SandboxUnavailable` when this backend cannot run here."""

    def prepare(self, job: KernelJob) -> None:
        """Create ``job.work_dir`` and ``job.ipc_dir`` with the right owners and modes."""
        for d in (job.work_dir, job.ipc_dir):
            d.mkdir(parents=True, exist_ok=True)

    def grant_connection_file(self, job: KernelJob) -> None:
        """Let the kernel read ``job.connection_file``, which the trusted side just wrote."""

    @abc.abstractmethod
    def wrap(self, kernel_cmd: list[str], job: KernelJob) -> list[str]:
        """The command that starts ``kernel_cmd`` confined; run by the trusted side."""

    def environment(self, job: KernelJob) -> dict[str, str]:
        """The kernel's whole environment: nothing of the grader's leaks in."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(job.work_dir),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            # figures show as PNG outputs of their cell (as in Jupyter), so feedback can show them
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "MPLCONFIGDIR": str(job.work_dir / ".config" / "matplotlib"),
            "OMP_NUM_THREADS": str(max(1, int(job.limits.cpus))),
            "JPY_SESSION_NAME": "submission.ipynb",
            "CUDA_VISIBLE_DEVICES": ",".join(job.gpus),
            # Full float32 on GPUs (no TF32 in cuBLAS/cuDNN): a model's outputs then agree with
            # the CPU's to float32 rounding, so one tolerance holds on both (docs/authoring.md).
            "NVIDIA_TF32_OVERRIDE": "0",
        }
        env.update(job.env)
        return env

    def kill(self, job: KernelJob) -> None:
        """Stop everything the job started, at once. Called before :meth:`cleanup`."""

    def cleanup(self, job: KernelJob) -> None:
        """Remove whatever the backend made for the job (idempotent)."""

    def describe_exit(self, job: KernelJob, returncode: int | None) -> str:
        """Say in plain words why the kernel ended with ``returncode``."""
        return describe_returncode(returncode, job.limits)


def describe_returncode(returncode: int | None, limits: Limits) -> str:
    if returncode is None:
        return "the kernel stopped answering"
    if returncode < 0:
        sig = -returncode
        if sig == signal.SIGKILL:
            return (f"the kernel was killed (SIGKILL): most often the memory limit of "
                    f"{limits.memory_mb} MB was exceeded")
        if sig == signal.SIGXCPU:
            return "the kernel used up its CPU-time limit"
        if sig == signal.SIGXFSZ:
            return f"the kernel wrote a file larger than {limits.file_size_mb} MB"
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"the kernel was killed by {name}"
    if returncode == 137:
        return (f"the kernel was killed (exit 137): most often the memory limit of "
                f"{limits.memory_mb} MB was exceeded")
    return f"the kernel exited with status {returncode}"
