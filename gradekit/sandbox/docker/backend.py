"""The Docker backend: one hardened, throw-away container per submission.

:meth:`DockerSandbox.wrap` turns the kernel command into an attached ``docker run`` (the
Popen'd client lives exactly as long as the container), with:

* no network (``--network none``), a non-root user (10001), every capability dropped,
  ``no-new-privileges``, a read-only root file system, Docker's default seccomp profile;
* a private tmpfs working directory (``/work``, ``limits.disk_mb``) and ``/tmp``, both
  ``nosuid,nodev``; the submission's own files (``job.work_dir`` on the host) are copied
  into ``/work`` from a read-only mount when the container starts;
* memory without swap, CPUs, pids, file size and open files limited from ``job.limits``;
* ``--init`` (tini) as PID 1, so orphans are reaped and everything dies with the kernel;
* the job's IPC folder bind-mounted at the *same absolute path* (the connection file and
  ZeroMQ ``ipc://`` sockets work unchanged on both sides; no port is ever opened); as root,
  with the engine in our mount namespace, that folder is a tmpfs of ``limits.disk_mb`` for
  the container's lifetime (issue 17.2), else a plain host folder without a size limit;
* the assignment data mounted read-only at ``/work/data`` (``GRADEKIT_DATA``), nothing
  else of the host: the
  graders, reference code and reports (``job.hidden_paths``) are never mounted;
* GPUs only as Docker device requests for the devices the scheduler leased to the job
  (``job.gpus``), and ``NVIDIA_VISIBLE_DEVICES=void`` when it has none;
* labels (``gradekit.job``, ``gradekit.owner``, ``gradekit.deadline``) so that a later run
  can sweep containers left behind by a grader that crashed;
* a wall-clock deadline enforced twice: by a host-side timer that ``docker kill``s the
  container, and inside by ``timeout -s KILL`` in the image's entry point (the backstop
  when the grader itself died).

Containers are not started with ``--rm``: :meth:`describe_exit` must still be able to
``docker inspect`` a dead one (out of memory?). :meth:`cleanup` removes it (``docker rm
-f``, idempotent); every container a process started is also removed at its exit
(``atexit``, which runs on Ctrl-C), and :func:`sweep` removes those of dead graders.
"""
from __future__ import annotations

import atexit
import csv
import io
import json
import os
import re
import secrets
import subprocess
import threading
import time
from pathlib import Path

from ...model import KernelJob, Limits
from ..base import Sandbox, SandboxUnavailable, describe_returncode
from ..cleanup import unmount
from ..gpus import docker_gpus_arg, visible_env
from . import image as image_mod
from .engine import (CONSOLE_BYTES, LABEL_DEADLINE, LABEL_JOB, LABEL_OWNER, client_env, console_capped,
                     engine_help, owner, remove_containers, sweep)

#: uid/gid the kernel runs as inside the container (the image's "student" user).
CONTAINER_UID = 10001
CONTAINER_GID = 10001
WORKDIR = "/work"
SUBMISSION_MOUNT = "/mnt/submission"
#: The assignment's data sets, each read-only at ``/data/<name>``; ``GRADEKIT_DATA`` says where
#: (the process backend's root is elsewhere: notebooks read the variable, never the path).
DATA_MOUNT = "/data"
_DOCKER_TIMEOUT = 60


def _csv(*fields: str) -> str:
    """One CSV record (``--mount`` values): paths with commas or quotes stay whole."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(fields)
    return buf.getvalue()


def engine_shares_our_mounts() -> bool:
    """Does the local Docker engine resolve bind sources in our mount namespace? Only then
    does a tmpfs we mount on a folder reach the container (a remote engine, or one in a
    namespace of its own, would bind the empty folder under it, and the kernel never start)."""
    if os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock") not in (
            "unix:///var/run/docker.sock", "unix:///run/docker.sock"):
        return False
    for pid_file in ("/run/docker.pid", "/var/run/docker.pid"):
        try:
            pid = int(Path(pid_file).read_text())
            return os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino
        except (OSError, ValueError):
            continue
    return False


def _bound_ipc(job: KernelJob) -> None:
    """Issue 17.2: the IPC folder, which the container's user can write, as a tmpfs of the
    disk limit where we may mount one the engine sees; else it stays a plain folder."""
    from ..process.confine import MS_NODEV, MS_NOSUID, mount
    if os.geteuid() != 0 or os.path.ismount(job.ipc_dir) or not engine_shares_our_mounts():
        return
    try:
        mount("tmpfs", str(job.ipc_dir), "tmpfs", MS_NOSUID | MS_NODEV,
              f"size={max(1, int(job.limits.disk_mb))}m,mode=700")
    except OSError:
        pass


def _safe_name(text: str, limit: int = 40) -> str:
    name = re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.") or "job"
    return name[:limit]


class DockerSandbox(Sandbox):
    """Run each submission's kernel in its own hardened container."""

    name = "docker"
    isolated = True

    #: every live container started by any DockerSandbox in this process (name -> job id)
    _live: dict[str, str] = {}
    _live_lock = threading.Lock()
    _atexit_registered = False
    _swept = False

    def __init__(self, image: str | None = None, *, torch: bool = True, docker: str | None = None,
                 build_missing: bool = True, shm_mb: int = 64, nofile: int = 4096,
                 runtime: str | None = None, extra_args: tuple[str, ...] = ()):
        super().__init__(image=image, torch=torch, docker=docker, build_missing=build_missing, shm_mb=shm_mb,
                         nofile=nofile, runtime=runtime, extra_args=list(extra_args))
        self._image = image
        self.torch = torch
        self._docker = docker
        self.build_missing = build_missing
        self.shm_mb = shm_mb
        self.nofile = nofile
        self.runtime = runtime
        self.extra_args = tuple(extra_args)
        self.console_bytes = CONSOLE_BYTES
        self._names: dict[str, str] = {}            # job id -> container name
        self._timers: dict[str, threading.Timer] = {}
        self._timed_out: set[str] = set()
        self._started: set[str] = set()
        self._removed: set[str] = set()          # container names already removed
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    @property
    def docker(self) -> str:
        if self._docker is None:
            try:
                self._docker = image_mod.docker_cli()
            except image_mod.ImageError as e:
                raise SandboxUnavailable(str(e)) from None
        return self._docker

    @property
    def image(self) -> str:
        if self._image is None:
            self._image = image_mod.resolve(self.torch)
        return self._image

    def _cli(self, *args: str, timeout: float = _DOCKER_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run([self.docker, *args], capture_output=True, text=True,
                              timeout=timeout, env=client_env())

    # ------------------------------------------------------------------ the contract

    def check(self) -> None:
        """Raise SandboxUnavailable (with the exact steps) unless an engine answers and
        the image exists (building it on first use when ``build_missing``)."""
        ready = os.environ.get("GRADEKIT_DOCKER_READY")
        if ready and ready == (self._image or _resolve_quietly(self.torch)):
            # A parent (``gradekit grade``) checked engine and image a moment ago and swept;
            # its workers skip the three docker calls (about 0.15 s per submission).
            self._image = ready
            return
        try:
            res = self._cli("version", "--format", "{{.Server.Version}}", timeout=20)
        except (OSError, subprocess.SubprocessError) as e:
            raise SandboxUnavailable(engine_help(f"the docker client could not run ({e})")) from None
        if res.returncode != 0 or not res.stdout.strip():
            err = res.stderr.strip().splitlines()
            raise SandboxUnavailable(engine_help(err[-1] if err else "no Docker engine answers"))
        if not DockerSandbox._swept:
            DockerSandbox._swept = True
            try:
                sweep(self.docker)
            except Exception:
                pass
        try:
            if self._image is None:
                self._image = image_mod.ensure(self.torch, build_missing=self.build_missing)
            elif not image_mod.exists(self._image, self.docker):
                if self.build_missing and self._image == image_mod.resolve(self.torch):
                    self._image = image_mod.ensure(self.torch, build_missing=True)
                else:
                    raise image_mod.ImageError(
                        f"the image {self._image} does not exist on this Docker engine. Build "
                        f"the grading image with: gradekit image build"
                        f"{'' if self.torch else ' --light'}")
        except image_mod.ImageError as e:
            raise SandboxUnavailable(str(e)) from None
        os.environ["GRADEKIT_DOCKER_READY"] = self._image

    def prepare(self, job: KernelJob) -> None:
        job.root.mkdir(parents=True, exist_ok=True)
        job.work_dir.mkdir(parents=True, exist_ok=True)
        job.ipc_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(job.root, 0o700)
        _bound_ipc(job)
        self._give_to_container(job.ipc_dir)
        # The submission's files are read (and copied) by the container user.
        for p in [job.work_dir, *job.work_dir.rglob("*")]:
            try:
                if p.is_symlink():
                    continue
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
            except OSError:
                pass

    def _give_to_container(self, path: Path) -> None:
        """Let the container's user create its sockets in ``path`` and read what the
        trusted side put there, but not replace it.

        The folder becomes world-writable with the sticky bit (like /tmp) and stays owned
        by the grader: the kernel can create its IPC sockets, yet cannot delete, rename
        or swap the connection file (a symlink to a host file, or a file pointing the
        bridge at other sockets) after the trusted side wrote it. It lies inside
        ``job.root`` (0700), so no other user of the host can reach it.
        """
        os.chmod(path, 0o1777)
        for p in path.iterdir():
            try:
                if p.is_file() and not p.is_symlink() and p.stat().st_uid == os.geteuid():
                    os.chmod(p, 0o644)
            except OSError:
                pass

    def container_name(self, job: KernelJob) -> str:
        with self._lock:
            name = self._names.get(job.id)
            if name is None:
                name = f"gradekit-{_safe_name(job.id)}-{secrets.token_hex(3)}"
                self._names[job.id] = name
            return name

    def deadline(self, job: KernelJob) -> float:
        """Seconds the container may live at most (notebook + graders' calls)."""
        return job.limits.hard_wall

    def container_environment(self, job: KernelJob) -> dict[str, str]:
        """The kernel's whole environment inside the container (passed with ``-e``)."""
        env = super().environment(job)
        env.update({
            "PATH": "/opt/gradekit/venv/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": WORKDIR,
            "MPLCONFIGDIR": "/tmp/matplotlib",
            "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
            "JUPYTER_DATA_DIR": "/tmp/jupyter-data",
            "IPYTHONDIR": "/tmp/ipython",
            "XDG_CACHE_HOME": "/tmp/cache",
            "TORCH_HOME": "/tmp/torch",
            "GRADEKIT_SANDBOX": "docker",
        })
        if job.data:
            env["GRADEKIT_DATA"] = DATA_MOUNT
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env.update(visible_env(job.gpus))
        # Host paths the engine may have put in job.env that mean something else inside.
        for key, value in list(env.items()):
            if value == str(job.work_dir):
                env[key] = WORKDIR
        return env

    def environment(self, job: KernelJob) -> dict[str, str]:
        """The environment of the Popen'd *docker client* (the kernel's own is passed in
        the command with ``-e``; see :meth:`container_environment`)."""
        return client_env()

    def run_args(self, job: KernelJob) -> list[str]:
        """Every ``docker run`` option for ``job`` (no command, no image)."""
        lim: Limits = job.limits
        name = self.container_name(job)
        mem = max(16, int(lim.memory_mb))
        disk = max(1, int(lim.disk_mb))
        fsize = max(1, int(lim.file_size_mb)) * 1024 * 1024
        args = [
            "--name", name,
            "--label", f"{LABEL_JOB}={job.id}",
            "--label", f"{LABEL_OWNER}={owner()}",
            "--label", f"{LABEL_DEADLINE}={int(time.time() + self.deadline(job)) + 30}",
            "--hostname", "gradekit",
            "--network", "none",
            "--user", f"{CONTAINER_UID}:{CONTAINER_GID}",
            "--read-only",
            "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--init",
            "--ipc", "private",
            "--shm-size", f"{self.shm_mb}m",
            "--pids-limit", str(max(8, int(lim.pids))),
            "--memory", f"{mem}m",
            "--memory-swap", f"{mem}m",
            "--memory-swappiness", "0",
            "--oom-score-adj", "1000",
            "--cpus", f"{max(0.01, float(lim.cpus)):g}",
            "--ulimit", f"fsize={fsize}:{fsize}",
            "--ulimit", "core=0:0",
            "--ulimit", f"nofile={self.nofile}:{self.nofile}",
            "--tmpfs", f"{WORKDIR}:rw,nosuid,nodev,exec,size={disk}m,uid={CONTAINER_UID},"
                       f"gid={CONTAINER_GID},mode=0700",
            "--tmpfs", f"/tmp:rw,nosuid,nodev,exec,size={disk}m,mode=1777",
            "--log-driver", "none",
            "--workdir", WORKDIR,
            "--mount", _csv("type=bind", f"source={job.ipc_dir}", f"target={job.ipc_dir}"),
        ]
        if _has_files(job.work_dir):
            args += ["--mount", _csv("type=bind", f"source={job.work_dir}",
                                     f"target={SUBMISSION_MOUNT}", "readonly")]
        groups = set()
        for d in job.data:
            data = Path(d.source).resolve()
            args += ["--mount", _csv("type=bind", f"source={data}", f"target={DATA_MOUNT}/{d.name}",
                                     "readonly")]
            # Data readable by its group only (e.g. 0750 root:course): join that group.
            try:
                st = data.stat()
                if not st.st_mode & 0o005 and st.st_mode & 0o050 and st.st_gid != 0:
                    groups.add(st.st_gid)
            except OSError:
                pass
        for gid in sorted(groups):
            args += ["--group-add", str(gid)]
        if self.runtime:
            args += ["--runtime", self.runtime]
        args += docker_gpus_arg(job.gpus)
        env = self.container_environment(job)
        env["GRADEKIT_DEADLINE"] = str(int(self.deadline(job)))
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        args += list(self.extra_args)
        return args

    def grant_connection_file(self, job: KernelJob) -> None:
        """The provisioner just wrote the connection file: let the container's user read it."""
        self._give_to_container(job.ipc_dir)

    def wrap(self, kernel_cmd: list[str], job: KernelJob) -> list[str]:
        self._give_to_container(job.ipc_dir)
        with self._lock:
            restarted = job.id in self._started
            self._started.add(job.id)
        name = self.container_name(job)
        if restarted and name not in self._removed:
            # A kernel restart within the job: the previous container must be gone first.
            remove_containers([name], docker=self.docker)
        self._removed.discard(name)
        run = [self.docker, "run", *self.run_args(job), self.image, image_mod.IMAGE_PYTHON, *kernel_cmd[1:]]
        self._register(name, job)
        self._start_timer(job)
        return console_capped(run, self.console_bytes, container=name, docker=self.docker)

    def kill(self, job: KernelJob) -> None:
        """Stop the container at once. It is removed in the same call (``docker rm -f``
        kills first): one docker call instead of two on every shutdown."""
        name = self._names.get(job.id)
        if name and name not in self._removed:
            remove_containers([name], docker=self.docker)
            self._removed.add(name)

    def cleanup(self, job: KernelJob) -> None:
        name = self._names.get(job.id)
        if timer := self._timers.get(job.id):
            timer.cancel()
        if name and name not in self._removed:
            remove_containers([name], docker=self.docker)
        if os.path.ismount(job.ipc_dir):  # after the container: nothing holds it now
            unmount(job.ipc_dir)
        self.forget(job)

    def forget(self, job: KernelJob) -> None:
        """Drop the bookkeeping for ``job`` (timer, names) without touching the engine."""
        with self._lock:
            timer = self._timers.pop(job.id, None)
            name = self._names.pop(job.id, None)
            self._started.discard(job.id)
            self._timed_out.discard(job.id)
        if timer is not None:
            timer.cancel()
        if name:
            self._unregister(name)
            self._removed.discard(name)

    def describe_exit(self, job: KernelJob, returncode: int | None) -> str:
        lim = job.limits
        if job.id in self._timed_out:
            return (f"the notebook ran past the wall-clock limit of {self.deadline(job):.0f} s "
                    f"and its container was stopped")
        state = self.inspect_state(job)
        if state is None:
            if returncode == 125:
                return "the container could not be started (docker run failed)"
            return describe_returncode(returncode, lim)
        if state.get("OOMKilled"):
            return (f"out of memory: the notebook used more than its memory limit of "
                    f"{lim.memory_mb} MB and was stopped")
        code = state.get("ExitCode", returncode)
        if state.get("Running"):
            return "the kernel stopped answering (its container is still running)"
        if state.get("Error"):
            return f"the container failed: {state['Error']}"
        if code == 137:
            return ("the kernel was killed (SIGKILL): it reached a limit (wall-clock deadline, "
                    "memory or processes) or a process in the notebook killed it")
        if code == 124:
            return (f"the notebook ran past the wall-clock limit of {self.deadline(job):.0f} s "
                    f"and its container was stopped")
        if code in (143, 130, 129):
            return f"the kernel was terminated by a signal (exit {code})"
        if code == 0:
            return "the kernel exited (a cell ended the kernel, e.g. exit() or os._exit())"
        return describe_returncode(code, lim)

    # ------------------------------------------------------------------ helpers

    def inspect_state(self, job: KernelJob) -> dict | None:
        name = self._names.get(job.id)
        if not name:
            return None
        try:
            res = self._cli("inspect", "--format", "{{json .State}}", name, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        if res.returncode != 0:
            return None
        try:
            return json.loads(res.stdout)
        except ValueError:
            return None

    def _start_timer(self, job: KernelJob) -> None:
        with self._lock:
            old = self._timers.pop(job.id, None)
        if old is not None:
            old.cancel()

        def fire():
            self._timed_out.add(job.id)
            self.kill(job)

        t = threading.Timer(self.deadline(job), fire)
        t.daemon = True
        t.start()
        with self._lock:
            self._timers[job.id] = t

    def _register(self, name: str, job: KernelJob) -> None:
        with DockerSandbox._live_lock:
            DockerSandbox._live[name] = job.id
            if not DockerSandbox._atexit_registered:
                atexit.register(DockerSandbox.remove_all, self.docker)
                DockerSandbox._atexit_registered = True

    @staticmethod
    def _unregister(name: str) -> None:
        with DockerSandbox._live_lock:
            DockerSandbox._live.pop(name, None)

    @classmethod
    def remove_all(cls, docker: str | None = None) -> None:
        """Remove every container this process started (Ctrl-C, exceptions: atexit)."""
        with cls._live_lock:
            names = list(cls._live)
            cls._live.clear()
        if names:
            remove_containers(names, docker=docker)


def _resolve_quietly(torch: bool) -> str | None:
    try:
        return image_mod.resolve(torch)
    except Exception:
        return None


def _has_files(d: Path) -> bool:
    try:
        return any(d.iterdir())
    except OSError:
        return False
