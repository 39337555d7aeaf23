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
    """A folder every user can reach (pytest's own tmp_path sits under a 0700 parent)."""
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="gk-test-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


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


def test_interpreter_under_a_scratch_folder_stays_reachable(monkeypatch):
    """A project (and its venv) cloned under /tmp: /tmp is private to the kernel, so the
    interpreter must be bound back in (CI clones may live there)."""
    import gradekit.sandbox.process.backend as process
    monkeypatch.setattr(process, "_interpreter_dirs", lambda: ["/tmp/clone/.venv", "/usr"])
    sb = ProcessSandbox()
    sb._ids = (1, 1)
    spec = sb._spec(KernelJob(id="j", root=Path("/tmp/gk-x/j"), limits=Limits()))
    assert spec["expose"] == ["/tmp/clone/.venv"] and "/tmp" in spec["scratch"]


def test_probe_failures_other_than_refused_namespaces_are_errors(monkeypatch):
    needs_root()
    monkeypatch.setitem(ProcessSandbox._probed, sys.executable, (False, "No such file or directory: python"))
    with pytest.raises(SandboxUnavailable, match="could not start a confined process"):
        ProcessSandbox().check()
