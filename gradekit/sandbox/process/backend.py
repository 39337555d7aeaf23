"""The process backend: the kernel runs as an unprivileged user, confined as far as the OS allows.

Used where no container engine is available (inside Gradescope's container, on a
workstation without Docker) and for ``gradekit check``. Its mode is decided once per
process by trying the real launcher:

* ``namespaces`` (root, and the OS allows ``unshare``): the full sandbox of
  :mod:`gradekit.sandbox.process.confine` — a root of its own built from an allow-list (the
  host's other files do not exist there), no network, own PID namespace, cgroup limits —
  running as the ``gradekit-sandbox`` user.
* ``uid-drop`` (root in a container that refuses namespaces): the kernel runs as a uid of
  its own (per job, so jobs cannot signal each other or share a process limit) with
  rlimits and ``no_new_privs``. It sees the filesystem and the network, so every hidden
  path must be unreadable to other users — checked before each job — and whatever the job
  leaves running is killed at cleanup.
* ``same-user`` (not root): the kernel runs as you, with nothing hidden; fit only for a
  student checking their own notebook, and said so.

In both root modes the job's working and IPC folders, which the host reads too, are each a
tmpfs of ``limits.disk_mb`` mounted on the host for the kernel's lifetime (a kernel's files
last as long as it does, as in a Docker container; handed-in files are copied in at each
start). Where the host may not mount, they are plain folders without a size limit, and
:attr:`ProcessSandbox.warning` says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ...model import KernelJob, Limits
from ..base import Sandbox, SandboxUnavailable, describe_returncode
from ..cleanup import unmount
from .confine import MS_NODEV, MS_NOSUID, MS_PRIVATE, SYSTEM_DIRS, mount

SANDBOX_USER = "gradekit-sandbox"
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # private to each kernel in namespaces mode, disk_mb each
GIVEN = "given"  # in the job root: the files handed in, copied into each fresh working folder
UID_DROP_BASE = 200_000_000     # uid-drop mode: per-job uids from here (no passwd entry needed)
UID_DROP_SPAN = 1_000_000_000


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


def _interpreter_dirs() -> list[str]:
    """The folders the kernel's Python needs (venv and base installation)."""
    return sorted({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)})


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _exposed(dirs: list[str]) -> list[str]:
    """The interpreter folders to bind into the kernel's root: those not already visible
    there as a system folder (or inside another one of them)."""
    system = {p for d in SYSTEM_DIRS for p in (d, os.path.realpath(d))}
    keep: list[str] = []
    for d in sorted(dirs):
        if not any(_inside(d, s) for s in system | set(keep)):
            keep.append(d)
    return keep


def _mount_tmpfs(folder: Path, size_mb: int, uid: int, gid: int) -> None:
    mount("tmpfs", str(folder), "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={max(1, int(size_mb))}m,mode=700,uid={uid},gid={gid}")
    try:  # no copy of it in other mount namespaces (a host whose / is shared)
        mount(None, str(folder), None, MS_PRIVATE)
    except OSError:
        pass


def readable_by_others(path: Path) -> bool:
    """Could a user with no group in common with the owner reach ``path``'s contents?"""
    path = Path(path).resolve()
    try:
        if not path.stat().st_mode & (stat.S_IROTH if path.is_file() else stat.S_IROTH | stat.S_IXOTH):
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)
    except FileNotFoundError:
        return False


def kill_uid(uid: int, rounds: int = 10) -> int:
    """SIGKILL every process of ``uid``; returns how many were killed."""
    killed = 0
    for _ in range(rounds):
        found = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as fh:
                    uids = next(line for line in fh if line.startswith("Uid:")).split()[1:]
            except (OSError, StopIteration):
                continue
            if str(uid) in uids:
                found += 1
                try:
                    os.kill(int(entry), signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
        if not found:
            break
        time.sleep(0.1)
    return killed


class ProcessSandbox(Sandbox):
    name = "process"
    _probed: dict[str, tuple[bool, str]] = {}   # per interpreter: can namespaces be made here?
    unbounded: str | None = None   # why the job folders are not size-limited tmpfs here (per process)

    def __init__(self, user: str = SANDBOX_USER):
        super().__init__(user=user)
        self.user = user
        self.mode = "namespaces" if os.geteuid() == 0 else "same-user"
        self.why = ""
        self.isolated = self.mode != "same-user"
        self._ids: tuple[int, int] | None = None

    def check(self) -> None:
        if sys.platform != "linux":
            raise SandboxUnavailable("the process sandbox needs Linux")
        if self.mode == "same-user":
            return
        self._ids = ensure_user(self.user)
        ok, why = self._probe()
        if ok:
            return
        if "unshare" not in why:  # something else broke: say so rather than confine less
            raise SandboxUnavailable(f"the process sandbox could not start a confined process: {why}")
        self.mode, self.why = "uid-drop", why

    def _probe(self) -> tuple[bool, str]:
        """Run the real launcher once, in namespaces mode, on ``python -c pass``."""
        if sys.executable not in self._probed:
            with tempfile.TemporaryDirectory(prefix="gk-probe-") as tmp:
                os.chmod(tmp, 0o711)
                job = KernelJob(id="probe", root=Path(tmp) / "job", limits=Limits(total_timeout=20))
                job.root.mkdir()
                try:
                    self.prepare(job)
                    cmd = self.wrap([sys.executable, "-c", "pass"], job)
                    proc = subprocess.run(cmd, env=self.environment(job), cwd=job.work_dir,
                                          capture_output=True, text=True, timeout=60)
                    lines = proc.stderr.strip().splitlines()
                    result = (proc.returncode == 0, lines[-1] if lines else f"exit {proc.returncode}")
                except (OSError, subprocess.TimeoutExpired) as exc:
                    result = (False, str(exc))
                finally:
                    self.cleanup(job)
            self._probed[sys.executable] = result
        return self._probed[sys.executable]

    @property
    def warning(self) -> str | None:
        if self.mode == "same-user":
            return ("the process sandbox is not running as root, so the kernel runs as you, can read "
                    "your files and reach the network: fine for checking your own notebook, not for grading others'")
        disk = (f"; the kernel's working and IPC folders have no size limit (a tmpfs could not be mounted: "
                f"{self.unbounded})" if self.unbounded else "")
        if self.mode == "uid-drop":
            return (f"namespaces are not allowed here ({self.why}): the kernel runs as a user of its own with "
                    "per-process limits, but can reach the network and write the host's /tmp; secret folders "
                    "must be unreadable to other users" + disk)
        return disk[2:] or None

    def kernel_packages(self) -> dict[str, str] | None:
        """The kernel runs this interpreter: its packages are this environment's."""
        from ..environment import installed
        return installed()

    def _job_ids(self, job: KernelJob) -> tuple[int, int]:
        if self.mode == "uid-drop":  # one uid per job: no shared process limit, no signals between jobs
            n = UID_DROP_BASE + int(hashlib.sha256(str(job.root).encode()).hexdigest(), 16) % UID_DROP_SPAN
            return n, n
        return self._ids or ensure_user(self.user)

    def prepare(self, job: KernelJob) -> None:
        super().prepare(job)
        if job.data:
            root = self.data_root(job)
            root.mkdir(mode=0o755, exist_ok=True)
            os.chmod(root, 0o755)
            if self.mode != "namespaces":  # no mounts: links the kernel can follow, not change
                for d in job.data:
                    link = root / d.name
                    if not link.is_symlink():
                        link.symlink_to(Path(d.source).resolve(), target_is_directory=True)
        if self.mode == "same-user":
            return
        if self.mode == "uid-drop":
            exposed = [str(p) for p in job.hidden_paths  # the job's own ancestors must be traversable
                       if readable_by_others(p) and not job.root.resolve().is_relative_to(Path(p).resolve())]
            if exposed:
                raise SandboxUnavailable(
                    f"namespaces are not allowed here ({self.why}), so the kernel could read "
                    f"{', '.join(exposed)}; make them unreadable to other users (chmod 700), or grade where "
                    "namespaces are allowed (as root on the host, or with the docker sandbox)")
        if self.mode == "namespaces":
            self._refuse_exposed_secrets(job)
        uid, gid = self._job_ids(job)
        os.chmod(job.root, 0o711)  # the user may pass through to its folders, not list them
        self._bound_folders(job, uid, gid)
        for d in (job.work_dir, job.ipc_dir):
            os.chown(d, uid, gid)
            os.chmod(d, 0o700)

    def _refuse_exposed_secrets(self, job: KernelJob) -> None:
        """The allow-list shows the interpreter and the data sets whole: none may hold a
        hidden path (a venv or data folder that contains the graders)."""
        shown = _exposed(_interpreter_dirs()) + [str(Path(d.source).resolve()) for d in job.data]
        inside = [str(p) for p in job.hidden_paths for s in shown if _inside(str(Path(p).resolve()), s)]
        if inside:
            raise SandboxUnavailable(f"the kernel would see {', '.join(inside)}: it lies inside its Python "
                                     "installation or a data set, which are shown to the kernel whole")

    def _bound_folders(self, job: KernelJob, uid: int, gid: int) -> None:
        """Issue 17.2: the job's folders the kernel writes and the host reads, each a tmpfs of
        ``disk_mb``, fresh for each kernel (:meth:`cleanup` unmounts them). The files handed
        in are kept aside once, in the job root (the kernel cannot list it), and copied in."""
        if os.path.ismount(job.ipc_dir):
            return  # this kernel's folders are mounted already
        try:
            _mount_tmpfs(job.ipc_dir, job.limits.disk_mb, uid, gid)
        except OSError as exc:
            ProcessSandbox.unbounded = exc.strerror or str(exc)
            return  # no right to mount here: plain folders, and the warning says so
        given = job.root / GIVEN
        if not given.exists() and any(job.work_dir.iterdir()):
            job.work_dir.rename(given)
            job.work_dir.mkdir()
        _mount_tmpfs(job.work_dir, job.limits.disk_mb, uid, gid)
        if given.is_dir():
            try:
                shutil.copytree(given, job.work_dir, symlinks=True, dirs_exist_ok=True)
            except (OSError, shutil.Error) as exc:
                raise SandboxUnavailable(f"the files handed in do not fit the working folder's "
                                         f"{job.limits.disk_mb} MB (limits.disk_mb): {exc}") from None

    def grant_connection_file(self, job: KernelJob) -> None:
        if self.mode != "same-user":
            os.chown(job.connection_file, *self._job_ids(job))

    def _spec(self, job: KernelJob) -> dict:
        uid, gid = self._job_ids(job)
        lim = job.limits
        return {
            "name": f"{job.id}-{os.getpid()}",
            "namespaces": self.mode == "namespaces",
            "uid": uid, "gid": gid,
            "expose": _exposed(_interpreter_dirs()), "scratch": list(SCRATCH_DIRS), "gpus": bool(job.gpus),
            "work_dir": str(job.work_dir), "ipc_dir": str(job.ipc_dir),
            "data": [[d.name, str(Path(d.source).resolve())] for d in job.data],
            "data_root": str(self.data_root(job)),
            "disk_mb": lim.disk_mb,
            "cgroups": self.mode == "namespaces" and _cgroups_available(),
            "exit_file": str(job.root / "exit.json"),
            "limits": {"memory_mb": lim.memory_mb, "pids": lim.pids, "file_size_mb": lim.file_size_mb,
                       "total_timeout": lim.total_timeout, "cpus": lim.cpus},
        }

    def wrap(self, kernel_cmd: list[str], job: KernelJob) -> list[str]:
        if self.mode == "same-user":
            return kernel_cmd
        try:
            (job.root / "exit.json").unlink()
        except FileNotFoundError:
            pass
        return [sys.executable, "-m", "gradekit.sandbox.process.confine", json.dumps(self._spec(job)), "--", *kernel_cmd]

    def environment(self, job: KernelJob) -> dict[str, str]:
        env = super().environment(job)
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        env["USER"] = env["LOGNAME"] = self.user  # getpass.getuser() needs no passwd entry then
        if job.data:
            env["GRADEKIT_DATA"] = str(self.data_root(job))
        return env

    def data_root(self, job: KernelJob) -> Path:
        """Where the kernel finds the data sets, one folder per name (``$GRADEKIT_DATA``).

        With namespaces, read-only bind mounts there; without, links in a folder of the
        grader's that the kernel cannot change, to sources it must be able to read anyway."""
        return job.root / "data"

    def kill(self, job: KernelJob) -> None:
        if self.mode == "uid-drop":  # no PID namespace to take the job's processes with it
            kill_uid(self._job_ids(job)[0])

    def cleanup(self, job: KernelJob) -> None:
        self.kill(job)
        for d in (job.ipc_dir, job.work_dir):  # lazily: a uid-drop kernel's cwd may hold one
            if os.path.ismount(d):
                unmount(d)

    def _full_folders(self, job: KernelJob) -> list[str]:
        """The kernel's size-limited folders that are (nearly) full now."""
        full = []
        for name, d in (("working", job.work_dir), ("IPC", job.ipc_dir)):
            try:
                st = os.statvfs(d)
            except OSError:
                continue
            if os.path.ismount(d) and st.f_bavail * st.f_frsize < 64 * 1024:
                full.append(name)
        return full

    def describe_exit(self, job: KernelJob, returncode: int | None) -> str:
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
        why = describe_returncode(returncode, job.limits)
        if full := self._full_folders(job):
            why += (f"; its {' and '.join(full)} folder{'s were' if len(full) > 1 else ' was'} full "
                    f"(the disk limit is {job.limits.disk_mb} MB per folder)")
        return why


def _cgroups_available() -> bool:
    """Can we make a memory+pids cgroup here (v2 with the memory controller, or v1)?"""
    if os.geteuid() != 0:
        return False
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return "memory" in (root / "cgroup.controllers").read_text() and os.access(root, os.W_OK)
    return os.access(root / "memory", os.W_OK) and os.access(root / "pids", os.W_OK)
