"""Run a command confined: new namespaces, a filesystem of its own, limits, an unprivileged user.

Two modes. **namespaces** (the default, where the OS allows ``unshare``) does all the
steps below. **uid-drop**, for containers that refuse namespaces (Docker's default
seccomp profile, Gradescope), does only step 5 with per-process limits: the kernel runs as
a uid of its own with no way back to root, but sees the host's filesystem and network, so
the caller must keep secrets unreadable to other users (see ``ProcessSandbox``).

Invoked by the process backend as ``python -m gradekit.sandbox.confine SPEC_JSON -- CMD``
while still root. Steps, in this order because each needs the privilege the next drops:

1. ``unshare`` network, PID, IPC and UTS namespaces: the kernel sees no network (only a
   downed loopback), no other process, and has a host name of its own.
2. fork: the child is PID 1 of the new PID namespace, so when it exits every process it
   left behind is killed by the kernel (no background process outlives the notebook).
3. In the child: a mount namespace of its own, and a root built from an allow-list
   (:func:`_build_root`): the system folders and the interpreter read-only, a minimal /etc
   and /dev, fresh /proc and /sys, private tmpfs /tmp, /var/tmp, /dev/shm (the disk limit)
   and /run, its job folders and data sets; then ``pivot_root`` into it, the host's root
   detached. Nothing else of the host exists for the kernel.
4. Move the child into a memory+pids cgroup when the host offers one; set rlimits.
5. Drop to the sandbox uid/gid with no supplementary groups and ``no_new_privs`` (no
   setuid binary can raise it again), then exec the kernel.

The parent stays (root, outside the PID namespace, on the host's root) only to wait, remove
the cgroup, and write ``exit.json`` (signal, OOM) for :func:`ProcessSandbox.describe_exit`.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
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


def mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
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


# The allow-list (namespaces mode). System folders a Python kernel needs, read-only; the
# usrmerge links among them (/lib -> usr/lib) are made again as links, never bound.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# /etc: these few files, copied (the dynamic loader, name lookup, time zone); passwd and group
# are written with only root, nobody and the kernel's own user; never shadow, hosts or the rest.
ETC_FILES = ("nsswitch.conf", "ld.so.cache", "ld.so.conf", "localtime", "timezone", "os-release", "mime.types")
ETC_DIRS = ("ld.so.conf.d", "ssl/certs")  # bound read-only
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
HOSTNAME = "gradekit"
STAGE = "/tmp"  # where the new root is built, in the child's own mount namespace (sources held by fd)
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
MNT_DETACH = 2


class _Held:
    """A host path held open (O_PATH) before the new root hides it, bound by descriptor later."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_PATH | os.O_CLOEXEC)

    @property
    def source(self) -> str:
        return f"/proc/self/fd/{self.fd}"


def _mountinfo() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of this namespace, octal escapes decoded."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            out.append((point, set(fields[5].split(","))))
    return out


_KEEP_FLAGS = {"noexec": MS_NOEXEC, "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21}


def _read_only(target: str) -> None:
    """Remount ``target`` and every mount below it read-only, nosuid, nodev (a bind mount's
    flags apply per mount, so a recursive bind needs this for each)."""
    for point, opts in _mountinfo():
        if point == target or point.startswith(target.rstrip("/") + "/"):
            keep = sum(flag for name, flag in _KEEP_FLAGS.items() if name in opts)
            mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | keep)


def _bind(held: _Held, target: str, read_only: bool) -> None:
    """Bind a held folder (or device) at ``target`` inside the stage, at the same path."""
    if os.path.isdir(held.source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    mount(held.source, target, None, MS_BIND | MS_REC)
    if read_only:
        _read_only(target)
    os.close(held.fd)


def _host_entries(path: str, ids: set[int]) -> str:
    """Lines of passwd/group whose numeric id (third field) is one of ``ids``."""
    try:
        with open(path) as fh:
            return "".join(line for line in fh if line.count(":") >= 3 and line.split(":")[2].isdigit()
                           and int(line.split(":")[2]) in ids)
    except OSError:
        return ""


def _etc_contents(spec: dict) -> tuple[dict[str, bytes], dict[str, str]]:
    """The new /etc, read from the host's before it is hidden: (files, links), by name."""
    files = {
        "passwd": _host_entries("/etc/passwd", {0, 65534, spec["uid"]}).encode(),
        "group": _host_entries("/etc/group", {0, 65534, spec["gid"]}).encode(),
        "hosts": f"127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost\n".encode(),
        "hostname": (HOSTNAME + "\n").encode(),
    }
    links = {}
    for name in ETC_FILES:
        path = os.path.join("/etc", name)
        try:
            if os.path.islink(path):  # /etc/localtime -> /usr/share/zoneinfo/...: resolves inside
                links[name] = os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as fh:
                    files[name] = fh.read()
        except OSError:
            continue
    return files, links


def _write_etc(root: str, files: dict[str, bytes], links: dict[str, str]) -> None:
    os.makedirs(f"{root}/etc", exist_ok=True)
    for name, content in files.items():
        with open(f"{root}/etc/{name}", "wb") as fh:
            fh.write(content)
    for name, target in links.items():
        os.symlink(target, f"{root}/etc/{name}")


def _devices(spec: dict) -> list[tuple[str, _Held]]:
    names = [f"/dev/{d}" for d in DEVICES]
    if spec.get("gpus"):  # the kernel was leased GPUs: the driver's nodes (CUDA_VISIBLE_DEVICES picks)
        names += sorted(os.path.join("/dev", d) for d in os.listdir("/dev") if d.startswith("nvidia"))
    return [(n, _Held(n)) for n in names if os.path.exists(n)]


def _make_dev(root: str, devices: list[tuple[str, _Held]]) -> None:
    """A minimal /dev: the harmless character devices bound from the host, a private /dev/shm."""
    os.makedirs(f"{root}/dev")
    mount("tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for name, held in devices:
        _bind(held, root + name, read_only=False)
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{link}")
    os.mkdir(f"{root}/dev/shm")


def _make_sys(root: str, host_sys: _Held | None) -> None:
    """A fresh sysfs (read-only) shows this network namespace's devices only: just lo. Where
    the OS refuses one, the host's top sysfs mount, read-only, without what is mounted on it."""
    os.makedirs(f"{root}/sys", exist_ok=True)
    try:
        mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        if host_sys is not None:
            mount(host_sys.source, f"{root}/sys", None, MS_BIND)
            mount(None, f"{root}/sys", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _pivot(root: str) -> None:
    """Make ``root`` the root of this mount namespace and drop the host's from it."""
    os.chdir(root)
    nr = SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is not None and _libc.syscall(nr, b".", b".") == 0:
        _check(_libc.umount2(b".", MNT_DETACH), "detach the host's root")  # stacked on ours at "."
    else:  # no pivot_root (an initramfs root): move the stage over / and chroot into it
        mount(root, "/", None, 8192)  # MS_MOVE
        os.chroot(".")
    os.chdir("/")


def _build_root(spec: dict) -> None:
    """Namespaces mode: the kernel's whole filesystem, from an allow-list (no deny-list to forget):
    system folders and the interpreter read-only, a minimal /etc and /dev, fresh /proc and /sys,
    private tmpfs scratch folders, its own job folders and the data sets, nothing else."""
    os.umask(0o022)  # mount points we create must stay traversable for the kernel's user
    _check(_libc.unshare(CLONE_NEWNS), "unshare")  # our own: the parent keeps the host's root
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    system = [(d, _Held(d)) for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    links = [(d, os.readlink(d)) for d in SYSTEM_DIRS if os.path.islink(d)]
    etc_dirs = [(f"/etc/{d}", _Held(f"/etc/{d}")) for d in ETC_DIRS if os.path.isdir(f"/etc/{d}")]
    etc_files, etc_links = _etc_contents(spec)
    devices = _devices(spec)
    host_sys = _Held("/sys") if os.path.isdir("/sys") else None
    # Read-only: the interpreter(s); read-write: the job's folders, at the same paths as on the
    # host (the connection file names the IPC folder by its absolute path); data under data_root.
    own = [(d, _Held(d), True) for d in spec["expose"]]
    own += [(spec["work_dir"], _Held(spec["work_dir"]), False), (spec["ipc_dir"], _Held(spec["ipc_dir"]), False)]
    own += [(os.path.join(spec["data_root"], name), _Held(src), True) for name, src in spec.get("data", [])]
    own.sort(key=lambda t: t[0])  # a parent before anything bound inside it

    root = STAGE
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=755")
    for d, held in system:
        _bind(held, root + d, read_only=True)
    for d, target in links:
        os.symlink(target, root + d)
    _write_etc(root, etc_files, etc_links)
    for d, held in etc_dirs:
        _bind(held, root + d, read_only=True)
    _make_dev(root, devices)
    os.makedirs(f"{root}/proc")
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _make_sys(root, host_sys)
    # Private scratch, each bounded by the disk limit; /run empty and root's (nothing persists).
    scratch = f"size={spec['disk_mb']}m,mode=1777"
    for d in spec["scratch"]:
        os.makedirs(root + d, exist_ok=True)
        mount("tmpfs", root + d, "tmpfs", MS_NOSUID | MS_NODEV, scratch)
    os.makedirs(f"{root}/run")
    mount("tmpfs", f"{root}/run", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=755")
    for d, held, read_only in own:
        _bind(held, root + d, read_only)
    if host_sys is not None:
        os.close(host_sys.fd)
    _pivot(root)
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _libc.sethostname(HOSTNAME.encode(), len(HOSTNAME))


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
    _build_root(spec)
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
    # The mount namespace is the child's alone (its pivot_root must not move our root, which
    # still writes exit.json and removes the cgroup); these others it enters at the fork.
    _check(_libc.unshare(CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    os.chdir("/")  # hold no job folder busy: the host unmounts them after the kernel
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
