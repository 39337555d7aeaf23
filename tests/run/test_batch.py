"""One submission's crash, hang or interruption never costs the others their reports."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

import support
from support import ROOT, needs_root
from gradekit.run import launcher
from gradekit.report import write as report
from gradekit.run.batch import BatchOptions, grade_batch
from gradekit.spec import load

EXAMPLES = ROOT / "assignments" / "example" / "submissions"


def _copy(tmp: Path, names: dict[str, str]) -> Path:
    d = tmp / "subs"
    d.mkdir()
    for new, old in names.items():
        (d / new).write_bytes((EXAMPLES / old).read_bytes())
    return d


def test_worker_crash_becomes_an_error_report_and_others_are_graded(tmp_path, monkeypatch):
    needs_root()
    subs = _copy(tmp_path, {"good.ipynb": "alice_correct.ipynb", "crash.ipynb": "bob_partly_wrong.ipynb"})
    monkeypatch.setattr(launcher, "worker_entry", support.crashing_worker)
    reports = [r.to_json() for r in grade_batch([subs], load("example"), tmp_path / "out", BatchOptions(workers=2, progress=False))]
    by = {r["submission"]["submitter"]: r for r in reports}
    assert by["good.ipynb"]["status"] == "graded" and by["good.ipynb"]["score"] == 5
    assert by["crash.ipynb"]["status"] == "error" and "worker failed (exit -11)" in by["crash.ipynb"]["reason"]
    assert "about to crash" in by["crash.ipynb"]["reason"]  # the worker's last words reach the report
    for r in reports:
        assert json.loads((tmp_path / "out" / r["submission"]["id"] / "report.json").read_text())["status"] == r["status"]
    assert "crash.ipynb" in (tmp_path / "out" / "gradebook.csv").read_text()


def test_hung_worker_is_stopped_at_the_hard_limit(tmp_path, monkeypatch):
    needs_root()
    subs = _copy(tmp_path, {"good.ipynb": "alice_correct.ipynb", "hang.ipynb": "bob_partly_wrong.ipynb"})
    monkeypatch.setattr(launcher, "worker_entry", support.hanging_worker)
    monkeypatch.setenv("GK_TEST_PIDFILE", str(tmp_path / "sleep.pid"))  # the batch's environment reaches workers
    a = load("example")
    t0 = time.monotonic()
    reports = [r.to_json() for r in grade_batch([subs], a, tmp_path / "out",
                          BatchOptions(workers=2, progress=False, limits=a.limits.replace(total_timeout=5, grading_allowance=15)))]
    assert time.monotonic() - t0 < 60
    by = {r["submission"]["submitter"]: r for r in reports}
    assert by["hang.ipynb"]["status"] == "error" and "hard limit of 20 s" in by["hang.ipynb"]["reason"]
    assert by["good.ipynb"]["score"] == 5
    sleeper = int((tmp_path / "sleep.pid").read_text())
    time.sleep(0.5)
    assert not Path(f"/proc/{sleeper}").exists() or "Z" in Path(f"/proc/{sleeper}/stat").read_text().split()[2], \
        "a process the hung worker started outlived it"


def test_ctrl_c_leaves_reports_for_every_submission_and_no_kernel(tmp_path):
    needs_root()
    subs = _copy(tmp_path, {"slow.ipynb": "carol_timing_out.ipynb"})
    nb = nbformat.read(str(subs / "slow.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"# {os.urandom(8).hex()}"))  # a job id of its own
    nbformat.write(nb, str(subs / "slow.ipynb"))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "gradekit.cli", "grade", str(subs), "-a", "example", "-o", str(out),
                             "--sandbox", "process", "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(6)  # the kernel is now stuck in the infinite loop
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output.decode()
    rep = json.loads(next(out.glob("*/report.json")).read_text())
    assert rep["status"] == "error" and "interrupted" in rep["reason"]
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", rep["submission"]["id"]], capture_output=True, text=True).stdout.split()
    assert left == [], f"kernel processes left behind: {left}"


def test_atomic_write_never_leaves_a_half_file(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    report.write_atomic(target, "old")

    def boom(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(report.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        report.write_atomic(target, "new" * 1000)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_cli_exit_codes(tmp_path):
    needs_root()
    bad = subprocess.run([sys.executable, "-m", "gradekit.cli", "grade", str(EXAMPLES / "dave_broken.ipynb"),
                          "-a", "no-such-assignment", "-o", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "no assignment 'no-such-assignment'" in bad.stderr
    ok = subprocess.run([sys.executable, "-m", "gradekit.cli", "grade", str(EXAMPLES / "dave_broken.ipynb"),
                         str(EXAMPLES / "bob_partly_wrong.ipynb"), "-a", "example", "-o", str(tmp_path / "o"),
                         "--sandbox", "process"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr  # grading ran; the scores are not the exit code
    assert "rejected" in ok.stdout and "2/5" in ok.stdout


MARK = "2000-01-01T00:00:00+00:00"


def test_resume_reuses_only_what_is_unchanged(tmp_path):
    needs_root()
    subs = _copy(tmp_path, {"a.ipynb": "alice_correct.ipynb", "b.ipynb": "bob_partly_wrong.ipynb"})
    a = load("example")
    first = [r.to_json() for r in grade_batch([subs], a, tmp_path / "out", BatchOptions(workers=2, progress=False))]
    for r in first:  # mark the stored reports: a reused report still carries the mark
        path = tmp_path / "out" / r["submission"]["id"] / "report.json"
        path.write_text(json.dumps(dict(json.loads(path.read_text()), created=MARK)))
    again = [r.to_json() for r in grade_batch([subs], a, tmp_path / "out", BatchOptions(workers=2, progress=False, resume=True))]
    assert all(r["created"] == MARK for r in again)
    changed = [r.to_json() for r in grade_batch([subs], a, tmp_path / "out", BatchOptions(workers=2, progress=False, resume=True,
                                                                     secret="new course secret"))]
    assert not any(r["created"] == MARK for r in changed)  # new secret, new inputs: graded again
    assert all(r["seed"] != o["seed"] for r, o in zip(changed, first))
    assert [r["score"] for r in changed] == [r["score"] for r in first]
