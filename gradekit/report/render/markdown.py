"""``feedback.md``: what the student reads, as Markdown.

Everything that came from the student (messages, cell errors, file and folder names) is
escaped or fenced, so it cannot change the document's structure: no forged score line,
heading, table row or link.
"""
from __future__ import annotations

import re

from ...model import Report

_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~&])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
CELL_ROWS = 50


def md_text(text: str, limit: int = 2000) -> str:
    """One line of plain text, safe inside a Markdown paragraph or table cell."""
    text = _CONTROL.sub(" ", str(text)).replace("\r", " ").replace("\n", " ")
    if len(text) > limit:
        text = text[:limit] + "…"
    return _SPECIAL.sub(r"\\\1", text)


def code_block(text: str, lines: int = 40) -> str:
    """Text shown as it is, in a fence longer than any run of backticks inside it."""
    body = "\n".join(_CONTROL.sub("", line) for line in str(text).splitlines()[:lines])
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", body)), default=0))
    return f"{fence}text\n{body}\n{fence}"


def manual_line(report: Report) -> str:
    manual = [q for q in report.questions if q.manual]
    if not manual:
        return ""
    return "Graded by course staff later: " + ", ".join(
        f"{md_text(q.id)} ({q.points_possible:g} pts" + (f"; {md_text(q.message)})" if q.message else ")")
        for q in manual)


def _points(q) -> str:
    return "staff" if q.manual else f"{q.points_earned:g} / {q.points_possible:g}"


def to_markdown(report: Report) -> str:
    """Feedback for the student: one entry per question, then the cells that did not run cleanly."""
    a, s = report.assignment, report.submission
    lines = [f"# {md_text(a.title)}: feedback", "", f"Submitted by {md_text(s.submitter)}", ""]
    if report.status != "graded":
        lines += [f"**Not graded:** {md_text(report.reason or report.status)}", ""]
    else:
        lines += [f"**Score: {report.score:g} / {report.auto_points_possible:g}** automatically graded points"
                  + (f" (+ {report.manual_points_possible:g} graded by staff)" if report.manual_points_possible else ""), ""]
        if report.reason:
            lines += [f"**Summary:** {md_text(report.reason)}", ""]
        ex = report.execution
        if ex is not None and ex.message:
            lines += [f"**While running your notebook:** {md_text(ex.message)}", ""]
        lines += [f"*Note:* {md_text(n)}" for n in report.notes] + ([""] if report.notes else [])
    if report.parts:  # several notebooks: each part's questions under its title
        for part in report.parts:
            lines += [f"## {md_text(part.title)}", ""]
            if part.source:
                lines += [f"Notebook: {md_text(part.source)}", ""]
            if part.reason:
                lines += [f"**{'Not graded' if part.status != 'graded' else 'Summary'}:** {md_text(part.reason)}", ""]
            if part.execution is not None and part.execution.message:
                lines += [f"**While running this notebook:** {md_text(part.execution.message)}", ""]
            lines += _question_table([q for q in report.questions if q.part == part.id])
    else:
        lines += _question_table(report.questions)
    failed = [q for q in report.questions if q.status in ("failed", "partial")]
    if failed:
        lines += ["## What to look at", ""]
        for q in failed:
            lines.append(f"### {md_text(q.id)} ({q.points_earned:g} / {q.points_possible:g})")
            lines += ["", code_block(q.message) if q.message else "The details of this question's hidden tests are not shown.", ""]
    shown = [q for q in report.questions if q.outputs]
    if shown:
        lines += ["## What your notebook showed", "",
                  "Figures are on the feedback page (feedback.html); the text they came with:", ""]
        for q in shown:
            for out in q.outputs:
                lines.append(f"- {md_text(q.id)}, code cell {out.number}: {len(out.images)} figure(s)")
                if out.text:
                    lines += ["", code_block(out.text, lines=20), ""]
        lines.append("")
    runs = ([(f" ({md_text(p.title)})", p.execution) for p in report.parts] if report.parts
            else [("", report.execution)])
    for title, ex in runs:
        lines += _bad_cells(ex, title)
    manual = manual_line(report)
    if manual:
        lines += [manual, ""]
    return "\n".join(lines)


def _question_table(questions) -> list[str]:
    lines = ["| question | points | status |", "|---|---|---|"]
    for q in questions:
        lines.append(f"| {md_text(q.id)}: {md_text(q.title)} | {_points(q)} | {q.status.replace('_', ' ')} |")
    lines.append("")
    return lines


def _bad_cells(ex, title: str = "") -> list[str]:
    lines: list[str] = []
    bad = [c for c in (ex.cells if ex else []) if c.status != "ok"]
    if bad:
        lines += [f"## Cells that did not run cleanly{title}", ""]
        for c in bad[:CELL_ROWS]:
            lines.append(f"- code cell {c.number or c.index + 1} ({md_text(c.source_head, 80)}): "
                         f"{c.status}: {md_text(c.error or '')}")
        if len(bad) > CELL_ROWS:
            lines.append(f"- … and {len(bad) - CELL_ROWS} more")
        lines.append("")
    return lines
