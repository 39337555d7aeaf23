"""Points: the one place that decides what a test is worth and what a question earned.

* A test marked ``points=`` is worth that; the unmarked tests of a question share what its
  points leave over, equally.
* A question's tests must add up to the points the spec gives it, and every automatically
  graded question needs a test: otherwise the graders are broken (:func:`points_problems`).
* A question earns the sum of its tests' points; it is ``passed`` when all passed,
  ``partial`` when it earned something, ``failed`` otherwise, ``not_graded`` without tests
  (a rejected notebook), ``manual`` when staff grade it. Manual questions are listed in
  every report, whatever happened.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..model import QuestionResult, TestResult
from ..spec import Assignment, Question

TOLERANCE = 1e-9


def share_points(assignment: Assignment, marked: Mapping[str, tuple[str | None, float | None]],
                 *, require_total: bool = True) -> tuple[dict[str, float], list[str]]:
    """Each test's points, from ``marked``: node id -> (question id, points or None).

    Returns (node id -> points, problems). With ``require_total`` (the hidden graders
    are part of the run), points that do not add up to the spec and auto-graded
    questions without a test are problems.
    """
    problems: list[str] = []
    by_question: dict[str, list[str]] = {}
    points: dict[str, float] = {}
    for nodeid, (qid, pts) in marked.items():
        points[nodeid] = 0.0 if pts is None else float(pts)
        if qid is None:
            problems.append(f"{nodeid}: no question marker")
        else:
            by_question.setdefault(qid, []).append(nodeid)
    known = {q.id: q for q in assignment.questions}
    for qid, nodeids in by_question.items():
        if qid not in known:
            problems.append(f"{nodeids[0]}: assignment {assignment.id!r} has no question {qid!r} "
                            f"(it has: {', '.join(known)})")
            continue
        total = known[qid].points
        fixed = sum(marked[n][1] for n in nodeids if marked[n][1] is not None)
        loose = [n for n in nodeids if marked[n][1] is None]
        for n in loose:
            points[n] = max(0.0, total - fixed) / len(loose)
        worth = sum(points[n] for n in nodeids)
        if require_total and abs(worth - total) > TOLERANCE:
            problems.append(f"question {qid}: its tests are worth {worth:g} points, the spec says {total:g}")
    if require_total:
        for q in assignment.questions:
            if not q.manual and q.points > 0 and q.id not in by_question:
                problems.append(f"question {q.id}: auto-graded, but no test grades it")
    return points, problems


def question_rows(questions: Sequence[Question], tests: Iterable[TestResult]) -> list[QuestionResult]:
    """One row per question of the spec, in its order, from the tests that ran (maybe none)."""
    tests = list(tests)
    rows = []
    for q in questions:
        mine = [t for t in tests if t.question == q.id]
        if q.manual:
            status, earned = "manual", None
        elif not mine:
            status, earned = "not_graded", 0.0
        else:
            earned = round(sum(t.points_earned for t in mine), 6)
            status = ("passed" if all(t.status == "passed" for t in mine)
                      else "partial" if earned > 0 else "failed")
        # the student reads one failure per question: a hidden grader's before a public test's,
        # and only from tests whose details they may see
        shown = [t for t in mine if t.status != "passed" and t.visibility == "visible"]
        first_failure = next((t for t in shown if not t.public), None) or next(iter(shown), None)
        rows.append(QuestionResult(id=q.id, title=q.title, points_possible=q.points, points_earned=earned,
                                   manual=q.manual, status=status,
                                   message=first_failure.message if first_failure else ""))
    return rows


def total(rows: Iterable[QuestionResult]) -> float:
    return round(sum(r.points_earned or 0.0 for r in rows), 6)
