"""The ``gradekit`` command: assign, grade, check, gradescope, image."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from . import __version__


def _say(msg: str) -> None:
    print(f"gradekit: {msg}", file=sys.stderr)


def _limits_from(args, base):
    return base.replace(memory_mb=args.memory, total_timeout=args.timeout, cell_timeout=args.cell_timeout,
                        cpus=args.cpus, pids=args.pids)


def choose_sandbox(name: str, assignment=None) -> str:
    """``auto`` means docker when an engine answers and its image is ready, else process."""
    from .sandbox import SandboxUnavailable, get_sandbox
    torch = assignment.torch if assignment is not None else True
    if name != "auto":
        sandbox = get_sandbox(name, torch=torch)
        sandbox.check()
        if getattr(sandbox, "warning", None):
            _say(f"warning: {sandbox.warning}")
        return name
    try:
        get_sandbox("docker", torch=torch).check()
        return "docker"
    except (SandboxUnavailable, ImportError, ValueError) as exc:
        _say(f"warning: using the process sandbox, because the Docker sandbox is unavailable: {exc}")
        return choose_sandbox("process", assignment)


def cmd_grade(args) -> int:
    from .batch import BatchOptions, grade_batch
    from .report import summary_table
    from .spec import load
    assignment = load(args.assignment)
    sandbox = choose_sandbox(args.sandbox, assignment)
    gpus = _gpus(args.gpus, assignment)
    options = BatchOptions(sandbox=sandbox, workers=args.workers, limits=_limits_from(args, assignment.limits),
                           gpus=gpus, secret=args.secret or os.environ.get("GRADEKIT_SECRET", ""),
                           progress=not args.quiet, resume=args.resume)
    results = grade_batch(args.submissions, assignment, Path(args.out), options)
    print(summary_table(results, assignment))
    print(f"\nreports in {Path(args.out).resolve()} (gradebook.csv, <submission>/report.json)")
    return 0


def _gpus(spec: str | None, assignment) -> list[str]:
    """Devices for this run; a GPU-required assignment without one stops here, before any job."""
    from .sandbox.gpus import check_requirement, parse_gpus
    devices = list(parse_gpus(spec)) if spec and assignment.gpu != "none" else []
    check_requirement(assignment.gpu, devices, assignment=f"assignment {assignment.id!r}")
    return devices


def cmd_assign(args) -> int:
    from .assign import check_contract, template_text, write_template
    from .batch import BatchOptions, grade_batch
    from .spec import load
    assignment = load(args.assignment)
    path = write_template(assignment)
    print(f"wrote {path}")
    problems = check_contract(assignment, template_text(assignment))
    for p in problems:
        _say(f"contract: {p}")
    if args.no_verify:
        return 1 if problems else 0
    sandbox = choose_sandbox(args.sandbox, assignment)
    with tempfile.TemporaryDirectory(prefix="gk-assign-") as tmp:
        reports = grade_batch([assignment.master_path, path], assignment, Path(tmp),
                              BatchOptions(sandbox=sandbox, workers=2, progress=False))
    by_source = {r["submission"]["sources"][0]: r for r in reports}
    master, template = by_source[str(assignment.master_path)], by_source[str(path)]
    ok = True
    for problem in master["grader_problems"]:
        _say(f"grader problem: {problem}")
        ok = False
    for label, rep, want in (("master", master, assignment.auto_points), ("template", template, 0.0)):
        verdict = "ok" if rep["status"] == "graded" and abs(rep["score"] - want) < 1e-9 else "WRONG"
        ok &= verdict == "ok"
        print(f"{label:9s} {rep['score']:g}/{rep['auto_points_possible']:g} (want {want:g})  {verdict}")
        if verdict != "ok":
            for t in rep["tests"]:
                if (label == "master") != (t["status"] == "passed"):
                    print(f"    {t['name']}: {t['status']} {t['message'][:300]}")
            for note in rep["notes"]:
                print(f"    note: {note}")
            if rep["reason"]:
                print(f"    {rep['reason']}")
    return 0 if ok and not problems else 1


def cmd_check(args) -> int:
    from . import intake
    from .report import to_markdown
    from .sandbox import get_sandbox
    from .spec import load
    from .worker import grade
    sub = intake.collect([args.notebook])[0]
    if sub.notebook is None:
        _say(f"cannot check {args.notebook}: {sub.rejected}")
        return 2
    assignment_id = args.assignment or sub.notebook.metadata.get("gradekit", {}).get("assignment")
    if not assignment_id:
        _say("the notebook does not say which assignment it is; pass --assignment ID")
        return 2
    assignment = load(assignment_id)
    sandbox = get_sandbox("process")
    sandbox.check()
    if sandbox.warning:
        _say(f"note: {sandbox.warning}")
    with tempfile.TemporaryDirectory(prefix="gk-check-") as tmp:
        os.chmod(tmp, 0o711)
        rep = grade(assignment, sub.notebook, sha256=sub.sha256, sources=[args.notebook], submission_id=sub.id,
                    sandbox=sandbox, job_root=Path(tmp) / "job", limits=assignment.limits, include_hidden=False)
    public = [t for t in rep["tests"] if t.get("public")]
    print(f"{assignment.title}: public tests of {args.notebook}\n")
    for q in rep["questions"]:
        mine = [t for t in public if t["question"] == q["id"]]
        if q["manual"]:
            print(f"  {q['id']:6s} graded by course staff ({q['points_possible']:g} pts)")
        elif not mine:
            print(f"  {q['id']:6s} hidden tests only ({q['points_possible']:g} pts): checked when you submit")
        else:
            passed = sum(t["status"] == "passed" for t in mine)
            print(f"  {q['id']:6s} {passed}/{len(mine)} public tests passed")
            for t in mine:
                if t["status"] != "passed":
                    print(f"           ✗ {t['name']}: {t['message'].splitlines()[0] if t['message'] else t['status']}")
    ex = rep["execution"] or {}
    if ex.get("message"):
        print(f"\nWhile running your notebook: {ex['message']}")
    failed = [t for t in public if t["status"] != "passed"]
    print(f"\n{len(public) - len(failed)}/{len(public)} public tests passed. "
          "Hidden tests run only when you submit; passing the public ones does not guarantee full marks.")
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(rep))
    return 1 if failed else 0


def cmd_gradescope(args) -> int:
    from .gradescope import build_autograder
    path = build_autograder(args.assignment, Path(args.output), torch=args.torch, minimal=args.minimal)
    print(f"wrote {path}")
    return 0


def cmd_image(args) -> int:
    from . import image
    if args.action == "build":
        print(image.build(torch=not args.light))
    else:
        for info in image.list_images():
            print(info.line())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradekit", description="Grade deep-learning and computer-vision notebooks safely.")
    p.add_argument("--version", action="version", version=f"gradekit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("grade", help="grade submissions (.ipynb files, folders, zip exports)")
    g.add_argument("submissions", nargs="+")
    g.add_argument("--assignment", "-a", required=True)
    g.add_argument("--out", "-o", default="gradekit-out")
    g.add_argument("--sandbox", choices=["auto", "docker", "process"], default="auto")
    g.add_argument("--workers", "-j", type=int, default=1)
    g.add_argument("--gpus", help="all | N | 0,1 (one GPU per container)")
    g.add_argument("--memory", type=int, help="memory limit per submission, MB")
    g.add_argument("--timeout", type=float, help="time limit for the whole notebook, s")
    g.add_argument("--cell-timeout", type=float, help="time limit per cell, s")
    g.add_argument("--cpus", type=float)
    g.add_argument("--pids", type=int)
    g.add_argument("--secret", help="course secret mixed into the per-submission seed (or GRADEKIT_SECRET)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    g.add_argument("--resume", action="store_true",
                   help="reuse OUT's reports of unchanged submissions graded by the unchanged graders")
    g.set_defaults(func=cmd_grade)

    a = sub.add_parser("assign", help="generate the student template and verify master=full, template=zero")
    a.add_argument("assignment")
    a.add_argument("--no-verify", action="store_true")
    a.add_argument("--sandbox", choices=["auto", "docker", "process"], default="process")
    a.set_defaults(func=cmd_assign)

    c = sub.add_parser("check", help="run the public tests on your notebook (students)")
    c.add_argument("notebook")
    c.add_argument("--assignment", "-a")
    c.add_argument("--markdown", help="also write the feedback as Markdown to this file")
    c.set_defaults(func=cmd_check)

    s = sub.add_parser("gradescope", help="build a Gradescope autograder zip")
    s.add_argument("assignment")
    s.add_argument("--output", "-o", default="autograder.zip")
    s.add_argument("--torch", action=argparse.BooleanOptionalAction, default=None,
                   help="install torch in setup.sh (default: as the assignment's spec says)")
    s.add_argument("--minimal", action="store_true", help="pin only what grading needs (no scipy, pandas, ...)")
    s.set_defaults(func=cmd_gradescope)

    i = sub.add_parser("image", help="build or list the grading images")
    i.add_argument("action", choices=["build", "ls"])
    i.add_argument("--light", action="store_true", help="the light image, without torch")
    i.set_defaults(func=cmd_image)
    return p


def main(argv: list[str] | None = None) -> int:
    from .sandbox.base import SandboxUnavailable
    from .sandbox.gpus import GpuUnavailable
    from .spec import SpecError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, SandboxUnavailable, GpuUnavailable) as exc:
        _say(str(exc))
        return 2
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
