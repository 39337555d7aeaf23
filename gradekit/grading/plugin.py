"""The pytest plugin that grades: fixtures for graders, and one TestResult per test.

Per-test state lives in pytest's ``item.stash`` (the test's question, points, visibility,
its credit); results are made in ``pytest_runtest_makereport``, where the item and the
call's exception are both at hand. A failure raised as :class:`StudentError` is the
student's, and its message shows the expected value only when the test is visible; any
other exception is the grader's own bug: the student reads that staff were told, staff
read the exception (``problems``).

Two ways in: :func:`gradekit.grading.runner.run_graders` registers a
:class:`GradingPlugin` for each submission; and :mod:`.standalone` (the ``pytest11``
entry point ``gradekit``) makes ``pytest graders/ID --gradekit-notebook NB.ipynb`` run an
assignment's graders on one notebook, as grader authors expect.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ..bridge.protocol import StudentError
from ..model import TestResult
from ..spec import Assignment
from . import scoring
from .api import VISIBILITIES, Credit
from .seeds import rng_seed

MESSAGE_LIMIT = 4000
GRADER_BUG = "the grader itself failed on this check; course staff have been told"


@dataclasses.dataclass
class TestMeta:
    question: str | None
    points: float | None
    visibility: str
    public: bool


META = pytest.StashKey[TestMeta]()
CREDIT = pytest.StashKey[Credit]()
DEFAULT_VISIBILITY = "hidden"  # when neither the test nor the spec says


def _marker_arg(item, name: str):
    m = item.get_closest_marker(name)
    return m.args[0] if m and m.args else None


class GradingPlugin:
    """Fixtures and result collection for one submission's grading run."""

    def __init__(self, assignment: Assignment, submission, public_dirs: set[Path], include_hidden: bool = True,
                 questions: set[str] | None = None):
        self._assignment = assignment      # underscored: the fixtures below have the plain names
        self._submission = submission
        self._include_hidden = include_hidden
        self._questions = questions        # run only these questions' tests (one part's); None: all
        self.public_dirs = public_dirs
        self.results: dict[str, TestResult] = {}
        self.problems: list[str] = []

    # -- configuration --------------------------------------------------------------
    def pytest_configure(self, config):
        for line in ("question(id): the question this test grades",
                     "points(n): points this test is worth",
                     "visibility(v): when students see the result (visible, hidden, after_due_date, after_published)"):
            config.addinivalue_line("markers", line)

    def pytest_collection_modifyitems(self, session, config, items):
        marked = {}
        for item in items:
            qid, points = _marker_arg(item, "question"), _marker_arg(item, "points")
            visibility = _marker_arg(item, "visibility") or self._visibility_of(qid)
            if visibility not in VISIBILITIES:
                self.problems.append(f"{item.nodeid}: unknown visibility {visibility!r}")
            public = any(Path(str(item.path)).is_relative_to(d) for d in self.public_dirs)
            item.stash[META] = TestMeta(qid, None if points is None else float(points), visibility, public)
            marked[item.nodeid] = (qid, item.stash[META].points)
        shares, problems = scoring.share_points(self._assignment, marked, require_total=self._include_hidden)
        self.problems += problems
        for item in items:
            item.stash[META].points = shares[item.nodeid]
        if self._questions is not None:  # one part's notebook: the other parts' tests do not run here
            keep = [i for i in items if i.stash[META].question in self._questions]
            dropped = [i for i in items if i.stash[META].question not in self._questions]
            if dropped:
                config.hook.pytest_deselected(items=dropped)
                items[:] = keep

    def _visibility_of(self, qid) -> str:
        """A test without a visibility marker: its question's, else the assignment's (hidden
        unless the spec says otherwise: issue 17.16)."""
        questions = self._assignment.questions if self._assignment is not None else ()
        q = next((q for q in questions if q.id == qid), None)  # an unknown id is reported elsewhere
        if q is not None and q.visibility:
            return q.visibility
        return getattr(self._assignment, "visibility", None) or DEFAULT_VISIBILITY

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
        request.node.stash[CREDIT] = Credit()
        return request.node.stash[CREDIT]

    @pytest.fixture
    def tolerance(self, request):
        meta = request.node.stash.get(META, None)
        q = self._assignment.question(meta.question) if meta and meta.question else None
        return {"rtol": (q.rtol if q and q.rtol is not None else 1e-6),
                "atol": (q.atol if q and q.atol is not None else 0.0)}

    # -- recording ------------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.results[item.nodeid] = self._result(item, report, call.excinfo.value if call.excinfo else None)

    def _result(self, item, report, exc) -> TestResult:
        meta = item.stash.get(META, None) or TestMeta(None, 0.0, DEFAULT_VISIBILITY, False)
        status, message = "passed", ""
        if report.skipped:
            status = "failed"  # a skipped check earns nothing: skipping is not passing
            message = "skipped: " + (str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr))
        elif not report.passed:
            status = "failed"
            if isinstance(exc, StudentError):
                message = exc.for_student(meta.visibility == "visible")
            elif isinstance(exc, AssertionError):  # a plain assert in a grader: pytest explains it
                message = str(exc) if meta.visibility == "visible" else "this check failed"
            else:
                status, message = "error", GRADER_BUG
                self.problems.append(f"{item.nodeid} crashed: {type(exc).__name__}: {str(exc)[:500]}")
        credit = item.stash.get(CREDIT, None)
        fraction = (credit.fraction if credit and credit.fraction is not None
                    else (1.0 if status == "passed" else 0.0))
        if credit and credit.notes:
            message = "; ".join(credit.notes) + (f"\n{message}" if message else "")
        points = float(meta.points or 0.0)
        return TestResult(name=item.nodeid.split("::", 1)[-1], question=meta.question or "?",
                          points_possible=points, points_earned=round(points * fraction, 6), status=status,
                          visibility=meta.visibility, message=message[:MESSAGE_LIMIT],
                          duration=round(report.duration, 4), public=meta.public)
