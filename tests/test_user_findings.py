"""What a new user found when grading real class folders and authoring from the docs
(issue: the house, section 3). Each test failed on the engine before the restructure."""
from __future__ import annotations

import csv
import json
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from support import ROOT, needs_root
from gradekit import intake
from gradekit.model import Limits, SubmissionRef
from gradekit.report import build
from gradekit.report.render.gradebook import csv_cell, gradebook, summary_table
from gradekit.report.render.gradescope import to_gradescope
from gradekit.report.render.markdown import to_markdown
from gradekit.run.batch import BatchOptions, GradersBroken, grade_batch
from gradekit.sandbox.environment import differences
from gradekit.spec import load
from gradekit.tools.assign import MarkerError, make_template

EXAMPLES = ROOT / "assignments" / "example" / "submissions"


def gradekit_cli(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "gradekit", *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})), timeout=600)


def _nb(*cells: str) -> nbformat.NotebookNode:
    return new_notebook(cells=[new_code_cell(c) for c in cells])


# -- intake: submitters, missing notebooks, identities ---------------------------------------
def test_a_submitter_folder_without_a_notebook_is_reported_missing(tmp_path):
    (tmp_path / "class" / "alice").mkdir(parents=True)
    nbformat.write(_nb("x = 1"), str(tmp_path / "class" / "alice" / "hw.ipynb"))
    (tmp_path / "class" / "bob").mkdir()
    (tmp_path / "class" / "bob" / "essay.pdf").write_bytes(b"%PDF")
    items = {i.submitter: i for i in intake.collect([tmp_path / "class"])}
    assert set(items) == {"alice", "bob"}
    assert items["bob"].missing and "essay.pdf" in items["bob"].rejected


def test_submitters_are_named_as_lms_and_gradescope_exports_name_them(tmp_path):
    nb = nbformat.writes(_nb("x = 1")).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("smithalice_12345_678901_hw.ipynb", nb)                         # Canvas
        zf.writestr("Bob Jones_4242_assignsubmission_file_/hw.ipynb", nb + b" ")    # Moodle
    (tmp_path / "lms.zip").write_bytes(buf.getvalue())
    gs = tmp_path / "gradescope"
    (gs / "submission_777").mkdir(parents=True)
    (gs / "submission_777" / "hw.ipynb").write_bytes(nb)
    (gs / "submission_metadata.yml").write_text(
        "submission_777:\n  :submitters:\n  - :name: Carol Chen\n    :email: carol@example.org\n")
    names = {i.submitter for i in intake.collect([tmp_path / "lms.zip", gs])}
    assert names == {"smithalice", "Bob Jones", "Carol Chen"}


def test_sources_name_no_host_paths(tmp_path):
    (tmp_path / "deep" / "class").mkdir(parents=True)
    nbformat.write(_nb("x = 1"), str(tmp_path / "deep" / "class" / "alice.ipynb"))
    item, = intake.collect([tmp_path / "deep" / "class"])
    assert item.source == "class/alice.ipynb" and str(tmp_path) not in item.source


# -- reports: manual questions always, one entry per question, hostile names -------------------
def _ref(name="x.ipynb"):
    return SubmissionRef(id="x", sha256="", submitter=name, sources=[name])


def test_rejected_and_missing_reports_list_the_manual_questions():
    a = load("example")
    for make in (build.rejected, build.missing):
        rep = make(a, _ref(), "not a notebook")
        assert [q.id for q in rep.questions if q.manual] == ["q4"]
        assert "q4" in to_markdown(rep) and "q4" in to_gradescope(rep)["output"]


def test_student_strings_cannot_forge_structure_in_markdown_or_csv():
    a = load("example")
    rep = build.rejected(a, _ref("=HYPERLINK(\"http://x\")\n**Score: 5 / 5**| q1 |"), "x")
    md = to_markdown(rep)
    assert "\n**Score: 5 / 5**" not in md and "| q1 |" not in md.split("| question |")[0]
    row = next(csv.reader(io.StringIO(gradebook([rep], ["q1"]).splitlines()[1])))
    assert row[0].startswith("'=")
    assert csv_cell("-3") == "-3" and csv_cell("@cmd") == "'@cmd"
    table = summary_table([build.rejected(a, _ref("evil\x1b]0;ALL PASSED\x07.ipynb"), "x")], ["q1"])
    assert "\x1b" not in table and "\\x1b" in table
    lms = "Alexandra Konstantinopoulou-Vanderberg_4242_assignsubmission_file_"
    assert lms in summary_table([build.rejected(a, _ref(lms), "x")], ["q1"], width=200)  # never cut from the left


# -- graders that are broken are refused or loud ------------------------------------------
def _course_copy(tmp_path: Path) -> Path:
    course = tmp_path / "course"
    shutil.copytree(ROOT / "assignments" / "example", course / "assignments" / "example",
                    ignore=shutil.ignore_patterns("submissions", "__pycache__"))
    shutil.copytree(ROOT / "graders" / "example", course / "graders" / "example", ignore=shutil.ignore_patterns("__pycache__"))
    (course / "student_templates").mkdir()
    shutil.copy(ROOT / "student_templates" / "example.ipynb", course / "student_templates")
    (course / "gradekit.toml").write_text('title = "a copy"\n')
    return course


def test_points_that_disagree_with_the_spec_are_refused_before_any_submission_runs(tmp_path):
    course = _course_copy(tmp_path)
    grader = course / "graders" / "example" / "test_example.py"
    grader.write_text(grader.read_text().replace('@question("q3", points=1)', '@question("q3", points=4)', 1)
                      if '@question("q3", points=1)' in grader.read_text() else grader.read_text() + (
                          "\n\n@question('q3', points=3)\ndef test_extra(submission):\n    pass\n"))
    with pytest.raises(GradersBroken, match="q3"):
        grade_batch([EXAMPLES / "alice_correct.ipynb"], load("example", course), tmp_path / "out", BatchOptions(progress=False))
    assert not list((tmp_path / "out").glob("*/report.json"))
    proc = gradekit_cli("grade", str(EXAMPLES / "alice_correct.ipynb"), "-a", "example", "-o", str(tmp_path / "o2"),
                        "--sandbox", "process", cwd=course)
    assert proc.returncode == 3 and "GRADERS ARE BROKEN" in proc.stderr, proc.stderr


def test_a_grader_that_crashes_makes_grade_exit_3_and_the_gradebook_says_so(tmp_path):
    needs_root()
    course = _course_copy(tmp_path)
    grader = course / "graders" / "example" / "test_example.py"
    grader.write_text(grader.read_text().replace("def test_softmax(submission, rng", "def test_softmax(submission, rng", 1)
                      .replace("    z = ", "    undefined_name_typo\n    z = ", 1))
    proc = gradekit_cli("grade", str(EXAMPLES / "alice_correct.ipynb"), "-a", "example", "-o", str(tmp_path / "out"),
                        "--sandbox", "process", "--quiet", cwd=course)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "GRADERS ARE BROKEN" in proc.stderr and "NameError" in proc.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "gradebook.csv").open()))
    assert rows and "NameError" in rows[0]["graders_broken"]
    assert "graders broken" in proc.stdout


# -- grading a class: identical notebooks, repeated runs, plain reasons --------------------
@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    needs_root()
    tmp = tmp_path_factory.mktemp("class")
    subs = tmp / "class"
    for who in ("alice", "bob"):  # byte-identical notebooks from two students
        (subs / who).mkdir(parents=True)
        shutil.copy(EXAMPLES / "alice_correct.ipynb", subs / who / "hw.ipynb")
    (subs / "carol").mkdir()
    nbformat.write(_nb("import tensorflow as tf", "x = 1 / 0"), str(subs / "carol" / "hw.ipynb"))
    a = load("example")
    first = grade_batch([subs], a, tmp / "out", BatchOptions(workers=2, progress=False))
    later = tmp / "later"
    later.mkdir()
    shutil.copy(EXAMPLES / "bob_partly_wrong.ipynb", later / "dave.ipynb")
    second = grade_batch([later], a, tmp / "out", BatchOptions(progress=False))
    return tmp, {r.submission.submitter: r for r in first + second}


def test_identical_notebooks_keep_a_report_each_and_the_gradebook_says_so(class_run):
    tmp, by = class_run
    alice, bob = by["alice"], by["bob"]
    assert alice.submission.id != bob.submission.id and alice.score == bob.score == 5
    for me, other in (("alice", "bob"), ("bob", "alice")):
        feedback = (tmp / "out" / by[me].submission.id / "feedback.md").read_text()
        assert me in feedback and other not in feedback
    rows = {r["submitter"]: r for r in csv.DictReader((tmp / "out" / "gradebook.csv").open())}
    assert rows["alice"]["identical_to"] == "bob" and rows["bob"]["identical_to"] == "alice"


def test_grading_again_into_the_same_folder_keeps_every_submitter_in_the_gradebook(class_run):
    tmp, _ = class_run
    rows = {r["submitter"] for r in csv.DictReader((tmp / "out" / "gradebook.csv").open())}
    assert rows == {"alice", "bob", "carol", "dave.ipynb"}


def test_a_notebook_that_defines_nothing_gets_a_plain_reason(class_run):
    tmp, by = class_run
    carol = by["carol"]
    assert carol.score == 0 and carol.reason
    assert carol.sandbox.environment == [], carol.sandbox  # the process kernel has the image's package list
    assert "none of the 3 names" in carol.reason.lower() and "ModuleNotFoundError" in carol.reason
    assert "code cell 1" in carol.reason
    md = (tmp / "out" / carol.submission.id / "feedback.md").read_text()
    for q in ("q1", "q2", "q3"):  # one entry per question, public and hidden tests together
        assert md.count(f"### {q} ") == 1, md
    assert str(tmp) not in md


# -- authoring: markers, the course, the bundle, the CLI ------------------------------------
def test_a_missing_end_solution_is_explained_in_the_instructors_terms():
    a = load("example")
    master = nbformat.read(str(a.master_path), as_version=4)
    i = next(i for i, c in enumerate(master.cells) if c.cell_type == "code" and "END SOLUTION" in c.source)
    master.cells[i].source = master.cells[i].source.replace("# END SOLUTION", "")
    with pytest.raises(MarkerError) as err:
        make_template(master, a)
    number = sum(c.cell_type == "code" for c in master.cells[:i + 1])
    msg = str(err.value)
    assert f"code cell {number}" in msg and "# END SOLUTION" in msg and f"cell {i + 1} of" in msg


def test_a_course_copy_is_found_from_the_working_directory(tmp_path):
    course = _course_copy(tmp_path)
    (course / "student_templates" / "example.ipynb").unlink()
    before = (ROOT / "student_templates" / "example.ipynb").stat().st_mtime_ns
    proc = gradekit_cli("assign", "example", "--no-verify", cwd=course / "assignments")
    assert proc.returncode == 0, proc.stderr
    assert f"course {course}" in proc.stderr
    assert (course / "student_templates" / "example.ipynb").exists()
    assert (ROOT / "student_templates" / "example.ipynb").stat().st_mtime_ns == before
    bundle = zipfile.ZipFile(course / "build" / "student" / "example.zip")
    names = bundle.namelist()
    assert "example/example.ipynb" in names and "example/assignments/example/public_tests/test_public.py" in names
    assert not any("graders/" in n or "master" in n or n.startswith("example/reference") for n in names)


def test_init_lays_out_a_course(tmp_path):
    proc = gradekit_cli("init", str(tmp_path / "new"))
    assert proc.returncode == 0, proc.stderr
    for p in ("gradekit.toml", "assignments/example/assignment.toml", "graders/example", "student_templates"):
        assert (tmp_path / "new" / p).exists(), p


def test_check_without_an_assignment_lists_the_known_ids(tmp_path):
    nb = _nb("import numpy as np", "x = np.zeros(3)")  # no metadata, none of any assignment's names
    nbformat.write(nb, str(tmp_path / "mine.ipynb"))
    proc = gradekit_cli("check", str(tmp_path / "mine.ipynb"))
    known = ", ".join(sorted(p.parent.name for p in (ROOT / "assignments").glob("*/assignment.toml")))
    assert proc.returncode == 2 and "cv1-a5, dl-example" in known and known in proc.stderr, proc.stderr
    nb.metadata["gradekit"] = {"assignment": "/etc"}
    nbformat.write(nb, str(tmp_path / "mine.ipynb"))
    proc = gradekit_cli("check", str(tmp_path / "mine.ipynb"))
    assert proc.returncode == 2 and "not an assignment id" in proc.stderr, proc.stderr


def test_check_lists_the_cells_it_points_at(tmp_path):
    needs_root()
    nb = nbformat.read(str(load("example").template_path), as_version=4)
    nb.cells.append(new_code_cell("raise ValueError('my own bug')"))
    nbformat.write(nb, str(tmp_path / "mine.ipynb"))
    proc = gradekit_cli("check", str(tmp_path / "mine.ipynb"))
    out = proc.stdout
    assert "the cells are listed below" in out and "ValueError: my own bug" in out.split("the cells are listed below")[1], out


def test_every_option_has_help_and_every_limit_is_an_option():
    import dataclasses

    from gradekit.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest not in ("help",):
                assert action.help, f"gradekit {name} {action.option_strings or action.dest} has no help"
    grade_opts = {o for a in sub.choices["grade"]._actions for o in a.option_strings}
    for f in dataclasses.fields(Limits):
        assert "--" + f.name.replace("_", "-") in grade_opts


def test_limits_are_validated():
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=-5)
    with pytest.raises(ValueError, match="pids"):
        Limits(pids=2.5)


def test_a_kernel_environment_that_differs_from_the_list_is_described():
    assert differences({"numpy": "2.4.6", "pandas": "3.1.1"}, {"numpy": "2.4.6"}) == [
        "pandas is missing (the kernel environment lists 3.1.1)"]
    assert differences({"numpy": "2.4.6"}, {"numpy": "1.26.0"}) == ["numpy is 1.26.0, the kernel environment lists 2.4.6"]


def test_any_assignments_autograder_zip_runs_locally_as_gradescope_would(tmp_path):
    needs_root()
    a = load("example")
    proc = gradekit_cli("gradescope", "example", "-o", str(tmp_path / "ag.zip"), "--try", str(a.master_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "score 5.0" in proc.stdout, proc.stdout


def test_feedback_shows_the_plot_a_question_points_at(tmp_path):
    needs_root()
    course = _course_copy(tmp_path)
    spec = course / "assignments" / "example" / "assignment.toml"
    text = spec.read_text()
    first_q = text.index("[[questions]]")
    q1_end = text.index("[[questions]]", first_q + 1)
    spec.write_text(text[:q1_end] + 'shows = ["softmax-plot"]\n\n' + text[q1_end:])
    nb = nbformat.read(str(ROOT / "assignments" / "example" / "master.ipynb"), as_version=4)
    cell = new_code_cell("import numpy as np\nimport matplotlib.pyplot as plt\nz = np.linspace(-3, 3, 50)\n"
                         "plt.plot(z, softmax(np.stack([z, -z], axis=1))[:, 0])\nprint('the softmax of (z, -z)')\nplt.show()")
    cell.metadata["tags"] = ["softmax-plot"]
    nb.cells.append(cell)
    nbformat.write(nb, str(tmp_path / "plotting.ipynb"))
    rep, = grade_batch([tmp_path / "plotting.ipynb"], load("example", course), tmp_path / "out", BatchOptions(progress=False))
    q1 = next(q for q in rep.questions if q.id == "q1")
    assert q1.outputs and q1.outputs[0].images and "softmax of (z, -z)" in q1.outputs[0].text, q1
    assert q1.outputs[0].number == sum(c.cell_type == "code" for c in nb.cells)
    page = (tmp_path / "out" / rep.submission.id / "feedback.html").read_text()
    section = page.split('<section class="shown" data-question="q1">', 1)[1].split("</section>", 1)[0]
    assert '<img src="data:image/png;base64,iVBORw0KGgo' in section
    assert not any(q.outputs for q in rep.questions if q.id != "q1")


def test_one_variants_typo_fails_that_variant_alone_and_only_selected_ones_are_graded(tmp_path_factory):
    from support import SelectedNotebooks
    batches = []

    def grade(aid, notebooks, tmp):
        batches.append(sorted(notebooks))
        return {n: {"graded": n} for n in notebooks}

    def variants(aid):
        return [{"name": "ok", "question": "q1", "replace": [["def softmax", "def softmax"]]},
                {"name": "other", "question": "q2", "replace": [["def softmax", "def softmax"]]},
                {"name": "typo", "question": "q1", "replace": [["text that is not in the master", "x"]]}]

    selected = SelectedNotebooks({"example": {"variant-ok", "variant-typo"}}, tmp_path_factory, grade, variants)
    assert selected("example", "variant-ok") == {"graded": "variant-ok"}
    assert batches == [["variant-ok"]]   # one batch; not the master, the template or unselected variants
    with pytest.raises(pytest.fail.Exception, match="not found in the master"):
        selected("example", "variant-typo")
    assert batches == [["variant-ok"]]   # nothing graded again


def test_a_variant_of_a_part_is_handed_in_as_that_part_alone(tmp_path_factory):
    """With [[parts]], a wrong variant or valid alternative is its own part's notebook only (the
    other parts missing): they would rerun the masters. Its full marks are its part's points."""
    from support import SelectedNotebooks, reachable_points
    from gradekit.spec import load
    handed = {}

    def grade(aid, notebooks, tmp):
        handed.update(notebooks)
        return {n: {} for n in notebooks}

    variants = [{"name": "rf", "question": "1.3a", "replace": [["def receptive_field", "def receptive_field"]]}]
    selected = SelectedNotebooks({"hw4-cnn": {"variant-rf", "master"}}, tmp_path_factory, grade, lambda aid: variants)
    selected("hw4-cnn", "variant-rf")
    a = load("hw4-cnn")
    assert sorted(handed["variant-rf"]) == ["p1"] and sorted(handed["master"]) == [p.id for p in a.parts]
    p1 = sum(a.question(q).points for q in a.part("p1").questions if not a.question(q).manual)
    assert reachable_points(a, variants[0]) == p1
    assert reachable_points(load("example"), variants[0]) == load("example").auto_points


def test_without_a_secret_the_inputs_cannot_be_predicted_from_the_notebook(tmp_path, gradekit_home):
    """Issue 17.1: a course secret is made on first use, kept outside the course (0600 in a
    0700 folder), and used by every run, so --resume still reuses reports."""
    import stat

    from gradekit.grading.seeds import submission_seed
    needs_root()
    runs = []
    for out in ("o1", "o2"):
        proc = gradekit_cli("grade", str(EXAMPLES / "alice_correct.ipynb"), "-a", "example", "-o", str(tmp_path / out),
                            "--sandbox", "process", "--quiet")
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(next((tmp_path / out).glob("*/report.json")).read_text()))
    first, second = runs
    assert first["seed"] == second["seed"]  # one secret per course: resumable, reproducible
    predictable = submission_seed(first["submission"]["sha256"], "example", "")
    assert first["seed"] != predictable
    import hashlib
    secret_file = gradekit_home / "secrets" / hashlib.sha256(str(ROOT).encode()).hexdigest()[:24]  # this course's
    assert secret_file.is_file() and not secret_file.is_relative_to(ROOT)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((gradekit_home / "secrets").stat().st_mode) == 0o700
    assert secret_file.read_text().strip() not in json.dumps(first)


def test_graders_run_again_under_check_secrets_on_the_same_notebook(tmp_path, monkeypatch):
    """BatchOptions.check_secrets: the graders run again with each secret's inputs, on the
    notebook already executed, and report.seed_scores holds what each run scored; a grader
    whose verdict hangs on the draw shows up there (test_assignments.py relies on it)."""
    needs_root()
    course = _course_copy(tmp_path)
    log = tmp_path / "draws.txt"
    monkeypatch.setenv("GK_DRAW_LOG", str(log))
    (course / "graders" / "example" / "test_example.py").write_text(
        "import os\n"
        "from gradekit.grading import question\n\n"
        "@question('q1', points=2)\n"
        "def test_a_coin(submission, rng):\n"
        "    heads = int(rng.integers(0, 2))\n"
        "    with open(os.environ['GK_DRAW_LOG'], 'a') as f:\n"
        "        f.write(f'{heads}\\n')\n"
        "    assert heads == 1\n\n"
        "@question('q2', points=2)\n"
        "def test_always(submission):\n"
        "    assert submission.call('softmax', [[0.0, 0.0]]).shape == (1, 2)\n\n"
        "@question('q3', points=1)\n"
        "def test_never(submission):\n"
        "    assert False\n")
    nbformat.write(nbformat.read(str(ROOT / "assignments" / "example" / "master.ipynb"), as_version=4),
                   str(tmp_path / "m.ipynb"))
    secrets = tuple(f"check-{i}" for i in range(6))
    rep, = grade_batch([tmp_path / "m.ipynb"], load("example", course), tmp_path / "out",
                       BatchOptions(progress=False, secret="main", check_secrets=secrets))
    draws = [int(line) for line in log.read_text().split()]
    assert len(draws) == 1 + len(secrets) and rep.execution.status == "completed"
    assert [rep.score, *rep.seed_scores] == [2.0 + 2.0 * d for d in draws]  # each run as its own draw says
    assert len(set(draws)) == 2, draws  # these secrets draw both sides: the check can tell them apart
