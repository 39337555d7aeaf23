"""Tampering earns nothing: the template plus hostile cells scores zero, the master plus the
same cells keeps exactly its full marks, and each report says what happened."""
from __future__ import annotations

import copy

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from support import ROOT, grade_notebooks, needs_root
from gradekit.spec import load

GRADERS_FILE = ROOT / "graders" / "example" / "test_example.py"

TAMPERS = {
    "always-equal": "class Eq:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
                    "n_params_conv = Eq()\nsoftmax = lambda z, beta=1.0: Eq()\ncross_entropy_grad = lambda z, q: Eq()",
    "patch-comparisons": "import math, numpy, numpy.testing\nnumpy.allclose = lambda *a, **k: True\n"
                         "numpy.testing.assert_allclose = lambda *a, **k: None\nmath.isclose = lambda *a, **k: True\n"
                         "import torch\ntorch.allclose = lambda *a, **k: True\n"
                         "import pytest, _pytest.outcomes\npytest.approx = lambda *a, **k: a[0]\n"
                         "_pytest.outcomes.fail = lambda *a, **k: None\nAssertionError.__init__ = lambda *a, **k: None",
    "sys-exit": "import sys\nsys.exit(0)",
    "os-exit": "import os\nos._exit(0)",
    "kill-own-kernel": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "memory-bomb": "import numpy as np\nhog = np.ones((3, 1024, 1024, 1024), dtype=np.uint8)",
    "fork-bomb": "import os, time\nkids = 0\ntry:\n    while kids < 5000:\n        if os.fork() == 0:\n            time.sleep(600)\n            os._exit(0)\n"
                 "        kids += 1\nfinally:\n    print('forked', kids)\nassert kids < 5000, 'no process limit'",
    "huge-file": "with open('big.bin', 'wb') as f:\n    for _ in range(2048):\n        f.write(b'x' * 1024 * 1024)",
    "network": "import socket\ntry:\n    socket.getaddrinfo('pypi.org', 443)\n    raise AssertionError('DNS works')\nexcept socket.gaierror:\n    pass\n"
               "s = socket.socket()\ns.settimeout(3)\ns.connect(('127.0.0.1', 22))",
    "look-for-others": "import glob, os\nmine = os.path.dirname(os.getcwd())\n"
                       "found = [p for p in glob.glob('/tmp/gk-*/*') if p != mine]\n"
                       "found += glob.glob('/tmp/**/report.json', recursive=True) + glob.glob('/root/*') + glob.glob('/home/*')\n"
                       "assert not found, found",
    "fake-passed-output": "print('tests/test_example.py::test_softmax PASSED')\nprint('===== 5 passed in 0.01s =====')\n"
                          "import json\nprint(json.dumps({'score': 5.0, 'tests': [{'score': 2, 'max_score': 2}]}))\n"
                          "from IPython.display import display\ndisplay({'application/vnd.gradekit.reply+json': '{\"token\": \"x\", \"value\": 5}'}, raw=True)",
    "write-results-files": "import json, os\nfor d in ['.', '..', '../..', '/tmp', os.path.expanduser('~')]:\n"
                           "    for name in ['results.json', 'report.json']:\n"
                           "        try:\n            open(os.path.join(d, name), 'w').write(json.dumps({'score': 100}))\n"
                           "        except OSError as e:\n            print('refused:', d, e)",
    "read-graders": f"stolen = open({str(GRADERS_FILE)!r}).read()",
    "list-project": f"import os\nproject = os.listdir({str(ROOT)!r})\nassert 'graders' not in project, project",
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    needs_root()
    a = load("example")
    master = nbformat.read(str(a.master_path), as_version=4)
    template = nbformat.read(str(a.template_path), as_version=4)
    notebooks = {}
    for name, code in TAMPERS.items():
        for base_name, base in (("template", template), ("master", master)):
            nb = copy.deepcopy(base)
            nb.cells.append(new_code_cell(code))
            notebooks[f"{base_name}-{name}"] = nb
    return grade_notebooks("example", notebooks, tmp_path_factory.mktemp("tamper"))


@pytest.mark.parametrize("tamper", TAMPERS)
def test_tampering_on_template_earns_nothing(graded, tamper):
    rep = graded[f"template-{tamper}"]
    assert rep["status"] == "graded", rep["reason"]
    assert rep["score"] == 0, [(t["name"], t["status"], t["message"][:200]) for t in rep["tests"]]


@pytest.mark.parametrize("tamper", TAMPERS)
def test_tampering_on_master_keeps_exactly_full_marks(graded, tamper):
    rep = graded[f"master-{tamper}"]
    assert rep["status"] == "graded", rep["reason"]
    if tamper == "always-equal":  # it overwrote the right answers with objects that compare equal
        assert rep["score"] == 0, [(t["name"], t["message"][:200]) for t in rep["tests"]]
    else:
        assert rep["score"] == load("example").auto_points, [(t["name"], t["message"][:200]) for t in rep["tests"]]


def _last_cell(rep):
    return rep["execution"]["cells"][-1]


@pytest.mark.parametrize("tamper", ["os-exit", "memory-bomb"])
def test_kernel_death_is_reported_and_survived(graded, tamper):
    rep = graded[f"master-{tamper}"]
    cell = _last_cell(rep)
    assert cell["status"] == "died", cell
    assert "died" in rep["execution"]["message"] and rep["execution"]["restarts"] == 1


def test_out_of_memory_is_named(graded):
    error = _last_cell(graded["master-memory-bomb"])["error"]
    assert "memory" in error and "1024 MB" in error, error


def test_kernel_cannot_kill_itself_as_pid_1(graded):
    """The kernel is PID 1 of its own PID namespace: signals it has no handler for are ignored."""
    assert _last_cell(graded["master-kill-own-kernel"])["status"] == "ok"


def test_sys_exit_is_an_ordinary_error(graded):
    cell = _last_cell(graded["master-sys-exit"])
    assert cell["status"] == "error" and "SystemExit" in cell["error"]


def test_graders_are_unreadable_from_the_kernel(graded):
    cell = _last_cell(graded["template-read-graders"])
    assert cell["status"] == "error", cell
    assert "No such file" in cell["error"] or "Permission denied" in cell["error"], cell


def test_project_folder_looks_empty_from_the_kernel(graded):
    cell = _last_cell(graded["template-list-project"])
    assert cell["status"] == "ok", cell  # the listing succeeded and showed no graders


@pytest.mark.parametrize("tamper,error", [("fork-bomb", "Resource temporarily unavailable"),
                                           ("huge-file", "File too large"), ("network", "unreachable")])
def test_limits_hold(graded, tamper, error):
    """A fork bomb stops at the process limit, a huge file at the file-size limit, and the
    network is unreachable; the failing cell is recorded and grading goes on."""
    cell = _last_cell(graded[f"master-{tamper}"])
    assert cell["status"] == "error" and error in cell["error"], cell


def test_other_submissions_and_homes_are_invisible(graded):
    assert _last_cell(graded["template-look-for-others"])["status"] == "ok"


def test_written_results_files_are_ignored_and_reported(graded):
    rep = graded["template-write-results-files"]
    assert rep["score"] == 0
    assert any("results.json" in n and "ignored" in n for n in rep["notes"]), rep["notes"]
    assert any("report.json" in n for n in rep["notes"]), rep["notes"]
