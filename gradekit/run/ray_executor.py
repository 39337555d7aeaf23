"""``gradekit grade --executor ray``: one Ray task per submission, on a Ray cluster's nodes.

The driver (``gradekit grade``) does everything but the grading: intake, the pre-flight
checks, ``--resume``, the reports, the gradebook and the progress bar, exactly as a local
run. Each distinct notebook becomes one Ray task, which on its node:

1. checks that the driver and the node run the same gradekit;
2. unpacks the course material (the assignment's spec and public tests, its graders, the
   ``reference`` package) shipped with the job as a content-addressed bundle, under
   ``$GRADEKIT_RAY_DIR/<node id>/course/<sha>`` (default ``/var/tmp/gradekit-ray``), every
   level mode 0700, and refuses to grade when that folder is readable by other users
   (the check the process backend makes of hidden folders);
3. checks the assignment's data sets at their path on that node (once per worker process);
4. runs today's worker (:mod:`gradekit.run.worker`) in a fork-server process of its own,
   with the node-local GPU ids Ray leased to the task (``ray.get_gpu_ids()``), under the
   sandbox the batch chose (Docker in production: the worker's ``check()`` sweeps the
   containers of dead graders first; the process backend in tests);
5. returns the report as a value (:class:`NodeResult`), and leaves nothing behind (a run
   folder that a killed task could not remove is swept by the node's next task).

Resources: a CPU submission asks for one ``gradekit_slot`` (declared per node:
``ray start --resources '{"gradekit_slot": 4}'``), a GPU submission for ``num_gpus=1``.

Limits and faults:

* the hard limit: the node stops its worker ``hard_wall`` seconds after it started it,
  killing the worker's process group (its kernel and whatever else it started), as the
  local executor does; the report says it was stopped. The driver's backstop, for a node
  that does not answer: :data:`DRIVER_MARGIN` seconds later it ``ray.cancel``s the task
  (an interrupt: the node kills the worker's group), and :data:`CANCEL_GRACE` seconds
  after that ``ray.cancel(force=True)`` (the Ray worker is killed; the grading worker dies
  with it by ``PR_SET_PDEATHSIG``). Both count from the task's start on its node (the task
  first yields ``"started"``), never from its time in the queue;
* a node that dies under a task: the task fails with a system error and the driver sends
  it again (up to ``ray_retries`` more times; Ray's own ``max_retries`` is 0 so that the
  driver knows the attempt). A submission's report is written once, by the driver, from
  the attempt that finished; ``report.placement.attempts`` and a note say it was retried.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import importlib
import io
import json
import os
import re
import stat
import sys
import tarfile
import tempfile
import threading
import time
import types
from pathlib import Path

from .. import __version__
from ..model import Job, Limits, Placement, Record, RecordError, Report
from ..report.write import write_all, write_atomic
from ..sandbox.cleanup import remove_tree
from ..sandbox.docker.engine import _pid_alive
from ..spec import Assignment
from . import launcher
from .executor import ExecutorUnavailable, finish_worker, hard_limit_reason, write_job

SLOT = "gradekit_slot"         # the custom resource of one CPU grading slot
NODE_DIR_ENV = "GRADEKIT_RAY_DIR"
NODE_DIR_DEFAULT = "/var/tmp/gradekit-ray"
DRIVER_MARGIN = 30.0           # the driver cancels a task this long after the node should have stopped it
EXECUTED = re.compile(r"executed(_[A-Za-z0-9._-]+)?\.ipynb")  # what a node may hand back beside the report
CANCEL_GRACE = 5.0             # seconds a cancelled task has to stop its worker before its Ray worker is killed
#: What each task runs in its forked worker ("module:function", called like launcher.worker_entry).
NODE_ENTRY = "gradekit.run.ray_executor:node_main"
INSTALL_HINT = "pip install 'gradekit[ray]'"


def _ray():
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailable(f"--executor ray needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


# -- what a task hands back ------------------------------------------------------------------
@dataclasses.dataclass
class NodeResult(Record):
    """One task's result, as a value: the report, or why there is none, and where it ran."""

    node: str
    started: float
    finished: float
    gpus: list[str] = dataclasses.field(default_factory=list)
    report: Report | None = None
    executed: dict[str, str] = dataclasses.field(default_factory=dict)  # executed*.ipynb: name -> notebook, for staff
    reason: str | None = None


# -- course material -------------------------------------------------------------------------
def course_bundle(assignment: Assignment) -> bytes:
    """The assignment's course material as a reproducible tar.gz: spec and public tests
    (``assignments/ID``, without ``submissions/``), graders (``graders/ID``), the course's
    ``gradekit.toml`` and the ``reference`` package the fingerprint covers."""
    course = assignment.course
    reference = Path(__file__).resolve().parents[2] / "reference"
    parts = [(assignment.root, f"assignments/{assignment.id}"), (assignment.graders_dir, f"graders/{assignment.id}"),
             (course / "gradekit.toml", "gradekit.toml"), (reference, "reference")]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for src, name in parts:
            if not src.exists():
                continue
            files = [src] if src.is_file() else sorted(
                p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                and not (name.startswith("assignments/") and p.relative_to(src).parts[0] == "submissions"))
            for f in files:
                info = tarfile.TarInfo(name if f == src else f"{name}/{f.relative_to(src).as_posix()}")
                data = f.read_bytes()
                info.size, info.mode, info.mtime = len(data), 0o600, 0
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)  # mtime 0: the same bytes every run


def node_dir(node_id: str) -> Path:
    """This node's private folder (mode 0700 at every level gradekit makes)."""
    base = Path(os.environ.get(NODE_DIR_ENV) or NODE_DIR_DEFAULT)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = base / node_id[:16]
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def exposure(folder: Path) -> str | None:
    """Why the course material in ``folder`` could reach student code, or None."""
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & 0o077:  # group or others: stricter than the process backend's readable_by_others
        return (f"the course folder {folder} on this node is readable by other users (mode {mode:o}): "
                f"student code could read the graders; make it private (chmod 700 {folder}) or set "
                f"{NODE_DIR_ENV} to a private folder, then grade again")
    return None


def unpack_course(bundle: bytes, sha: str, node: Path) -> Path:
    """The bundle unpacked under ``node/course/<sha>`` (once per node; atomic)."""
    parent = node / "course"
    parent.mkdir(mode=0o700, exist_ok=True)
    target = parent / sha[:24]
    if target.is_dir():
        return target
    if hashlib.sha256(bundle).hexdigest() != sha:
        raise RecordError("the course bundle arrived damaged (its hash differs)")
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=parent))
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        tar.extractall(tmp, filter="data")
    os.chmod(tmp, 0o700)
    try:
        os.rename(tmp, target)
    except OSError:  # another task unpacked it meanwhile
        remove_tree(tmp)
    return target


_data_checked: dict[str, list[str]] = {}


def node_data_problems(assignment: Assignment) -> list[str]:
    """The data sets checked at their path on this node, once per worker process."""
    from .batch import data_problems
    key = json.dumps([[d.name, str(d.path)] for d in assignment.data])
    if key not in _data_checked:
        _data_checked[key] = data_problems(assignment)
    return _data_checked[key]


_environments: dict[str, tuple[str, ...]] = {}


def node_environment(job: Job, torch: bool) -> tuple[str, ...]:
    """How this node's kernel packages differ from the list, found out once per worker process
    (the local executor finds it out once per batch; per submission it cost ~0.1 s)."""
    from ..sandbox import registry
    from .summary import environment_differences
    key = json.dumps([repr(job.backend), torch])
    if key not in _environments:
        _environments[key] = tuple(environment_differences(registry.make(job.backend), torch))
    return _environments[key]


@contextlib.contextmanager
def main_hidden():
    """A fork-server child imports its parent's ``__main__`` before it runs (multiprocessing's
    preparation data): in a Ray worker that is Ray's ``default_worker.py``, all of Ray, ~0.3 s
    a submission that the grading worker never uses. Hidden while the worker is started."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is None:
            del sys.modules["__main__"]
        else:
            sys.modules["__main__"] = main


# -- on the node -----------------------------------------------------------------------------
RUN_PREFIX = "gk-ray-"         # a task's run folder: gk-ray-<node>-<pid of its Ray worker>-<random>


def sweep_runs() -> None:
    """Remove the run folders of Ray workers that are gone: a task cancelled at the hard
    limit, or lost with its worker, never reaches its own ``finally``."""
    for folder in Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}*-*-*"):
        pid = folder.name[len(RUN_PREFIX):].split("-")[1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            remove_tree(folder)


def node_main(job_file: str, log_file: str, environ: dict, cwd: str) -> None:
    """The forked worker on a node: today's worker, dying with the Ray worker above it, with
    the shipped ``reference`` package first on its path."""
    from .worker import detach, main
    detach(log_file, environ, cwd)
    die_with_parent()
    course = Job.from_json(json.loads(Path(job_file).read_text())).course
    if (course / "reference").is_dir():
        sys.path.insert(0, str(course))
    sys.exit(main([job_file]))


def die_with_parent() -> None:
    """SIGKILL this process when its parent (the fork server, which ends with its Ray worker) ends."""
    import ctypes
    import signal
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:
        os._exit(1)


def _entry(name: str):
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def grade_on_node(job_data: dict, notebook: str | dict[str, str], files: bytes | None, bundle_sha: str,
                  bundle: bytes, wall: float, version: str, entry: str, wants_gpu: bool):
    """The Ray task (a generator): yields ``"started"`` as soon as it runs on its node (the
    driver's backstop for the hard limit counts from there, not from the queue), then one
    :class:`NodeResult` as JSON data. ``notebook``: the notebook's text; with [[parts]],
    part id -> text of each part found."""
    import ray
    started = time.time()
    yield "started"
    node_id = ray.get_runtime_context().get_node_id()
    gpus = [str(g) for g in ray.get_gpu_ids()] if wants_gpu else []
    outcome = _grade_here(node_id, gpus, job_data, notebook, files, bundle_sha, bundle, wall, version, entry)
    done = dict(report=outcome[0], executed=outcome[1]) if isinstance(outcome, tuple) else dict(reason=outcome)
    yield NodeResult(node=node_id, started=started, finished=time.time(), gpus=gpus, **done).to_json()


def _grade_here(node_id: str, gpus: list[str], job_data: dict, notebook: str | dict[str, str], files: bytes | None,
                bundle_sha: str, bundle: bytes, wall: float, version: str, entry: str):
    """Grade on this node: (report, executed notebook), or why there is no report."""
    if version != __version__:
        return (f"node {node_id[:12]} runs gradekit {__version__}, the driver {version}: "
                "install the same gradekit on every node")
    from ..spec import load
    node = node_dir(node_id)
    course = unpack_course(bundle, bundle_sha, node)
    problem = exposure(node) or exposure(course)
    if problem:
        return problem
    job = Job.from_json(job_data)
    assignment = load(job.assignment, course)
    problems = node_data_problems(assignment.with_data(job.data))
    if problems:
        return f"the data sets on node {node_id[:12]} are not ready: " + "; ".join(problems[:5])
    sweep_runs()
    run_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{node_id[:8]}-{os.getpid()}-"))
    os.chmod(run_dir, 0o711)  # the kernel's user passes through to its own folders only
    key = job.report_dir.name
    proc = None
    try:
        parts = job.parts
        if isinstance(notebook, dict):  # [[parts]]: each part found, in a file of its own
            (run_dir / "parts").mkdir()
            parts = tuple(jp if jp.notebook is None else dataclasses.replace(
                jp, notebook=_written(run_dir / "parts" / f"{jp.part}.ipynb", notebook[jp.part])) for jp in job.parts)
            nb_path = next(jp.notebook for jp in parts if jp.notebook is not None)
        else:
            nb_path = _written(run_dir / "notebook.ipynb", notebook)
        files_dir = None
        if files is not None:
            files_dir = run_dir / "files"
            files_dir.mkdir()
            with tarfile.open(fileobj=io.BytesIO(files), mode="r") as tar:
                tar.extractall(files_dir, filter="data")
        report_dir = run_dir / "reports" / key  # the folder's name is the submission's id
        report_dir.mkdir(mode=0o700, parents=True)
        os.chmod(report_dir.parent, 0o700)
        here = dataclasses.replace(job, course=course, notebook=nb_path, parts=parts, report_dir=report_dir,
                                   work_root=run_dir / "job", gpus=tuple(gpus),
                                   hidden=(node, run_dir, *[p for p in job.hidden if p.exists()]),
                                   files_dir=files_dir, environment=node_environment(job, assignment.torch))
        job_file, log_file = run_dir / "job.json", run_dir / "worker.log"
        write_job(here, job_file)
        with main_hidden():
            proc = launcher.start(job_file, log_file, name=f"gradekit-worker-{key[:12]}", target=_entry(entry))
        outcome = finish_worker(proc, log_file, report_dir, wall, where=f" on node {node_id[:12]}")
        if isinstance(outcome, str):
            return outcome
        # executed.ipynb, or executed_<part>.ipynb per part: written by the worker, for staff
        return outcome, {f.name: f.read_text() for f in sorted(report_dir.glob("executed*.ipynb"))}
    except KeyboardInterrupt:  # ray.cancel: the worker and everything it started go now
        if proc is not None:
            launcher.kill_group(proc)
            launcher.wait(proc, None)
        raise
    finally:
        remove_tree(run_dir)


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- on the driver ---------------------------------------------------------------------------
def _files_tar(folder: Path | None) -> bytes | None:
    if folder is None or not folder.is_dir():
        return None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buf.getvalue()


def _retryable(ray, exc: BaseException) -> bool:
    """A failure of the machinery (a node or worker lost), not of the grading code."""
    ex = ray.exceptions
    kinds = tuple(getattr(ex, n) for n in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                           "OwnerDiedError", "LocalRayletDiedError", "RaySystemError",
                                           "ObjectFetchTimedOutError", "ReferenceCountingAssertionError")
                  if hasattr(ex, n))
    return isinstance(exc, kinds)


class RayExecutor:
    """One Ray task per submission; as many submissions at once as the cluster has slots."""

    name = "ray"
    environment = None  # each node finds out its own kernel environment

    def __init__(self, assignment: Assignment, limits: Limits, options, stopping: threading.Event):
        ray = self.ray = _ray()
        self.stopping, self.retries = stopping, max(0, options.ray_retries)
        self.wall = assignment.hard_wall(limits)  # with [[parts]]: every part's notebook and grading
        self.owned = False
        if not ray.is_initialized():
            if options.ray_address:
                ray.init(address=options.ray_address, log_to_driver=False)
            else:  # a Ray of our own on this machine, one slot per worker
                slots = max(1, options.workers)
                ray.init(num_cpus=slots, resources={SLOT: slots}, include_dashboard=False, log_to_driver=False)
            self.owned = True
        self.wants_gpu = assignment.gpu != "none" and (assignment.gpu == "required" or ray.cluster_resources().get("GPU", 0) > 0)
        resource = "GPU" if self.wants_gpu else SLOT
        total = int(ray.cluster_resources().get(resource, 0))
        if total < 1:
            self.close()
            raise ExecutorUnavailable(
                f"the Ray cluster has no {resource!r} resource: start each node with "
                + ("--num-gpus N" if self.wants_gpu else f"--resources '{{\"{SLOT}\": N}}'")
                + " (N submissions graded at once on that node)")
        self.slots = total
        self.task_options = {"num_gpus": 1, "num_cpus": 0} if self.wants_gpu else {"resources": {SLOT: 1}, "num_cpus": 0}
        self.task = ray.remote(max_retries=0, retry_exceptions=False)(grade_on_node)
        bundle = course_bundle(assignment)
        self.bundle_sha = hashlib.sha256(bundle).hexdigest()
        self.bundle = ray.put(bundle)

    def _send(self, job: Job, notebook: str, files: bytes | None):
        return self.task.options(**self.task_options).remote(
            job.to_json(), notebook, files, self.bundle_sha, self.bundle, self.wall, __version__,
            NODE_ENTRY, self.wants_gpu)

    def run(self, job: Job, key: str) -> Report | str:
        files = _files_tar(job.files_dir)
        notebook = ({jp.part: jp.notebook.read_text() for jp in job.parts if jp.notebook is not None}
                    if job.parts else job.notebook.read_text())
        attempt = 1
        while True:
            if self.stopping.is_set():
                return "grading was interrupted before this submission started"
            try:
                value = self._follow(self._send(job, notebook, files))
            except Exception as exc:
                if not _retryable(self.ray, exc):
                    raise
                if attempt > self.retries:
                    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                    return (f"grading was lost {attempt} times with the node it ran on and was not "
                            f"tried again: {type(exc).__name__}: {first}")
                attempt += 1
                continue
            if isinstance(value, str):
                return value
            if value.report is None:
                return value.reason or "the grading task returned no report"
            report = value.report
            report.placement = Placement(executor="ray", node=value.node, attempts=attempt, gpus=value.gpus,
                                         started=value.started, finished=value.finished)
            if attempt > 1:
                report.notes.append(f"Graded on attempt {attempt}: the machine that graded it before was lost "
                                    "before it finished. Only this attempt counts.")
            job.report_dir.mkdir(parents=True, exist_ok=True)
            for name, text in value.executed.items():
                if EXECUTED.fullmatch(name):  # a plain file name the worker gives, nothing else
                    write_atomic(job.report_dir / name, text)
            write_all(report, job.report_dir)  # the one report of this submission
            return report

    def _follow(self, gen) -> NodeResult | str:
        """One task to its end: its result, or why there is none. Raises Ray's error when the
        task was lost with its node or worker (the caller sends it again)."""
        ray = self.ray
        # queued until a node has a free slot (or GPU): no time limit for that
        reason = self._await(gen, None, "grading was interrupted before this submission started")
        if reason is None:
            ray.get(next(gen))  # "started"
            # the node stops its worker at the hard limit; this is the backstop for a node that does not
            reason = self._await(gen, self.wall + DRIVER_MARGIN, "grading was interrupted before this submission finished")
        if reason is not None:
            return reason
        try:
            return NodeResult.from_json(ray.get(next(gen)))
        except ray.exceptions.TaskCancelledError:
            return "grading was interrupted before this submission finished"
        except ray.exceptions.RayTaskError as exc:  # the task's own code raised
            return f"the grading task failed: {str(exc).strip().splitlines()[-1][:500]}"

    def _await(self, gen, limit: float | None, interrupted: str) -> str | None:
        """Wait for the task's next value: None when it is there, or why it was cancelled."""
        deadline = None if limit is None else time.monotonic() + limit
        while not self.ray.wait([gen], timeout=0.5)[0]:
            if self.stopping.is_set():
                self._cancel(gen)
                return interrupted
            if deadline is not None and time.monotonic() > deadline:
                self._cancel(gen)
                return hard_limit_reason(self.wall)
        return None

    def _cancel(self, gen) -> None:
        """Cancel a task: first as an interrupt (the node kills its worker and all it started),
        then by killing its Ray worker (the worker dies with it: ``PR_SET_PDEATHSIG``)."""
        self.ray.cancel(gen)
        if not self.ray.wait([gen], timeout=CANCEL_GRACE)[0]:
            self.ray.cancel(gen, force=True)

    def stop(self) -> None:
        """Ctrl-C: each thread following a task sees ``stopping`` within half a second and cancels it."""

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
            self.owned = False
