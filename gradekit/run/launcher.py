"""Worker processes, forked from a fork server that imported the worker once.

A fresh interpreter per submission spent about 0.6 s of CPU on imports. Each worker still
gets a process (and process group) of its own, so a crash or a hang costs one submission,
and the hard limit kills the whole group, kernel launcher included.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from pathlib import Path

from . import worker

# What the fork server imports before forking: the worker and the pytest internals a grading
# run would otherwise import per submission. Nothing it imports leaks state between
# submissions: each is a fresh fork. Course code (graders, reference/) is left out on purpose:
# imported per submission, an edit to it counts even in a long-lived process.
PRELOAD = ["gradekit.run.worker", "_pytest.python", "_pytest.assertion.rewrite", "_pytest.fixtures",
           "_pytest.skipping", "_pytest.terminal", "_pytest.runner", "_pytest.main"]
_forks = multiprocessing.get_context("forkserver")
_forks.set_forkserver_preload(PRELOAD)
worker_entry = worker.forked_main  # what each forked worker runs (tests put a misbehaving one here)

# multiprocessing reads a fork-server child's exit status from a pipe, and two threads
# polling one child at once (a join here, the clean-up inside another thread's start())
# make one of them read 255. Waits only watch the pipe; reading it is done under this lock.
_poll_lock = threading.Lock()


def start(job_file: Path, log_file: Path, name: str, target=None) -> multiprocessing.process.BaseProcess:
    """Fork a worker running ``target`` (default :data:`worker_entry`) on ``job_file``."""
    proc = _forks.Process(target=target or worker_entry, name=name,
                          args=(str(job_file), str(log_file), dict(os.environ), os.getcwd()))
    with _poll_lock:
        proc.start()
    return proc


def wait(proc: multiprocessing.process.BaseProcess, timeout: float | None) -> int | None:
    """The worker's exit code once it ends, or None after ``timeout`` seconds."""
    multiprocessing.connection.wait([proc.sentinel], timeout)
    with _poll_lock:
        return proc.exitcode


def kill_group(proc: multiprocessing.process.BaseProcess) -> None:
    """Stop a worker and everything it started (its kernel's launcher is in its group).

    It does not wait: the thread that started the worker waits for it (see ``_poll_lock``).
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # not yet its own group leader, or gone
        proc.kill()


def tail(log_file: Path, lines: int = 12) -> list[str]:
    try:
        return log_file.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return []
