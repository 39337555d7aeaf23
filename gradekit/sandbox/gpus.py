"""Which GPUs a grading run may use, and which submission gets which.

Pure Python, no CUDA: the grader never touches a GPU itself, it only hands device ids to
the sandbox (``Job.gpus``), which turns them into Docker device requests.

``--gpus`` takes Docker's forms::

    all          every GPU on the machine
    N            the first N GPUs (a bare number is a *count*, as with ``docker run --gpus``)
    0,1 / 2,     these device ids (a trailing comma makes one id: ``2,`` is GPU 2)
    device=0,1   the same, Docker's spelling
    0 / none     no GPU ("0" is a count of zero, as with Docker)

An assignment says how it uses GPUs with ``gpu: required | optional | none``:

* ``none``     the submission runs on the CPU and never waits for a GPU;
* ``optional`` it gets a GPU when the run was given any (waiting for a free one), and
  runs on the CPU when the run was given none;
* ``required`` it must get one: with no GPU given, :func:`check_requirement` fails with a
  clear message before any container starts.

:class:`GpuPool` leases ``per_job`` devices (one by default) to each submission and takes
them back when it is graded. Leases are granted first come, first served, so with more
workers than GPUs every GPU stays busy while submissions wait, and a freed device goes to
the next waiting submission at once.
"""
from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..model import GPU_MODES as REQUIREMENTS  # defined once, in the records


class GpuUnavailable(RuntimeError):
    """An assignment needs a GPU that this run cannot give it."""


def detect_gpus() -> tuple[str, ...]:
    """Device ids of this machine's NVIDIA GPUs ("0", "1", ...); () when there are none."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            if out.returncode == 0:
                ids = tuple(line.strip() for line in out.stdout.splitlines() if line.strip())
                if ids:
                    return ids
        except (OSError, subprocess.SubprocessError):
            pass
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return tuple(str(i) for i in range(len(list(proc.iterdir()))))
    return ()


def parse_gpus(spec: str | int | None, available: Sequence[str] | None = None) -> tuple[str, ...]:
    """Turn a ``--gpus`` value into device ids.

    ``available`` is the machine's devices (default: :func:`detect_gpus`); it is consulted
    for ``all`` and counts, and explicit ids must be among them when it is given.
    """
    if spec is None:
        return ()
    text = str(spec).strip().strip('"').strip("'")
    if text.lower().startswith("device="):
        text = text[len("device="):]
        if "," not in text:
            text += ","
    low = text.lower()
    if low in ("", "none", "no", "off", "cpu"):
        return ()

    def machine() -> tuple[str, ...]:
        return tuple(available) if available is not None else detect_gpus()

    if low == "all":
        found = machine()
        if not found:
            raise GpuUnavailable("--gpus all: no NVIDIA GPU was found on this machine "
                                 "(nvidia-smi lists none)")
        return found
    if "," not in text:
        try:
            count = int(text)
        except ValueError:
            raise ValueError(f"--gpus {spec!r}: expected all, a number of GPUs, or device "
                             f"ids such as 0,1") from None
        if count < 0:
            raise ValueError(f"--gpus {spec!r}: the number of GPUs cannot be negative")
        if count == 0:
            return ()
        found = machine()
        if len(found) < count:
            raise GpuUnavailable(f"--gpus {count}: only {len(found)} GPU(s) found on this "
                                 f"machine ({', '.join(found) or 'none'})")
        return found[:count]
    ids: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not (part.isdigit() or _looks_like_uuid(part)):
            raise ValueError(f"--gpus {spec!r}: {part!r} is not a device id (0, 1, ... or GPU-UUID)")
        if part not in ids:
            ids.append(part)
    if available is not None:
        missing = [d for d in ids if d not in available and not _looks_like_uuid(d)]
        if missing:
            raise GpuUnavailable(f"--gpus {spec!r}: no GPU {', '.join(missing)} on this machine "
                                 f"(found: {', '.join(available) or 'none'})")
    return tuple(ids)


def _looks_like_uuid(s: str) -> bool:
    return s.upper().startswith(("GPU-", "MIG-"))


def normalise_requirement(value: str | bool | None) -> str:
    """``gpu:`` from an assignment spec → "none" | "optional" | "required"."""
    if value is None or value is False:
        return "none"
    if value is True:
        return "required"
    v = str(value).strip().lower()
    aliases = {"no": "none", "false": "none", "cpu": "none", "off": "none",
               "yes": "required", "true": "required", "must": "required",
               "prefer": "optional", "preferred": "optional", "maybe": "optional"}
    v = aliases.get(v, v)
    if v not in REQUIREMENTS:
        raise ValueError(f"gpu: {value!r} — expected one of: required, optional, none")
    return v


def check_requirement(requirement: str, devices: Sequence[str], *,
                      assignment: str = "this assignment") -> None:
    """Fail early (before any container starts) when a GPU is required and none is given."""
    requirement = normalise_requirement(requirement)
    if requirement != "required":
        return
    if not devices:
        raise GpuUnavailable(
            f"{assignment} requires a GPU (gpu: required), but this run has none: "
            f"no NVIDIA GPU was found or --gpus was not given. Run on a machine with an "
            f"NVIDIA GPU and the NVIDIA container toolkit, and pass --gpus all (or --gpus 0,1); "
            f"no submission was started.")


class GpuPool:
    """Lease GPUs to submissions, ``per_job`` at a time, first come first served.

    Thread-safe. ``acquire`` blocks until enough devices are free; ``release`` hands them
    back and wakes the next waiter. With no devices at all, every lease is empty (CPU).
    """

    def __init__(self, devices: Iterable[str], per_job: int = 1):
        self.devices: tuple[str, ...] = tuple(devices)
        if per_job < 1:
            raise ValueError("per_job must be at least 1")
        if self.devices and per_job > len(self.devices):
            raise GpuUnavailable(f"each submission needs {per_job} GPUs but this run has "
                                 f"only {len(self.devices)} ({', '.join(self.devices)})")
        self.per_job = per_job
        self._free: collections.deque[str] = collections.deque(self.devices)
        self._cond = threading.Condition()
        self._waiting: collections.deque[object] = collections.deque()
        self._in_use: dict[str, int] = {d: 0 for d in self.devices}   # leases so far, per device

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def free(self) -> tuple[str, ...]:
        with self._cond:
            return tuple(self._free)

    def acquire(self, timeout: float | None = None) -> tuple[str, ...]:
        """Devices for one submission; () when the pool is empty. Raises TimeoutError."""
        if not self.devices:
            return ()
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            try:
                ok = self._cond.wait_for(
                    lambda: self._waiting[0] is ticket and len(self._free) >= self.per_job,
                    timeout=timeout)
                if not ok:
                    raise TimeoutError(f"no GPU became free within {timeout} s")
                lease = tuple(self._free.popleft() for _ in range(self.per_job))
                for d in lease:
                    self._in_use[d] += 1
                return lease
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()

    def try_acquire(self) -> tuple[str, ...] | None:
        """Devices if enough are free now (and nobody waits before us), else None."""
        if not self.devices:
            return ()
        with self._cond:
            if self._waiting or len(self._free) < self.per_job:
                return None
            lease = tuple(self._free.popleft() for _ in range(self.per_job))
            for d in lease:
                self._in_use[d] += 1
            return lease

    def release(self, lease: Sequence[str]) -> None:
        if not lease:
            return
        with self._cond:
            for d in lease:
                if d not in self._in_use:
                    raise ValueError(f"GPU {d!r} does not belong to this pool")
                if d in self._free:
                    raise ValueError(f"GPU {d!r} was released twice")
                self._free.append(d)
            self._cond.notify_all()

    @contextlib.contextmanager
    def lease(self, requirement: str = "optional", timeout: float | None = None) -> Iterator[tuple[str, ...]]:
        """``with pool.lease(spec.gpu) as gpus: job.gpus = gpus`` — () for CPU jobs."""
        requirement = normalise_requirement(requirement)
        if requirement == "none" or not self.devices:
            if requirement == "required":
                check_requirement(requirement, self.devices)
            yield ()
            return
        got = self.acquire(timeout=timeout)
        try:
            yield got
        finally:
            self.release(got)

    def usage(self) -> dict[str, int]:
        """How many leases each device has served (for reports and tests)."""
        with self._cond:
            return dict(self._in_use)


def docker_gpus_arg(devices: Sequence[str]) -> list[str]:
    """``docker run`` arguments that give the container exactly these devices."""
    if not devices:
        return []
    # The value is CSV: several ids must be quoted so the commas stay inside one field.
    return ["--gpus", f'"device={",".join(devices)}"']


def visible_env(devices: Sequence[str]) -> dict[str, str]:
    """The GPU environment of a kernel inside a container given ``devices``.

    Inside, the container sees only its own devices, numbered from 0 by CUDA, so the
    host's ids must not leak into CUDA_VISIBLE_DEVICES (id 3 would hide the only GPU).
    Without devices, both variables hide every GPU, even under a default NVIDIA runtime.
    """
    if not devices:
        return {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(len(devices)))}


def default_pool(spec: str | None, per_job: int = 1) -> GpuPool:
    """The pool for ``--gpus SPEC`` on this machine (``GRADEKIT_GPUS`` when SPEC is None)."""
    spec = spec if spec is not None else os.environ.get("GRADEKIT_GPUS")
    return GpuPool(parse_gpus(spec), per_job=per_job)
