"""Run the graders (pytest) against one executed submission and collect test results.

pytest runs in the trusted worker process, never in the student's kernel. Our plugin
gives the graders their fixtures and records, per test, the outcome, its question, points
and visibility. Scores come from here only, never from anything the student printed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest

from .bridge import StudentError, Submission
from .grader import VISIBILITIES, Credit, _show_expected
from .spec import Assignment

MESSAGE_LIMIT = 4000


@dataclasses.dataclass
class TestResult:
    name: str
    question: str
    points_possible: float
    points_earned: float
    status: str          # passed | failed | error (the grader itself broke) | skipped
    visibility: str
    message: str = ""
    duration: float = 0.0
    public: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def rng_seed(submission_seed: int, nodeid: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{submission_seed}:{nodeid}".encode()).digest()[:8], "little")


class GradingPlugin:
    """Fixtures and result collection for one submission's grading run."""

    def __init__(self, assignment: Assignment, submission: Submission | None, public_dirs: set[Path],
                 include_hidden: bool = True):
        self._include_hidden = include_hidden
        self._assignment = assignment    # underscored: the fixtures below have the plain names
        self._submission = submission
        self.public_dirs = public_dirs
        self.meta: dict[str, dict] = {}
        self.results: dict[str, TestResult] = {}
        self.credits: dict[str, Credit] = {}
        self.problems: list[str] = []

    # -- configuration --------------------------------------------------------------
    def pytest_configure(self, config):
        for line in ("question(id): the question this test grades",
                     "points(n): points this test is worth",
                     "visibility(v): when students see the result (visible, hidden, after_due_date, after_published)"):
            config.addinivalue_line("markers", line)

    def pytest_collection_modifyitems(self, session, config, items):
        by_question: dict[str, list] = {}
        for item in items:
            q = item.get_closest_marker("question")
            qid = q.args[0] if q and q.args else None
            p = item.get_closest_marker("points")
            v = item.get_closest_marker("visibility")
            public = any(Path(str(item.path)).is_relative_to(d) for d in self.public_dirs)
            meta = {"question": qid, "points": float(p.args[0]) if p and p.args else None,
                    "visibility": v.args[0] if v and v.args else "visible", "public": public}
            if meta["visibility"] not in VISIBILITIES:
                self.problems.append(f"{item.nodeid}: unknown visibility {meta['visibility']!r}")
            if qid is None:
                self.problems.append(f"{item.nodeid}: no question marker")
            else:
                by_question.setdefault(qid, []).append(item.nodeid)
            self.meta[item.nodeid] = meta
        # Unmarked tests share what their question's points leave over.
        for qid, nodeids in by_question.items():
            try:
                total = self._assignment.question(qid).points
            except Exception as exc:
                self.problems.append(f"{nodeids[0]}: {exc}")
                continue
            fixed = sum(self.meta[n]["points"] for n in nodeids if self.meta[n]["points"] is not None)
            loose = [n for n in nodeids if self.meta[n]["points"] is None]
            for n in loose:
                self.meta[n]["points"] = max(0.0, total - fixed) / len(loose)
            if self._include_hidden and abs(sum(self.meta[n]["points"] for n in nodeids) - total) > 1e-9:
                self.problems.append(f"question {qid}: its tests are worth "
                                     f"{sum(self.meta[n]['points'] for n in nodeids):g} points, the spec says {total:g}")
        if self._include_hidden:
            for q in self._assignment.questions:
                if not q.manual and q.id not in by_question and q.points > 0:
                    self.problems.append(f"question {q.id}: auto-graded, but no test grades it")

    # -- fixtures -------------------------------------------------------------------
    @pytest.fixture
    def submission(self):
        if self._submission is None:
            pytest.fail("no submission is attached to this grading run")
        return self._submission

    @pytest.fixture
    def assignment(self):
        return self._assignment

    @pytest.fixture
    def rng(self, request):
        seed = self._submission.seed if self._submission else 0
        return np.random.default_rng(rng_seed(seed, request.node.nodeid))

    @pytest.fixture
    def credit(self, request):
        c = Credit()
        self.credits[request.node.nodeid] = c
        return c

    @pytest.fixture
    def tolerance(self, request):
        qid = self.meta.get(request.node.nodeid, {}).get("question")
        q = self._assignment.question(qid) if qid else None
        return {"rtol": (q.rtol if q and q.rtol is not None else 1e-6),
                "atol": (q.atol if q and q.atol is not None else 0.0)}

    # -- running and recording ------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        meta = self.meta.get(item.nodeid, {})
        token = _show_expected.set(meta.get("visibility", "visible") == "visible")
        try:
            yield
        finally:
            _show_expected.reset(token)

    def pytest_runtest_logreport(self, report):
        meta = self.meta.get(report.nodeid, {"question": None, "points": 0.0, "visibility": "visible", "public": False})
        if report.when == "call" or (report.when == "setup" and not report.passed):
            status = "passed" if report.passed else "skipped" if report.skipped else "failed"
            message = ""
            if not report.passed:
                exc = getattr(report, "_gk_exc", None)
                if report.skipped:
                    message = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
                    status = "failed"  # a skipped check earns nothing: skipping is not passing
                    message = f"skipped: {message}"
                elif exc is not None and not isinstance(exc, AssertionError):
                    status = "error"  # a bug in the grader, not the student's fault: details go to staff only
                    message = "the grader itself failed on this check; course staff have been told"
                    self.problems.append(f"{report.nodeid} crashed: {type(exc).__name__}: {str(exc)[:500]}")
                else:
                    message = str(exc) if exc is not None else report.longreprtext
            credit = self.credits.get(report.nodeid)
            fraction = (credit.fraction if credit and credit.fraction is not None
                        else (1.0 if status == "passed" else 0.0))
            if credit and credit.notes:
                message = "; ".join(credit.notes) + (f"\n{message}" if message else "")
            points = float(meta.get("points") or 0.0)
            self.results[report.nodeid] = TestResult(
                name=report.nodeid.split("::", 1)[-1], question=meta.get("question") or "?",
                points_possible=points, points_earned=round(points * fraction, 6), status=status,
                visibility=meta.get("visibility", "visible"), message=message[:MESSAGE_LIMIT],
                duration=round(report.duration, 4), public=bool(meta.get("public")))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if call.excinfo is not None:
            report._gk_exc = call.excinfo.value


def run_graders(assignment: Assignment, submission: Submission | None, *, include_hidden: bool = True,
                log_path: Path | None = None) -> tuple[list[TestResult], list[str], float]:
    """Run the public tests and (unless ``include_hidden`` is False) the hidden graders."""
    dirs = []
    if assignment.public_tests_dir.is_dir():
        dirs.append(assignment.public_tests_dir)
    if include_hidden and assignment.graders_dir.is_dir():
        dirs.append(assignment.graders_dir)
    plugin = GradingPlugin(assignment, submission, {d.resolve() for d in dirs if d == assignment.public_tests_dir},
                           include_hidden=include_hidden)
    if not dirs:
        return [], [f"assignment {assignment.id!r} has no tests"], 0.0
    args = [str(d) for d in dirs] + [
        "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "--no-header", "-rN",
        # these collect garbage several times per session (~60 ms a submission) to find
        # exceptions nobody raised; the rest look for files graders never are
        "-p", "no:unraisableexception", "-p", "no:threadexception", "-p", "no:doctest",
        "-p", "no:junitxml", "-p", "no:pastebin", "-p", "no:stepwise",
        "--import-mode=importlib", f"--rootdir={assignment.root.parent.parent}",
        "-o", "python_files=test_*.py *_test.py", "-o", "console_output_style=classic",
    ]
    t0 = time.monotonic()
    out = io.StringIO()
    # Graders get our plugin only, not whatever pytest plugins happen to be installed
    # (hypothesis's alone costs over a second per submission to import).
    autoload = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = pytest.main(args, plugins=[plugin])
    finally:
        if autoload is None:
            del os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"]
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = autoload
    took = time.monotonic() - t0
    if log_path is not None:
        log_path.write_text(out.getvalue())
    problems = list(plugin.problems)
    if code not in (0, 1) and not plugin.results:
        problems.append(f"pytest could not run the graders (exit {int(code)}): {out.getvalue()[-1500:]}")
    return list(plugin.results.values()), problems, took


__all__ = ["run_graders", "TestResult", "GradingPlugin", "StudentError"]
