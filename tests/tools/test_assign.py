"""Solution markers, the student template, and the checks `gradekit assign` makes."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from gradekit.tools.assign import MarkerError, check_contract, make_template, strip_code
from gradekit.spec import load


def test_block_marker_keeps_indentation_and_raises():
    src = "def f(x):\n    '''doc'''\n    # BEGIN SOLUTION\n    y = x + 1\n    return y\n    # END SOLUTION\n"
    out = strip_code(src)
    assert out == "def f(x):\n    '''doc'''\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert "x + 1" not in out


def test_line_marker_keeps_the_name():
    assert strip_code("n_params = 3 * 3 * 32 * 64 + 64  # SOLUTION") == "n_params = ...  # YOUR ANSWER HERE"
    assert strip_code("    shape = (112, 112, 32)  # solution") == "    shape = ...  # YOUR ANSWER HERE"
    assert strip_code("lo, hi = -1, 1  # SOLUTION") == "lo, hi = ..., ...  # YOUR ANSWER HERE"
    assert strip_code("d[1, 2] = 3  # SOLUTION") == "d[1, 2] = ...  # YOUR ANSWER HERE"
    ns = {}
    exec(strip_code("lo, hi = -1, 1  # SOLUTION"), ns)  # the template runs: no unpacking error
    assert ns["lo"] is ns["hi"] is Ellipsis


@pytest.mark.parametrize("src", ["# BEGIN SOLUTION\nx = 1\n", "x = 1\n# END SOLUTION\n",
                                 "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n"])
def test_unbalanced_markers_are_errors(src):
    with pytest.raises(MarkerError):
        strip_code(src)


def test_template_strips_prose_tags_and_outputs():
    a = load("example")
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("Q: why?\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->"),
        new_code_cell("secret = 1", metadata={"tags": ["solution"]}),
        new_code_cell("grader_only = 2", metadata={"tags": ["instructor"]}),
        new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n")], execution_count=3),
    ]
    t = make_template(nb, a)
    text = nbformat.writes(t)
    assert "Because." not in text and "secret = 1" not in text and "grader_only" not in text
    assert "*Your answer here.*" in text and t.cells[-1].outputs == [] and t.cells[-1].execution_count is None
    assert t.metadata["gradekit"]["assignment"] == "example"
    assert make_template(nb, a) == t  # deterministic: stale templates are detectable


def test_template_of_every_assignment_hides_solutions_and_shows_the_contract():
    from support import ROOT
    for spec in sorted((ROOT / "assignments").glob("*/assignment.toml")):
        a = load(spec.parent.name)
        for part, _, path in a.templates:  # one, or one per part
            text = path.read_text()
            assert "BEGIN SOLUTION" not in text.upper()
            assert not re.search(r"#\s*SOLUTION\s*(\\n)?\"", text, re.IGNORECASE), "a line marker survived"
            assert check_contract(a, text, part) == [], (a.id, path)


# -- an assignment in several notebooks ([[parts]]): one template per part ---------------------
PARTS_SPEC = '''
title = "Homework 4, in two notebooks"
torch = false

[limits]
memory_mb = 512
cell_timeout = 20
total_timeout = 40
call_timeout = 10

[[questions]]
id = "q1"
title = "double"
points = 2
defines = ["double"]

[[questions]]
id = "q2"
title = "why"
points = 1
manual = true

[[questions]]
id = "q3"
title = "triple"
points = 3
defines = ["triple"]

[[parts]]
id = "p1"
title = "Problem 1"
pattern = "*_hw4_p1.ipynb"
questions = ["q1", "q2"]

[[parts]]
id = "p2"
title = "Problem 2"
pattern = "*_hw4_p2.ipynb"
questions = ["q3"]
master = "p2_master.ipynb"
'''

PARTS_GRADERS = '''
from gradekit.grading import assert_equal, question


@question("q1", points=2)
def test_double(submission):
    assert_equal(submission.call("double", 21), 42, name="double(21)")


@question("q3", points=3)
def test_triple(submission):
    assert_equal(submission.call("triple", 5), 15, name="triple(5)")
'''


def _parts_course(tmp):
    from nbformat.v4 import new_markdown_cell
    course = tmp / "course"
    root = course / "assignments" / "hw4"
    root.mkdir(parents=True)
    (root / "assignment.toml").write_text(PARTS_SPEC)
    (course / "graders" / "hw4").mkdir(parents=True)
    (course / "graders" / "hw4" / "test_hw4.py").write_text(PARTS_GRADERS)
    (course / "gradekit.toml").write_text('title = "parts"\n')
    p1 = new_notebook(cells=[
        new_markdown_cell("Why?\n<!-- BEGIN SOLUTION -->\nBecause p1.\n<!-- END SOLUTION -->"),
        new_code_cell("def double(x):\n    # BEGIN SOLUTION\n    return 2 * x\n    # END SOLUTION\n")])
    p2 = new_notebook(cells=[new_code_cell("def triple(x):\n    # BEGIN SOLUTION\n    return 3 * x\n    # END SOLUTION\n")])
    nbformat.write(p1, str(root / "master_p1.ipynb"))
    nbformat.write(p2, str(root / "p2_master.ipynb"))
    return course


def test_parts_get_one_template_each_named_as_the_part(tmp_path):
    from gradekit.tools.assign import check_contracts, is_stale, stale_templates, write_template, write_templates
    course = _parts_course(tmp_path)
    a = load("hw4", course)
    assert is_stale(a)  # none written yet
    paths = write_templates(a)
    folder = course / "student_templates" / "hw4"
    assert paths == [folder / "netid_hw4_p1.ipynb", folder / "netid_hw4_p2.ipynb"]
    assert [p.matches(path.name) for p, path in zip(a.parts, paths)] == [True, True]
    t1, t2 = (nbformat.read(str(p), as_version=4) for p in paths)
    assert t1.metadata["gradekit"]["part"] == "p1" and t2.metadata["gradekit"]["part"] == "p2"
    assert [q["id"] for q in t1.metadata["gradekit"]["questions"]] == ["q1", "q2"]
    assert [q["id"] for q in t2.metadata["gradekit"]["questions"]] == ["q3"]
    assert t1.metadata["gradekit"]["assignment"] == t2.metadata["gradekit"]["assignment"] == "hw4"
    text1, text2 = paths[0].read_text(), paths[1].read_text()
    assert "Because p1" not in text1 and "2 * x" not in text1 and "3 * x" not in text2
    assert "def double" in text1 and "def triple" in text2 and "triple" not in text1
    assert not (course / "student_templates" / "hw4.ipynb").exists()
    assert not is_stale(a) and check_contracts(a) == []
    with pytest.raises(ValueError, match="has parts"):
        write_template(a)
    # staleness is per part: change one master, only its template is stale
    p2 = nbformat.read(str(a.parts[1].master), as_version=4)
    p2.cells.append(new_code_cell("print(triple(2))"))
    nbformat.write(p2, str(a.parts[1].master))
    assert is_stale(a) and stale_templates(a) == [paths[1]]
    paths[0].unlink()
    assert stale_templates(a) == paths


def test_a_parts_contract_is_checked_in_its_own_template(tmp_path):
    from gradekit.tools.assign import check_contracts, write_templates
    course = _parts_course(tmp_path)
    spec = course / "assignments" / "hw4" / "assignment.toml"
    spec.write_text(PARTS_SPEC.replace('defines = ["triple"]', 'defines = ["triple", "double"]'))
    a = load("hw4", course)
    write_templates(a)
    # `double` is in Problem 1's template, not in Problem 2's: that is a problem for q3
    assert check_contracts(a) == ["question q3: `double` is never mentioned in the student template of Problem 2"]


def test_a_part_whose_master_is_missing_writes_no_template(tmp_path):
    from gradekit.tools.assign import write_templates
    course = _parts_course(tmp_path)
    a = load("hw4", course)
    a.parts[1].master.unlink()
    with pytest.raises(MarkerError, match="the master of part 'p2' .*p2_master.ipynb does not exist"):
        write_templates(a)
    assert not (course / "student_templates").exists()


@pytest.mark.parametrize("pattern, who, name", [
    ("*_hw4_p1.ipynb", "netid", "netid_hw4_p1.ipynb"),
    ("HW4-P?-*.ipynb", "netid", "HW4-Px-netid.ipynb"),
    ("*_hw4_p[1].ipynb", "netid", "netid_p1.ipynb"),   # no name to make from [...]: metadata finds it
    ("problem1.ipynb", "master", "problem1.ipynb"),
])
def test_a_parts_file_name_matches_its_pattern_when_it_can(pattern, who, name):
    from gradekit.spec import Part
    part = Part("p1", "Problem 1", pattern, ("q1",), Path("m.ipynb"))
    assert part.file_name(who) == name


def test_the_bundle_of_a_parts_assignment_holds_each_template(tmp_path):
    import zipfile
    from gradekit.tools.assign import write_templates
    from gradekit.tools.bundle import write_bundle
    course = _parts_course(tmp_path)
    a = load("hw4", course)
    write_templates(a)
    names = zipfile.ZipFile(write_bundle(a, tmp_path / "b.zip")).namelist()
    assert "hw4/netid_hw4_p1.ipynb" in names and "hw4/netid_hw4_p2.ipynb" in names
    assert not any("master" in n for n in names)
    readme = zipfile.ZipFile(tmp_path / "b.zip").read("hw4/README.md").decode()
    assert "`netid_hw4_p1.ipynb` (Problem 1)" in readme and "Hand in every part's notebook" in readme


def test_assign_grades_each_parts_master_and_template(tmp_path):
    """`gradekit assign` on a parts assignment: both templates written, and the masters (one
    submitter) full marks, the templates (another) zero, in the process sandbox."""
    import os
    import subprocess
    import sys
    from support import ROOT, needs_root
    needs_root()
    course = _parts_course(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "gradekit", "assign", "hw4", "--sandbox", "process"],
                          capture_output=True, text=True, cwd=course, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "netid_hw4_p1.ipynb" in proc.stdout and "netid_hw4_p2.ipynb" in proc.stdout
    assert "master    5/5 (want 5)  ok" in proc.stdout, proc.stdout
    assert "template  0/5 (want 0)  ok" in proc.stdout, proc.stdout
