"""Reports: the Gradescope schema, what students may see, the gradebook, and output caps."""
from __future__ import annotations

import csv
import io
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from support import ROOT, grade_notebooks, needs_root
from gradekit.grading import scoring
from gradekit.model import Report, SubmissionRef
from gradekit.report import build
from gradekit.report.render import gradebook as gb
from gradekit.report.render.gradescope import to_gradescope
from gradekit.report.render.markdown import to_markdown
from gradekit.spec import load


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    needs_root()
    a = load("example")
    master = nbformat.read(str(a.master_path), as_version=4)
    flood = nbformat.read(str(a.master_path), as_version=4)
    flood.cells.insert(1, new_code_cell("for i in range(200000):\n    print('spam' * 50)"))
    bob = nbformat.read(str(ROOT / "assignments/example/submissions/bob_partly_wrong.ipynb"), as_version=4)
    return grade_notebooks("example", {"master": master, "flood": flood, "bob": bob},
                           tmp_path_factory.mktemp("report"))


def test_gradescope_results_follow_the_schema(graded):
    res = to_gradescope(Report.from_json(graded["bob"]))
    assert res["score"] == 2 and isinstance(res["execution_time"], float)
    for t in res["tests"]:
        assert set(t) >= {"name", "score", "max_score", "status", "visibility", "output"}
        assert t["status"] in ("passed", "failed") and t["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
    assert sum(t["max_score"] for t in res["tests"]) == load("example").auto_points
    assert "Graded by course staff later: q4" in res["output"]
    # one entry per question: its public and hidden checks together, not two entries
    assert [t["number"] for t in res["tests"]] == ["q1", "q2", "q3"]
    assert len(Report.from_json(graded["bob"]).tests) > 3


def test_a_question_with_a_hidden_check_is_hidden_on_gradescope(graded):
    rep = Report.from_json(graded["bob"])
    q1 = [t for t in rep.tests if t.question == "q1"]
    q1[-1].visibility = "hidden"
    entry = next(t for t in to_gradescope(rep)["tests"] if t["number"] == "q1")
    assert entry["visibility"] == "hidden"
    assert next(t for t in to_gradescope(rep)["tests"] if t["number"] == "q2")["visibility"] == "visible"


def test_rejected_submission_gets_a_top_level_message():
    a = load("example")
    rep = build.rejected(a, SubmissionRef(id="x", sha256="", submitter="x", sources=["x.ipynb"]), "not a notebook")
    res = to_gradescope(rep)
    assert res["score"] == 0 and "not a notebook" in res["output"] and res["tests"] == []


def test_hidden_test_details_are_not_shown_to_students(graded):
    rep = Report.from_json(graded["bob"])
    for t in rep.tests:
        t.visibility = "hidden"
    rep.questions = scoring.question_rows(load("example").questions, rep.tests)
    md = to_markdown(rep)
    assert "18432" not in md and "hidden tests are not shown" in md
    assert "18432" in to_markdown(Report.from_json(graded["bob"]))  # visible: the student sees what came back


def test_gradebook_has_a_row_per_source_and_a_column_per_question(graded):
    a = load("example")
    reports = [Report.from_json(r) for r in graded.values()]
    rows = list(csv.DictReader(io.StringIO(gb.gradebook(reports, [q.id for q in a.questions]))))
    assert {r["q1"] for r in rows} >= {"2", "0"} and {r["q4"] for r in rows} == {"manual"}
    assert all(r["max"] == "5" for r in rows)


def test_output_flood_is_capped_and_costs_no_points(graded):
    rep = graded["flood"]
    assert rep["score"] == 5
    cell = next(c for c in rep["execution"]["cells"] if c["source_head"].startswith("for i in range"))
    assert cell["status"] == "ok" and cell["output_truncated"]
    assert len(json.dumps(rep)) < 200_000
