"""The process backend's modes: namespaces where the OS allows them, uid-drop where a
container refuses them (with its safety rules), same-user without root."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import needs_root
from gradekit.model import KernelJob, Limits
from gradekit.sandbox.base import SandboxUnavailable
from gradekit.sandbox.process.backend import ProcessSandbox, kill_uid, readable_by_others


def test_namespaces_mode_is_chosen_where_allowed():
    needs_root()
    sb = ProcessSandbox()
    sb.check()
    assert sb.mode == "namespaces" and sb.isolated and sb.warning is None, sb.why


@pytest.fixture
def open_tmp():
    """A folder every user can reach (pytest's own tmp_path sits under a 0700 parent).
    Removed with the job folders' tmpfs mounts that a test left (prepare without cleanup)."""
    import tempfile
    from gradekit.sandbox.cleanup import remove_tree
    d = Path(tempfile.mkdtemp(prefix="gk-test-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    remove_tree(d)


def test_readable_by_others(open_tmp):
    tmp_path = open_tmp
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "f").write_text("x")
    os.chmod(tmp_path, 0o755)
    os.chmod(secret, 0o755)
    assert readable_by_others(secret) and readable_by_others(secret / "f")
    os.chmod(secret, 0o711)  # listing refused, but known names still open
    assert readable_by_others(secret)
    os.chmod(secret, 0o700)
    assert not readable_by_others(secret) and not readable_by_others(secret / "f")


def _uid_drop_sandbox(monkeypatch) -> ProcessSandbox:
    needs_root()
    monkeypatch.setitem(ProcessSandbox._probed, sys.executable, (False, "unshare: Operation not permitted"))
    sb = ProcessSandbox()
    sb.check()
    assert sb.mode == "uid-drop" and "network" in sb.warning
    return sb


def test_uid_drop_refuses_readable_secrets(open_tmp, monkeypatch):
    tmp_path = open_tmp
    sb = _uid_drop_sandbox(monkeypatch)
    secret = tmp_path / "graders"
    secret.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    job = KernelJob(id="j", root=tmp_path / "run" / "job", limits=Limits(), hidden_paths=(secret,))
    job.root.mkdir(parents=True)
    with pytest.raises(SandboxUnavailable, match="could read .*graders.*chmod 700"):
        sb.prepare(job)
    os.chmod(secret, 0o700)
    sb.prepare(job)  # unreadable now: fine
    uid = os.stat(job.work_dir).st_uid
    assert uid >= 200_000_000 and oct(os.stat(job.work_dir).st_mode)[-3:] == "700"


def test_uid_drop_jobs_get_their_own_uids_and_leftovers_are_killed(tmp_path, monkeypatch):
    sb = _uid_drop_sandbox(monkeypatch)
    a = KernelJob(id="a", root=tmp_path / "a", limits=Limits())
    b = KernelJob(id="b", root=tmp_path / "b", limits=Limits())
    assert sb._job_ids(a) != sb._job_ids(b)
    uid = sb._job_ids(a)[0]
    orphan = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sleep", "300"])
    time.sleep(0.3)
    sb.cleanup(a)
    assert orphan.wait(timeout=5) == -9
    assert kill_uid(uid) == 0


def test_interpreter_outside_the_system_folders_is_bound_in(monkeypatch):
    """The kernel's root is built from an allow-list: an interpreter outside /usr (a venv in
    a clone under /tmp, CI's) is bound in read-only; one under /usr is there already."""
    import gradekit.sandbox.process.backend as process
    monkeypatch.setattr(process, "_interpreter_dirs", lambda: ["/tmp/clone/.venv", "/tmp/clone/.venv/sub", "/usr"])
    sb = ProcessSandbox()
    sb._ids = (1, 1)
    spec = sb._spec(KernelJob(id="j", root=Path("/tmp/gk-x/j"), limits=Limits()))
    assert spec["expose"] == ["/tmp/clone/.venv"] and "/tmp" in spec["scratch"] and "cover" not in spec


# -- namespaces mode: the kernel's filesystem (issues 17.2 and 17.8) ------------------------

PROBE = """
import json, os, socket
seen = {"top": sorted(os.listdir("/")), "run": os.listdir("/run"), "dev": sorted(os.listdir("/dev")),
        "etc": sorted(os.listdir("/etc")), "users": [l.split(":")[0] for l in open("/etc/passwd")],
        "host": socket.gethostname(), "cwd": os.getcwd(), "given": sorted(os.listdir("."))}
for key, path in (("run-lock", "/run/lock/gk"), ("run-file", "/run/gk"), ("root", "/gk"), ("usr", "/usr/gk")):
    try:
        open(path, "w").close(); seen[key] = "WROTE"
    except OSError as e:
        seen[key] = e.strerror
for key, where in (("work", "."), ("ipc", os.environ["GK_IPC"]), ("tmp", "/tmp")):
    try:
        with open(os.path.join(where, "fill"), "wb") as f:
            for _ in range(%(mb)d):
                f.write(b"0" * (1 << 20))
        seen[key] = "filled"
    except OSError as e:
        seen[key] = e.strerror
    if key == "ipc":
        os.remove(os.path.join(where, "fill"))
print("SEEN " + json.dumps(seen))
"""


@pytest.fixture
def confined(open_tmp):
    """Run code in the namespaces sandbox (disk limit 8 MB); yields run(code, **job) -> (seen, job)."""
    import json
    needs_root()
    sb = ProcessSandbox()
    sb.check()
    assert sb.mode == "namespaces", sb.why
    jobs = []

    def run(code: str, given: dict[str, str] | None = None):
        job = KernelJob(id="j", root=open_tmp / f"job{len(jobs)}", limits=Limits(disk_mb=8))
        jobs.append(job)
        job.root.mkdir()
        job.work_dir.mkdir()
        for name, text in (given or {}).items():
            (job.work_dir / name).write_text(text)
        sb.prepare(job)
        env = dict(sb.environment(job), GK_IPC=str(job.ipc_dir))
        proc = subprocess.run(sb.wrap([sys.executable, "-c", code], job), env=env, cwd=job.work_dir,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.split("SEEN ", 1)[1]), job

    run.sandbox = sb
    yield run
    for job in jobs:
        sb.cleanup(job)


def _mounts_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(path) in line]


def test_the_kernel_sees_only_the_allow_list(confined):
    seen, job = confined(PROBE % {"mb": 1}, given={"data.csv": "1,2"})
    # top level: system folders, its own /etc /dev /proc /sys /run /tmp /var, and the first
    # folder of each path bound in (the interpreter, the job's folders)
    own = {Path(p).parts[1] for p in (sys.prefix, sys.base_prefix, str(job.root))}
    allowed = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "proc", "sys", "run",
               "tmp", "var"} | own
    assert set(seen["top"]) <= allowed, set(seen["top"]) - allowed
    assert seen["run"] == [] and seen["run-lock"] == "No such file or directory", seen
    assert seen["run-file"] == "Permission denied" and seen["root"] == seen["usr"] == "Read-only file system", seen
    assert not Path("/run/lock/gk").exists() and not Path("/run/gk").exists()
    assert set(seen["dev"]) <= {"null", "zero", "full", "random", "urandom", "tty", "shm", "fd", "stdin",
                                "stdout", "stderr"}, seen["dev"]
    assert "shadow" not in seen["etc"] and "gshadow" not in seen["etc"], seen["etc"]
    assert set(seen["users"]) <= {"root", "nobody", "gradekit-sandbox"}, seen["users"]
    assert seen["host"] == "gradekit"
    assert seen["cwd"] == str(job.work_dir) and seen["given"] == ["data.csv"], seen


def test_system_links_stay_links(confined):
    """usrmerge: /lib -> usr/lib on the host is a link in the kernel's root too, not a bind."""
    code = ("import json, os\nprint('SEEN ' + json.dumps({d: os.readlink(d) if os.path.islink(d) else 'dir'"
            " for d in ('/bin', '/lib', '/sbin', '/lib64') if os.path.lexists(d)}))")
    seen, _ = confined(code)
    for d, what in seen.items():
        assert what == (os.readlink(d) if os.path.islink(d) else "dir"), (d, what)


def test_every_folder_the_kernel_writes_stops_at_the_disk_limit(confined):
    seen, job = confined(PROBE % {"mb": 12})   # 12 MB into each 8 MB folder
    assert seen["work"] == seen["ipc"] == seen["tmp"] == "No space left on device", seen
    # the host reads the same folders (reports, IPC sockets): there, too, a tmpfs of the limit
    assert os.path.ismount(job.work_dir) and os.path.ismount(job.ipc_dir)
    st = os.statvfs(job.work_dir)
    assert st.f_blocks * st.f_frsize <= 8 * 1024 * 1024
    assert "working folder was full" in confined.sandbox.describe_exit(job, 1)


def test_cleanup_unmounts_and_handed_in_files_come_back(confined, open_tmp):
    from gradekit.sandbox.cleanup import remove_tree
    sb = confined.sandbox
    seen, job = confined(PROBE % {"mb": 1}, given={"weights.txt": "w"})
    sb.cleanup(job)
    sb.cleanup(job)   # idempotent
    assert not os.path.ismount(job.work_dir) and not _mounts_under(job.root)
    sb.prepare(job)   # a restarted kernel: a fresh folder with the handed-in files again
    assert os.path.ismount(job.work_dir) and sorted(os.listdir(job.work_dir)) == ["weights.txt"]
    # a worker killed mid-job leaves its mounts: removing the run folder detaches them
    assert remove_tree(open_tmp) and not _mounts_under(open_tmp)


def test_hidden_paths_inside_what_the_kernel_sees_are_refused(open_tmp, monkeypatch):
    import gradekit.sandbox.process.backend as process
    needs_root()
    monkeypatch.setattr(process, "_interpreter_dirs", lambda: [str(open_tmp / "venv")])
    sb = ProcessSandbox()
    sb._ids = (os.getuid(), os.getgid())
    job = KernelJob(id="j", root=open_tmp / "job", limits=Limits(), hidden_paths=(open_tmp / "venv" / "graders",))
    job.root.mkdir()
    with pytest.raises(SandboxUnavailable, match="would see .*graders"):
        sb.prepare(job)


def test_probe_failures_other_than_refused_namespaces_are_errors(monkeypatch):
    needs_root()
    monkeypatch.setitem(ProcessSandbox._probed, sys.executable, (False, "No such file or directory: python"))
    with pytest.raises(SandboxUnavailable, match="could not start a confined process"):
        ProcessSandbox().check()
