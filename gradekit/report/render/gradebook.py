"""The class view: ``gradebook.csv`` and the summary table printed after a batch.

One row per submitter. Identical notebooks handed in by several submitters are graded
once, but each submitter keeps a row (and a report) of their own, and the
``identical_to`` column names the others. Cells a spreadsheet would read as a formula are
neutralised (OWASP, "CSV injection"); names shown on a terminal have control characters
escaped.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ...model import Report

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value) -> str:
    text = str(value)
    if text.startswith(_FORMULA_START) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def terminal_text(text: str) -> str:
    """A student-controlled string made safe to print: control characters shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def question_cell(report: Report, qid: str) -> str:
    q = next((q for q in report.questions if q.id == qid), None)
    if q is None:
        return ""
    return "manual" if q.manual else f"{q.points_earned:g}"


def gradebook(reports: Sequence[Report], question_ids: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["submitter", "submission", "status", *question_ids, "total", "max", "identical_to",
                "graders_broken", "reason"])
    for r in sorted(reports, key=lambda r: r.submission.submitter):
        row = [r.submission.submitter, r.submission.id, r.status, *[question_cell(r, q) for q in question_ids],
               f"{r.score:g}", f"{r.auto_points_possible:g}", "; ".join(r.submission.identical_to),
               "; ".join(r.grader_problems)[:1000], r.reason or ""]
        w.writerow([csv_cell(c) for c in row])
    return buf.getvalue()


def summary_table(reports: Sequence[Report], question_ids: Sequence[str], *, width: int | None = None) -> str:
    """The table printed at the end of a batch (plain text; rich draws it)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("submitter", overflow="fold")
    table.add_column("status")
    for q in question_ids:
        table.add_column(q, justify="right")
    table.add_column("total", justify="right")
    for r in sorted(reports, key=lambda r: r.submission.submitter):
        cells = ["m" if question_cell(r, q) == "manual" else question_cell(r, q) for q in question_ids]
        status = r.status + (" (graders broken)" if r.grader_problems else "")
        table.add_row(escape(terminal_text(r.submission.submitter)), status, *cells, r.score_text())
    console = Console(file=io.StringIO(), width=width or max(80, 40 + 8 * len(question_ids)),
                      color_system=None, force_terminal=False)
    console.print(table)
    return console.file.getvalue().rstrip() + "\n"
