"""Grade one submission, end to end, in a process of its own.

:mod:`gradekit.batch` runs :func:`forked_main` per submission in a process forked from a
fork server that has imported this module once, so that a crash, a hang or a leak in one
grading run costs that submission alone; ``python -m gradekit.worker JOB.json`` does the
same from a fresh interpreter. It can also be called in-process (``grade``), which
``gradekit check`` and the Gradescope runner do.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import nbformat

from . import report as reports
from .bridge import Submission
from .execute import KernelSession
from .grading import run_graders
from .sandbox import Job, Limits, Sandbox, get_sandbox
from .spec import Assignment, load

SUSPICIOUS_FILES = ("results.json", "report.json", "gradebook.csv")


def submission_seed(sha256: str, assignment_id: str, secret: str = "") -> int:
    """Inputs differ per submission (and per course when a secret is set): no hard-coding."""
    digest = hashlib.sha256(f"{secret}:{assignment_id}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _tampering_notes(submission: Submission) -> list[str]:
    """Files the notebook wrote that look like grading output: ignored, and said so."""
    try:
        found = submission.files_named(list(SUSPICIOUS_FILES))
    except AssertionError:  # the kernel is gone or will not say: no note, nothing lost
        return []
    return [f"Your notebook wrote `{path}`; it was ignored: scores come only from the graders."
            for path in found]


def grade(assignment: Assignment, nb: nbformat.NotebookNode, *, sha256: str, sources: list[str],
          submission_id: str, sandbox: Sandbox, job_root: Path, limits: Limits, hidden: tuple[Path, ...] = (),
          gpus: tuple[str, ...] = (), include_hidden: bool = True, secret: str = "",
          executed_path: Path | None = None) -> dict:
    """Run the notebook in ``sandbox``, run the graders over it, and return the report.
    With ``executed_path``, the notebook with its (capped) outputs is saved there for staff."""
    t0 = time.monotonic()
    seed = submission_seed(sha256, assignment.id, secret)
    job = Job(id=submission_id, root=job_root, limits=limits, gpus=gpus, data_dir=assignment.data_dir,
              hidden_paths=tuple(hidden) + assignment.secret_paths())
    job.root.mkdir(parents=True, exist_ok=True)
    session = KernelSession(sandbox, job)
    try:
        execution = session.execute(nb)
        t_exec = time.monotonic() - t0
        if executed_path is not None:
            reports.write_atomic(executed_path, nbformat.writes(nb))
        submission = Submission(session, call_timeout=limits.call_timeout, seed=seed, source=sources[0])
        notes = _tampering_notes(submission)
        tests, problems, t_grade = run_graders(assignment, submission, include_hidden=include_hidden,
                                               log_path=job.root / "pytest.log")
    finally:
        session.close()
    sandbox_info = {"backend": sandbox.name, "isolated": sandbox.isolated,
                    "limits": dataclasses.asdict(limits), "gpus": list(gpus)}
    return reports.build(
        assignment, submission_id=submission_id, sha256=sha256, sources=sources, status="graded",
        tests=[t.to_dict() for t in tests], execution=execution.to_dict(), sandbox=sandbox_info, seed=seed,
        timing={"total": round(time.monotonic() - t0, 3), "execute": round(t_exec, 3), "grade": round(t_grade, 3)},
        notes=notes, grader_problems=problems)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    assignment = load(spec["assignment"], Path(spec["project_root"]) if spec.get("project_root") else None)
    nb = nbformat.read(spec["notebook"], as_version=4)
    sandbox = get_sandbox(spec["sandbox"], torch=assignment.torch)
    sandbox.check()
    limits = Limits(**spec["limits"])
    report = grade(assignment, nb, sha256=spec["sha256"], sources=spec["sources"], submission_id=spec["id"],
                   sandbox=sandbox, job_root=Path(spec["job_root"]), limits=limits,
                   hidden=tuple(Path(p) for p in spec.get("hidden", [])), gpus=tuple(spec.get("gpus", [])),
                   secret=spec.get("secret", ""), executed_path=Path(spec["out"]) / "executed.ipynb")
    report["fingerprint"] = spec.get("fingerprint")  # lets `grade --resume` reuse this report
    reports.write_all(report, Path(spec["out"]))
    return 0


def forked_main(job_file: str, log_file: str, environ: dict[str, str], cwd: str) -> None:
    """Entry point of a worker forked from the batch's fork server."""
    detach(log_file, environ, cwd)
    sys.exit(main([job_file]))


def detach(log_file: str, environ: dict[str, str], cwd: str) -> None:
    """Make a forked process a worker of its own.

    The fork server was started once, with the environment and directory of that moment;
    the batch's current ones are applied here. The worker leads a process group of its own
    (the batch kills the group at the hard limit) and writes its output to ``log_file``.
    """
    os.setsid()
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
