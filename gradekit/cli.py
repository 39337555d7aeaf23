"""The ``gradekit`` command: grade, check, assign, gradescope, init, image, data.

Exit codes: 0 when the command did its job (grading ran, whatever the scores); 1 when a
check found problems (``check``: a public test failed; ``assign``: the graders are not
proven right); 2 for a usage or setup error (no such assignment, no sandbox); 3 when
grading ran but the graders are broken (a grader crashed, or its points disagree with the
spec: staff must fix the graders); 130 when interrupted.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

from . import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_GRADERS_BROKEN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _say(msg: str) -> None:
    print(f"gradekit: {msg}", file=sys.stderr)


def _course(args):
    from .course import find
    course = find(getattr(args, "course", None))
    _say(f"using {course.describe()}")
    return course


def _limits_from(args, base):
    from .model import Limits
    return base.replace(**{f.name: getattr(args, f.name, None) for f in dataclasses.fields(Limits)})


def choose_sandbox(name: str, assignment=None):
    """The backend to grade with: ``auto`` means docker when an engine answers and its image
    is ready, else process. Returns a :class:`~gradekit.model.BackendChoice`."""
    from .model import BackendChoice
    from .sandbox import SandboxUnavailable, registry
    from .sandbox.environment import differences, kernel_pins
    torch = assignment.torch if assignment is not None else True
    options = {"torch": torch} if name == "docker" else {}
    if name == "auto":
        try:
            registry.make("docker", torch=torch).check()
            return BackendChoice("docker", {"torch": torch})
        except (SandboxUnavailable, ImportError, ValueError) as exc:
            _say(f"warning: using the process sandbox, because the Docker sandbox is unavailable: {exc}")
            return choose_sandbox("process", assignment)
    sandbox = registry.make(name, **options)
    sandbox.check()
    if sandbox.warning:
        _say(f"warning: {sandbox.warning}")
    for diff in differences(kernel_pins(torch), sandbox.kernel_packages()):
        _say(f"warning: the {name} sandbox's kernel environment differs from the grading image's: {diff}")
    return BackendChoice(name, options)


def _broken_graders_warning(problems: list[str]) -> None:
    bar = "!" * 78
    print(f"\n{bar}\nTHE GRADERS ARE BROKEN: scores below are not trustworthy. Fix the graders, then grade again.",
          file=sys.stderr)
    for p in problems[:20]:
        print(f"  - {p}", file=sys.stderr)
    print(bar, file=sys.stderr)


def cmd_grade(args) -> int:
    from .report.render.gradebook import summary_table
    from .run.batch import BatchOptions, DataMissing, GradersBroken, grade_batch
    from .spec import load
    course = _course(args)
    assignment = load(args.assignment, course.root)
    if args.executor == "ray":
        # the nodes grade: the sandbox is checked there (each task's worker), not on the driver
        from .model import BackendChoice
        name = "docker" if args.sandbox == "auto" else args.sandbox
        backend = BackendChoice(name, {"torch": assignment.torch} if name == "docker" else {})
        gpus = []  # Ray leases each node's GPUs (num_gpus=1 per GPU submission)
    else:
        backend = choose_sandbox(args.sandbox, assignment)
        gpus = _gpus(args.gpus, assignment)
    options = BatchOptions(backend=backend, workers=args.workers, limits=_limits_from(args, assignment.limits),
                           gpus=gpus, secret=args.secret or os.environ.get("GRADEKIT_SECRET") or course.secret(),
                           progress=not args.quiet, resume=args.resume, data=_data_locations(args.data),
                           executor=args.executor, ray_address=args.ray_address, ray_retries=args.ray_retries)
    out = Path(args.out)
    try:
        results = grade_batch(args.submissions, assignment, out, options)
    except DataMissing as exc:
        _say(str(exc))
        return EXIT_USAGE
    except GradersBroken as exc:
        _broken_graders_warning(exc.problems)
        return EXIT_GRADERS_BROKEN
    print(summary_table(results, [q.id for q in assignment.questions]))
    print(f"reports in {out.resolve()}: gradebook.csv, and per submitter report.json and feedback.html")
    problems = sorted({p for r in results for p in r.grader_problems})
    if problems:
        _broken_graders_warning(problems)
        return EXIT_GRADERS_BROKEN
    return EXIT_OK


def _data_locations(pairs: list[str] | None) -> dict[str, Path]:
    """``--data NAME=DIR`` options as a mapping (a malformed one is a usage error)."""
    from .spec import SpecError
    found = {}
    for pair in pairs or []:
        name, sep, where = pair.partition("=")
        if not sep or not name or not where:
            raise SpecError(f"--data {pair!r}: write it as NAME=DIR")
        found[name] = Path(where).expanduser().resolve()
    return found


def cmd_data(args) -> int:
    from .data import formats, synth
    from .spec import SpecError, load
    fmt, sizes = args.format, {}
    if args.name:  # a data set of an assignment: its format, and the sizes its spec asks for
        if not args.assignment:
            raise SpecError("--name needs --assignment")
        data_set = load(args.assignment, _course(args).root).data_set(args.name)
        fmt, sizes = fmt or data_set.format, dict(data_set.synth)
    if not fmt:
        raise SpecError("say which format: --format F, or --assignment ID --name DATASET")
    if args.action == "check":
        problems = formats.check(fmt, Path(args.dir))
        for p in problems:
            print(f"  - {p}")
        print(f"{args.dir}: {'looks like ' + fmt if not problems else f'{len(problems)} problem(s)'}")
        return EXIT_FAILED if problems else EXIT_OK
    seed = sizes.pop("seed", 0) if args.seed is None else args.seed
    made = synth.synthesize(fmt, Path(args.dir), seed=seed, **sizes)
    print(f"wrote a synthetic {fmt} data set in {made.root}: {made.counts}")
    return EXIT_OK


def _gpus(spec: str | None, assignment) -> list[str]:
    """Devices for this run; a GPU-required assignment without one stops here, before any job."""
    from .sandbox.gpus import check_requirement, parse_gpus
    devices = list(parse_gpus(spec)) if spec and assignment.gpu != "none" else []
    check_requirement(assignment.gpu, devices, assignment=f"assignment {assignment.id!r}")
    return devices


def cmd_assign(args) -> int:
    from .run.batch import BatchOptions, GradersBroken, grade_batch
    from .spec import load
    import nbformat

    from .tools.assign import MarkerError, check_contracts, write_templates
    from .tools.bundle import write_bundle
    course = _course(args)
    assignment = load(args.assignment, course.root)
    try:
        paths = write_templates(assignment)
    except MarkerError as exc:
        _say(f"cannot make the student template: {exc}")
        return EXIT_USAGE
    for path in paths:
        print(f"wrote {path}")
    print(f"wrote {write_bundle(assignment)} (the student bundle: template{'s' if assignment.parts else ''}, "
          "public tests, checker)")
    problems = check_contracts(assignment)
    for p in problems:
        _say(f"contract: {p}")
    if args.no_verify:
        return EXIT_FAILED if problems else EXIT_OK
    backend = choose_sandbox(args.sandbox, assignment)
    with tempfile.TemporaryDirectory(prefix="gk-assign-") as tmp:
        given = Path(tmp) / "in"
        given.mkdir()
        if assignment.parts:  # two submitters, "master" and "template", each a folder of the parts
            for label in ("master", "template"):
                (given / label).mkdir()
            for part, master, template in assignment.templates:
                nb = nbformat.read(str(master), as_version=4)  # marked as its part, whatever its name
                nb.metadata.setdefault("gradekit", {}).update({"assignment": assignment.id, "part": part.id})
                nbformat.write(nb, str(given / "master" / part.file_name("master")))
                (given / "template" / part.file_name("template")).write_bytes(template.read_bytes())
            inputs = [given]
        else:
            inputs = [given / "master.ipynb", given / "template.ipynb"]
            inputs[0].write_bytes(assignment.master_path.read_bytes())
            inputs[1].write_bytes(paths[0].read_bytes())
        try:
            reports = grade_batch(inputs, assignment, Path(tmp) / "out",
                                  BatchOptions(backend=backend, workers=2, progress=False))
        except GradersBroken as exc:
            _broken_graders_warning(exc.problems)
            return EXIT_GRADERS_BROKEN
    by_name = {Path(r.submission.submitter).stem: r for r in reports}
    ok = True
    for label, want in (("master", assignment.auto_points), ("template", 0.0)):
        rep = by_name[label]
        for problem in rep.grader_problems:
            _say(f"grader problem: {problem}")
            ok = False
        verdict = "ok" if rep.status == "graded" and abs(rep.score - want) < 1e-9 else "WRONG"
        ok &= verdict == "ok"
        print(f"{label:9s} {rep.score_text()} (want {want:g})  {verdict}")
        if verdict != "ok":
            for t in rep.tests:
                if (label == "master") != (t.status == "passed"):
                    print(f"    {t.name}: {t.status} {t.message[:300]}")
            for note in rep.notes:
                print(f"    note: {note}")
            if rep.reason:
                print(f"    {rep.reason}")
    return EXIT_OK if ok and not problems else EXIT_FAILED


def infer_assignment(course, nb) -> str | None:
    """The course's assignment whose required names this notebook defines (all of them,
    and no other assignment's all), or None."""
    import re

    from .spec import load
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    defined = set(re.findall(r"^\s*def\s+([A-Za-z_]\w*)", code, re.M)) | set(
        re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)", code, re.M))
    matches = []
    for aid in course.assignment_ids():
        try:
            names = {n for q in load(aid, course.root).questions for n in q.defines}
        except Exception:  # a broken spec elsewhere in the course does not stop a check
            continue
        if names and names <= defined:
            matches.append(aid)
    return matches[0] if len(matches) == 1 else None


def _assignment_for_check(args, course, sub) -> str | None:
    from .spec import valid_id
    if args.assignment:
        return args.assignment
    named = sub.notebook.metadata.get("gradekit", {}).get("assignment") if sub.notebook is not None else None
    if named is not None:
        if not isinstance(named, str) or not valid_id(named):
            _say(f"the notebook's metadata names the assignment {named!r}, which is not an assignment id; "
                 "pass --assignment ID")
            return None
        return named
    known = course.assignment_ids()
    if len(known) == 1:
        return known[0]
    inferred = infer_assignment(course, sub.notebook)
    if inferred:
        _say(f"the notebook does not say which assignment it is; it defines every name {inferred!r} asks for, "
             f"so it is checked as {inferred!r} (or pass --assignment ID)")
        return inferred
    _say("the notebook does not say which assignment it is; pass --assignment ID, one of: " + ", ".join(known))
    return None


def _staff_only_part(args, course, given: Path):
    """(assignment id, part) when ``given`` is a notebook of prose only for a part that staff
    grade alone (:attr:`Part.staff_only`), else None."""
    from .intake.collect import _from_file
    from .intake.collect import match_parts
    from .spec import SpecError, load
    prose = _from_file(given, given.name, given.name, code_required=False)
    if prose.notebook is None:
        return None
    aid = _assignment_for_check(args, course, prose)
    try:
        assignment = load(aid, course.root) if aid else None
    except SpecError:
        return None
    if assignment is None or not assignment.parts:
        return None
    found, _ = match_parts([given.name], lambda n: given.read_bytes(), assignment.id, assignment.parts)
    part = next((assignment.part(pid) for pid, (name, _, _) in found.items() if name is not None), None)
    return (assignment.id, part) if part is not None and part.staff_only else None


def cmd_check(args) -> int:
    from . import intake
    from .model import SubmissionRef
    from .report.render.markdown import to_markdown
    from .run.worker import grade, grade_parts
    from .sandbox import registry
    from .spec import load
    course = _course(args)
    given = Path(args.notebook)
    if given.is_dir():  # a folder of several notebooks: every part of the assignment
        known = course.assignment_ids()
        assignment_id = args.assignment or (known[0] if len(known) == 1 else None)
        if assignment_id is None:
            _say("checking a folder: pass --assignment ID, one of: " + ", ".join(known))
            return EXIT_USAGE
        assignment = load(assignment_id, course.root)
        if not assignment.parts:
            _say(f"{assignment_id!r} is handed in as one notebook: check that notebook, not a folder")
            return EXIT_USAGE
        sub = intake.collect([given], assignment.id, assignment.files, assignment.parts)[0]
        if not sub.gradable:
            _say(f"cannot check {args.notebook}: {sub.rejected}")
            return EXIT_USAGE
    else:
        sub = intake.collect([args.notebook])[0]
        if sub.notebook is None:
            staff = _staff_only_part(args, course, given) if "no code to run" in (sub.rejected or "") else None
            if staff is not None:  # prose only, and allowed to be: there is nothing to run
                print(f"{given.name} is {staff[1].title} of {staff[0]}: staff grade every question of it, "
                      "so there are no public tests to run")
                return 0
            _say(f"cannot check {args.notebook}: {sub.rejected}")
            return EXIT_USAGE
        assignment_id = _assignment_for_check(args, course, sub)
        if assignment_id is None:
            return EXIT_USAGE
        assignment = load(assignment_id, course.root)
    part = None
    if assignment.parts and not given.is_dir():  # one part's notebook: that part's questions only
        from .intake.collect import match_parts
        found, _ = match_parts([given.name], lambda n: given.read_bytes(), assignment.id, assignment.parts)
        part = next((assignment.part(pid) for pid, (name, _, _) in found.items() if name is not None), None)
        if part is None:
            _say(f"cannot check {args.notebook}: it is none of the parts of {assignment.id!r}; name it like "
                 + " or ".join(f"`{p.pattern}` ({p.title})" for p in assignment.parts)
                 + " (or check the folder holding them all)")
            return EXIT_USAGE
    sandbox = registry.make("process")
    sandbox.check()
    if sandbox.warning:
        _say(f"note: {sandbox.warning}")
    ref = SubmissionRef(id=sub.id, sha256=sub.sha256, submitter=given.name, sources=[given.name])
    with tempfile.TemporaryDirectory(prefix="gk-check-") as tmp:
        os.chmod(tmp, 0o711)
        if sub.parts:
            rep = grade_parts(assignment, intake.write_parts(sub, Path(tmp), "part"), submission=ref, sandbox=sandbox,
                              job_root=Path(tmp) / "job", limits=assignment.limits, include_hidden=False,
                              notes=tuple(sub.notes))
        else:
            rep = grade(assignment, sub.notebook, submission=ref, sandbox=sandbox, job_root=Path(tmp) / "job",
                        limits=assignment.limits, include_hidden=False, part=part)
    if part is not None:
        print(f"checked as {part.title} of {assignment.id} (its questions only)")
    for p in rep.parts:
        print(f"{p.title}: {p.source or p.reason}")
    for note in rep.notes if sub.parts else []:
        print(f"note: {note}")
    public = [t for t in rep.tests if t.public]
    print(f"{assignment.title}: public tests of {args.notebook}\n")
    w = max([6] + [len(q.id) for q in rep.questions])  # ids such as "1.1-pools-fc" keep the columns
    for q in rep.questions:
        mine = [t for t in public if t.question == q.id]
        if q.manual:
            print(f"  {q.id:{w}s} graded by course staff ({q.points_possible:g} pts)")
        elif q.status == "missing":  # a part whose notebook is not in the folder
            print(f"  {q.id:{w}s} not checked: {q.message}")
        elif not mine:
            print(f"  {q.id:{w}s} hidden tests only ({q.points_possible:g} pts): checked when you submit")
        else:
            passed = sum(t.status == "passed" for t in mine)
            print(f"  {q.id:{w}s} {passed}/{len(mine)} public tests passed")
            for t in mine:
                if t.status != "passed":
                    print(f"  {'':{w}s}   ✗ {t.name}: {t.message.splitlines()[0] if t.message else t.status}")
    ex = rep.execution
    if ex is not None and ex.message:
        print(f"\nWhile running your notebook: {ex.message}")
        for c in [c for c in ex.cells if c.status != "ok"][:20]:
            print(f"  code cell {c.number or c.index + 1} ({c.source_head[:60]}): {c.status}: {c.error or ''}")
            for line in c.traceback.splitlines()[-6:]:
                print(f"      {line}")
    if rep.reason:
        print(f"\n{rep.reason}")
    failed = [t for t in public if t.status != "passed"]
    print(f"\n{len(public) - len(failed)}/{len(public)} public tests passed. "
          "Hidden tests run only when you submit; passing the public ones does not guarantee full marks.")
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(rep))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_gradescope(args) -> int:
    from .tools.autograder_zip import build_autograder, try_autograder
    course = _course(args)
    path = build_autograder(args.assignment, Path(args.output), torch=args.torch, minimal=args.minimal,
                            project_root=course.root)
    print(f"wrote {path}")
    if args.try_notebook:
        results = try_autograder(path, Path(args.try_notebook))
        print(f"ran the autograder on {args.try_notebook} as Gradescope would: {results}")
    return EXIT_OK


def cmd_init(args) -> int:
    from .tools.init import init_course
    for p in init_course(Path(args.dir), title=args.title):
        print(f"made {p}")
    print(f"next: cd {args.dir} && gradekit assign example")
    return EXIT_OK


def cmd_image(args) -> int:
    from .sandbox.docker import image
    if args.action in ("save", "load") and not args.file:
        _say(f"gradekit image {args.action} needs a FILE")
        return EXIT_USAGE
    try:
        if args.action == "build":
            print(image.build(torch=not args.light))
        elif args.action == "save":
            print(image.save(Path(args.file), args.tag, torch=not args.light))
        elif args.action == "load":
            print("\n".join(image.load(Path(args.file))))
        else:
            for info in image.list_images():
                print(info.line())
    except image.ImageError as exc:
        _say(f"gradekit image: {exc}")
        return EXIT_FAILED
    return EXIT_OK


def cmd_sweep(args) -> int:
    """Remove what dead grading runs left on this machine: containers (and Ray run folders)."""
    from .run.ray_executor import sweep_runs
    from .sandbox.docker.engine import engine_available, sweep
    from .sandbox.docker.image import ImageError, docker_cli
    sweep_runs()
    try:
        docker = docker_cli()
    except ImageError:
        print("no Docker client here: no containers to sweep")
        return EXIT_OK
    if not engine_available(docker):
        _say("gradekit sweep: no Docker engine answers; containers cannot be swept")
        return EXIT_FAILED
    removed = sweep(docker, everything=args.all)
    print("\n".join(f"removed {name}" for name in removed) if removed else "nothing to sweep")
    return EXIT_OK


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where there is none to show (flags, options that default to unset)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _add_limit_options(parser) -> None:
    from .model import Limits
    group = parser.add_argument_group("limits (default: the assignment's [limits], else gradekit's defaults)")
    for f in dataclasses.fields(Limits):
        flag = "--" + f.name.replace("_", "-")
        group.add_argument(flag, dest=f.name, type=int if f.type == "int" else float, default=None,
                           help=f"{Limits.HELP[f.name]} (gradekit's default: {f.default:g})")


def build_parser() -> argparse.ArgumentParser:
    from .data.formats import FORMATS
    from .sandbox.registry import names
    fmt = _HelpFormatter
    p = argparse.ArgumentParser(prog="gradekit", description="Grade deep-learning and computer-vision notebooks safely.",
                                formatter_class=fmt)
    p.add_argument("--version", action="version", version=f"gradekit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, help_text, func):
        c = sub.add_parser(name, help=help_text, description=help_text, formatter_class=fmt)
        c.add_argument("--course", metavar="DIR", default=None,
                       help="the course folder (default: the nearest gradekit.toml at or above the working "
                            "directory, else the course bundled with gradekit)")
        c.set_defaults(func=func)
        return c

    g = command("grade", "grade submissions (.ipynb files, folders, LMS and Gradescope zip exports)", cmd_grade)
    g.add_argument("submissions", nargs="+", help="notebooks, submitter folders or zip exports")
    g.add_argument("--assignment", "-a", required=True, help="the assignment id (a folder of assignments/)")
    g.add_argument("--out", "-o", default="gradekit-out", help="where reports and gradebook.csv go")
    g.add_argument("--sandbox", choices=["auto", *names()], default="auto",
                   help="where student kernels run; auto: docker when an engine answers, else process")
    g.add_argument("--workers", "-j", type=int, default=1, help="submissions graded at once")
    g.add_argument("--gpus", default=None, help="all | N | 0,1 (one GPU per submission); none by default")
    g.add_argument("--secret", default=None, help="course secret mixed into the per-submission seed "
                   "(default: $GRADEKIT_SECRET, else the course's own, made on first use in $GRADEKIT_HOME)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    g.add_argument("--resume", action="store_true",
                   help="reuse OUT's reports of unchanged submissions graded by the unchanged graders")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where workers run: local (processes on this machine) or ray (one task per submission "
                        "on a Ray cluster; pip install 'gradekit[ray]'; see docs/cluster.md)")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="--executor ray: the cluster to join (HOST:6379, or auto); default: a Ray on this machine "
                        "with --workers slots")
    g.add_argument("--ray-retries", type=int, default=2, metavar="N",
                   help="--executor ray: times a submission is sent again when its node dies under it")
    g.add_argument("--data", action="append", metavar="NAME=DIR", default=None,
                   help="where this machine keeps the assignment's data set NAME (repeatable; default: the "
                        "spec's path, or $GRADEKIT_DATA_<NAME>)")
    _add_limit_options(g)

    d = command("data", "make a synthetic data set in a course format, or check a real one", cmd_data)
    d.add_argument("action", choices=["synth", "check"], help="synth: write a small synthetic set; check: "
                   "look for problems in DIR")
    d.add_argument("dir", help="the data set's folder")
    d.add_argument("--format", "-f", default=None, help=" | ".join(FORMATS))
    d.add_argument("--assignment", "-a", default=None, help="with --name: a data set of this assignment")
    d.add_argument("--name", default=None, help="the data set (its format and synth sizes come from the spec)")
    d.add_argument("--seed", type=int, default=None, help="synth: the random seed (same seed, same files)")

    a = command("assign", "write the student template and bundle, and prove the graders right "
                "(master full marks, template zero)", cmd_assign)
    a.add_argument("assignment", help="the assignment id")
    a.add_argument("--no-verify", action="store_true", help="only write the template and bundle")
    a.add_argument("--sandbox", choices=["auto", *names()], default="process", help="where the master and template run")

    c = command("check", "run the public tests on your notebook (for students)", cmd_check)
    c.add_argument("notebook", help="your .ipynb")
    c.add_argument("--assignment", "-a", default=None,
                   help="the assignment id (default: from the notebook's metadata, or the course's only one)")
    c.add_argument("--markdown", default=None, help="also write the feedback as Markdown to this file")

    s = command("gradescope", "build a Gradescope autograder zip (and try it on a notebook)", cmd_gradescope)
    s.add_argument("assignment", help="the assignment id")
    s.add_argument("--output", "-o", default="autograder.zip", help="the zip to write")
    s.add_argument("--torch", action=argparse.BooleanOptionalAction, default=None,
                   help="install torch in setup.sh (default: as the assignment's spec says)")
    s.add_argument("--minimal", action="store_true", help="pin only what grading needs (no scipy, pandas, ...)")
    s.add_argument("--try", dest="try_notebook", metavar="NOTEBOOK", default=None,
                   help="then run the zip's autograder on this notebook as Gradescope would (unpacked in a "
                        "temporary /autograder layout, run_autograder's command, results.json printed)")

    n = command("init", "lay out a new course folder (gradekit.toml, assignments/, graders/, an example)", cmd_init)
    n.add_argument("dir", help="the new course's folder")
    n.add_argument("--title", default="My course", help="the course's title in gradekit.toml")

    i = command("image", "build, list, save or load the Docker grading images", cmd_image)
    i.add_argument("action", choices=["build", "ls", "save", "load"],
                   help="build the image, list the images, save one to FILE (docker save | gzip), "
                        "or load FILE on this engine (grading images only; for clusters without a registry)")
    i.add_argument("file", nargs="?", help="save/load: the image file (.tar.gz)")
    i.add_argument("--light", action="store_true", help="the light image, without torch")
    i.add_argument("--tag", help="save: the grading image to save (default: this checkout's tag)")

    w = command("sweep", "remove containers and run folders that dead grading runs left on this machine "
                "(a node of a cluster does this itself when its first task starts)", cmd_sweep)
    w.add_argument("--all", action="store_true", help="every gradekit container, also of runs that still go on")
    return p


def main(argv: list[str] | None = None) -> int:
    from .course import CourseError
    from .sandbox.base import SandboxUnavailable
    from .run.executor import ExecutorUnavailable
    from .sandbox.gpus import GpuUnavailable
    from .spec import SpecError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, SandboxUnavailable, GpuUnavailable, CourseError, ExecutorUnavailable) as exc:
        _say(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
