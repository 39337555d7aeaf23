"""Reports: ``report.json`` is the source of truth; everything else is rendered from it.

* ``report.json``  — total, per question, per test, execution, sandbox, timing;
* ``results.json`` — Gradescope's autograder schema (score, tests with visibility, output);
* ``feedback.md`` / ``feedback.html`` — what the student reads;
* ``gradebook.csv`` — one row per submission source, one column per question, the total.

Every file is written atomically (temporary file, then rename), so an interrupted batch
never leaves a half-written report.
"""
from __future__ import annotations

import csv
import datetime as _dt
import html
import io
import json
import os
import tempfile
from pathlib import Path

from . import __version__
from .spec import Assignment

SCHEMA = 1


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def build(assignment: Assignment, *, submission_id: str, sha256: str, sources: list[str], status: str,
          reason: str | None = None, tests: list[dict] | None = None, execution: dict | None = None,
          sandbox: dict | None = None, seed: int | None = None, timing: dict | None = None,
          notes: list[str] | None = None, grader_problems: list[str] | None = None) -> dict:
    """Assemble a report. ``status``: graded | rejected | error (the harness failed).
    ``notes`` are for the student; ``grader_problems`` (bad markers, points that do not add
    up, a grader that crashed) are for course staff and never rendered for students."""
    tests = tests or []
    questions = []
    for q in assignment.questions:
        mine = [t for t in tests if t["question"] == q.id]
        if q.manual:
            qstatus, earned = "manual", None
        elif not mine:
            qstatus, earned = ("not_graded", 0.0)
        else:
            earned = round(sum(t["points_earned"] for t in mine), 6)
            qstatus = ("passed" if all(t["status"] == "passed" for t in mine)
                       else "partial" if earned > 0 else "failed")
        questions.append({"id": q.id, "title": q.title, "points_possible": q.points,
                          "points_earned": earned, "manual": q.manual, "status": qstatus})
    score = round(sum(q["points_earned"] or 0.0 for q in questions), 6)
    return {
        "schema": SCHEMA,
        "gradekit": __version__,
        "assignment": {"id": assignment.id, "title": assignment.title},
        "submission": {"id": submission_id, "sha256": sha256, "sources": sources},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "status": status,
        "reason": reason,
        "score": score,
        "auto_points_possible": assignment.auto_points,
        "manual_points_possible": round(assignment.total_points - assignment.auto_points, 6),
        "max_score": assignment.total_points,
        "seed": seed,
        "questions": questions,
        "tests": tests,
        "execution": execution,
        "sandbox": sandbox,
        "timing": timing or {},
        "notes": notes or [],
        "grader_problems": grader_problems or [],
    }


# -- renderings ------------------------------------------------------------------------
def _test_output(t: dict) -> str:
    pts = f"{t['points_earned']:g}/{t['points_possible']:g}"
    if t["status"] == "passed":
        return f"Passed ({pts})."
    return f"{t['status'].capitalize()} ({pts}): {t['message']}".strip()


def to_gradescope(report: dict) -> dict:
    """Gradescope's results.json: https://gradescope-autograders.readthedocs.io (spec)."""
    out = {"score": report["score"], "output_format": "md", "test_output_format": "md",
           "visibility": "visible", "stdout_visibility": "hidden",
           "execution_time": round(report.get("timing", {}).get("total", 0.0), 2), "tests": []}
    if report["status"] != "graded":
        out["output"] = f"**Your notebook could not be graded:** {report['reason']}"
        out["score"] = 0.0
        return out
    messages = []
    ex = report.get("execution") or {}
    if ex.get("message"):
        messages.append(f"**While running your notebook:** {ex['message']}")
    messages += report.get("notes", [])
    manual = [q for q in report["questions"] if q["manual"]]
    if manual:
        messages.append("Graded by course staff later: " + ", ".join(f"{q['id']} ({q['points_possible']:g} pts)" for q in manual))
    if messages:
        out["output"] = "\n\n".join(messages)
    for t in report["tests"]:
        out["tests"].append({"name": t["name"], "number": t["question"], "score": t["points_earned"],
                             "max_score": t["points_possible"], "status": "passed" if t["status"] == "passed" else "failed",
                             "visibility": t["visibility"], "output": _test_output(t),
                             "execution_time": t.get("duration", 0.0)})
    return out


def to_markdown(report: dict, *, show_hidden: bool = False) -> str:
    """Feedback for the student. Hidden tests show only whether they passed, unless ``show_hidden``."""
    a, s = report["assignment"], report["submission"]
    lines = [f"# {a['title']} — feedback", "",
             f"Submission `{s['id']}` ({', '.join(s['sources'])})", ""]
    if report["status"] != "graded":
        lines += [f"**Not graded:** {report['reason']}", ""]
        return "\n".join(lines)
    lines += [f"**Score: {report['score']:g} / {report['auto_points_possible']:g}** automatically graded points"
              + (f" (+ {report['manual_points_possible']:g} graded by staff)" if report["manual_points_possible"] else ""), ""]
    ex = report.get("execution") or {}
    if ex.get("message"):
        lines += [f"> While running your notebook: {ex['message']}", ""]
    for note in report.get("notes", []):
        lines += [f"> {note}", ""]
    lines += ["| question | points | status |", "|---|---|---|"]
    for q in report["questions"]:
        pts = "staff" if q["manual"] else f"{q['points_earned']:g} / {q['points_possible']:g}"
        lines.append(f"| {q['id']}: {q['title']} | {pts} | {q['status'].replace('_', ' ')} |")
    lines.append("")
    for t in report["tests"]:
        hidden = t["visibility"] != "visible" and not show_hidden
        mark = "✅" if t["status"] == "passed" else "❌"
        lines.append(f"- {mark} **{t['question']}** `{t['name']}` — {t['points_earned']:g}/{t['points_possible']:g}")
        if t["status"] != "passed" and t["message"] and not hidden:
            lines += ["", "  ```", *("  " + m for m in t["message"].splitlines()[:20]), "  ```", ""]
        elif t["status"] != "passed" and hidden:
            lines.append("  (details of this hidden test are not shown)")
    bad = [c for c in ex.get("cells", []) if c["status"] != "ok"]
    if bad:
        lines += ["", "## Cells that did not run cleanly", ""]
        lines += [f"- cell {c['index']} (`{c['source_head']}`): {c['status']} — {c['error']}" for c in bad]
    return "\n".join(lines) + "\n"


def to_html(report: dict) -> str:
    md = to_markdown(report)
    body = []
    in_code = False
    for line in md.splitlines():
        if line.strip() == "```":
            body.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
        elif in_code:
            body.append(html.escape(line))
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("|---"):
            continue
        elif line.startswith("| "):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    text = "\n".join(body)
    text = text.replace("<tr>", "<table><tr>", 1) if "<tr>" in text else text
    if "<tr>" in text:
        last = text.rfind("</tr>") + len("</tr>")
        text = text[:last] + "</table>" + text[last:]
    return ("<!doctype html><meta charset='utf-8'><title>Feedback</title>"
            "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}td{padding:.2em .8em;border-bottom:1px solid #ddd}"
            "pre{background:#f6f6f6;padding:.5em}</style>\n" + text + "\n")


def write_all(report: dict, folder: Path) -> None:
    """report.json last: its presence means the other files are complete."""
    write_atomic(folder / "results.json", json.dumps(to_gradescope(report), indent=2))
    write_atomic(folder / "feedback.md", to_markdown(report))
    write_atomic(folder / "feedback.html", to_html(report))
    write_atomic(folder / "report.json", json.dumps(report, indent=2, default=str))


def gradebook(reports: list[dict], assignment: Assignment) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["source", "submission", "status", *[q.id for q in assignment.questions], "total", "max", "reason"])
    for r in reports:
        per_q = {q["id"]: q for q in r["questions"]}
        for source in r["submission"]["sources"]:
            w.writerow([source, r["submission"]["id"], r["status"],
                        *[("manual" if per_q[q.id]["manual"] else f"{per_q[q.id]['points_earned']:g}") for q in assignment.questions],
                        f"{r['score']:g}", f"{r['auto_points_possible']:g}", r["reason"] or ""])
    return buf.getvalue()


def summary_table(reports: list[dict], assignment: Assignment) -> str:
    """The table printed at the end of a batch."""
    qids = [q.id for q in assignment.questions]
    head = ["submission", "status", *qids, "total"]
    rows = []
    firsts = [r["submission"]["sources"][0] if r["submission"]["sources"] else r["submission"]["id"] for r in reports]
    try:
        common = os.path.commonpath([os.path.dirname(f) for f in firsts]) if len(firsts) > 1 else ""
    except ValueError:
        common = ""
    for r, src in zip(reports, firsts):
        per_q = {q["id"]: q for q in r["questions"]}
        src = os.path.relpath(src, common) if common and not src.startswith(common + ":") else src
        src = src if len(src) <= 40 else "…" + src[-39:]
        rows.append([src, r["status"], *[("m" if per_q[q]["manual"] else f"{per_q[q]['points_earned']:g}") for q in qids],
                     f"{r['score']:g}/{r['auto_points_possible']:g}"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows)])
