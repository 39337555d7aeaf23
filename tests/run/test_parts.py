"""Submissions of several notebooks ("parts", issue 15): the spec's [[parts]], one kernel per
part, each part's questions graded against its own kernel, one report per submitter.

The end-to-end tests run a tiny two-part numpy assignment (made here, in a course copy) with
the Docker backend and the light grading image."""
from __future__ import annotations

import csv
import json
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from gradekit.model import BackendChoice, Report
from gradekit.report.write import read
from gradekit.run.batch import BatchOptions, grade_batch
from gradekit.spec import SpecError, load
from support import needs_root

SPEC = '''
title = "Homework 4, in two notebooks"
gpu = "none"
torch = false
submission_timeout = 14

[limits]
memory_mb = 512
cell_timeout = 6
total_timeout = 10
call_timeout = 10

[[questions]]
id = "q1"
title = "double"
points = 2

[[questions]]
id = "q2"
title = "square"
points = 1

[[questions]]
id = "q3"
title = "triple"
points = 4

[[parts]]
id = "p1"
title = "Problem 1"
pattern = "*_hw4_p1.ipynb"
questions = ["q1", "q2"]

[parts.limits]
total_timeout = 8            # Problem 1's own; Problem 2 keeps [limits]' 10

[[parts]]
id = "p2"
title = "Problem 2"
pattern = "*_hw4_p2.ipynb"
questions = ["q3"]
'''

GRADERS = '''
from gradekit.grading import assert_equal, question


@question("q1")
def test_double(submission):
    assert_equal(submission.call("double", 21), 42, name="double(21)")


@question("q2")
def test_square(submission):
    assert_equal(submission.call("square", 5), 25, name="square(5)")


@question("q3", points=3)
def test_triple(submission):
    assert_equal(submission.call("triple", 5), 15, name="triple(5)")


@question("q3", points=1)
def test_only_its_own_kernel(submission):
    # p2's kernel never ran p1's notebook: a name p1 defines is not there
    assert not submission.has("double"), "double is defined in Problem 2's kernel"
'''

P1 = "def double(x):\n    return 2 * x\n\ndef square(x):\n    return x * x\n"
P2 = "def triple(x):\n    return 3 * x\n"


def course_with_parts(tmp: Path, spec: str = SPEC) -> Path:
    """A course holding the two-part assignment `hw4` (spec, graders, nothing else)."""
    course = tmp / "course"
    (course / "assignments" / "hw4").mkdir(parents=True)
    (course / "assignments" / "hw4" / "assignment.toml").write_text(spec)
    (course / "graders" / "hw4").mkdir(parents=True)
    (course / "graders" / "hw4" / "test_hw4.py").write_text(GRADERS)
    (course / "student_templates").mkdir()
    (course / "gradekit.toml").write_text('title = "parts"\n')
    return course


def nb(*cells: str, part: str | None = None) -> nbformat.NotebookNode:
    book = new_notebook(cells=[new_code_cell(c) for c in cells])
    book.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    if part is not None:
        book.metadata["gradekit"] = {"assignment": "hw4", "part": part}
    return book


def write(folder: Path, name: str, book) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(book, str(folder / name))


# -- the spec -----------------------------------------------------------------------------
def test_the_spec_reads_parts(tmp_path):
    a = load("hw4", course_with_parts(tmp_path))
    assert [(p.id, p.title, p.pattern, p.questions) for p in a.parts] == [
        ("p1", "Problem 1", "*_hw4_p1.ipynb", ("q1", "q2")), ("p2", "Problem 2", "*_hw4_p2.ipynb", ("q3",))]
    assert a.parts[0].master == a.root / "master_p1.ipynb"
    assert a.part_of("q3").id == "p2" and a.part("p1").matches("ABC123_HW4_P1.ipynb")
    assert not a.parts[1].matches("abc_hw4_p1.ipynb")
    assert a.time_budget(a.limits) == 14 and a.hard_wall(a.limits) == 14 + 2 * a.limits.grading_allowance
    assert [q.id for q in a.only_part(a.parts[0]).questions] == ["q1", "q2"]


def test_an_assignment_without_parts_has_none(tmp_path):
    a = load("example")
    assert a.parts == () and a.time_budget(a.limits) == a.limits.total_timeout
    assert a.hard_wall(a.limits) == a.limits.hard_wall and a.part_of("q1") is None


@pytest.mark.parametrize("change, message", [
    (('questions = ["q3"]', 'questions = ["q2", "q3"]'), "question 'q2' is in two parts, 'p1' and 'p2'"),
    (('questions = ["q3"]', 'questions = ["q9"]'), "names question 'q9', which the assignment does not have"),
    (('questions = ["q1", "q2"]', 'questions = ["q1"]'), "question(s) q2 belong to no part"),
    (('pattern = "*_hw4_p2.ipynb"', 'pattern = "*_HW4_P1.ipynb"'), "two parts have the same pattern"),
    (('pattern = "*_hw4_p2.ipynb"', 'pattern = "*_hw4_p*.ipynb"'), "also matches"),
    (('pattern = "*_hw4_p2.ipynb"', 'pattern = "p2/*.ipynb"'), "must be a file name pattern ending in .ipynb"),
    (('pattern = "*_hw4_p2.ipynb"', 'pattern = "*_hw4_p2.py"'), "must be a file name pattern ending in .ipynb"),
    (('id = "p2"', 'id = "p1"'), "part ids repeat"),
    (('id = "p2"', 'id = "../p2"'), "must be a name"),
    (('pattern = "*_hw4_p2.ipynb"\n', ''), "part #2 lacks 'pattern'"),
    (('questions = ["q3"]', 'questions = "q3"'), "questions must be a list of question ids"),
    (('title = "Problem 2"', 'title = "Problem 2"\nmaster = "../x.ipynb"'), "must be a path inside"),
    (('title = "Problem 2"', 'title = "Problem 2"\nfile = "x"'), "unknown keys ['file']"),
    (("submission_timeout = 14", "submission_timeout = -1"), "submission_timeout must be a positive number"),
    (('questions = ["q3"]', 'questions = ["q3"]\n[parts.limits]\nmemory_gb = 3'), "part 'p2': unknown limits ['memory_gb']"),
    (('questions = ["q3"]', 'questions = ["q3"]\n[parts.limits]\nmemory_mb = -5'), "limits.memory_mb must be positive"),
    (('questions = ["q3"]', 'questions = ["q3"]\nlimits = 3'), "limits must be a table"),
])
def test_spec_errors_say_what_to_fix(tmp_path, change, message):
    old, new = change
    assert old in SPEC
    course = course_with_parts(tmp_path, SPEC.replace(old, new, 1))
    with pytest.raises(SpecError) as err:
        load("hw4", course)
    assert message in str(err.value)


def test_a_part_has_limits_of_its_own(tmp_path):
    """[parts.limits] replaces [limits] for that part only; the budget without
    submission_timeout is the parts' own total_timeouts together; an option given on the
    command line (limits that differ from [limits]) applies to every part."""
    spec = SPEC.replace("submission_timeout = 14\n", "").replace(
        'questions = ["q3"]', 'questions = ["q3"]\n[parts.limits]\nmemory_mb = 3072\ncall_timeout = 30')
    a = load("hw4", course_with_parts(tmp_path, spec))
    p1, p2 = (a.part_limits(p, a.limits) for p in a.parts)
    assert (p1.total_timeout, p1.memory_mb, p1.call_timeout) == (8, 512, 10)
    assert (p2.total_timeout, p2.memory_mb, p2.call_timeout) == (10, 3072, 30)
    assert a.time_budget(a.limits) == 8 + 10
    assert a.hard_wall(a.limits) == 18 + p1.grading_allowance + p2.grading_allowance
    cli = a.limits.replace(memory_mb=1024, total_timeout=5)   # gradekit grade --memory-mb 1024 --total-timeout 5
    assert [(one.memory_mb, one.total_timeout, one.call_timeout) for one in a.kernel_limits(cli)] == [
        (1024, 5, 10), (1024, 5, 30)]
    assert load("example").kernel_limits(load("example").limits) == (load("example").limits,)


def test_submission_timeout_needs_parts(tmp_path):
    spec = SPEC[:SPEC.index("[[parts]]")]
    with pytest.raises(SpecError, match="submission_timeout is for assignments handed in as several notebooks"):
        load("hw4", course_with_parts(tmp_path, spec))
    assert load("hw4", course_with_parts(tmp_path / "b", spec.replace("submission_timeout = 14", ""))).parts == ()


# -- grading, end to end (Docker) -------------------------------------------------------------
@pytest.fixture(scope="module")
def graded(tmp_path_factory, light_image):
    tmp = tmp_path_factory.mktemp("parts")
    course = course_with_parts(tmp)
    subs = tmp / "class"
    write(subs / "alice", "alice_hw4_p1.ipynb", nb(P1))
    write(subs / "alice", "alice_hw4_p2.ipynb", nb(P2))
    write(subs / "bob", "bob_hw4_p1.ipynb", nb(P1))                       # no Problem 2
    write(subs / "carol", "carol_hw4_p1.ipynb", nb(P1))
    write(subs / "carol", "problem2 final.ipynb", nb(P2, part="p2"))      # misnamed, marked in its metadata
    write(subs / "dave", "dave_hw4_p1.ipynb", nb(P1))
    write(subs / "dave", "scratch.ipynb", nb(P2))                        # misnamed, no metadata
    write(subs / "erin", "erin_hw4_p1.ipynb", nb("1 / 0", P1.replace("return 2 * x", "return x")))
    write(subs / "erin", "erin_hw4_p2.ipynb", nb(P2))
    write(subs / "frank", "frank_hw4_p1.ipynb", nb(P1))
    write(subs / "frank", "frank_hw4_p2.ipynb", nb("def triple(x):\n    return double(x) + x\n"))
    write(subs / "gina", "gina_hw4_p1.ipynb", nb("import time\ntime.sleep(60)", P1))  # runs into the cell limit
    write(subs / "gina", "gina_hw4_p2.ipynb", nb(P2))
    subs.mkdir(exist_ok=True)
    with zipfile.ZipFile(subs / "hank.zip", "w") as z:  # a student's zip: the parts at its top
        z.writestr("hank_hw4_p1.ipynb", nbformat.writes(nb(P1)))
        z.writestr("hank_hw4_p2.ipynb", nbformat.writes(nb(P2)))
    (subs / "ivan").mkdir()
    (subs / "ivan" / "readme.txt").write_text("sorry")
    a = load("hw4", course)
    out = tmp / "out"
    reports = grade_batch([subs], a, out, BatchOptions(backend=BackendChoice("docker", {"torch": False}), workers=2,
                                                       progress=False))
    return {r.submission.submitter: r for r in reports}, out, a, subs


def _q(report: Report, qid: str):
    return next(q for q in report.questions if q.id == qid)


def test_both_parts_right_is_full_marks(graded):
    reports, out, a, _ = graded
    alice = reports["alice"]
    assert alice.status == "graded" and alice.score == 7 == alice.auto_points_possible, alice.to_json()
    assert [p.id for p in alice.parts] == ["p1", "p2"] and all(p.status == "graded" for p in alice.parts)
    assert [q.part for q in alice.questions] == ["p1", "p1", "p2"]
    assert all(p.execution is not None and p.execution.status == "completed" for p in alice.parts)
    assert alice.parts[0].source.endswith("alice_hw4_p1.ipynb") and alice.parts[1].source.endswith("alice_hw4_p2.ipynb")
    assert alice.sandbox.backend == "docker" and alice.execution is None and alice.schema == 3
    assert Report.from_json(json.loads((out / alice.submission.id / "report.json").read_text())) == alice
    assert {p.name for p in (out / alice.submission.id).glob("executed_*.ipynb")} == {
        "executed_p1.ipynb", "executed_p2.ipynb"}
    feedback = (out / alice.submission.id / "feedback.md").read_text()
    assert "## Problem 1" in feedback and "## Problem 2" in feedback
    html = (out / alice.submission.id / "feedback.html").read_text()
    assert "Problem 1" in html and "Problem 2" in html


def test_a_missing_part_scores_zero_with_the_reason(graded):
    bob = graded[0]["bob"]
    reason = "no notebook for Problem 2 found (expected a file named like `*_hw4_p2.ipynb`)"
    assert bob.status == "graded" and bob.score == 3, bob.to_json()
    q3 = _q(bob, "q3")
    assert q3.points_earned == 0 and q3.status == "missing" and q3.message == reason
    assert bob.parts[1].status == "missing" and bob.parts[1].reason == reason
    assert reason in bob.reason
    assert reason.replace("`", "\\`").replace("*", "\\*").replace("_", "\\_") in (
        graded[1] / bob.submission.id / "feedback.md").read_text()


def test_a_misnamed_part_marked_in_its_metadata_is_accepted_with_a_note(graded):
    carol = graded[0]["carol"]
    assert carol.score == 7, carol.to_json()
    assert carol.parts[1].source.endswith("problem2 final.ipynb")
    assert "its metadata marks it as Problem 2" in carol.parts[1].note
    assert any("its metadata marks it as Problem 2" in n for n in carol.notes)


def test_a_notebook_matching_no_part_is_not_graded_and_the_report_says_why(graded):
    dave = graded[0]["dave"]
    assert dave.score == 3 and _q(dave, "q3").status == "missing", dave.to_json()
    assert any("`scratch.ipynb` was not graded: its name matches no part" in n for n in dave.notes), dave.notes


def test_ivan_handed_in_no_notebook(graded):
    ivan = graded[0]["ivan"]
    assert ivan.status == "missing" and ivan.score == 0 and "no Jupyter notebook" in ivan.reason


def test_one_part_failing_does_not_stop_the_next(graded):
    erin = graded[0]["erin"]
    assert erin.status == "graded", erin.to_json()
    assert erin.parts[0].execution.status == "completed_with_errors"
    assert _q(erin, "q1").points_earned == 0 and _q(erin, "q2").points_earned == 1
    assert _q(erin, "q3").points_earned == 4 and erin.score == 5
    assert "Problem 1" in erin.reason and "ZeroDivisionError" in erin.reason


def test_a_part_that_runs_out_of_time_shares_the_budget_with_the_next(graded):
    gina = graded[0]["gina"]
    p1, p2 = gina.parts
    assert p1.execution.status in ("completed_with_errors", "timeout"), p1.execution
    assert any(c.status == "timeout" for c in p1.execution.cells)
    assert p1.time_limit == 8                          # p1's own limit ([parts.limits]): the budget was 14
    assert p2.time_limit is not None and p2.time_limit < 14 - 6 + 0.5   # what p1 left over
    assert p2.time_limit <= 14 - p1.execution.duration + 1e-6
    assert p2.status == "graded" and _q(gina, "q3").points_earned == 4, gina.to_json()


def test_a_part_is_graded_against_its_own_kernel_only(graded):
    frank = graded[0]["frank"]
    q3 = _q(frank, "q3")
    assert q3.points_earned == 1 and q3.status == "partial", frank.to_json()  # triple fails: double is p1's
    alice_q3 = [t for t in graded[0]["alice"].tests if t.question == "q3"]
    assert [t.status for t in alice_q3] == ["passed", "passed"]
    # p1's kernel ran no p2 test, and p2's no p1 test
    assert sorted(t.question for t in graded[0]["alice"].tests) == ["q1", "q2", "q3", "q3"]


def test_a_zip_of_parts_is_one_submission(graded):
    hank = graded[0]["hank"]
    assert hank.score == 7 and [p.status for p in hank.parts] == ["graded", "graded"], hank.to_json()


def test_the_gradebook_has_one_row_per_student(graded):
    reports, out, a, _ = graded
    rows = list(csv.DictReader((out / "gradebook.csv").open()))
    assert sorted(r["submitter"] for r in rows) == sorted(reports)
    bob = next(r for r in rows if r["submitter"] == "bob")
    assert (bob["q1"], bob["q2"], bob["q3"], bob["total"], bob["max"]) == ("2", "1", "0", "3", "7")


def test_resume_reuses_finished_submissions_and_regrades_a_changed_part(graded, tmp_path):
    reports, out, a, subs = graded
    again = tmp_path / "again"
    shutil.copytree(subs / "alice", again / "alice")
    shutil.copytree(subs / "bob", again / "bob")
    write(again / "bob", "bob_hw4_p2.ipynb", nb(P2))  # bob hands in Problem 2 now
    done = []
    new = grade_batch([again], a, out, BatchOptions(backend=BackendChoice("docker", {"torch": False}),
                                                    progress=False, resume=True, on_done=done.append))
    by = {r.submission.submitter: r for r in new}
    assert by["alice"].created == reports["alice"].created      # reused: not graded again
    assert by["bob"].score == 7 and by["bob"].created != reports["bob"].created
    assert read(out / by["bob"].submission.id).score == 7


# -- gradekit check on one part, or on the folder of all --------------------------------------
PUBLIC = '''
from gradekit.grading import assert_equal, question


@question("q1")
def test_double_public(submission):
    assert_equal(submission.call("double", 1), 2, name="double(1)")


@question("q3")
def test_triple_public(submission):
    assert_equal(submission.call("triple", 1), 3, name="triple(1)")
'''


@pytest.fixture
def check_course(tmp_path, light_image, monkeypatch):
    """The course with public tests, and `gradekit check` on the Docker backend (it uses the
    process backend, which another change is reworking)."""
    from gradekit.sandbox import registry
    course = course_with_parts(tmp_path)
    (course / "assignments" / "hw4" / "public_tests").mkdir()
    (course / "assignments" / "hw4" / "public_tests" / "test_public.py").write_text(PUBLIC)
    make = registry.make
    monkeypatch.setattr(registry, "make", lambda choice: make(BackendChoice("docker", {"torch": False})))
    return course


def test_check_on_one_part_grades_that_parts_questions_only(check_course, tmp_path, capsys):
    from gradekit.cli import main
    write(tmp_path / "mine", "me_hw4_p2.ipynb", nb(P2))
    code = main(["check", str(tmp_path / "mine" / "me_hw4_p2.ipynb"), "--course", str(check_course),
                 "-a", "hw4", "--markdown", str(tmp_path / "fb.md")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "checked as Problem 2 of hw4" in out and "1/1 public tests passed" in out
    assert "q1" not in out and "q3" in out


def test_check_on_a_misnamed_part_says_how_to_name_it(check_course, tmp_path, capsys):
    from gradekit.cli import main
    write(tmp_path / "mine", "homework.ipynb", nb(P2))
    code = main(["check", str(tmp_path / "mine" / "homework.ipynb"), "--course", str(check_course), "-a", "hw4"])
    assert code != 0 and "it is none of the parts of 'hw4'; name it like `*_hw4_p1.ipynb`" in capsys.readouterr().err


def test_check_on_the_folder_grades_every_part(check_course, tmp_path, capsys):
    from gradekit.cli import main
    write(tmp_path / "mine", "me_hw4_p1.ipynb", nb(P1.replace("2 * x", "x")))
    code = main(["check", str(tmp_path / "mine"), "--course", str(check_course), "-a", "hw4"])
    out = capsys.readouterr().out
    assert code != 0, out                                   # double is wrong
    assert "0/1 public tests passed" in out, out            # triple: the notebook is missing
    assert "q3     not checked: no notebook for Problem 2 found" in out


def test_the_gradescope_runner_grades_the_parts_it_is_handed(tmp_path):
    """`/autograder/submission` holding the notebooks: parts, one results.json (the runner's own
    process sandbox, in this process: its umask must stay as it was)."""
    from gradekit.run import gradescope
    needs_root()
    course = course_with_parts(tmp_path)
    (course / gradescope.CONFIG).write_text(json.dumps({"assignment": "hw4", "secret": "s", "gradekit": "test"}))
    submission = tmp_path / "submission"
    write(submission, "x_hw4_p1.ipynb", nb(P1))
    write(submission, "whatever.ipynb", nb(P2, part="p2"))
    rep = gradescope.run(course, submission, tmp_path / "results")
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert rep.score == 7 == results["score"], results
    assert [t["number"] for t in results["tests"]] == ["q1", "q2", "q3"]
    write(submission, "whatever.ipynb", nb("x = 1"))
    rep = gradescope.run(course, submission, tmp_path / "results")
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    q3 = next(t for t in results["tests"] if t["number"] == "q3")
    assert results["score"] == 3 and q3["score"] == 0 and "no notebook for Problem 2 found" in q3["output"]


def test_a_prose_only_part_that_staff_grade_is_graded_not_refused(tmp_path):
    """hw4-cnn's Problem 3 handed in as Markdown only (its one code cell deleted): the
    submission is graded, Problem 1 keeps its points, Problem 3's questions are listed for staff."""
    from support import grade_notebooks
    a = load("hw4-cnn")
    p1, p3 = (nbformat.read(str(p.master), as_version=4) for p in a.parts)
    p3.cells = [c for c in p3.cells if c.cell_type != "code"]
    assert p3.cells and all(c.cell_type == "markdown" for c in p3.cells)
    rep = grade_notebooks("hw4-cnn", {"prose": {"p1": p1, "p3": p3}}, tmp_path)["prose"]
    assert rep["status"] == "graded", rep["reason"]
    assert rep["score"] == pytest.approx(a.auto_points), rep["tests"]
    p3_rows = [q for q in rep["questions"] if q["part"] == "p3"]
    assert p3_rows and all(q["status"] == "manual" for q in p3_rows), p3_rows
    assert not any("no code" in str(p.get("reason") or "") for p in rep["parts"]), rep["parts"]


def test_check_on_a_prose_only_part_that_staff_grade_says_there_is_nothing_to_run(tmp_path, capsys):
    """`gradekit check` on hw4-cnn's Problem 3 as Markdown only: nothing to run, said plainly
    (exit 0); Problem 1 as Markdown only is still refused (its questions are graded by code)."""
    from gradekit.cli import main
    a = load("hw4-cnn")
    for part in (a.part("p1"), a.part("p3")):
        book = nbformat.read(str(part.master), as_version=4)
        book.cells = [c for c in book.cells if c.cell_type == "markdown"]
        nbformat.write(book, str(tmp_path / part.file_name("me")))
    code = main(["check", str(tmp_path / a.part("p3").file_name("me")), "-a", "hw4-cnn"])
    assert code == 0 and "staff grade every question of it" in capsys.readouterr().out
    code = main(["check", str(tmp_path / a.part("p1").file_name("me")), "-a", "hw4-cnn"])
    assert code != 0 and "no code to run" in capsys.readouterr().err
