"""Grade a class: intake, one worker process per distinct notebook, a report per submitter.

The steps, in order:

1. intake finds one item per submitter (:mod:`gradekit.intake`);
2. the graders are collected once, before any submission runs: points that disagree with
   the spec, or a grader that cannot be imported, stop the batch (:class:`GradersBroken`);
3. each distinct notebook is graded once, by a worker process of its own
   (:mod:`.launcher`); a crash, a hang past the hard limit or Ctrl-C ends as a report with
   the reason, and the rest of the batch goes on;
4. every submitter gets a report folder of their own (``OUT/<submitter>-<hash>/``), also
   when their notebook is byte-identical to another's (the report says whose);
5. ``OUT/gradebook.csv`` covers every report in OUT, the newest per submitter.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import nbformat

from .. import intake
from ..grading.runner import check_graders
from ..intake import IntakeItem
from ..intake import files as handed_in
from ..model import BackendChoice, Job, Limits, RecordError, Report, SubmissionRef
from ..report import build
from ..report.render.gradebook import gradebook
from ..report.write import read, write_all, write_atomic
from ..sandbox import registry
from ..sandbox.cleanup import remove_tree
from ..spec import Assignment
from . import resume
from .executor import EXECUTORS, Executor, ExecutorUnavailable, LocalExecutor
from .progress import BatchProgress
from .summary import environment_differences

GRADEBOOK = "gradebook.csv"


class GradersBroken(RuntimeError):
    """The graders disagree with the spec or cannot be collected; no submission was graded."""

    what = "the graders are broken"

    def __init__(self, problems: list[str]):
        super().__init__(f"{self.what}, so no submission was graded:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


class DataMissing(GradersBroken):
    """A data set the assignment reads is missing or not in its format; nothing was graded."""

    what = "the assignment's data sets are not ready"


def data_problems(assignment: Assignment) -> list[str]:
    """What is wrong with the assignment's data sets on this machine (cheap: structure only)."""
    from ..data.formats import check
    problems = []
    for d in assignment.data:
        found = check(d.format, d.path)
        problems += [f"data set {d.name!r} ({d.format}, {d.path}): {p}" for p in found[:5]]
        if found:
            problems.append(f"data set {d.name!r}: give its location with --data {d.name}=DIR or "
                            f"{d.env_override}=DIR, or make a synthetic one: "
                            f"gradekit data synth DIR --assignment {assignment.id} --name {d.name}")
    return problems


@dataclasses.dataclass
class BatchOptions:
    backend: BackendChoice = dataclasses.field(default_factory=BackendChoice)
    workers: int = 1
    limits: Limits | None = None
    gpus: list[str] = dataclasses.field(default_factory=list)  # one device per running job
    secret: str = ""
    progress: bool = True
    resume: bool = False    # reuse reports whose submission and grading setup are unchanged
    on_done: Callable[[Report], None] | None = None  # called as each submission finishes (any thread)
    data: dict[str, Path] = dataclasses.field(default_factory=dict)  # data sets found elsewhere (--data)
    executor: str = "local"  # where workers run: local (fork-server processes) | ray (a Ray cluster's nodes)
    ray_address: str | None = None  # --executor ray: an existing cluster ("auto", "HOST:6379"); None: a local Ray
    ray_retries: int = 2     # --executor ray: attempts added when a node dies under a submission
    check_secrets: tuple[str, ...] = ()  # graders run again under these secrets (Report.seed_scores)


def make_executor(batch: "_Batch", options: BatchOptions) -> Executor:
    if options.executor == "local":
        # the kernel environment is the same for every submission: found out once (~50 ms)
        environment = tuple(environment_differences(registry.make(options.backend), batch.assignment.torch))
        return LocalExecutor(batch.run_dir, options.workers, options.gpus if batch.assignment.gpu != "none" else [],
                             batch.assignment.hard_wall(batch.limits), batch.stopping, environment)
    if options.executor == "ray":
        from .ray_executor import RayExecutor  # imports ray lazily: says how to install it when missing
        return RayExecutor(batch.assignment, batch.limits, options, batch.stopping)
    raise ExecutorUnavailable(f"unknown executor {options.executor!r}; choose from {', '.join(EXECUTORS)}")


def report_folder(submitter: str) -> str:
    """A submitter's report folder name: readable, safe on any file system, and distinct."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", submitter).strip("-.")[:40] or "submission"
    return f"{slug}-{hashlib.sha256(submitter.encode()).hexdigest()[:8]}"


def _ref(item: IntakeItem, identical: list[str] = ()) -> SubmissionRef:
    return SubmissionRef(id=report_folder(item.submitter), sha256=item.sha256, submitter=item.submitter,
                         sources=[item.source], identical_to=[s for s in identical if s != item.submitter])


def _for_submitter(report: Report, item: IntakeItem, identical: list[str]) -> Report:
    """The report of an identical notebook, as this submitter's own."""
    copy = Report.from_json(report.to_json())
    copy.submission = _ref(item, identical)
    return copy


class _Batch:
    def __init__(self, assignment: Assignment, out_dir: Path, options: BatchOptions):
        self.assignment, self.out_dir, self.options = assignment, out_dir, options
        self.limits = options.limits or assignment.limits
        self.setup = resume.fingerprint(assignment, self.limits, options.secret)
        self.run_dir = Path(tempfile.mkdtemp(prefix="gk-"))
        os.chmod(self.run_dir, 0o711)
        self.stopping = threading.Event()
        try:
            self.executor = make_executor(self, options)
        except BaseException:
            remove_tree(self.run_dir)
            raise

    def fingerprint_of(self, item: IntakeItem) -> str:
        """The setup's fingerprint, and the files handed in beside the notebook (for --resume)."""
        if not item.files:
            return self.setup
        return hashlib.sha256(f"{self.setup}|{item.content_key}".encode()).hexdigest()[:32]

    def finish(self, report: Report, progress: BatchProgress, how: str | None = None) -> Report:
        progress.done(report, how)
        if self.options.on_done is not None:
            self.options.on_done(report)
        return report

    def grade_group(self, items: list[IntakeItem], progress: BatchProgress) -> list[Report]:
        """Grade one distinct notebook and give each of its submitters a report."""
        first = items[0]
        submitters = [i.submitter for i in items]
        folder = self.out_dir / report_folder(first.submitter)
        report, how = None, None
        if self.options.resume:
            report, how = resume.reusable(folder, first.sha256, self.fingerprint_of(first)), "reused"
        if report is None:
            report, how = self.run_worker(first, folder), None
        out = []
        for item in items:
            mine = _for_submitter(report, item, submitters)
            if mine.submission != report.submission:  # the worker wrote the first one's already
                write_all(mine, self.out_dir / mine.submission.id)
            out.append(self.finish(mine, progress, how))
        return out

    def run_worker(self, item: IntakeItem, folder: Path) -> Report:
        """Grade ``item`` with the batch's executor; its report is in ``folder`` when this returns."""
        key = item.content_key[:16]
        nb_path = self.run_dir / f"{key}.ipynb"
        parts = intake.write_parts(item, self.run_dir, key)
        if item.parts:
            nb_path = next(p.notebook for p in parts if p.notebook is not None)
        elif item.spooled is not None:
            shutil.copyfile(item.spooled, nb_path)
        else:
            nbformat.write(item.notebook, str(nb_path))
        files_dir = None
        if item.files:
            files_dir = self.run_dir / f"{key}-files"
            handed_in.write(item.files, files_dir)
        job = Job(assignment=self.assignment.id, course=self.assignment.course, notebook=nb_path,
                  sha256=item.sha256, submitter=item.submitter, sources=(item.source,), report_dir=folder,
                  work_root=self.run_dir / key, backend=self.options.backend, limits=self.limits,
                  hidden=(self.out_dir, self.run_dir), secret=self.options.secret,
                  fingerprint=self.fingerprint_of(item), environment=self.executor.environment, files_dir=files_dir,
                  handed_in=item.handed_in, data={d.name: d.path for d in self.assignment.data},
                  check_secrets=tuple(self.options.check_secrets), parts=tuple(parts), notes=tuple(item.notes))
        try:
            (folder / "report.json").unlink(missing_ok=True)
            if self.stopping.is_set():
                raise KeyboardInterrupt
            outcome = self.executor.run(job, key)
        except KeyboardInterrupt:
            outcome = "grading was interrupted before this submission started"
        if isinstance(outcome, Report):
            return outcome
        failed = build.failed(self.assignment, _ref(item), outcome)  # the worker wrote none: the batch does
        write_all(failed, folder)
        return failed

    def stop(self) -> None:
        self.stopping.set()
        self.executor.stop()


def newest_reports(out_dir: Path) -> list[Report]:
    """Every report in ``out_dir``, the newest per submitter (earlier runs included)."""
    newest: dict[str, Report] = {}
    for path in sorted(out_dir.glob("*/report.json")):
        try:
            r = read(path.parent)
        except (OSError, ValueError, RecordError):
            continue
        old = newest.get(r.submission.submitter)
        if old is None or r.created >= old.created:
            newest[r.submission.submitter] = r
    return list(newest.values())


def write_gradebook(out_dir: Path, assignment: Assignment) -> Path:
    path = out_dir / GRADEBOOK
    write_atomic(path, gradebook(newest_reports(out_dir), [q.id for q in assignment.questions]))
    return path


def grade_batch(paths: list[str | Path], assignment: Assignment, out_dir: Path, options: BatchOptions) -> list[Report]:
    """Grade every submission in ``paths``; returns this run's reports, one per submitter."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    problems = check_graders(assignment)
    if problems:
        raise GradersBroken(problems)
    assignment = assignment.with_data(options.data)  # the workers read the data sets from here
    problems = data_problems(assignment)
    if problems:
        raise DataMissing(problems)
    # the notebooks wait on disk, one file per distinct content, not in memory (issue 17.13);
    # 0700: nothing but the trusted side reads the copies
    spool = Path(tempfile.mkdtemp(prefix="gk-intake-"))
    try:
        with intake.spooling(spool):
            items = intake.collect(paths, assignment.id, assignment.files, assignment.parts)
        groups: dict[str, list[IntakeItem]] = {}
        for item in items:
            if item.gradable:
                groups.setdefault(item.content_key, []).append(item)
        batch = _Batch(assignment, out_dir, options)
        try:
            return _grade_groups(batch, items, groups, options)
        finally:
            batch.executor.close()
    finally:
        remove_tree(spool)


def _grade_groups(batch: _Batch, items: list[IntakeItem], groups: dict[str, list[IntakeItem]],
                  options: BatchOptions) -> list[Report]:
    assignment, out_dir = batch.assignment, batch.out_dir
    results: list[Report] = []
    with BatchProgress(len(items), options.progress) as progress:
        for item in items:
            if not item.gradable:
                make = build.missing if item.missing else build.rejected
                report = make(assignment, _ref(item), item.rejected)
                if item.parts:
                    build.parts_not_run(report, assignment, {pid: (one.missing, one.rejected or "")
                                                             for pid, one in item.parts.items()})
                write_all(report, out_dir / report.submission.id)
                results.append(batch.finish(report, progress))
        try:
            with ThreadPoolExecutor(max_workers=max(1, batch.executor.slots)) as pool:
                futures = [pool.submit(batch.grade_group, group, progress) for group in groups.values()]
                try:
                    pending = set(futures)
                    while pending:  # wake up now and then so Ctrl-C is heard
                        _, pending = wait(pending, timeout=0.5)
                except KeyboardInterrupt:
                    batch.stop()
                    for f in futures:
                        f.cancel()
                    raise
                for f in futures:
                    results.extend(f.result())
        finally:
            remove_tree(batch.run_dir)  # any tree a notebook made; never raises
            write_gradebook(out_dir, assignment)
    return results
