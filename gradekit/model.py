"""The records that cross stages: one limits config, the jobs, and every result.

Each is a dataclass with ``to_json()`` (plain JSON data) and ``from_json(data)``; nothing
crosses a process boundary or lands on disk as an ad-hoc dict. ``report.json`` is
:meth:`Report.to_json` written out, and reading it back gives the same :class:`Report`.

The pipeline, and who makes what::

    intake ──▶ Job ──▶ run.worker ──▶ KernelJob ──▶ sandbox + kernel ──▶ ExecutionResult
                                                                           │
                         Report ◀── report.build ◀── TestResult ◀── grading (pytest)
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import types
import typing
from pathlib import Path
from typing import Any

#: How an assignment uses GPUs (``gpu = ...`` in assignment.toml); defined here only.
GPU_MODES = ("none", "optional", "required")
#: Report status: graded (the graders ran), rejected (intake refused the notebook), missing
#: (a submitter handed in no notebook), error (the harness failed; not the student's fault).
REPORT_STATUSES = ("graded", "rejected", "missing", "error")
# 3: Report.parts and QuestionResult.part (a submission of several notebooks); a report of one
# notebook has the shape of 2 with these empty
SCHEMA = 3


class RecordError(ValueError):
    """A record's data is malformed (a stale report.json, a job file from another version)."""


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def _from_json(tp: Any, data: Any) -> Any:
    """Rebuild ``tp`` (a dataclass, Path, tuple/list/dict of them, or a plain type) from JSON."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if data is None else _from_json(args[0], data)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise RecordError(f"{tp.__name__}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(data) - names
        if unknown:
            raise RecordError(f"{tp.__name__}: unknown fields {sorted(unknown)}")
        try:
            return tp(**{k: _from_json(hints[k], v) for k, v in data.items()})
        except TypeError as exc:
            raise RecordError(f"{tp.__name__}: {exc}") from None
    if tp is Path:
        return Path(data)
    if origin in (tuple, list):
        args = typing.get_args(tp)
        items = [_from_json(args[0] if args else Any, v) for v in data]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        _, vt = typing.get_args(tp) or (Any, Any)
        return {k: _from_json(vt, v) for k, v in data.items()}
    if tp is float and isinstance(data, int):
        return float(data)
    return data


class Record:
    """``to_json`` / ``from_json`` for the dataclasses below."""

    def to_json(self) -> dict:
        return _to_json(self)

    @classmethod
    def from_json(cls, data: dict):
        return _from_json(cls, data)


# -- limits -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Limits(Record):
    """Every limit of one submission's grading, in one validated record.

    Set in ``[limits]`` of assignment.toml, overridden on the command line (``gradekit grade
    --memory-mb ...``: every field is an option). Defaults suit a CPU notebook of a few minutes.
    """

    memory_mb: int = 2048          # the kernel's memory, swap included
    cpus: float = 1.0              # CPU share of the kernel
    pids: int = 256                # processes and threads of the kernel
    file_size_mb: int = 256        # largest single file the kernel may write
    disk_mb: int = 512             # size of each writable folder of the kernel (tmpfs)
    output_bytes: int = 64_000     # cell output kept per cell in the report
    max_cells: int = 1000          # code cells run (and reported) at most
    cell_timeout: float = 120.0    # seconds for one cell
    total_timeout: float = 900.0   # seconds for the whole notebook
    call_timeout: float = 60.0     # seconds for one bridge call made by a grader
    grading_allowance: float = 300.0  # seconds on top of total_timeout: kernel start, graders, reports

    HELP: typing.ClassVar[dict[str, str]] = {
        "memory_mb": "memory of the student's kernel, MB (swap included)",
        "cpus": "CPU share of the kernel (1.5 = one and a half cores)",
        "pids": "processes and threads the kernel may run",
        "file_size_mb": "largest single file the kernel may write, MB",
        "disk_mb": "size of each folder the kernel may write, MB",
        "output_bytes": "cell output kept per cell in the report, bytes",
        "max_cells": "code cells of a notebook that are run and reported, at most",
        "cell_timeout": "time limit of one cell, s",
        "total_timeout": "time limit of the whole notebook, s",
        "call_timeout": "time limit of one bridge call made by a grader, s",
        "grading_allowance": "time for kernel start, graders and reports on top of total_timeout, s",
    }

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = int if f.type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"limits.{f.name} must be a number, not {value!r}")
            if kind is int and float(value) != int(value):
                raise ValueError(f"limits.{f.name} must be a whole number, not {value!r}")
            if value <= 0:
                raise ValueError(f"limits.{f.name} must be positive, not {value!r}")
            object.__setattr__(self, f.name, kind(value))

    def replace(self, **changes) -> "Limits":
        """A copy with the given fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def hard_wall(self) -> float:
        """Seconds one submission's grading may take at most, end to end."""
        return self.total_timeout + self.grading_allowance


# -- jobs ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BackendChoice(Record):
    """A sandbox backend by registry name, with its options (JSON data: it travels in a Job)."""

    name: str = "process"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DataMount(Record):
    """A data set the kernel reads: ``source`` on the host, read-only at ``$GRADEKIT_DATA/name``."""

    name: str
    source: Path


@dataclasses.dataclass
class KernelJob(Record):
    """One kernel's run in a sandbox: its private folders on the host and what it may use."""

    id: str
    root: Path                     # private to this job; removed after grading
    limits: Limits
    hidden_paths: tuple[Path, ...] = ()
    data: tuple[DataMount, ...] = ()  # data sets, mounted read-only
    gpus: tuple[str, ...] = ()     # device ids leased to this job ("0", "1", ...)
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def work_dir(self) -> Path:
        """The notebook's working directory (the only place it may write, besides /tmp)."""
        return self.root / "work"

    @property
    def ipc_dir(self) -> Path:
        """Holds the connection file and the kernel's IPC sockets."""
        return self.root / "ipc"

    @property
    def connection_file(self) -> Path:
        return self.ipc_dir / "kernel.json"


@dataclasses.dataclass(frozen=True)
class Job(Record):
    """What a worker grades: one notebook of one submitter, and everything the run decided."""

    assignment: str                # assignment id
    course: Path                   # the course root (assignments/, graders/)
    notebook: Path                 # the notebook, written by the batch (trusted copy)
    sha256: str
    submitter: str                 # who handed it in, for people ("alice", "hw.ipynb")
    sources: tuple[str, ...]       # where it came from, relative to what was given
    report_dir: Path               # where the worker writes the report
    work_root: Path                # the kernel's private folders live under here
    backend: BackendChoice
    limits: Limits
    hidden: tuple[Path, ...] = ()  # folders the kernel must not see, besides the course
    gpus: tuple[str, ...] = ()
    secret: str = ""
    fingerprint: str = ""          # of the grading setup, for --resume
    environment: tuple[str, ...] | None = None  # how the backend's kernel packages differ (None: not known yet)
    files_dir: Path | None = None  # the files handed in beside the notebook (trusted copies), if any
    handed_in: "HandedInFiles | None" = None  # what the report says of them
    data: dict[str, Path] = dataclasses.field(default_factory=dict)  # where this run found each data set
    check_secrets: tuple[str, ...] = ()  # run the graders again under these secrets (Report.seed_scores)
    parts: tuple[JobPart, ...] = ()  # several notebooks (the spec's parts), in the spec's order; then
    #                                  ``notebook`` is the first part's found and ``sha256`` covers all
    notes: tuple[str, ...] = ()    # what intake said for the student (notebooks not graded, and why)


@dataclasses.dataclass(frozen=True)
class JobPart(Record):
    """One notebook of a submission made of several (the spec's ``[[parts]]``): which part,
    and the notebook found for it (``notebook`` None: none was, ``reason`` says why)."""

    part: str                      # the part's id in the spec
    notebook: Path | None = None   # written by the batch (trusted copy)
    sha256: str = ""
    source: str = ""               # where it came from, relative to what was given
    note: str = ""                 # for the student: how it was recognised, when not by its name
    reason: str = ""               # no notebook: why ("no notebook for Problem 2 found (...)")
    missing: bool = True           # no notebook at all (False: one was refused; reason says why)


# -- results ------------------------------------------------------------------------------
@dataclasses.dataclass
class CellResult(Record):
    index: int                   # position in the notebook, all cells counted from 0
    status: str                  # ok | error | timeout | died | skipped
    duration: float = 0.0
    error: str | None = None     # "ValueError: bad shape", or why it did not run
    source_head: str = ""        # first line of the cell, for people
    output_truncated: bool = False
    number: int = 0              # the code cell's number, counted from 1 (as people count)
    traceback: str = ""          # the student's frames only, plain text


@dataclasses.dataclass
class ExecutionResult(Record):
    status: str                  # completed | completed_with_errors | timeout | died | failed_to_start
    cells: list[CellResult]
    duration: float
    restarts: int = 0
    message: str | None = None   # plain words for the report when something went wrong


@dataclasses.dataclass
class TestResult(Record):
    name: str
    question: str
    points_possible: float
    points_earned: float
    status: str          # passed | failed | error (the grader itself broke) | skipped
    visibility: str
    message: str = ""
    duration: float = 0.0
    public: bool = False


@dataclasses.dataclass
class CellOutput(Record):
    """What a cell showed, kept for a question's feedback (a plot, a printed table)."""

    number: int                  # the code cell, counted from 1
    text: str = ""               # text and stream outputs, capped
    images: list[str] = dataclasses.field(default_factory=list)  # PNG images, base64


@dataclasses.dataclass
class QuestionResult(Record):
    id: str
    title: str
    points_possible: float
    points_earned: float | None  # None: graded by staff
    manual: bool
    status: str                  # passed | partial | failed | not_graded | manual
    message: str = ""            # the first failure, for the student (one entry per question)
    outputs: list[CellOutput] = dataclasses.field(default_factory=list)  # cells the question points at
    part: str = ""               # the part (notebook) it was graded in; "" when there are no parts


@dataclasses.dataclass
class AssignmentRef(Record):
    id: str
    title: str


@dataclasses.dataclass
class SubmissionRef(Record):
    id: str                      # the report folder's name
    sha256: str
    submitter: str               # who, for people
    sources: list[str]           # where it came from (relative: no host paths for students)
    identical_to: list[str] = dataclasses.field(default_factory=list)  # other submitters, same bytes


@dataclasses.dataclass
class SandboxInfo(Record):
    backend: str
    isolated: bool
    limits: Limits
    gpus: list[str] = dataclasses.field(default_factory=list)
    mode: str = ""               # the backend's own mode (process: namespaces | uid-drop | same-user)
    environment: list[str] = dataclasses.field(default_factory=list)  # how the kernel's packages differ


@dataclasses.dataclass
class InjectedParameters(Record):
    """Grading-time parameters (papermill's convention) and where they went."""

    values: dict[str, Any]
    tagged_cell: int | None      # the code cell tagged `parameters` (counted from 1), None: not found
    note: str = ""


@dataclasses.dataclass
class HandedInFiles(Record):
    """Files beside the notebook: copied into the kernel's folder, or not, and why."""

    accepted: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)    # match no pattern of the spec
    refused: list[str] = dataclasses.field(default_factory=list)    # "weights/big.pt: 80 MB, over ..."


@dataclasses.dataclass
class Platform(Record):
    """What the notebook's kernel saw (reported by the kernel: for people, not trusted)."""

    python: str = ""
    torch: str = ""
    cuda: str = ""               # the CUDA version torch was built with
    device: str = ""             # "cpu", or the GPU's name
    driver: str = ""             # the NVIDIA driver, when a GPU is visible
    tf32: str = ""               # whether TF32 was allowed for convolutions / matmuls


@dataclasses.dataclass
class Placement(Record):
    """Where a submission was graded when the batch sent it to a cluster (``--executor ray``)."""

    executor: str                # "ray"
    node: str = ""               # the node's id (Ray's)
    attempts: int = 1            # 2 or more: earlier attempts were lost with their node and graded again
    gpus: list[str] = dataclasses.field(default_factory=list)  # node-local device ids the cluster leased
    started: float = 0.0         # on the node, seconds since the epoch
    finished: float = 0.0

    @property
    def retried(self) -> bool:
        return self.attempts > 1


@dataclasses.dataclass
class PartResult(Record):
    """One notebook of a submission made of several: how it ran (its questions are in
    ``Report.questions``, each with ``part`` set)."""

    id: str
    title: str
    status: str                  # graded | missing (no notebook) | rejected (refused) | error
    questions: list[str]
    source: str = ""             # the notebook's place, relative
    sha256: str = ""
    note: str = ""               # how it was recognised, when not by its name
    reason: str | None = None    # plain words, when something went wrong
    execution: ExecutionResult | None = None
    seed: int | None = None
    timing: dict[str, float] = dataclasses.field(default_factory=dict)
    time_limit: float | None = None  # seconds its notebook had (what the shared budget left, at most the limit)
    parameters: InjectedParameters | None = None
    platform: Platform | None = None


@dataclasses.dataclass
class Report(Record):
    """One submission's grading: the source of truth every rendering is made from."""

    assignment: AssignmentRef
    submission: SubmissionRef
    status: str
    score: float
    auto_points_possible: float
    manual_points_possible: float
    max_score: float
    questions: list[QuestionResult]
    reason: str | None = None
    tests: list[TestResult] = dataclasses.field(default_factory=list)
    execution: ExecutionResult | None = None
    sandbox: SandboxInfo | None = None
    seed: int | None = None
    timing: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)          # for the student
    grader_problems: list[str] = dataclasses.field(default_factory=list)  # for staff only
    fingerprint: str | None = None
    parameters: InjectedParameters | None = None
    files: HandedInFiles | None = None
    platform: Platform | None = None
    placement: Placement | None = None   # graded on a cluster node: which, and after how many attempts
    # the scores the graders gave the same executed notebook under Job.check_secrets (other
    # inputs): for authors proving a verdict does not depend on the seed; never the score
    seed_scores: list[float] = dataclasses.field(default_factory=list)
    created: str = dataclasses.field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    gradekit: str = ""
    schema: int = SCHEMA
    parts: list[PartResult] = dataclasses.field(default_factory=list)  # several notebooks: one each, spec order

    @property
    def graders_broken(self) -> bool:
        return bool(self.grader_problems)

    def score_text(self) -> str:
        return f"{self.score:g}/{self.auto_points_possible:g}"
