"""Where a batch's workers run: the executor seam of :mod:`gradekit.run.batch`.

The batch does intake, the pre-flight checks, ``--resume``, the per-submitter copies, the
progress bar and the gradebook; an executor only grades one :class:`~gradekit.model.Job`
at a time per slot and hands back its :class:`~gradekit.model.Report` (written to
``job.report_dir``), or the reason there is none (the batch then writes an ``error`` report).

* :class:`LocalExecutor` (``--executor local``, the default): fork-server worker
  processes on this machine (:mod:`.launcher`), GPUs leased from a :class:`GpuPool`;
* :class:`~gradekit.run.ray_executor.RayExecutor` (``--executor ray``): one Ray task
  per submission on the nodes of a Ray cluster (``pip install 'gradekit[ray]'``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path
from typing import Protocol

from ..model import Job, RecordError, Report
from ..report.write import read, write_atomic
from ..sandbox.gpus import GpuPool
from . import launcher

EXECUTORS = ("local", "ray")


class ExecutorUnavailable(RuntimeError):
    """The chosen executor cannot run here (Ray not installed, no cluster answers ...)."""


class Executor(Protocol):
    name: str
    slots: int                                  # submissions graded at once
    environment: tuple[str, ...] | None          # kernel package differences, when known on the driver

    def run(self, job: Job, key: str) -> Report | str:
        """Grade ``job``: its report (written to ``job.report_dir``), or why there is none."""

    def stop(self) -> None:
        """Ctrl-C: end every running grading now (their ``run`` calls return a reason)."""

    def close(self) -> None:
        """The batch is over."""


def hard_limit_reason(wall: float) -> str:
    return f"grading took longer than the hard limit of {wall:g} s and was stopped"


def write_job(job: Job, job_file: Path) -> None:
    """The worker's job file: the batch's secret is in it, so only its owner reads it."""
    write_atomic(job_file, json.dumps(job.to_json()))
    os.chmod(job_file, 0o600)


def finish_worker(proc, log_file: Path, report_dir: Path, wall: float, stopping: threading.Event | None = None,
                  where: str = "") -> Report | str:
    """Wait for a started worker at most ``wall`` seconds (then kill it and all it started),
    and read its report: the report, or why there is none."""
    code, deadline = None, time.monotonic() + wall
    while code is None and time.monotonic() < deadline:  # in short waits: an interrupt is noticed
        code = launcher.wait(proc, max(0.0, min(0.5, deadline - time.monotonic())))
    reason = None
    if code is None:
        launcher.kill_group(proc)
        code = launcher.wait(proc, None)
        reason = hard_limit_reason(wall)
    if stopping is not None and stopping.is_set() and code and code < 0:
        return "grading was interrupted before this submission finished"
    if reason:
        return reason
    if code != 0:
        return f"the grading worker failed{where} (exit {code}): " + " | ".join(launcher.tail(log_file))
    try:
        return read(report_dir)
    except (OSError, ValueError, RecordError) as exc:
        return f"the grading worker wrote no readable report ({exc})"


class LocalExecutor:
    """Fork-server worker processes on this machine, ``workers`` at a time."""

    name = "local"

    def __init__(self, run_dir: Path, workers: int, gpus: list[str], wall: float,
                 stopping: threading.Event, environment: tuple[str, ...] | None):
        self.run_dir, self.slots, self.wall, self.stopping = run_dir, max(1, workers), wall, stopping
        self.gpus = GpuPool(gpus)
        self.environment = environment
        self.procs: dict[str, object] = {}

    def run(self, job: Job, key: str) -> Report | str:
        devices = self.gpus.acquire()  # () on the CPU; blocks while every GPU is busy
        try:
            job_file = self.run_dir / f"{key}.json"
            write_job(dataclasses.replace(job, gpus=tuple(devices)), job_file)
            if self.stopping.is_set():
                raise KeyboardInterrupt
            log_file = self.run_dir / f"{key}.log"
            proc = launcher.start(job_file, log_file, name=f"gradekit-worker-{key[:12]}")
            self.procs[key] = proc
            return finish_worker(proc, log_file, job.report_dir, self.wall, self.stopping)
        except KeyboardInterrupt:
            return "grading was interrupted before this submission started"
        finally:
            self.procs.pop(key, None)
            self.gpus.release(devices)

    def stop(self) -> None:
        for proc in list(self.procs.values()):
            launcher.kill_group(proc)

    def close(self) -> None:
        pass
