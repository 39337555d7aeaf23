"""The process backend: the kernel runs as an unprivileged user in new namespaces.

Used where no container engine is available (inside Gradescope's container, on a
workstation without Docker) and for ``gradekit check``. As root it is a real sandbox
(see :mod:`gradekit.sandbox.confine`); as an ordinary user it cannot switch users or
mount, so it runs the kernel as that same user with nothing hidden, says so, and is only
fit for a student checking their own notebook.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from .base import Job, Sandbox, SandboxUnavailable, describe_returncode

SANDBOX_USER = "gradekit-sandbox"


def ensure_user(name: str = SANDBOX_USER) -> tuple[int, int]:
    """The sandbox user's (uid, gid), created as a system user without a home if missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        proc = subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                               "--shell", "/usr/sbin/nologin", "--user-group", name],
                              capture_output=True, text=True)
        if proc.returncode not in (0, 9):  # 9: it appeared meanwhile (another worker)
            raise SandboxUnavailable(f"could not create the sandbox user {name!r}: {proc.stderr.strip()}")
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _private_dirs() -> list[str]:
    """Home folders and the like that may hold secrets of the host's users."""
    return [d for d in ("/root", "/home") if os.path.isdir(d)]


def _interpreter_dirs() -> list[str]:
    """The folders the kernel's Python needs (venv and base installation)."""
    return sorted({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)})


class ProcessSandbox(Sandbox):
    name = "process"

    def __init__(self, user: str = SANDBOX_USER):
        self.user = user
        self.isolated = os.geteuid() == 0
        self._ids: tuple[int, int] | None = None

    def check(self) -> None:
        if sys.platform != "linux":
            raise SandboxUnavailable("the process sandbox needs Linux")
        if self.isolated:
            self._ids = ensure_user(self.user)

    @property
    def warning(self) -> str | None:
        if self.isolated:
            return None
        return ("the process sandbox is not running as root, so the kernel runs as you, can read "
                "your files and reach the network: fine for checking your own notebook, not for grading others'")

    def prepare(self, job: Job) -> None:
        super().prepare(job)
        if self.isolated:
            uid, gid = self._ids or ensure_user(self.user)
            os.chmod(job.root, 0o711)  # the user may pass through to its folders, not list them
            for d in (job.work_dir, job.ipc_dir):
                os.chown(d, uid, gid)
                os.chmod(d, 0o700)

    def grant_connection_file(self, job: Job) -> None:
        if self.isolated:
            uid, gid = self._ids or ensure_user(self.user)
            os.chown(job.connection_file, uid, gid)

    def _spec(self, job: Job) -> dict:
        uid, gid = self._ids or ensure_user(self.user)
        covers = [str(p) for p in job.hidden_paths] + _private_dirs()
        exposes = [d for d in _interpreter_dirs()
                   if any(d == c or d.startswith(c.rstrip("/") + "/") for c in covers)]
        lim = job.limits
        return {
            "name": f"{job.id}-{os.getpid()}",
            "uid": uid, "gid": gid,
            "cover": covers, "expose": exposes,
            "work_dir": str(job.work_dir), "ipc_dir": str(job.ipc_dir),
            "data_dir": str(job.data_dir) if job.data_dir else None,
            "data_mount": str(job.work_dir / "data") if job.data_dir else None,
            "disk_mb": lim.disk_mb,
            "cgroups": _cgroups_available(),
            "exit_file": str(job.root / "exit.json"),
            "limits": {"memory_mb": lim.memory_mb, "pids": lim.pids, "file_size_mb": lim.file_size_mb,
                       "total_timeout": lim.total_timeout, "cpus": lim.cpus},
        }

    def wrap(self, kernel_cmd: list[str], job: Job) -> list[str]:
        if not self.isolated:
            return kernel_cmd
        try:
            (job.root / "exit.json").unlink()
        except FileNotFoundError:
            pass
        return [sys.executable, "-m", "gradekit.sandbox.confine", json.dumps(self._spec(job)), "--", *kernel_cmd]

    def environment(self, job: Job) -> dict[str, str]:
        env = super().environment(job)
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        if job.data_dir:
            env["GRADEKIT_DATA"] = str(job.data_dir) if not self.isolated else str(job.work_dir / "data")
        return env

    def describe_exit(self, job: Job, returncode: int | None) -> str:
        try:
            record = json.loads((job.root / "exit.json").read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("oom"):
            return f"the kernel ran out of memory (limit {job.limits.memory_mb} MB) and was killed"
        if record.get("signal"):
            return describe_returncode(-record["signal"], job.limits)
        if returncode == 121:
            return "the sandbox could not confine the kernel (see the harness log)"
        return describe_returncode(returncode, job.limits)


def _cgroups_available() -> bool:
    if os.geteuid() != 0:
        return False
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return "memory" in (root / "cgroup.controllers").read_text()
    return os.access(root / "memory", os.W_OK) and os.access(root / "pids", os.W_OK)
