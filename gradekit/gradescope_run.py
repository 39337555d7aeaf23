"""The runner inside a Gradescope autograder (see :mod:`gradekit.gradescope`).

``run_autograder`` calls, as root::

    PYTHONPATH=/autograder/source python -m gradekit.gradescope_run \
        --source /autograder/source --submission /autograder/submission --results /autograder/results

It finds the notebook, grades it in-process with :func:`gradekit.worker.grade` under the
process backend (:class:`gradekit.sandbox.process.ProcessSandbox`), and writes
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

CONFIG = "gradekit-autograder.json"


# -- finding the notebook ---------------------------------------------------------------
class NoNotebook(Exception):
    """The submission holds no notebook to grade; the message is for the student."""


def find_notebook(submission_dir, assignment_id: str):
    """The submitted notebook's path: the only ``.ipynb``, or among several the one whose
    metadata names ``assignment_id``. Links and checkpoints are ignored."""
    from pathlib import Path
    root = Path(submission_dir)
    found, others = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if name.startswith(".") or p.is_symlink():
                continue
            (found if name.lower().endswith(".ipynb") else others).append(rel)
    if not found:
        listing = ", ".join(f"`{o}`" for o in others[:10]) or "nothing"
        raise NoNotebook(f"no Jupyter notebook (`.ipynb`) was found in your submission (it holds {listing}). "
                         "Submit your `.ipynb` file.")
    if len(found) == 1:
        return root / found[0]
    named = []
    for rel in found:
        try:
            meta = json.loads((root / rel).read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("gradekit"), dict) and meta["gradekit"].get("assignment") == assignment_id:
            named.append(rel)
    if len(named) == 1:
        return root / named[0]
    which = "none of them is" if not named else f"{len(named)} of them are"
    raise NoNotebook(f"your submission holds {len(found)} notebooks ({', '.join(f'`{f}`' for f in found)}) and "
                     f"{which} marked as this assignment's ({assignment_id!r}) in its metadata. "
                     "Submit only the notebook you want graded (the one made from the assignment's template).")


# -- the runner -------------------------------------------------------------------------
def _private(path) -> None:
    """Root-only: the uid-drop mode's barrier (harmless under namespaces)."""
    try:
        os.chown(path, 0, 0)
        os.chmod(path, 0o700)
    except FileNotFoundError:
        pass


def run(source, submission_dir, results_dir) -> dict:
    """Grade the submission and write ``results.json``; returns the report."""
    import tempfile
    from pathlib import Path

    from . import intake
    from . import report as reports
    from .sandbox.process import ProcessSandbox
    from .spec import load
    from .worker import grade

    source, submission_dir, results_dir = Path(source), Path(submission_dir), Path(results_dir)
    config = json.loads((source / CONFIG).read_text())
    assignment = load(config["assignment"], source)
    results_dir.mkdir(parents=True, exist_ok=True)
    for d in (source, results_dir, submission_dir):
        _private(d)
    results = results_dir / "results.json"
    results.unlink(missing_ok=True)

    sandbox = ProcessSandbox()
    sandbox.check()
    if sandbox.mode != "namespaces":
        # Nothing the trusted side writes (logs, job files) is readable by the kernel's user.
        # Not under namespaces: confine creates mount points, which must stay traversable.
        os.umask(0o077)
    print(f"gradekit {config.get('gradekit')}: grading {assignment.id} with the process sandbox, "
          f"mode {sandbox.mode}" + (f" (namespaces refused: {sandbox.why})" if sandbox.mode != "namespaces" else ""))
    try:
        path = find_notebook(submission_dir, assignment.id)
        sub = intake.load_bytes(path.relative_to(submission_dir).as_posix(), path.read_bytes())
    except NoNotebook as exc:
        sub = intake.Submission(source="(submission)", sha256="", rejected=str(exc))
    if sub.notebook is None:
        rep = reports.build(assignment, submission_id=sub.id, sha256=sub.sha256, sources=[sub.source],
                            status="rejected", reason=sub.rejected)
    else:
        hidden = tuple(Path(p) for p in (source, results_dir, submission_dir))
        job_parent = Path(tempfile.mkdtemp(prefix="gk-gs-"))
        os.chmod(job_parent, 0o711)
        try:
            rep = grade(assignment, sub.notebook, sha256=sub.sha256, sources=[sub.source], submission_id=sub.id,
                        sandbox=sandbox, job_root=job_parent / "job", limits=assignment.limits, hidden=hidden,
                        secret=config.get("secret", ""))
        except Exception as exc:  # the harness failed, not the notebook: say so, score nothing
            import traceback
            traceback.print_exc()
            rep = reports.build(assignment, submission_id=sub.id, sha256=sub.sha256, sources=[sub.source],
                                status="error", reason=f"the autograder failed ({type(exc).__name__}: {exc}); "
                                "course staff can see why in the autograder output")
        finally:  # (in uid-drop mode the sandbox's cleanup killed whatever the notebook left running)
            import shutil
            shutil.rmtree(job_parent, ignore_errors=True)
        if results.exists() or results.is_symlink():  # cannot happen unless the barrier failed
            results.unlink()
            rep["notes"].append("Something other than the autograder wrote `/autograder/results/results.json`; "
                                "it was ignored: scores come only from the graders.")
    rep["sandbox"] = dict(rep.get("sandbox") or {}, gradescope_mode=sandbox.mode)
    out = reports.to_gradescope(rep)
    out["extra_data"] = {"gradekit": config.get("gradekit"), "assignment": assignment.id, "status": rep["status"],
                         "sha256": rep["submission"]["sha256"], "seed": rep.get("seed"), "sandbox": sandbox.mode,
                         "source": rep["submission"]["sources"]}
    reports.write_atomic(results, json.dumps(out, indent=2))
    os.chmod(results, 0o644)
    from .report import summary_table
    print(summary_table([rep], assignment))
    for note in rep.get("notes", []):
        print(f"note: {note}")
    return rep


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    import argparse
    p = argparse.ArgumentParser(prog="python -m gradekit.gradescope_run")
    p.add_argument("--source", default="/autograder/source")
    p.add_argument("--submission", default="/autograder/submission")
    p.add_argument("--results", default="/autograder/results")
    args = p.parse_args(argv)
    run(args.source, args.submission, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
