"""Reports: one :class:`~gradekit.model.Report` per submission, made by name.

``graded`` (the graders ran), ``rejected`` (intake refused the notebook), ``missing``
(a submitter handed in no notebook) and ``failed`` (the harness failed: status
``error``, not the student's fault). Every report lists every question of the spec, manual
ones included, with what it earned (:mod:`gradekit.grading.scoring`).
"""
from __future__ import annotations

from .. import __version__
from ..grading import scoring
from ..model import (AssignmentRef, CellOutput, ExecutionResult, HandedInFiles, InjectedParameters, PartResult,
                     Platform, Report, SandboxInfo, SubmissionRef, TestResult)
from ..spec import Assignment


def _report(assignment: Assignment, submission: SubmissionRef, status: str, *, reason: str | None = None,
            tests: list[TestResult] | None = None, **fields) -> Report:
    tests = list(tests or [])
    rows = scoring.question_rows(assignment.questions, tests)
    return Report(
        assignment=AssignmentRef(assignment.id, assignment.title), submission=submission, status=status,
        reason=reason, score=scoring.total(rows), auto_points_possible=assignment.auto_points,
        manual_points_possible=round(assignment.total_points - assignment.auto_points, 6),
        max_score=assignment.total_points, questions=rows, tests=tests, gradekit=__version__, **fields)


def graded(assignment: Assignment, submission: SubmissionRef, *, tests: list[TestResult],
           execution: ExecutionResult, sandbox: SandboxInfo, seed: int, timing: dict[str, float],
           notes: list[str], grader_problems: list[str], reason: str | None = None,
           fingerprint: str | None = None, outputs: dict[str, list[CellOutput]] | None = None,
           parameters: InjectedParameters | None = None, files: HandedInFiles | None = None,
           platform: Platform | None = None) -> Report:
    """``outputs``: per question, what the cells it points at showed (``shows`` in the spec);
    ``parameters``, ``files``, ``platform``: grading-time parameters, files handed in, and
    what the kernel said of its Python, torch and device."""
    report = _report(assignment, submission, "graded", reason=reason, tests=tests, execution=execution,
                     sandbox=sandbox, seed=seed, timing=timing, notes=notes, grader_problems=grader_problems,
                     fingerprint=fingerprint)
    report.parameters, report.files, report.platform = parameters, files, platform
    for row in report.questions:
        row.outputs = list((outputs or {}).get(row.id, []))
        shows = assignment.question(row.id).shows
        if row.manual and shows and not any(o.images for o in row.outputs):
            # staff grade the figure: say plainly that there is none to grade
            row.message = (f"no figure: no cell tagged {', '.join(f'`{t}`' for t in shows)} showed an image "
                           "(was the cell's tag removed, or did the cell fail?)")
    return report


def rejected(assignment: Assignment, submission: SubmissionRef, reason: str) -> Report:
    return _report(assignment, submission, "rejected", reason=reason)


def missing(assignment: Assignment, submission: SubmissionRef, reason: str) -> Report:
    return _report(assignment, submission, "missing", reason=reason)


def failed(assignment: Assignment, submission: SubmissionRef, reason: str) -> Report:
    """The harness (not the notebook) failed: status ``error``."""
    return _report(assignment, submission, "error", reason=reason)


def parts_not_run(report: Report, assignment: Assignment, why: dict[str, tuple[bool, str]]) -> None:
    """A submission of several notebooks none of which could run: each part, and each
    question, says why (``why``: part id -> (no notebook at all, reason))."""
    report.parts = [PartResult(id=p.id, title=p.title, questions=list(p.questions),
                               status="missing" if why.get(p.id, (True, ""))[0] else "rejected",
                               reason=why.get(p.id, (True, ""))[1] or None) for p in assignment.parts]
    for row in report.questions:
        owner = assignment.part_of(row.id)
        row.part = owner.id if owner is not None else ""
        missing, reason = why.get(row.part, (True, ""))
        if owner is not None and not row.manual:
            row.status, row.message = ("missing" if missing else "not_graded"), reason
