"""``feedback.html``: the student's feedback as a page, rendered from the report itself.

A Jinja2 template (``templates/feedback.html.j2``) with autoescaping: everything from the
student is text, never markup. Question titles come from the instructor's spec and are
Markdown, rendered with markdown-it (raw HTML off).
"""
from __future__ import annotations

import functools
from pathlib import Path

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup

from ...model import Report

TEMPLATES = Path(__file__).parent / "templates"


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    md = MarkdownIt("commonmark", {"html": False})
    env.filters["markdown_inline"] = lambda text: Markup(md.renderInline(str(text)))
    env.filters["pts"] = lambda x: f"{x:g}"
    return env


_environment().get_template("feedback.html.j2")  # compiled once per process (the fork server's, for workers)


def to_html(report: Report) -> str:
    runs = [p.execution for p in report.parts] if report.parts else [report.execution]
    bad_cells = [c for ex in runs for c in (ex.cells if ex else []) if c.status != "ok"]
    return _environment().get_template("feedback.html.j2").render(
        r=report, bad_cells=bad_cells, manual=[q for q in report.questions if q.manual],
        shown=[q for q in report.questions if q.outputs],
        to_look_at=[q for q in report.questions if q.status in ("failed", "partial")])
