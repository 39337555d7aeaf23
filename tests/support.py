"""Helpers shared by the engine tests: grade notebooks through the real pipeline (process
sandbox, worker processes). Imported as `support` (a name no other test folder uses)."""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def needs_root():
    if os.geteuid() != 0:
        pytest.fail("these tests need root (the process sandbox switches users); CI runs as root")


def load_variants(assignment_id: str) -> list[dict]:
    path = ROOT / "tests" / "fixtures" / assignment_id / "variants.toml"
    if not path.exists():
        return []
    return tomllib.loads(path.read_text())["variant"]


def apply_variant(master: nbformat.NotebookNode, replace: list[list[str]]) -> nbformat.NotebookNode:
    nb = copy.deepcopy(master)
    for old, new in replace:
        hits = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
        assert hits, f"variant text not found in the master: {old!r}"
        for c in hits:
            c.source = c.source.replace(old, new)
    return nb


def grade_notebooks(assignment_id: str, notebooks: dict[str, nbformat.NotebookNode], tmp: Path,
                    workers: int = 2, **limit_overrides) -> dict[str, dict]:
    """Grade named notebooks in one batch; returns name -> report."""
    from gradekit.batch import BatchOptions, grade_batch
    from gradekit.spec import load
    assignment = load(assignment_id)
    src = tmp / "submissions"
    src.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        nbformat.write(nb, str(src / f"{name}.ipynb"))
    limits = assignment.limits.replace(**limit_overrides) if limit_overrides else None
    reports = grade_batch([src], assignment, tmp / "out",
                          BatchOptions(sandbox="process", workers=workers, limits=limits, progress=False))
    by_name = {}
    for r in reports:
        for s in r["submission"]["sources"]:
            by_name[Path(s).stem] = r
    return by_name


# Stand-ins for gradekit.worker.forked_main, run by the batch's fork server (so they live
# in an importable module): they misbehave for one named submission and grade the others.
def crashing_worker(job_file: str, log_file: str, environ: dict, cwd: str) -> None:
    from gradekit.worker import detach, main
    detach(log_file, environ, cwd)
    if "crash.ipynb" in Path(job_file).read_text():
        print("about to crash", flush=True)
        os.kill(os.getpid(), 11)  # SIGSEGV
    sys.exit(main([job_file]))


def hanging_worker(job_file: str, log_file: str, environ: dict, cwd: str) -> None:
    from gradekit.worker import detach, main
    detach(log_file, environ, cwd)
    if "hang.ipynb" in Path(job_file).read_text():
        import subprocess
        import time
        child = subprocess.Popen(["sleep", "600"])  # something it started, which must go too
        Path(os.environ["GK_TEST_PIDFILE"]).write_text(str(child.pid))
        time.sleep(600)
    sys.exit(main([job_file]))
