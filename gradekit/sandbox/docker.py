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
  ZeroMQ ``ipc://`` sockets work unchanged on both sides; no port is ever opened);
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
import shlex
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from .base import Job, Limits, Sandbox, SandboxUnavailable, describe_returncode
from .gpus import docker_gpus_arg, visible_env

#: uid/gid the kernel runs as inside the container (the image's "student" user).
CONTAINER_UID = 10001
CONTAINER_GID = 10001
WORKDIR = "/work"
SUBMISSION_MOUNT = "/mnt/submission"
#: The assignment's data, read-only; like the process backend: ``data/`` in the working
#: directory, and ``GRADEKIT_DATA`` says where.
DATA_MOUNT = WORKDIR + "/data"
LABEL_JOB = "gradekit.job"
LABEL_OWNER = "gradekit.owner"
LABEL_DEADLINE = "gradekit.deadline"
#: Bytes of the container's own stdout/stderr (not cell output, which travels over the
#: Jupyter channels) that reach the grader's kernel log; the rest is drained and dropped,
#: so a notebook writing to /proc/1/fd/1 cannot fill the host's disk.
CONSOLE_BYTES = 1024 * 1024
#: Seconds the container may live past ``limits.total_timeout`` (the graders' calls into
#: the kernel happen after the notebook has run), unless the sandbox is told otherwise.
DEFAULT_GRADING_ALLOWANCE = 600.0
_DOCKER_TIMEOUT = 60


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _csv(*fields: str) -> str:
    """One CSV record (``--mount`` values): paths with commas or quotes stay whole."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(fields)
    return buf.getvalue()


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
                 build_missing: bool = True, grading_allowance: float = DEFAULT_GRADING_ALLOWANCE,
                 shm_mb: int = 64, nofile: int = 4096, runtime: str | None = None,
                 extra_args: tuple[str, ...] = ()):
        self._image = image
        self.torch = torch
        self._docker = docker
        self.build_missing = build_missing
        self.grading_allowance = grading_allowance
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
            from .. import image as image_mod
            try:
                self._docker = image_mod.docker_cli()
            except image_mod.ImageError as e:
                raise SandboxUnavailable(str(e)) from None
        return self._docker

    @property
    def image(self) -> str:
        if self._image is None:
            from .. import image as image_mod
            self._image = image_mod.resolve(self.torch)
        return self._image

    def _cli(self, *args: str, timeout: float = _DOCKER_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run([self.docker, *args], capture_output=True, text=True,
                              timeout=timeout, env=self._client_env())

    @staticmethod
    def _client_env() -> dict[str, str]:
        """The docker *client's* environment: the host's Docker settings, nothing else."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "USER", "XDG_RUNTIME_DIR")
        env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("DOCKER_")}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        return env

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
        from .. import image as image_mod
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

    def prepare(self, job: Job) -> None:
        job.root.mkdir(parents=True, exist_ok=True)
        job.work_dir.mkdir(parents=True, exist_ok=True)
        job.ipc_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(job.root, 0o700)
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

    def container_name(self, job: Job) -> str:
        with self._lock:
            name = self._names.get(job.id)
            if name is None:
                name = f"gradekit-{_safe_name(job.id)}-{secrets.token_hex(3)}"
                self._names[job.id] = name
            return name

    def deadline(self, job: Job) -> float:
        """Seconds the container may live at most (notebook + graders' calls)."""
        return float(job.limits.total_timeout) + float(self.grading_allowance)

    def container_environment(self, job: Job) -> dict[str, str]:
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
        if job.data_dir is not None:
            env["GRADEKIT_DATA"] = DATA_MOUNT
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env.update(visible_env(job.gpus))
        # Host paths the engine may have put in job.env that mean something else inside.
        for key, value in list(env.items()):
            if value == str(job.work_dir):
                env[key] = WORKDIR
        return env

    def environment(self, job: Job) -> dict[str, str]:
        """The environment of the Popen'd *docker client* (the kernel's own is passed in
        the command with ``-e``; see :meth:`container_environment`)."""
        return self._client_env()

    def run_args(self, job: Job) -> list[str]:
        """Every ``docker run`` option for ``job`` (no command, no image)."""
        lim: Limits = job.limits
        name = self.container_name(job)
        mem = max(16, int(lim.memory_mb))
        disk = max(1, int(lim.disk_mb))
        fsize = max(1, int(lim.file_size_mb)) * 1024 * 1024
        args = [
            "--name", name,
            "--label", f"{LABEL_JOB}={job.id}",
            "--label", f"{LABEL_OWNER}={_owner()}",
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
        if job.data_dir is not None:
            data = Path(job.data_dir).resolve()
            args += ["--mount", _csv("type=bind", f"source={data}", f"target={DATA_MOUNT}",
                                     "readonly")]
            # Data readable by its group only (e.g. 0750 root:course): join that group.
            try:
                st = data.stat()
                if not st.st_mode & 0o005 and st.st_mode & 0o050 and st.st_gid != 0:
                    args += ["--group-add", str(st.st_gid)]
            except OSError:
                pass
        if self.runtime:
            args += ["--runtime", self.runtime]
        args += docker_gpus_arg(job.gpus)
        env = self.container_environment(job)
        env["GRADEKIT_DEADLINE"] = str(int(self.deadline(job)))
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        args += list(self.extra_args)
        return args

    def grant_connection_file(self, job: Job) -> None:
        """The provisioner just wrote the connection file: let the container's user read it."""
        self._give_to_container(job.ipc_dir)

    def wrap(self, kernel_cmd: list[str], job: Job) -> list[str]:
        from ..image import IMAGE_PYTHON
        self._give_to_container(job.ipc_dir)
        with self._lock:
            restarted = job.id in self._started
            self._started.add(job.id)
        name = self.container_name(job)
        if restarted and name not in self._removed:
            # A kernel restart within the job: the previous container must be gone first.
            remove_containers([name], docker=self.docker)
        self._removed.discard(name)
        run = [self.docker, "run", *self.run_args(job), self.image, IMAGE_PYTHON, *kernel_cmd[1:]]
        self._register(name, job)
        self._start_timer(job)
        return console_capped(run, self.console_bytes, container=name, docker=self.docker)

    def kill(self, job: Job) -> None:
        """Stop the container at once. It is removed in the same call (``docker rm -f``
        kills first): one docker call instead of two on every shutdown."""
        name = self._names.get(job.id)
        if name and name not in self._removed:
            remove_containers([name], docker=self.docker)
            self._removed.add(name)

    def cleanup(self, job: Job) -> None:
        name = self._names.get(job.id)
        if timer := self._timers.get(job.id):
            timer.cancel()
        if name and name not in self._removed:
            remove_containers([name], docker=self.docker)
        self.forget(job)

    def forget(self, job: Job) -> None:
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

    def describe_exit(self, job: Job, returncode: int | None) -> str:
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

    def inspect_state(self, job: Job) -> dict | None:
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

    def _start_timer(self, job: Job) -> None:
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

    def _register(self, name: str, job: Job) -> None:
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


def console_capped(cmd: list[str], limit: int = CONSOLE_BYTES, *, container: str | None = None,
                   docker: str = "docker") -> list[str]:
    """Run ``cmd`` (``docker run ...``) with its console cut to ``limit`` bytes, and with
    the container removed if the grader that started it dies.

    A POSIX shell script, the process jupyter_client Popens:

    * ``cmd 2>&1 | { head -c LIMIT; cat >/dev/null; }``: the docker client never blocks
      (the pipe is always drained) and is never killed by SIGPIPE, so a notebook writing
      a gigabyte to ``/proc/1/fd/1`` costs the host no disk;
    * a watcher polls the grader's pid (the shell's parent) once a second and runs
      ``docker rm -f`` when it is gone: a grader killed with SIGKILL (a batch's hard
      limit, Ctrl-C on the batch) leaves no running container behind. The docker client
      sits in a session of its own (jupyter_client starts kernels so), so killing the
      grader's process group does not reach it.

    All of these share the Popen'd process group, which jupyter_client signals as a whole.
    """
    watch = ""
    if container:
        watch = (f'P=$PPID; ( while kill -0 "$P" 2>/dev/null; do sleep 1; done; '
                 f'exec {shlex.quote(docker)} rm -f {shlex.quote(container)} ) >/dev/null 2>&1 & W=$!; ')
    script = (watch + f'"$@" 2>&1 | {{ head -c {int(limit)}; cat >/dev/null; }}'
              + ('; kill "$W" 2>/dev/null; exit 0' if container else ""))
    return ["/bin/sh", "-c", script, "gradekit-kernel", *cmd]


def docker_command(wrapped: list[str]) -> list[str]:
    """The ``docker run ...`` inside a command made by :meth:`DockerSandbox.wrap`."""
    return wrapped[4:] if wrapped[:2] == ["/bin/sh", "-c"] else wrapped


def _resolve_quietly(torch: bool) -> str | None:
    from .. import image as image_mod
    try:
        return image_mod.resolve(torch)
    except Exception:
        return None


def _has_files(d: Path) -> bool:
    try:
        return any(d.iterdir())
    except OSError:
        return False


def remove_containers(names: list[str], docker: str | None = None) -> None:
    """``docker rm -f`` the containers (idempotent: missing ones are fine)."""
    if not names:
        return
    if docker is None:
        from ..image import docker_cli
        docker = docker_cli()
    try:
        subprocess.run([docker, "rm", "-f", "-v", *names], capture_output=True, timeout=120,
                       env=DockerSandbox._client_env())
    except (OSError, subprocess.SubprocessError):
        pass


def list_containers(docker: str | None = None, job_id: str | None = None) -> list[dict]:
    """gradekit's containers on the engine: name, job, owner, deadline, state."""
    if docker is None:
        from ..image import docker_cli
        docker = docker_cli()
    flt = f"label={LABEL_JOB}" + (f"={job_id}" if job_id else "")
    res = subprocess.run([docker, "ps", "-a", "--filter", flt, "--format", "{{json .}}"],
                         capture_output=True, text=True, timeout=60,
                         env=DockerSandbox._client_env())
    out = []
    for line in res.stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        labels = dict(kv.split("=", 1) for kv in (row.get("Labels") or "").split(",") if "=" in kv)
        out.append({"name": row.get("Names"), "job": labels.get(LABEL_JOB),
                    "owner": labels.get(LABEL_OWNER, ""),
                    "deadline": int(labels.get(LABEL_DEADLINE, "0") or 0),
                    "state": row.get("State"), "status": row.get("Status")})
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(docker: str | None = None, *, everything: bool = False) -> list[str]:
    """Remove containers left behind by graders that died (or, with ``everything``, all
    of gradekit's containers). Returns the names removed.

    A container is stale when its grader (``gradekit.owner`` = host:pid on this host) no
    longer runs, or when its deadline has passed. Containers of graders that still run
    (another ``gradekit grade`` beside this one) are left alone.
    """
    host = socket.gethostname()
    now = time.time()
    stale = []
    for c in list_containers(docker):
        owner_host, _, pid = c["owner"].rpartition(":")
        dead_owner = owner_host == host and pid.isdigit() and not _pid_alive(int(pid))
        mine = owner_host == host and pid == str(os.getpid())
        if everything or (not mine and dead_owner) or (c["deadline"] and c["deadline"] < now):
            stale.append(c["name"])
    remove_containers(stale, docker)
    return stale


def engine_help(reason: str) -> str:
    """What the user must do when no Docker engine answers."""
    root = os.geteuid() == 0
    debian = Path("/etc/debian_version").exists()
    lines = [f"the Docker backend is unavailable: {reason}.", "To use it:"]
    if root and debian:
        lines.append("  scripts/ensure-docker.sh      (installs docker.io, starts dockerd, builds the images)")
    elif debian:
        lines.append("  sudo scripts/ensure-docker.sh (installs docker.io, starts dockerd, builds the images)")
    else:
        lines.append("  install Docker Engine (https://docs.docker.com/engine/install/) and start it")
    lines.append("  or: sudo systemctl start docker   (when Docker is installed but not running)")
    if not root:
        lines.append("  and make sure you may use it: sudo usermod -aG docker $USER (then log in again)")
    lines.append("Or grade without containers: --sandbox process (weaker isolation).")
    return "\n".join(lines)


def engine_available(docker: str | None = None, timeout: float = 10) -> bool:
    """True when a Docker engine answers (cheap; for choosing the default backend)."""
    try:
        if docker is None:
            from ..image import docker_cli
            docker = docker_cli()
        res = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"],
                             capture_output=True, text=True, timeout=timeout,
                             env=DockerSandbox._client_env())
        return res.returncode == 0 and bool(res.stdout.strip())
    except Exception:
        return False
