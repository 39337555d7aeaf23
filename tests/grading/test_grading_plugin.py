"""The graders' plugin on its own (no kernel): points, partial credit, visibility, seeds,
skips and grader crashes."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

from gradekit.grading.runner import run_graders
from gradekit.grading.seeds import rng_seed
from gradekit.spec import SpecError, load

SPEC = """
title = "plugin test"
[[questions]]
id = "q1"
points = 3
[[questions]]
id = "q2"
points = 2
[[questions]]
id = "q3"
points = 1
[[questions]]
id = "q4"
points = 4
manual = true
"""

GRADERS = '''
import pytest
from gradekit.grading import assert_close, question

@question("q1", points=1)
def test_q1_fixed(submission):
    assert submission.get("a") == 1

@question("q1")
def test_q1_shares_rest_a(submission):
    pass

@question("q1")
def test_q1_shares_rest_b(submission):
    assert False, "nope"

@question("q2", visibility="hidden")
def test_q2_partial(submission, credit):
    credit.award(0.25, "a quarter for the shape")
    assert_close(submission.get("v"), [1.0, 2.0], name="v")

@question("q3", visibility="visible")
def test_q3_visible(submission):
    assert_close(submission.get("v"), [1.0, 2.0], name="v")

@question("q3", points=0)
def test_q3_skipped(submission):
    pytest.skip("not today")

@question("q3", points=0)
def test_q3_grader_bug(submission):
    {}["missing"]

@question("q3", points=0)
def test_rng_is_reproducible(submission, rng):
    submission.seen.append(rng.integers(0, 2**62))
'''


class FakeSubmission:
    def __init__(self, seed, values):
        self.seed, self.values, self.seen = seed, values, []

    def get(self, name):
        return self.values[name]


@pytest.fixture
def assignment(tmp_path):
    (tmp_path / "assignments" / "t").mkdir(parents=True)
    (tmp_path / "assignments" / "t" / "assignment.toml").write_text(SPEC)
    (tmp_path / "graders" / "t").mkdir(parents=True)
    (tmp_path / "graders" / "t" / "test_t.py").write_text(textwrap.dedent(GRADERS))
    return load("t", tmp_path)


def _run(assignment, seed=7):
    sub = FakeSubmission(seed, {"a": 1, "v": [1.0, 2.5]})
    results, problems, _ = run_graders(assignment, sub)
    return {r.name: r for r in results}, problems, sub


def test_points_partial_credit_and_sharing(assignment):
    r, problems, _ = _run(assignment)
    assert r["test_q1_fixed"].points_earned == 1
    assert r["test_q1_shares_rest_a"].points_possible == 1 and r["test_q1_shares_rest_a"].points_earned == 1
    assert r["test_q1_shares_rest_b"].points_earned == 0
    assert r["test_q2_partial"].status == "failed" and r["test_q2_partial"].points_earned == 0.5
    assert "a quarter for the shape" in r["test_q2_partial"].message


def test_expected_values_only_in_visible_messages(assignment):
    r, _, _ = _run(assignment)
    assert "expected:" in r["test_q3_visible"].message and "2.5" in r["test_q3_visible"].message
    assert "expected:" not in r["test_q2_partial"].message and "relative error" in r["test_q2_partial"].message


def test_a_test_nothing_says_anything_about_is_hidden(assignment):
    """Issue 17.16: no marker, no question or [grading] visibility in the spec: hidden, so its
    failure shows the student no detail (a plain assert's message may hold the answer)."""
    r, _, _ = _run(assignment)
    assert assignment.visibility == "hidden"
    assert {r[n].visibility for n in ("test_q1_fixed", "test_q1_shares_rest_b", "test_q3_skipped")} == {"hidden"}
    assert r["test_q1_shares_rest_b"].message == "this check failed"   # not pytest's "nope"
    assert r["test_q2_partial"].visibility == "hidden" and r["test_q3_visible"].visibility == "visible"  # markers


def test_visibility_comes_from_the_marker_then_the_question_then_the_spec(tmp_path):
    def course(spec: str):
        (tmp_path / "assignments" / "t").mkdir(parents=True, exist_ok=True)
        (tmp_path / "assignments" / "t" / "assignment.toml").write_text(spec)
        (tmp_path / "graders" / "t").mkdir(parents=True, exist_ok=True)
        (tmp_path / "graders" / "t" / "test_t.py").write_text(textwrap.dedent(GRADERS))
        return load("t", tmp_path)

    with_q1 = SPEC.replace('id = "q1"\n', 'id = "q1"\nvisibility = "visible"\n', 1)
    a = course(with_q1 + '\n[grading]\nvisibility = "after_due_date"\n')
    assert a.visibility == "after_due_date" and a.question("q1").visibility == "visible"
    r, _, _ = _run(a)
    assert r["test_q1_shares_rest_b"].visibility == "visible" and "nope" in r["test_q1_shares_rest_b"].message
    assert r["test_q2_partial"].visibility == "hidden"           # the marker wins over the spec
    assert r["test_q3_visible"].visibility == "visible"
    assert r["test_q3_skipped"].visibility == "after_due_date"   # the spec's default
    with pytest.raises(SpecError, match=r"\[grading\] visibility must be one of visible, hidden"):
        course(SPEC + '\n[grading]\nvisibility = "public"\n')
    with pytest.raises(SpecError, match=r"question 'q1' visibility must be one of visible, hidden"):
        course(SPEC.replace('id = "q1"\n', 'id = "q1"\nvisibility = "shown"\n', 1))


def test_skipped_is_not_passed_and_grader_bugs_go_to_staff(assignment):
    r, problems, _ = _run(assignment)
    assert r["test_q3_skipped"].status == "failed" and "skipped" in r["test_q3_skipped"].message
    bug = r["test_q3_grader_bug"]
    assert bug.status == "error" and "missing" not in bug.message and "course staff" in bug.message
    assert any("test_q3_grader_bug" in p and "KeyError" in p for p in problems)


def test_rng_depends_on_the_submission_and_the_test(assignment):
    _, _, a = _run(assignment, seed=1)
    _, _, b = _run(assignment, seed=1)
    _, _, c = _run(assignment, seed=2)
    assert a.seen == b.seen and a.seen != c.seen
    assert rng_seed(1, "x") != rng_seed(1, "y")
    expected = np.random.default_rng(rng_seed(1, "graders/t/test_t.py::test_rng_is_reproducible")).integers(0, 2**62)
    assert a.seen == [expected]


def test_points_that_do_not_add_up_are_a_grader_problem(assignment, tmp_path):
    (tmp_path / "graders" / "t" / "test_more.py").write_text(
        "from gradekit.grading import question\n@question('q2', points=5)\ndef test_extra(submission):\n    pass\n")
    _, problems, _ = _run(assignment)
    assert any("question q2" in p and "spec says 2" in p for p in problems)


def test_auto_question_without_tests_is_a_grader_problem(assignment, tmp_path):
    (tmp_path / "assignments" / "t" / "assignment.toml").write_text(SPEC + '\n[[questions]]\nid = "q5"\npoints = 1\n')
    _, problems, _ = _run(load("t", tmp_path))
    assert any("q5" in p and "no test" in p for p in problems)
