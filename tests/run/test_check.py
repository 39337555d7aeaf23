"""``gradekit check NOTEBOOK``: the students' command. Public tests only, a per-question
summary, exit 1 when a public test fails, 0 when all pass, 2 when it cannot tell which
assignment the notebook is; the hidden graders never run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from support import ROOT, needs_root
from gradekit.spec import load

HIDDEN_NAMES = ("test_softmax\n", "test_softmax:", "test_cross_entropy_grad\n", "test_cross_entropy_grad:",
                "test_conv_parameter_count")


def check(*args: str, project_root: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``gradekit check`` in a process of its own (optionally on another course)."""
    course = ["--course", str(project_root)] if project_root is not None else []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "gradekit", "check", *course, *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def example():
    needs_root()
    return load("example")


def test_template_fails_public_tests(example):
    proc = check(str(example.template_path))
    out = proc.stdout
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for q in ("q1", "q2", "q3"):
        assert f"  {q} " in out and f"{q}     0/1 public tests passed" in out, out
    assert "✗ test_softmax_shape_and_rows_sum_to_one" in out, out   # what failed ...
    assert "softmax" in out.split("✗ test_softmax_shape_and_rows_sum_to_one", 1)[1].splitlines()[0]  # ... and why
    assert "q4" in out and "graded by course staff" in out, out     # manual question said so
    assert "0/3 public tests passed" in out and "Hidden tests run only when you submit" in out, out
    assert not any(h in out for h in HIDDEN_NAMES), f"hidden test names leaked into check's output:\n{out}"


def test_master_passes(example):
    proc = check(str(example.master_path), "--assignment", "example")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3/3 public tests passed" in proc.stdout, proc.stdout
    assert not any(h in proc.stdout for h in HIDDEN_NAMES), proc.stdout


def test_notebook_without_metadata_needs_the_assignment(tmp_path, example):
    # The master carries no gradekit metadata (only generated templates do).
    nb = nbformat.read(str(example.master_path), as_version=4)
    assert "gradekit" not in nb.metadata
    path = tmp_path / "mine.ipynb"
    nbformat.write(nb, str(path))
    proc = check(str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr  # it defines every name `example` asks for
    assert "checked as 'example'" in proc.stderr, proc.stderr
    nb.cells = [c for c in nb.cells if "def softmax" not in c.source]
    nbformat.write(nb, str(path))
    proc = check(str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--assignment" in proc.stderr and "which assignment" in proc.stderr, proc.stderr
    known = ", ".join(sorted(p.parent.name for p in (ROOT / "assignments").glob("*/assignment.toml")))
    assert "cv1-a5, dl-example" in known and known in proc.stderr, proc.stderr  # the known ids, to pick from


def test_unknown_assignment_is_a_clear_error(example):
    proc = check(str(example.master_path), "--assignment", "no-such-assignment")
    assert proc.returncode == 2 and "no assignment 'no-such-assignment'" in proc.stderr, proc.stderr


def test_hidden_graders_never_run(tmp_path, example):
    """A project whose hidden graders would fail loudly (and leave a mark) if imported."""
    root = tmp_path / "project"
    shutil.copytree(example.root, root / "assignments" / "example",
                    ignore=shutil.ignore_patterns("submissions", "__pycache__"))
    marker = tmp_path / "hidden-graders-ran"
    graders = root / "graders" / "example"
    graders.mkdir(parents=True)
    (graders / "test_trap.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "from gradekit.grading import question\n\n"
        "@question('q1', points=2)\n"
        "def test_hidden_trap(submission):\n"
        "    raise AssertionError('the hidden grader ran')\n")
    proc = check(str(example.template_path), project_root=root)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert not marker.exists(), "gradekit check imported the hidden graders"
    assert "test_hidden_trap" not in proc.stdout and "hidden grader ran" not in proc.stdout, proc.stdout
    proc = check(str(example.master_path), "-a", "example", project_root=root)
    assert proc.returncode == 0 and not marker.exists(), proc.stdout + proc.stderr


def test_a_deep_learning_template_is_checked_against_its_data_sets():
    """2imm10-a2's template: the student's own check reads the data sets named by
    GRADEKIT_DATA_<NAME> (conftest's stand-ins here), fails every public test, and keeps its
    columns for long question ids."""
    needs_root()
    a = load("2imm10-a2")
    proc = check(str(a.template_path))
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "0/5 public tests passed" in out, out
    assert "  1.1-pools-fc   0/1 public tests passed" in out and "  3              graded by course staff" in out, out
    assert "✗ test_make_convnet_gives_one_logit_per_class: " in out, out
