"""Gradescope's ``results.json`` (https://gradescope-autograders.readthedocs.io, "specs").

One Gradescope test per automatically graded question, not per pytest test: a student sees
each question once (its public and hidden checks together), with its points and the first
failure they may read. Its visibility is the most guarded of its tests' (a question with a
hidden check is hidden until staff publish it), so no hidden outcome shows early.
"""
from __future__ import annotations

from ...model import QuestionResult, Report, TestResult
from .markdown import code_block, manual_line, md_text

#: The file Gradescope reads, in /autograder/results.
RESULTS_FILE = "results.json"


#: Gradescope's visibilities, from the most shown to the most guarded.
GUARD = ("visible", "after_published", "after_due_date", "hidden")


def _question_test(q: QuestionResult, tests: list[TestResult]) -> dict:
    pts = f"{q.points_earned:g}/{q.points_possible:g}"
    if q.status == "passed":
        output = f"Passed ({pts})."
    else:
        word = "Partly passed" if q.status == "partial" else "Failed"
        detail = code_block(q.message) if q.message else "The details of this question's hidden checks are not shown."
        output = f"{word} ({pts}):\n\n{detail}"
    visibility = max((t.visibility for t in tests), key=lambda v: GUARD.index(v) if v in GUARD else len(GUARD),
                     default="visible")
    return {"name": f"{q.id}: {q.title}", "number": q.id, "score": q.points_earned, "max_score": q.points_possible,
            "status": "passed" if q.status == "passed" else "failed", "visibility": visibility, "output": output,
            "execution_time": round(sum(t.duration for t in tests), 4)}


def to_gradescope(report: Report) -> dict:
    out = {"score": report.score, "output_format": "md", "test_output_format": "md",
           "visibility": "visible", "stdout_visibility": "hidden",
           "execution_time": round(report.timing.get("total", 0.0), 2), "tests": []}
    messages = []
    if report.status != "graded":
        out["score"] = 0.0
        messages.append(f"**Your notebook could not be graded:** {md_text(report.reason or report.status)}")
    else:
        if report.reason:
            messages.append(f"**Summary:** {md_text(report.reason)}")
        ex = report.execution
        if ex is not None and ex.message:
            messages.append(f"**While running your notebook:** {md_text(ex.message)}")
        messages += [md_text(n) for n in report.notes]
    manual = manual_line(report)
    if manual:
        messages.append(manual)
    if messages:
        out["output"] = "\n\n".join(messages)
    for q in report.questions:
        mine = [t for t in report.tests if t.question == q.id]
        if not q.manual and (mine or q.part):  # a part's question without tests: its notebook is missing
            out["tests"].append(_question_test(q, mine))
    return out
