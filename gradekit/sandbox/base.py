"""The sandbox contract: how an untrusted kernel is started, confined and removed.

A backend turns the ordinary kernel command (``python -m ipykernel_launcher -f
CONNECTION_FILE``) into one that runs confined: as an unprivileged user in new
namespaces (``process``), or in a hardened container (``docker``). Everything else —
starting the kernel, talking to it, interrupting it — is jupyter_client's job, done by
:class:`gradekit.kernel.SandboxProvisioner` over IPC sockets in ``job.ipc_dir``. The
kernel therefore needs no network at all, and no TCP port is ever opened.

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
import dataclasses
import signal
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits for one submission. Defaults suit a CPU notebook of a few minutes."""

    memory_mb: int = 2048
    cpus: float = 1.0
    pids: int = 256
    file_size_mb: int = 256       # largest single file the kernel may write
    disk_mb: int = 512            # size of the writable working directory (tmpfs)
    cell_timeout: float = 120.0   # seconds for one cell
    total_timeout: float = 900.0  # seconds for the whole notebook
    call_timeout: float = 60.0    # seconds for one bridge call
    output_bytes: int = 64_000    # outputs kept per cell in the report

    def replace(self, **changes) -> "Limits":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclasses.dataclass
class Job:
    """One submission's run: its private folders on the host and what it may use."""

    id: str
    root: Path                     # private to this job; removed after grading
    limits: Limits
    hidden_paths: tuple[Path, ...] = ()
    data_dir: Path | None = None   # assignment data, mounted read-only
    gpus: tuple[str, ...] = ()     # device ids assigned to this job ("0", "1", ...)
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def work_dir(self) -> Path:
        """The notebook's working directory (the only place it may write, besides /tmp)."""
        return self.root / "work"

    @property
    def ipc_dir(self) -> Path:
        """Holds the connection file and the kernel's IPC sockets."""
        return self.root / "ipc"

    @property
    def connection_file(self) -> Path:
        return self.ipc_dir / "kernel.json"


class SandboxUnavailable(RuntimeError):
    """The backend cannot run on this machine; the message says what the user must do."""


class Sandbox(abc.ABC):
    """A way of running an untrusted kernel. Subclasses are small; see the module doc."""

    name: str = "abstract"
    #: True when the backend isolates the kernel from the graders' files and the network.
    isolated: bool = True

    def check(self) -> None:
        """Raise :class:`SandboxUnavailable` when this backend cannot run here."""

    def prepare(self, job: Job) -> None:
        """Create ``job.work_dir`` and ``job.ipc_dir`` with the right owners and modes."""
        for d in (job.work_dir, job.ipc_dir):
            d.mkdir(parents=True, exist_ok=True)

    def grant_connection_file(self, job: Job) -> None:
        """Let the kernel read ``job.connection_file``, which the trusted side just wrote."""

    @abc.abstractmethod
    def wrap(self, kernel_cmd: list[str], job: Job) -> list[str]:
        """The command that starts ``kernel_cmd`` confined; run by the trusted side."""

    def environment(self, job: Job) -> dict[str, str]:
        """The kernel's whole environment: nothing of the grader's leaks in."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(job.work_dir),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(job.work_dir / ".config" / "matplotlib"),
            "OMP_NUM_THREADS": str(max(1, int(job.limits.cpus))),
            "JPY_SESSION_NAME": "submission.ipynb",
            "CUDA_VISIBLE_DEVICES": ",".join(job.gpus),
        }
        env.update(job.env)
        return env

    def kill(self, job: Job) -> None:
        """Stop everything the job started, at once. Called before :meth:`cleanup`."""

    def cleanup(self, job: Job) -> None:
        """Remove whatever the backend made for the job (idempotent)."""

    def describe_exit(self, job: Job, returncode: int | None) -> str:
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
