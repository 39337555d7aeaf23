"""Writing reports: every file atomically (a temporary file, then a rename), report.json
last, so an interrupted batch never leaves a half-written report and a report.json
means the rest is complete."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..model import Report
from .render.gradescope import to_gradescope
from .render.html import to_html
from .render.markdown import to_markdown

REPORT = "report.json"


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


def write_all(report: Report, folder: Path) -> None:
    """report.json, results.json (Gradescope), feedback.md and feedback.html."""
    write_atomic(folder / "results.json", json.dumps(to_gradescope(report), indent=2))
    write_atomic(folder / "feedback.md", to_markdown(report))
    write_atomic(folder / "feedback.html", to_html(report))
    write_atomic(folder / REPORT, json.dumps(report.to_json(), indent=2))


def read(folder: Path) -> Report:
    """The report in ``folder`` (raises OSError, ValueError or RecordError when unreadable)."""
    return Report.from_json(json.loads((folder / REPORT).read_text()))
