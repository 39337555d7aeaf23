"""Grade one submission, end to end: a :class:`~gradekit.model.Job` in, a Report out.

:mod:`gradekit.run.batch` runs :func:`forked_main` per submission in a process forked
from a fork server that has imported this module once, so that a crash, a hang or a leak
in one grading run costs that submission alone; ``python -m gradekit.run.worker JOB.json``
does the same from a fresh interpreter. :func:`grade` is the in-process core, which
``gradekit check`` and the Gradescope runner call directly.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat

from ..bridge.host import Submission
from ..grading import scoring
from ..grading.runner import run_graders
from ..grading.seeds import submission_seed
from ..kernel.session import KernelSession
from ..kernel.parameters import inject
from ..model import (DataMount, HandedInFiles, InjectedParameters, Job, JobPart, KernelJob, Limits, PartResult, Report,
                     SandboxInfo, SubmissionRef)
from ..report import build
from ..report.write import write_all, write_atomic
from ..sandbox import registry
from ..sandbox.base import Sandbox
from ..spec import Assignment, Part, load
from . import summary
from .outputs import question_outputs

SUSPICIOUS_FILES = ("results.json", "report.json", "gradebook.csv")


def _tampering_notes(submission: Submission) -> list[str]:
    """Files the notebook wrote that look like grading output: ignored, and said so."""
    try:
        found = submission.files_named(list(SUSPICIOUS_FILES))
    except AssertionError:  # the kernel is gone or will not say: no note, nothing lost
        return []
    return [f"Your notebook wrote `{path}`; it was ignored: scores come only from the graders."
            for path in found]


def _parameter_notes(injected: InjectedParameters | None) -> list[str]:
    if injected is None:
        return []
    values = ", ".join(f"{k} = {v!r}" for k, v in injected.values.items())
    where = (f"after your cell {injected.tagged_cell} (tagged `parameters`)" if injected.tagged_cell
             else "before your first cell")
    return [f"Graded with the parameters {values}, set {where}."] + ([injected.note] if injected.note else [])


def _file_notes(handed_in: HandedInFiles | None) -> list[str]:
    if handed_in is None:
        return []
    notes = []
    if handed_in.accepted:
        notes.append("Files handed in with your notebook and given to it: " + ", ".join(f"`{f}`" for f in handed_in.accepted[:20]))
    if handed_in.ignored:
        notes.append("Files ignored (the assignment does not ask for them): " + ", ".join(f"`{f}`" for f in handed_in.ignored[:20]))
    notes += [f"File refused: {why}" for why in handed_in.refused[:20]]
    return notes


def grade(assignment: Assignment, nb: nbformat.NotebookNode, *, submission: SubmissionRef, sandbox: Sandbox,
          job_root: Path, limits: Limits, hidden: tuple[Path, ...] = (), gpus: tuple[str, ...] = (),
          include_hidden: bool = True, secret: str = "", executed_path: Path | None = None,
          environment: tuple[str, ...] | None = None, files_dir: Path | None = None,
          handed_in: HandedInFiles | None = None, check_secrets: tuple[str, ...] = (),
          part: Part | None = None) -> Report:
    """Run the notebook in ``sandbox``, run the graders over it, and return the report.
    With ``executed_path``, the notebook with its (capped) outputs is saved there for staff.
    ``environment``: how the backend's kernel packages differ from the list, when the
    caller already knows (a batch finds out once); else it is found out here.
    ``files_dir``: files handed in beside the notebook, copied into the kernel's folder;
    ``handed_in``: what the report says of them. ``check_secrets``: run the graders again
    on the same kernel with each secret's inputs; their scores go to ``report.seed_scores``.
    ``part``: the notebook is this part of a submission of several (:func:`grade_parts`): only
    the part's questions are graded, and the report holds only them."""
    t0 = time.monotonic()
    only = None if part is None else set(part.questions)
    view = assignment if part is None else assignment.only_part(part)
    seed = submission_seed(submission.sha256, assignment.id, secret)
    injected = inject(nb, assignment.parameters.for_device(bool(gpus)))
    job = KernelJob(id=submission.id, root=job_root, limits=limits, gpus=gpus,
                    data=tuple(DataMount(d.name, d.path) for d in assignment.mounted_data if d.path.is_dir()),
                    hidden_paths=tuple(hidden) + assignment.secret_paths())
    job.root.mkdir(parents=True, exist_ok=True)
    if files_dir is not None and files_dir.is_dir():
        shutil.copytree(files_dir, job.work_dir, symlinks=True, dirs_exist_ok=True)
    session = KernelSession(sandbox, job)
    try:
        execution = session.execute(nb)
        t_exec = time.monotonic() - t0
        if executed_path is not None:
            write_atomic(executed_path, nbformat.writes(nb))
        shown = question_outputs(view, nb)
        bridge = Submission(session, call_timeout=limits.call_timeout, seed=seed, source=submission.submitter)
        notes = _tampering_notes(bridge)
        defined = summary.defined_names(bridge, view)
        platform = summary.platform(bridge) if assignment.torch else None
        tests, problems, t_grade = run_graders(assignment, bridge, include_hidden=include_hidden,
                                               log_path=job.root / "pytest.log", questions=only)
        seed_scores = [_score_under(assignment, session, submission, s, limits, include_hidden, only)
                       for s in check_secrets]
    finally:
        session.close()
    info = SandboxInfo(backend=sandbox.name, isolated=sandbox.isolated, limits=limits, gpus=list(gpus),
                       mode=sandbox.mode, environment=list(
                           summary.environment_differences(sandbox, assignment.torch) if environment is None else environment))
    report = build.graded(
        view, submission, tests=tests, execution=execution, sandbox=info, seed=seed,
        timing={"total": round(time.monotonic() - t0, 3), "execute": round(t_exec, 3), "grade": round(t_grade, 3)},
        notes=notes + _parameter_notes(injected) + _file_notes(handed_in), grader_problems=problems,
        reason=summary.reason(view, execution, defined, tests), outputs=shown,
        parameters=injected, files=handed_in, platform=platform)
    report.seed_scores = seed_scores
    return report


def _score_under(assignment: Assignment, session: KernelSession, submission: SubmissionRef, secret: str,
                 limits: Limits, include_hidden: bool, questions: set[str] | None = None) -> float:
    """The score the graders give the executed notebook with ``secret``'s inputs."""
    seed = submission_seed(submission.sha256, assignment.id, secret)
    bridge = Submission(session, call_timeout=limits.call_timeout, seed=seed, source=submission.submitter)
    tests, _, _ = run_graders(assignment, bridge, include_hidden=include_hidden, questions=questions)
    return scoring.total(scoring.question_rows(assignment.questions, tests))


def grade_parts(assignment: Assignment, parts: tuple[JobPart, ...], *, submission: SubmissionRef, sandbox: Sandbox,
                job_root: Path, limits: Limits, hidden: tuple[Path, ...] = (), gpus: tuple[str, ...] = (),
                include_hidden: bool = True, secret: str = "", executed_dir: Path | None = None,
                environment: tuple[str, ...] | None = None, files_dir: Path | None = None,
                handed_in: HandedInFiles | None = None, check_secrets: tuple[str, ...] = (),
                notes: tuple[str, ...] = ()) -> Report:
    """Grade a submission of several notebooks (the spec's ``[[parts]]``) into one report.

    Each part, in the spec's order, runs in a kernel of its own, exactly as one notebook runs
    in :func:`grade`, and only its questions are graded against that kernel; the kernel is
    shut down before the next part starts. The notebooks share one time budget
    (:meth:`Assignment.time_budget`): each part may run what the parts before it left, at
    most its own ``total_timeout``; each runs under its own limits (:meth:`Assignment.part_limits`). A part without a notebook scores zero on its questions,
    with the reason. ``notes``: what intake said (notebooks not graded, and why)."""
    t0 = time.monotonic()
    found = {p.part: p for p in parts}
    budget = assignment.time_budget(limits)
    spent = 0.0
    reports: dict[str, Report] = {}
    results: list[PartResult] = []
    unrun: dict[str, tuple[str, str]] = {}  # part id -> (question status, why)
    for part in assignment.parts:
        jp = found.get(part.id) or JobPart(part.id, reason=part.missing_reason)
        result = PartResult(id=part.id, title=part.title, status="graded", questions=list(part.questions),
                            source=jp.source, sha256=jp.sha256, note=jp.note)
        results.append(result)
        if jp.notebook is None:
            result.status, result.reason = ("missing" if jp.missing else "rejected"), jp.reason
            unrun[part.id] = ("missing" if jp.missing else "not_graded", jp.reason)
            continue
        left = budget - spent
        if left <= 1.0:
            why = (f"{part.title}'s notebook was not run: the submission's time limit of {budget:g} s "
                   "was used up by the notebooks before it")
            result.status, result.reason = "error", why
            unrun[part.id] = ("not_graded", why)
            continue
        own = assignment.part_limits(part, limits)
        mine = own.replace(total_timeout=min(own.total_timeout, left))
        result.time_limit = mine.total_timeout
        nb = nbformat.read(str(jp.notebook), as_version=4)
        ref = SubmissionRef(id=f"{submission.id}-{part.id}", sha256=jp.sha256, submitter=submission.submitter,
                            sources=[jp.source])
        one = grade(assignment, nb, submission=ref, sandbox=sandbox, job_root=job_root / part.id, limits=mine,
                    hidden=hidden, gpus=gpus, include_hidden=include_hidden, secret=secret,
                    executed_path=None if executed_dir is None else executed_dir / f"executed_{part.id}.ipynb",
                    environment=environment, files_dir=files_dir, handed_in=None, check_secrets=check_secrets,
                    part=part)
        reports[part.id] = one
        spent += one.execution.duration if one.execution is not None else one.timing.get("execute", 0.0)
        result.execution, result.seed, result.timing = one.execution, one.seed, one.timing
        result.parameters, result.platform, result.reason = one.parameters, one.platform, one.reason
        if environment is None and one.sandbox is not None:
            environment = tuple(one.sandbox.environment)  # found out once
    graded = list(reports.values())
    outputs = {q.id: q.outputs for r in graded for q in r.questions}
    first = graded[0] if graded else None
    info = first.sandbox if first is not None else SandboxInfo(
        backend=sandbox.name, isolated=sandbox.isolated, limits=limits, gpus=list(gpus), mode=sandbox.mode)
    titled = {p.id: p.title for p in assignment.parts}
    part_notes = [f"{titled[pid]}: {n}" for pid, r in reports.items() for n in r.notes]
    part_notes = [r.note for r in results if r.note] + part_notes
    reasons = [f"{r.title}: {r.reason}" for r in results if r.reason]
    report = build.graded(
        assignment, submission, tests=[t for r in graded for t in r.tests], execution=None, sandbox=info, seed=None,
        timing={"total": round(time.monotonic() - t0, 3),
                "execute": round(sum(r.timing.get("execute", 0.0) for r in graded), 3),
                "grade": round(sum(r.timing.get("grade", 0.0) for r in graded), 3)},
        notes=list(notes) + part_notes + _file_notes(handed_in),
        grader_problems=list(dict.fromkeys(p for r in graded for p in r.grader_problems)),
        reason="; ".join(reasons) or None, outputs=outputs, parameters=None, files=handed_in,
        platform=next((r.platform for r in graded if r.platform is not None), None))
    report.parts = results
    for row in report.questions:
        owner = assignment.part_of(row.id)
        row.part = owner.id if owner is not None else ""
        if row.part in unrun and not row.manual:
            row.status, row.message = unrun[row.part]
    if check_secrets:
        report.seed_scores = [round(sum(r.seed_scores[i] for r in graded), 6) for i in range(len(check_secrets))]
    return report


def run_job(job: Job) -> Report:
    """Grade ``job`` and write its report; returns the report."""
    assignment = load(job.assignment, job.course).with_data(job.data)
    sandbox = registry.make(job.backend)
    sandbox.check()
    ref = SubmissionRef(id=job.report_dir.name, sha256=job.sha256, submitter=job.submitter, sources=list(job.sources))
    if assignment.parts:
        report = grade_parts(assignment, job.parts, submission=ref, sandbox=sandbox, job_root=job.work_root,
                             limits=job.limits, hidden=job.hidden, gpus=job.gpus, secret=job.secret,
                             executed_dir=job.report_dir, environment=job.environment, files_dir=job.files_dir,
                             handed_in=job.handed_in, check_secrets=job.check_secrets, notes=job.notes)
        report.fingerprint = job.fingerprint or None
        write_all(report, job.report_dir)
        return report
    nb = nbformat.read(str(job.notebook), as_version=4)
    report = grade(assignment, nb, submission=ref, sandbox=sandbox, job_root=job.work_root, limits=job.limits,
                   hidden=job.hidden, gpus=job.gpus, secret=job.secret,
                   executed_path=job.report_dir / "executed.ipynb", environment=job.environment,
                   files_dir=job.files_dir, handed_in=job.handed_in, check_secrets=job.check_secrets)
    report.fingerprint = job.fingerprint or None  # lets `grade --resume` reuse this report
    write_all(report, job.report_dir)
    return report


def main(argv: list[str]) -> int:
    run_job(Job.from_json(json.loads(Path(argv[0]).read_text())))
    return 0


def forked_main(job_file: str, log_file: str, environ: dict[str, str], cwd: str) -> None:
    """Entry point of a worker forked from the batch's fork server."""
    detach(log_file, environ, cwd)
    sys.exit(main([job_file]))


def detach(log_file: str, environ: dict[str, str], cwd: str) -> None:
    """Make a forked process a worker of its own.

    The fork server was started once, with the environment and directory of that moment;
    the batch's current ones are applied here. The worker leads a process group of its own
    (the batch kills the group at the hard limit) and writes its output to ``log_file``.
    """
    os.setsid()
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
