"""Grade a class: intake, one worker process per submission, reports and a gradebook.

Each submission is graded by :func:`gradekit.worker.forked_main` in a process (and process
group) of its own, so a crash, a hang past the hard wall-clock limit, or Ctrl-C ends as a
report with the reason for that submission, and the rest of the batch goes on (or is
cleaned up). The processes are forked from a fork server that imported the worker's
modules once: a fresh interpreter per submission spent about 0.6 s of CPU on imports.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import nbformat

from . import intake
from . import report as reports
from . import worker
from .sandbox import Limits
from .sandbox.gpus import GpuPool
from .spec import Assignment

GRADING_ALLOWANCE = 300.0   # seconds for kernel start and the graders, on top of the notebook's limit

# What the fork server imports before forking: the worker and the pytest internals a grading
# run would otherwise import per submission. Nothing it imports leaks state between
# submissions: each is a fresh fork. Course code (graders, reference/) is left out on purpose:
# imported per submission, an edit to it counts even in a long-lived process.
PRELOAD = ["gradekit.worker", "_pytest.python", "_pytest.assertion.rewrite", "_pytest.fixtures",
           "_pytest.skipping", "_pytest.terminal", "_pytest.runner", "_pytest.main"]
_forks = multiprocessing.get_context("forkserver")
_forks.set_forkserver_preload(PRELOAD)
worker_entry = worker.forked_main  # what each forked worker runs (tests put a misbehaving one here)


@dataclasses.dataclass
class BatchOptions:
    sandbox: str = "process"
    workers: int = 1
    limits: Limits | None = None
    gpus: list[str] = dataclasses.field(default_factory=list)  # one device per running job
    secret: str = ""
    progress: bool = True
    resume: bool = False    # reuse reports whose submission and grading setup are unchanged


def fingerprint(assignment: Assignment, limits: Limits, secret: str) -> str:
    """What a report depends on besides the notebook: graders, public tests, spec, reference
    code, limits, the course secret (it changes the inputs) and gradekit itself."""
    from . import __version__
    h = hashlib.sha256(f"{__version__}|{dataclasses.asdict(limits)}|{hashlib.sha256(secret.encode()).hexdigest()}".encode())
    top = assignment.root.parent.parent
    folders = [assignment.graders_dir, assignment.public_tests_dir, assignment.root / "assignment.toml", top / "reference"]
    for folder in folders:
        files = sorted(folder.rglob("*.py")) if folder.is_dir() else [folder] if folder.exists() else []
        for f in files:
            h.update(str(f.relative_to(top)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:32]


class Progress:
    """A one-line progress bar on a terminal; one line per finished submission otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled = total, 0, enabled
        self.counts: dict[str, int] = {}
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def update(self, label: str, status: str, score: str) -> None:
        with self.lock:
            self.done += 1
            self.counts[status] = self.counts.get(status, 0) + 1
            if not self.enabled:
                return
            width = 30
            filled = int(width * self.done / max(1, self.total))
            bar = "#" * filled + "." * (width - filled)
            counts = "  ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            line = f"[{bar}] {self.done}/{self.total}  {counts}  {time.monotonic() - self.t0:.0f}s"
            if self.tty:
                sys.stderr.write("\r" + line + ("\n" if self.done == self.total else ""))
            else:
                sys.stderr.write(f"{line}  {label}: {status} {score}\n")
            sys.stderr.flush()


def _error_report(assignment: Assignment, sub: intake.Submission, sources: list[str], reason: str) -> dict:
    return reports.build(assignment, submission_id=sub.id, sha256=sub.sha256, sources=sources,
                         status="error", reason=reason)


def grade_batch(paths: list[str | Path], assignment: Assignment, out_dir: Path, options: BatchOptions) -> list[dict]:
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    found = intake.collect(paths)
    # One grading run per distinct notebook; every source keeps its gradebook row.
    unique: dict[str, tuple[intake.Submission, list[str]]] = {}
    for sub in found:
        unique.setdefault(sub.id, (sub, []))[1].append(sub.source)
    limits = options.limits or assignment.limits
    progress = Progress(len(unique), options.progress)
    run_dir = Path(tempfile.mkdtemp(prefix="gk-"))
    os.chmod(run_dir, 0o711)
    gpu_pool = GpuPool(options.gpus if assignment.gpu != "none" else ())
    procs: dict[str, multiprocessing.process.BaseProcess] = {}
    stopping = threading.Event()

    setup = fingerprint(assignment, limits, options.secret)

    def run_one(sub: intake.Submission, sources: list[str]) -> dict:
        folder = out_dir / sub.id
        if options.resume and sub.notebook is not None:
            try:
                old = json.loads((folder / "report.json").read_text())
                if old.get("status") == "graded" and old.get("fingerprint") == setup and old["submission"]["sha256"] == sub.sha256:
                    if sorted(old["submission"]["sources"]) != sorted(sources):
                        old["submission"]["sources"] = sources
                        reports.write_all(old, folder)
                    progress.update(sources[0], "reused", f"{old['score']:g}/{old['auto_points_possible']:g}")
                    return old
            except (OSError, ValueError, KeyError):
                pass
        if sub.notebook is None:
            rep = reports.build(assignment, submission_id=sub.id, sha256=sub.sha256, sources=sources,
                                status="rejected", reason=sub.rejected)
            reports.write_all(rep, folder)
            progress.update(sources[0], "rejected", "")
            return rep
        nb_path = run_dir / f"{sub.id}.ipynb"
        nbformat.write(sub.notebook, str(nb_path))
        devices = gpu_pool.acquire()  # () on the CPU; blocks while every GPU is busy
        job = {"assignment": assignment.id, "project_root": str(assignment.root.parent.parent),
               "notebook": str(nb_path), "sha256": sub.sha256, "sources": sources, "id": sub.id,
               "sandbox": options.sandbox, "limits": dataclasses.asdict(limits), "job_root": str(run_dir / sub.id),
               "out": str(folder), "hidden": [str(out_dir), str(run_dir)], "gpus": list(devices),
               "secret": options.secret, "fingerprint": setup}
        job_file = run_dir / f"{sub.id}.json"
        job_file.write_text(json.dumps(job))
        os.chmod(job_file, 0o600)
        wall = limits.total_timeout + GRADING_ALLOWANCE
        try:
            (folder / "report.json").unlink(missing_ok=True)
            if stopping.is_set():
                raise KeyboardInterrupt
            log_file = run_dir / f"{sub.id}.log"
            proc = _forks.Process(target=worker_entry, name=f"gradekit-worker-{sub.id[:12]}",
                                  args=(str(job_file), str(log_file), dict(os.environ), os.getcwd()))
            with _poll_lock:
                proc.start()
            procs[sub.id] = proc
            code = _wait(proc, wall)
            reason = None
            if code is None:
                _kill_group(proc)
                code = _wait(proc, None)
                reason = f"grading took longer than the hard limit of {wall:g} s and was stopped"
            if reason is None and code != 0:
                reason = f"the grading worker failed (exit {code}): " + " | ".join(_tail(log_file))
            if stopping.is_set() and code and code < 0:
                reason = "grading was interrupted before this submission finished"
            if reason is None:
                try:
                    rep = json.loads((folder / "report.json").read_text())
                except (OSError, ValueError) as exc:
                    reason = f"the grading worker wrote no readable report ({exc})"
            if reason is not None:
                rep = _error_report(assignment, sub, sources, reason)
                reports.write_all(rep, folder)
        except KeyboardInterrupt:
            rep = _error_report(assignment, sub, sources, "grading was interrupted before this submission started")
            reports.write_all(rep, folder)
        finally:
            procs.pop(sub.id, None)
            gpu_pool.release(devices)
        progress.update(sources[0], rep["status"], f"{rep['score']:g}/{rep['auto_points_possible']:g}")
        return rep

    results: list[dict] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
            futures = [pool.submit(run_one, sub, sources) for sub, sources in unique.values()]
            try:
                for f in futures:
                    while True:
                        try:
                            results.append(f.result(timeout=0.5))
                            break
                        except FutureTimeout:  # wake up now and then so Ctrl-C is heard
                            continue
            except KeyboardInterrupt:
                stopping.set()
                for proc in list(procs.values()):
                    _kill_group(proc)
                for f in futures:
                    f.cancel()
                raise
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        reports.write_atomic(out_dir / "gradebook.csv", reports.gradebook(results, assignment))
    return results


# multiprocessing reads a fork-server child's exit status from a pipe, and two threads
# polling one child at once (a join here, the clean-up inside another thread's start())
# make one of them read 255. Waits only watch the pipe; reading it is done under this lock.
_poll_lock = threading.Lock()


def _wait(proc: multiprocessing.process.BaseProcess, timeout: float | None) -> int | None:
    """The worker's exit code once it ends, or None after ``timeout`` seconds."""
    multiprocessing.connection.wait([proc.sentinel], timeout)
    with _poll_lock:
        return proc.exitcode


def _tail(log_file: Path, lines: int = 12) -> list[str]:
    try:
        return log_file.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return []


def _kill_group(proc: multiprocessing.process.BaseProcess) -> None:
    """Stop a worker and everything it started (its kernel's launcher is in its group).

    It does not wait: the thread that started the worker waits for it (see ``_poll_lock``).
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # not yet its own group leader, or gone
        proc.kill()
