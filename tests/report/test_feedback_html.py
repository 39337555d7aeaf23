"""feedback.html as a student's browser shows it.

Each page is rendered from a typed Report, opened in Debian's headless Chromium (``--dump-dom``
for the DOM after the browser parsed it and ran whatever scripts it found, ``--screenshot`` for
a picture kept under .cache/test-artifacts/), and checked on what the browser made of it: no
Markdown syntax of gradekit's own left in the text, the student's text only ever as text,
every question of the spec in the questions table, the manual question graded by staff, the
failing cell's error and traceback shown.

Without ``chromium`` on PATH these tests cannot mean anything: under CI (``CI=true``) they
FAIL with the reason, elsewhere they are skipped (run scripts/ensure-chromium.sh).
"""
from __future__ import annotations

import html
import os
import re
import shutil
import signal
import struct
import subprocess
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gradekit.model import CellResult, ExecutionResult, Limits, Report, SandboxInfo, SubmissionRef
from gradekit.model import TestResult as Result  # not "Test*": pytest would try to collect it
from gradekit.report import build
from gradekit.report.render.html import to_html
from gradekit.report.render.markdown import to_markdown
from gradekit.spec import Assignment, load

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".cache" / "test-artifacts"

# What a student can put in a test's message, a cell, an error: it must reach the page as text.
HOSTILE = [
    "**Score: 5/5**",
    "`x`",
    "<script>alert(1)</script>",
    "<script>document.title = 'pwned'</script>",
    "<img src=x onerror=\"document.body.setAttribute('data-pwned', '1')\">",
    "| 5 | 5 |",
    "# heading",
]
SUBMITTER = "eve <i>the</i> **student**"
CELL_ERROR = "ValueError: shapes (3,) and (4,) not aligned <b>really</b>"
CELL_SOURCE = "y = softmax(x) @ W  # **not** `markdown`"
TRACEBACK = ("Traceback (most recent call last):\n"
             "  Cell In[2], line 1\n"
             "    y = softmax(x) @ W\n"
             "ValueError: shapes (3,) and (4,) not aligned")  # not CELL_ERROR: each must be shown
HIDDEN_DETAIL = "the hidden grader's secret expected value 42"
REJECT_REASON = "not a notebook: Expecting value: line 1 column 1 <b>**bold**</b> | x |"
STUDENT_TEXT = [*HOSTILE, SUBMITTER, CELL_ERROR, CELL_SOURCE, *TRACEBACK.splitlines(), REJECT_REASON]


# -- Chromium -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        msg = ("`chromium` (Debian's headless Chromium) is not on PATH, and these tests check "
               "feedback.html as a browser shows it\n(run: scripts/ensure-chromium.sh)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("feedback.html browser tests cannot run under CI: " + msg, pytrace=False)
        pytest.skip(msg)
    return exe


CHROMIUM_TIMEOUT = 30   # s; a page takes about one


def _chromium(exe: str, profile: Path, *args: str) -> str:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # its own session: the renderers go too
        proc.communicate()
        raise AssertionError(f"Chromium did not finish the page within {CHROMIUM_TIMEOUT} s: a page "
                             "whose script opened a dialog (a student's alert() that ran?) never "
                             f"finishes loading\n{' '.join(cmd)}") from None
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}"
    return out


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list = field(default_factory=list)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str) -> list["Node"]:
        return [n for n in self.iter() if n.tag == tag]

    @property
    def text(self) -> str:
        """Roughly innerText: what is shown, a line per block, whitespace collapsed but in <pre>."""
        out: list[str] = []
        _text(self, out, pre=False)
        return "\n".join(line for line in map(_norm, "".join(out).split("\n")) if line)


def _norm(text: str) -> str:
    """One line as :attr:`Node.text` shows it: runs of spaces collapsed, no spaces around it."""
    return re.sub(r"[ \t\xa0]+", " ", text).strip()


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_HIDDEN = {"head", "script", "style", "template", "noscript", "title"}
_BLOCK = {"address", "article", "aside", "blockquote", "body", "caption", "dd", "div", "dl", "dt",
          "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
          "ol", "p", "pre", "section", "table", "tbody", "tfoot", "thead", "tr", "ul"}


def _text(node: Node, out: list[str], pre: bool) -> None:
    if node.tag in _HIDDEN:
        return
    pre = pre or node.tag == "pre"
    if node.tag in _BLOCK or node.tag == "br":
        out.append("\n")
    for c in node.children:
        if isinstance(c, Node):
            _text(c, out, pre)
        else:
            out.append(c if pre else re.sub(r"\s+", " ", c))
    if node.tag in ("td", "th"):
        out.append(" \t ")
    if node.tag in _BLOCK:
        out.append("\n")


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


@dataclass
class Page:
    dom: Node
    title: str
    body: Node
    text: str                     # the body's text as shown, one line per block


def open_page(exe: str, html_text: str, folder: Path, name: str, *, screenshot: Path | None = None) -> Page:
    """``html_text`` as ``folder/name``, parsed by Chromium; the DOM it ends up with."""
    path = folder / name
    path.write_text(html_text, encoding="utf-8")
    dumped = _chromium(exe, folder / "profile", "--dump-dom", path.as_uri())
    builder = _Builder()
    builder.feed(dumped)
    builder.close()
    dom = builder.root
    bodies, titles = dom.find_all("body"), dom.find_all("title")
    assert bodies, f"Chromium gave no <body> for {name}:\n{dumped[:2000]}"
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
        _chromium(exe, folder / "profile", f"--screenshot={screenshot}", "--window-size=1200,1600",
                  "--hide-scrollbars", path.as_uri())
    title = "".join(c for c in titles[0].children if isinstance(c, str)) if titles else ""
    return Page(dom=dom, title=title, body=bodies[0], text=bodies[0].text)


# -- the checks (plain functions, so that test_checks_catch_markdown_pasted_into_html can show
#    that they fail on the old renderer's output) ---------------------------------------------
_MD_LINE_START = re.compile(r"^(- |\* |\+ |> |#{1,6} |\||```|~~~|\d+\. )")
_MD_INLINE = re.compile(r"\*\*|__|`|\|---|---\||\\[\\`*_{}\[\]<>#|~&]")


def check_no_markdown(page: Page) -> None:
    """No Markdown syntax left in the text gradekit wrote (the student's own text set aside)."""
    text = page.text
    for bit in sorted(map(_norm, STUDENT_TEXT), key=len, reverse=True):
        text = text.replace(bit, " ")
    for line in text.splitlines():
        line = line.strip()
        assert not _MD_LINE_START.match(line), f"Markdown syntax shown as text: {line!r}\n--- page:\n{page.text}"
        found = _MD_INLINE.search(line)
        assert not found, f"Markdown syntax {found.group()!r} shown as text: {line!r}\n--- page:\n{page.text}"


def check_student_text_is_text(page: Page, bits: list[str]) -> None:
    """The student's text is shown literally, and made no element (nor ran as a script)."""
    for bit in map(_norm, bits):
        assert bit in page.text, f"the student's text is not shown as it is: {bit!r}\n--- page:\n{page.text}"
    made = [n.tag for n in page.dom.iter() if n.tag in ("script", "img", "iframe", "object", "b", "i")]
    assert not made, f"elements made from the student's text: {made}"
    handlers = [(n.tag, a) for n in page.dom.iter() for a in n.attrs if a.lower().startswith("on")]
    assert not handlers, f"event handler attributes in the page: {handlers}"
    assert "data-pwned" not in page.body.attrs and "pwned" not in page.title, "a student's script ran"


def question_rows(page: Page) -> dict[str, Node]:
    """The questions table's rows, by the question id their first cell starts with."""
    rows: dict[str, Node] = {}
    for table in page.dom.find_all("table"):
        for tr in table.find_all("tr"):
            cells = [c for c in tr.children if isinstance(c, Node) and c.tag in ("td", "th")]
            m = re.match(r"([A-Za-z0-9_.-]+)\s*:", cells[0].text) if cells else None
            if m:
                rows[m.group(1)] = tr
    return rows


def check_questions_table(page: Page, assignment: Assignment, statuses: dict[str, str]) -> None:
    rows = question_rows(page)
    for q in assignment.questions:
        assert q.id in rows, f"question {q.id} is not in the questions table (rows: {sorted(rows)})\n{page.text}"
        row = rows[q.id].text
        assert q.title in row, f"{q.id}: its title {q.title!r} is not shown as it is: {row!r}"
        if q.manual:
            assert "graded by staff" in row.lower(), f"{q.id} is manual, but its row does not say so: {row!r}"
            assert re.search(rf"\b{q.points:g}\b", row), f"{q.id}: its points are not shown: {row!r}"
        want = statuses.get(q.id)
        if want:
            assert want in row.lower(), f"{q.id}: expected status {want!r} in its row: {row!r}"


# -- the reports ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def example() -> Assignment:
    a = load("example", ROOT)
    assert [q.manual for q in a.questions].count(True) >= 1, "the example should have a manual question"
    return a


def _submission() -> SubmissionRef:
    return SubmissionRef(id="eve", sha256="0" * 64, submitter=SUBMITTER, sources=["eve/hw.ipynb"])


def graded_report(a: Assignment) -> Report:
    auto = [q for q in a.questions if not q.manual]
    first, second, rest = auto[0], auto[1], auto[2:]
    tests = [
        Result(name="test_softmax_values", question=first.id, points_possible=first.points,
                   points_earned=0.0, status="failed", visibility="visible",
                   message="AssertionError: your softmax printed\n" + "\n".join(HOSTILE)),
        Result(name="test_grad", question=second.id, points_possible=second.points,
                   points_earned=second.points, status="passed", visibility="visible"),
        *(Result(name=f"test_hidden_{q.id}", question=q.id, points_possible=q.points, points_earned=0.0,
                     status="failed", visibility="hidden", message=HIDDEN_DETAIL) for q in rest),
    ]
    cells = [CellResult(index=1, status="ok", number=1, source_head="import numpy as np"),
             CellResult(index=3, status="error", number=2, error=CELL_ERROR, source_head=CELL_SOURCE,
                        traceback=TRACEBACK),
             CellResult(index=5, status="ok", number=3, source_head="n_params_conv = 0")]
    execution = ExecutionResult(status="completed_with_errors", cells=cells, duration=1.5,
                                message="some cells raised errors (the cells are listed below)")
    sandbox = SandboxInfo(backend="process", isolated=True, limits=Limits())
    return build.graded(a, _submission(), tests=tests, execution=execution, sandbox=sandbox, seed=0,
                        timing={"total": 1.5}, notes=[], grader_problems=[])


@pytest.fixture(scope="module")
def graded_page(example, chromium, tmp_path_factory) -> Page:
    report = graded_report(example)
    return open_page(chromium, to_html(report), tmp_path_factory.mktemp("graded"), "feedback.html",
                     screenshot=ARTIFACTS / "feedback-graded.png")


@pytest.fixture(scope="module")
def rejected_page(example, chromium, tmp_path_factory) -> Page:
    report = build.rejected(example, _submission(), REJECT_REASON)
    return open_page(chromium, to_html(report), tmp_path_factory.mktemp("rejected"), "feedback.html",
                     screenshot=ARTIFACTS / "feedback-rejected.png")


# -- the tests -------------------------------------------------------------------------------
def test_graded_page_has_no_markdown_syntax(graded_page, example):
    check_no_markdown(graded_page)
    auto = sum(q.points for q in example.questions if not q.manual)
    earned = [q for q in example.questions if not q.manual][1].points
    assert f"Score: {earned:g} / {auto:g}" in graded_page.text, graded_page.text


def test_graded_page_shows_the_students_text_only_as_text(graded_page):
    check_student_text_is_text(graded_page, [*HOSTILE, SUBMITTER, CELL_ERROR, CELL_SOURCE])
    assert HIDDEN_DETAIL not in graded_page.text, "a hidden test's details are shown to the student"


def test_graded_page_lists_every_question(graded_page, example):
    auto = [q for q in example.questions if not q.manual]
    check_questions_table(graded_page, example, {auto[0].id: "failed", auto[1].id: "passed"})


def test_graded_page_shows_the_cells_error_and_traceback(graded_page):
    lines = graded_page.text.splitlines()
    assert CELL_ERROR in graded_page.text, graded_page.text
    for line in TRACEBACK.splitlines():   # line by line, as the traceback was written
        assert _norm(line) in lines, f"traceback line not shown on its own line: {line!r}\n{graded_page.text}"


def test_rejected_page(rejected_page, example):
    check_no_markdown(rejected_page)
    check_student_text_is_text(rejected_page, [REJECT_REASON, SUBMITTER])
    check_questions_table(rejected_page, example,
                          {q.id: "not graded" for q in example.questions if not q.manual})
    assert "Score:" not in rejected_page.text, "a rejected notebook shows a score"


@pytest.mark.parametrize("page", ["graded_page", "rejected_page"])
def test_screenshot_is_kept(page, request):
    request.getfixturevalue(page)
    png = ARTIFACTS / f"feedback-{page.removesuffix('_page')}.png"
    assert png.is_file(), f"no screenshot at {png}"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 1600), f"{png}: {width}x{height}, expected the window size 1200x1600"
    assert len(data) > 20_000, f"{png} is only {len(data)} bytes: a blank page?"
    # a page with text has many shades (anti-aliasing); a blank one has one or two
    idat, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    assert len(set(zlib.decompress(idat))) > 16, f"{png} looks blank"


def _old_renderer(report: Report) -> str:
    """What feedback.html used to be: the Markdown feedback, line by line, escaped into <p>."""
    body, fence = [], False
    for line in to_markdown(report).splitlines():
        if line.strip().startswith("```"):
            body.append("</pre>" if fence else "<pre>")
            fence = not fence
        elif fence:
            body.append(html.escape(line))
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    return "<!doctype html><meta charset='utf-8'><title>Feedback</title>\n" + "\n".join(body)


@pytest.mark.parametrize("status", ["graded", "rejected"])
def test_checks_catch_markdown_pasted_into_html(status, example, chromium, tmp_path):
    """The checks above can fail: on the old renderer's kind of page (``<p>**Score: 0 / 5**</p>``)."""
    report = graded_report(example) if status == "graded" else build.rejected(example, _submission(), REJECT_REASON)
    page = open_page(chromium, _old_renderer(report), tmp_path, "old.html")
    with pytest.raises(AssertionError, match="Markdown syntax"):
        check_no_markdown(page)
    with pytest.raises(AssertionError, match="questions table"):
        check_questions_table(page, example, {})
