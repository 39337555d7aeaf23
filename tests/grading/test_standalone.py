"""`pytest graders/ID --gradekit-notebook NB.ipynb`: an assignment's graders on one notebook,
as plain pytest (the pytest11 entry point), with the same points as `gradekit grade`."""
from __future__ import annotations

import subprocess
import sys

from support import ROOT, needs_root
from gradekit.spec import load


def _pytest(*args):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_graders_run_on_one_notebook_as_plain_pytest():
    needs_root()
    a = load("example")
    master = _pytest("graders/example", "--gradekit-notebook", str(a.master_path), "--gradekit-assignment", "example")
    assert master.returncode == 0, master.stdout[-2000:] + master.stderr[-2000:]
    assert "gradekit: 5/5 points (example)" in master.stdout, master.stdout[-2000:]
    template = _pytest("graders/example", "assignments/example/public_tests", "--gradekit-notebook", str(a.template_path))
    assert template.returncode == 1 and "gradekit: 0/5 points" in template.stdout, template.stdout[-2000:]
    assert "test_softmax FAILED" in template.stdout or "FAILED graders/example" in template.stdout


def test_the_plugin_is_inert_without_its_option():
    """Installed for everyone: without --gradekit-notebook it adds no fixture and runs nothing."""
    proc = _pytest("--fixtures", "tests/intake/test_intake.py")
    assert proc.returncode == 0, proc.stderr
    assert "--gradekit-notebook" in _pytest("--help").stdout
    assert "submission" not in [line.split(" ")[0] for line in proc.stdout.splitlines()]
