"""The Docker engine as gradekit uses it: its client, gradekit's containers, and help.

Everything here runs the ``docker`` client (:func:`image.docker_cli`) with only the host's
Docker settings in its environment. Containers carry labels (``gradekit.job``,
``gradekit.owner``, ``gradekit.deadline``) so that :func:`sweep` can remove those of a
grader that died.
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

from . import image as image_mod

LABEL_JOB = "gradekit.job"
LABEL_OWNER = "gradekit.owner"
LABEL_DEADLINE = "gradekit.deadline"
#: Bytes of the container's own stdout/stderr (not cell output, which travels over the
#: Jupyter channels) that reach the grader's kernel log; the rest is drained and dropped,
#: so a notebook writing to /proc/1/fd/1 cannot fill the host's disk.
CONSOLE_BYTES = 1024 * 1024


def owner() -> str:
    """This grader, as the ``gradekit.owner`` label names it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def client_env() -> dict[str, str]:
    """The docker *client's* environment: the host's Docker settings, nothing else."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "USER", "XDG_RUNTIME_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("DOCKER_")}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


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


def remove_containers(names: list[str], docker: str | None = None) -> None:
    """``docker rm -f`` the containers (idempotent: missing ones are fine)."""
    if not names:
        return
    if docker is None:
        docker = image_mod.docker_cli()
    try:
        subprocess.run([docker, "rm", "-f", "-v", *names], capture_output=True, timeout=120,
                       env=client_env())
    except (OSError, subprocess.SubprocessError):
        pass


def list_containers(docker: str | None = None, job_id: str | None = None) -> list[dict]:
    """gradekit's containers on the engine: name, job, owner, deadline, state."""
    if docker is None:
        docker = image_mod.docker_cli()
    flt = f"label={LABEL_JOB}" + (f"={job_id}" if job_id else "")
    res = subprocess.run([docker, "ps", "-a", "--filter", flt, "--format", "{{json .}}"],
                         capture_output=True, text=True, timeout=60,
                         env=client_env())
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
                             env=client_env())
        return res.returncode == 0 and bool(res.stdout.strip())
    except Exception:
        return False
