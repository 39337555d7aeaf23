"""``pytest graders/ID --gradekit-notebook NB.ipynb``: one notebook, an assignment's graders.

For grader authors: the notebook runs in gradekit's process sandbox (as ``gradekit
check`` does), then pytest runs the tests it was given against it, with the same fixtures
and the same points as ``gradekit grade``; the terminal summary ends with the score.

This module is gradekit's ``pytest11`` entry point: installed with gradekit, it only adds
the options below, and does nothing unless ``--gradekit-notebook`` is given.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from ..course import find as find_course
from ..spec import load, valid_id
from .plugin import GradingPlugin
from .seeds import submission_seed


class StandaloneGrading(GradingPlugin):
    def __init__(self, config):
        from ..bridge.host import Submission
        from ..intake import load_bytes
        from ..kernel.session import KernelSession
        from ..kernel.parameters import inject
        from ..model import DataMount, KernelJob
        from ..sandbox import registry
        path = Path(config.getoption("--gradekit-notebook"))
        item = load_bytes(path.name, path.read_bytes())
        if item.notebook is None:
            raise pytest.UsageError(f"--gradekit-notebook {path}: {item.rejected}")
        named = item.notebook.metadata.get("gradekit", {}).get("assignment")
        aid = config.getoption("--gradekit-assignment") or (named if isinstance(named, str) and valid_id(named) else None)
        if aid is None:
            graders = [Path(a) for a in config.args if Path(a).is_dir()]
            aid = graders[0].resolve().name if graders else None
        if aid is None:
            raise pytest.UsageError("say which assignment: --gradekit-assignment ID")
        assignment = load(aid, find_course().root)
        self._tmp = tempfile.TemporaryDirectory(prefix="gk-pytest-")
        sandbox = registry.make("process")
        sandbox.check()
        job = KernelJob(id="pytest", root=Path(self._tmp.name) / "job", limits=assignment.limits,
                        data=tuple(DataMount(d.name, d.path) for d in assignment.mounted_data if d.path.is_dir()),
                        hidden_paths=assignment.secret_paths())
        inject(item.notebook, assignment.parameters.for_device(False))
        self._session = KernelSession(sandbox, job)
        self.execution = self._session.execute(item.notebook)
        bridge = Submission(self._session, call_timeout=assignment.limits.call_timeout,
                            seed=submission_seed(item.sha256, aid), source=path.name)
        super().__init__(assignment, bridge, {assignment.public_tests_dir.resolve()})

    def pytest_terminal_summary(self, terminalreporter):
        earned = sum(r.points_earned for r in self.results.values())
        possible = sum(r.points_possible for r in self.results.values())
        terminalreporter.write_sep("=", f"gradekit: {earned:g}/{possible:g} points ({self._assignment.id}); "
                                        f"notebook {self.execution.status}")
        for p in self.problems:
            terminalreporter.write_line(f"grader problem: {p}")

    def pytest_unconfigure(self, config):
        self._session.close()
        self._tmp.cleanup()


def pytest_addoption(parser):
    group = parser.getgroup("gradekit", "gradekit: grade one notebook with an assignment's graders")
    group.addoption("--gradekit-notebook", metavar="NB.ipynb", default=None,
                    help="run the notebook in gradekit's process sandbox and grade it with these tests")
    group.addoption("--gradekit-assignment", metavar="ID", default=None,
                    help="the assignment (default: from the notebook's metadata, else the graders' folder name)")


def pytest_configure(config):
    if config.getoption("--gradekit-notebook", default=None):
        config.pluginmanager.register(StandaloneGrading(config), "gradekit-standalone")
