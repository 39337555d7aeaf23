"""Run a command confined: new namespaces, hidden paths, limits, an unprivileged user.

Two modes. **namespaces** (the default, where the OS allows ``unshare``) does all the
steps below. **uid-drop**, for containers that refuse namespaces (Docker's default
seccomp profile, Gradescope), does only step 5 with per-process limits: the kernel runs as
a uid of its own with no way back to root, but sees the host's filesystem and network, so
the caller must keep secrets unreadable to other users (see ``ProcessSandbox``).

Invoked by the process backend as ``python -m gradekit.sandbox.confine SPEC_JSON -- CMD``
while still root. Steps, in this order because each needs the privilege the next drops:

1. ``unshare`` mount, network, PID, IPC and UTS namespaces: the kernel sees no network
   (only a downed loopback), no other process, and a private mount table.
2. fork: the child is PID 1 of the new PID namespace, so when it exits every process it
   left behind is killed by the kernel (no background process outlives the notebook).
3. In the child: mount a fresh /proc, cover each secret folder (project, reports, homes)
   with an empty tmpfs, give it private /tmp, /var/tmp and /dev/shm, then bind back only
   what the kernel needs: its interpreter (read-only), its job folders, the data (read-only).
4. Move the child into a memory+pids cgroup when the host offers one; set rlimits.
5. Drop to the sandbox uid/gid with no supplementary groups and ``no_new_privs`` (no
   setuid binary can raise it again), then exec the kernel.

The parent stays (root, outside the PID namespace) only to wait, remove the cgroup, and
write ``exit.json`` (signal, OOM) for :func:`ProcessSandbox.describe_exit`.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
from pathlib import Path

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


def _cgroup_dirs(name: str) -> list[Path]:
    """Cgroup folders for this job: v2 unified, or v1 memory and pids hierarchies."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return [root / "gradekit" / name]
    return [root / c / "gradekit" / name for c in ("memory", "pids") if (root / c).is_dir()]


def _setup_cgroups(name: str, pid: int, memory_mb: int, pids: int) -> list[Path]:
    made = []
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # v2: controllers must be delegated downwards
        for parent in (root, root / "gradekit"):
            try:
                parent.mkdir(exist_ok=True)
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
            except OSError:
                pass
    for d in _cgroup_dirs(name):
        try:
            d.mkdir(parents=True, exist_ok=True)
            made.append(d)
            limit = str(memory_mb * 1024 * 1024)
            for fname, value in (("memory.max", limit), ("memory.swap.max", "0"),
                                 ("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes", limit),
                                 ("pids.max", str(pids))):
                f = d / fname
                if f.exists():
                    try:
                        f.write_text(value)
                    except OSError:
                        pass  # memsw needs swap accounting; the plain limit still holds
            (d / "cgroup.procs").write_text(str(pid))
        except OSError:
            continue
    return made


def _oom_happened(dirs: list[Path]) -> bool:
    for d in dirs:
        for fname in ("memory.events", "memory.oom_control"):
            f = d / fname
            try:
                text = f.read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key in ("oom_kill", "oom") and value.strip() not in ("", "0"):
                    return True
        f = d / "memory.failcnt"
        try:
            if int(f.read_text()) > 0:
                return True
        except (OSError, ValueError):
            pass
    return False


def _remove_cgroups(dirs: list[Path]) -> None:
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            pass


def _cover_and_bind(spec: dict) -> None:
    """Namespaces mode: a fresh /proc, secrets covered, private scratch, own folders back."""
    os.umask(0o022)  # mount points we create must stay traversable for the kernel's user
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # What the kernel must still reach after the covers below: its interpreter (read-only)
    # and its own job folders. Hold them by file descriptor, cover, then bind them back at
    # the same paths (the connection file names the IPC folder by its absolute path).
    keep = [(d, False) for d in spec["expose"]] + [(spec["work_dir"], True), (spec["ipc_dir"], True)]
    fds = [(d, os.open(d, os.O_PATH | os.O_DIRECTORY), rw) for d, rw in keep]
    # Data sets may live inside a covered folder (the course's data/): held the same way,
    # bound read-only under the data root afterwards.
    data = [(os.path.join(spec["data_root"], name), os.open(src, os.O_PATH | os.O_DIRECTORY))
            for name, src in spec.get("data", [])]
    # Secrets (graders, reference, masters, reports, homes): empty root-owned folders.
    for hidden in spec["cover"]:
        if os.path.isdir(hidden):
            _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        elif os.path.exists(hidden):
            _mount("/dev/null", hidden, None, MS_BIND)
    # Private scratch space; every other job's folder under /tmp disappears with it.
    scratch = f"size={spec['disk_mb']}m,mode=1777"
    for d in spec["scratch"]:
        if os.path.isdir(d):
            _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, scratch)
    for d, fd, rw in fds:
        os.makedirs(d, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", d, None, MS_BIND | MS_REC)
        if not rw:
            _mount(None, d, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    for target, fd in data:
        os.makedirs(target, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)


def _limit_and_exec(spec: dict, cmd: list[str]) -> None:
    """Both modes: rlimits, then the unprivileged user with no way back, then the kernel."""
    lim = spec["limits"]
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    cpu = int(lim["total_timeout"] * max(1.0, lim["cpus"]) * 2 + 60)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    if not spec["cgroups"]:  # no cgroup here: per-process limits instead
        # RLIMIT_DATA bounds the memory written (heap, private mappings); address space
        # would not do: numpy and torch reserve far more of it than they touch.
        resource.setrlimit(resource.RLIMIT_DATA, (lim["memory_mb"] * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_NPROC, (lim["pids"],) * 2)
    os.chdir(spec["work_dir"])
    uid, gid = spec["uid"], spec["gid"]
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise OSError("still root after dropping privileges")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    os.execve(cmd[0], cmd, dict(os.environ))


def _child(spec: dict, cmd: list[str], go_r: int) -> None:
    os.read(go_r, 1)  # wait until the parent has put us in the cgroup
    _cover_and_bind(spec)
    _limit_and_exec(spec, cmd)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    cmd = argv[argv.index("--") + 1:]
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")  # the worker died: so do we
    if not spec["namespaces"]:  # uid-drop mode: the container forbids namespaces
        try:
            _limit_and_exec(spec, cmd)
        except BaseException as exc:  # never run the kernel as root
            print(f"gradekit sandbox: could not confine the kernel: {exc}", file=sys.stderr, flush=True)
        return 121
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # our mounts never reach the host
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        try:
            _child(spec, cmd, go_r)
        except BaseException as exc:  # report why, then die: never run unconfined
            print(f"gradekit sandbox: could not confine the kernel: {exc}", file=sys.stderr, flush=True)
        os._exit(121)
    os.close(go_r)
    cgroups = _setup_cgroups(spec["name"], pid, spec["limits"]["memory_mb"], spec["limits"]["pids"])
    if spec["cgroups"] and not cgroups:
        os.kill(pid, signal.SIGKILL)
        print("gradekit sandbox: the cgroup for memory and process limits could not be made", file=sys.stderr)
        return 121
    os.write(go_w, b"1")
    os.close(go_w)

    # Forward polite signals; SIGKILL of our process group reaches the child directly.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: os.kill(pid, signal.SIGKILL if s == signal.SIGTERM else s))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            status = 0
            break
        except InterruptedError:
            continue
    oom = _oom_happened(cgroups)
    _remove_cgroups(cgroups)
    record = {"oom": oom, "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
              "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}
    try:
        Path(spec["exit_file"]).write_text(json.dumps(record))
    except OSError:
        pass
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
