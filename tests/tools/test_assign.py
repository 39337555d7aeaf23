"""Solution markers, the student template, and the checks `gradekit assign` makes."""
from __future__ import annotations

import re

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
        text = a.template_path.read_text()
        assert "BEGIN SOLUTION" not in text.upper()
        assert not re.search(r"#\s*SOLUTION\s*(\\n)?\"", text, re.IGNORECASE), "a line marker survived"
        assert check_contract(a, text) == [], a.id
