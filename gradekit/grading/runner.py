"""Run an assignment's tests (public, and hidden unless told not to) for one submission."""
from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from pathlib import Path

from ..model import TestResult
from ..spec import Assignment
from .plugin import GradingPlugin

PYTEST_ARGS = [
    "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "--no-header", "-rN",
    # these collect garbage several times per session (~60 ms a submission) to find
    # exceptions nobody raised; the rest look for files graders never are
    "-p", "no:unraisableexception", "-p", "no:threadexception", "-p", "no:doctest",
    "-p", "no:junitxml", "-p", "no:pastebin", "-p", "no:stepwise",
    "--import-mode=importlib", "-o", "python_files=test_*.py *_test.py", "-o", "console_output_style=classic",
]


def test_dirs(assignment: Assignment, include_hidden: bool = True) -> list[Path]:
    dirs = []
    if assignment.public_tests_dir.is_dir():
        dirs.append(assignment.public_tests_dir)
    if include_hidden and assignment.graders_dir.is_dir():
        dirs.append(assignment.graders_dir)
    return dirs


def run_pytest(args: list[str], plugin, test_roots: list[Path]) -> tuple[int, str]:
    """pytest.main with only our plugin (not whatever plugins happen to be installed:
    hypothesis's alone costs over a second per submission to import); output captured.

    The test modules it imports are forgotten afterwards: pytest's importlib mode names
    them by path relative to the rootdir, so a second run in this process (another
    course's graders, an edited grader) would otherwise get the first run's modules."""
    import pytest
    before = set(sys.modules)
    out = io.StringIO()
    autoload = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = pytest.main(args, plugins=[plugin])
    finally:
        if autoload is None:
            del os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"]
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = autoload
        for name in set(sys.modules) - before:
            if _is_test_module(sys.modules.get(name), test_roots):
                del sys.modules[name]
    return int(code), out.getvalue()


def _is_test_module(module, roots: list[Path]) -> bool:
    path = getattr(module, "__file__", None)
    return bool(path) and any(Path(path).resolve().is_relative_to(r) for r in roots)


def run_graders(assignment: Assignment, submission, *, include_hidden: bool = True,
                log_path: Path | None = None, questions: set[str] | None = None
                ) -> tuple[list[TestResult], list[str], float]:
    """Run the public tests and (unless ``include_hidden`` is False) the hidden graders.
    ``questions``: only these questions' tests (one part's notebook); the points are still
    checked against the whole spec. Returns (results, problems for staff, seconds)."""
    dirs = test_dirs(assignment, include_hidden)
    if not dirs:
        return [], [f"assignment {assignment.id!r} has no tests"], 0.0
    plugin = GradingPlugin(assignment, submission, {assignment.public_tests_dir.resolve()},
                           include_hidden=include_hidden, questions=None if questions is None else set(questions))
    t0 = time.monotonic()
    code, output = run_pytest([str(d) for d in dirs] + PYTEST_ARGS + [f"--rootdir={assignment.course}"], plugin,
                              [d.resolve() for d in dirs])
    took = time.monotonic() - t0
    if log_path is not None:
        log_path.write_text(output)
    problems = list(plugin.problems)
    if code not in (0, 1) and not plugin.results and not (code == 5 and questions is not None):
        problems.append(f"pytest could not run the graders (exit {code}): {output[-1500:]}")
    return list(plugin.results.values()), problems, took


def check_graders(assignment: Assignment) -> list[str]:
    """Collect the graders without running them: problems (points that disagree with the
    spec, a grader that cannot be imported) found before any submission runs."""
    plugin = GradingPlugin(assignment, None, {assignment.public_tests_dir.resolve()})
    dirs = test_dirs(assignment)
    if not dirs:
        return [f"assignment {assignment.id!r} has no tests"]
    code, output = run_pytest([str(d) for d in dirs] + PYTEST_ARGS + ["--collect-only", f"--rootdir={assignment.course}"],
                              plugin, [d.resolve() for d in dirs])
    problems = list(plugin.problems)
    if code not in (0, 5):
        tail = "\n".join(line for line in output.strip().splitlines()[-15:])
        problems.append(f"the graders cannot be collected (pytest exit {code}):\n{tail}")
    return problems
