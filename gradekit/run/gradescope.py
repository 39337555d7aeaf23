"""The runner inside a Gradescope autograder (see :mod:`gradekit.gradescope`).

``run_autograder`` calls, as root::

    PYTHONPATH=/autograder/source python -m gradekit.run.gradescope \
        --source /autograder/source --submission /autograder/submission --results /autograder/results

It finds the notebook, grades it in-process with :func:`gradekit.run.worker.grade` under the
process backend (:class:`gradekit.sandbox.process.backend.ProcessSandbox`), and writes
``results.json`` (Gradescope's schema) itself. The kernel runs unprivileged in whichever
mode the container allows: ``namespaces`` (secret folders covered, no network) or, where
Docker's defaults refuse namespaces, ``uid-drop`` (a uid of its own, rlimits,
``no_new_privs``; ``/autograder/source``, ``/autograder/results`` and
``/autograder/submission`` are made ``0700 root``, so the kernel gets EACCES on them; the
network cannot be taken away there). ``extra_data.sandbox`` in ``results.json`` says which.

Either way the trusted side alone writes ``results.json``; a ``results.json`` the notebook
wrote anywhere is ignored and reported.
"""
from __future__ import annotations

import json
import os
import sys

#: What ``gradekit gradescope`` writes into the zip for this runner (assignment, secret, sizes).
CONFIG = "gradekit-autograder.json"


def _private(path) -> None:
    """Root-only: the uid-drop mode's barrier (harmless under namespaces)."""
    try:
        os.chown(path, 0, 0)
        os.chmod(path, 0o700)
    except FileNotFoundError:
        pass


def run(source, submission_dir, results_dir):
    """Grade the submission and write ``results.json``; returns the :class:`~gradekit.model.Report`."""
    import tempfile
    from pathlib import Path

    from .. import intake
    from ..model import SubmissionRef
    from ..report import build
    from ..report.render.gradebook import summary_table
    from ..report.render.gradescope import RESULTS_FILE, to_gradescope
    from ..report.write import write_atomic
    from ..sandbox.process.backend import ProcessSandbox
    from ..spec import load
    from ..intake import files as handed_in
    from ..sandbox.cleanup import remove_tree
    from .worker import grade, grade_parts

    source, submission_dir, results_dir = Path(source), Path(submission_dir), Path(results_dir)
    config = json.loads((source / CONFIG).read_text())
    assignment = load(config["assignment"], source)
    # data sets packed in the zip (gradekit gradescope), unless the environment names others
    packed = {d.name: source / "data" / d.name for d in assignment.data if (source / "data" / d.name).is_dir()}
    assignment = assignment.with_data({n: p for n, p in packed.items()
                                       if not os.environ.get(assignment.data_set(n).env_override)})
    results_dir.mkdir(parents=True, exist_ok=True)
    for d in (source, results_dir, submission_dir):
        _private(d)
    results = results_dir / RESULTS_FILE
    results.unlink(missing_ok=True)

    sandbox = ProcessSandbox()
    sandbox.check()
    if sandbox.mode != "namespaces":
        # Nothing the trusted side writes (logs, job files) is readable by the kernel's user.
        # Not under namespaces: confine creates mount points, which must stay traversable.
        os.umask(0o077)
    print(f"gradekit {config.get('gradekit')}: grading {assignment.id} with the process sandbox, "
          f"mode {sandbox.mode}" + (f" (namespaces refused: {sandbox.why})" if sandbox.mode != "namespaces" else ""))
    sub = intake.gradescope_submission(submission_dir, assignment.id, assignment.files, assignment.parts)
    ref = SubmissionRef(id=sub.id, sha256=sub.sha256, submitter="submission", sources=[sub.source])
    if not sub.gradable:
        rep = (build.missing if sub.missing else build.rejected)(assignment, ref, sub.rejected)
        if sub.parts:
            build.parts_not_run(rep, assignment, {pid: (one.missing, one.rejected or "")
                                                  for pid, one in sub.parts.items()})
    else:
        hidden = tuple(Path(p) for p in (source, results_dir, submission_dir))
        job_parent = Path(tempfile.mkdtemp(prefix="gk-gs-"))
        os.chmod(job_parent, 0o711)
        try:
            files_dir = None
            if sub.files:
                files_dir = job_parent / "files"
                handed_in.write(sub.files, files_dir)
            if sub.parts:  # several notebooks: one kernel each, one report
                rep = grade_parts(assignment, intake.write_parts(sub, job_parent, "part"), submission=ref,
                                  sandbox=sandbox, job_root=job_parent / "job", limits=assignment.limits,
                                  hidden=hidden, secret=config.get("secret", ""), files_dir=files_dir,
                                  handed_in=sub.handed_in, notes=tuple(sub.notes))
            else:
                rep = grade(assignment, sub.notebook, submission=ref, sandbox=sandbox, job_root=job_parent / "job",
                            limits=assignment.limits, hidden=hidden, secret=config.get("secret", ""),
                            files_dir=files_dir, handed_in=sub.handed_in)
        except Exception as exc:  # the harness failed, not the notebook: say so, score nothing
            import traceback
            traceback.print_exc()
            rep = build.failed(assignment, ref, "the autograder failed; course staff can see why in the "
                               f"autograder output ({type(exc).__name__})")
        finally:  # (in uid-drop mode the sandbox's cleanup killed whatever the notebook left running)
            remove_tree(job_parent)
        if results.exists() or results.is_symlink():  # cannot happen unless the barrier failed
            results.unlink()
            rep.notes.append("Something other than the autograder wrote `/autograder/results/results.json`; "
                             "it was ignored: scores come only from the graders.")
    out = to_gradescope(rep)
    out["extra_data"] = {"gradekit": config.get("gradekit"), "assignment": assignment.id, "status": rep.status,
                         "sha256": rep.submission.sha256, "seed": rep.seed, "sandbox": sandbox.mode,
                         "source": rep.submission.sources}
    write_atomic(results, json.dumps(out, indent=2))
    os.chmod(results, 0o644)
    print(summary_table([rep], [q.id for q in assignment.questions]))
    for problem in rep.grader_problems:  # staff read the autograder output; students do not
        print(f"grader problem: {problem}")
    for note in rep.notes:
        print(f"note: {note}")
    return rep


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    import argparse
    p = argparse.ArgumentParser(prog="python -m gradekit.run.gradescope")
    p.add_argument("--source", default="/autograder/source")
    p.add_argument("--submission", default="/autograder/submission")
    p.add_argument("--results", default="/autograder/results")
    args = p.parse_args(argv)
    run(args.source, args.submission, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
