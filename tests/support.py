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


def load_alternatives(assignment_id: str) -> list[dict]:
    """Valid alternatives to the master (tests/fixtures/ID/alternatives.toml): each keeps full marks."""
    path = ROOT / "tests" / "fixtures" / assignment_id / "alternatives.toml"
    if not path.exists():
        return []
    return tomllib.loads(path.read_text())["alternative"]


def apply_variant(master: nbformat.NotebookNode, replace: list[list[str]]) -> nbformat.NotebookNode:
    nb = copy.deepcopy(master)
    for old, new in replace:
        hits = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
        assert hits, f"variant text not found in the master: {old!r}"
        for c in hits:
            c.source = c.source.replace(old, new)
    return nb


#: Two more secrets under which test_assignments.py re-runs the numpy assignments' graders on
#: each executed notebook (Report.seed_scores): a verdict must not depend on the inputs drawn.
CHECK_SECRETS = ("seed-check-1", "seed-check-2")


def grade_notebooks(assignment_id: str, notebooks: dict[str, nbformat.NotebookNode | dict[str, nbformat.NotebookNode]],
                    tmp: Path, workers: int = 2, check_secrets: tuple[str, ...] = (), **limit_overrides) -> dict[str, dict]:
    """Grade named notebooks in one batch; returns name -> report (as report.json holds it).
    For an assignment with ``[[parts]]``, a name maps to {part id: notebook}: a submitter's
    folder ``NAME/`` holding each part's notebook named as its pattern asks (``*_hw4_p1.ipynb``
    -> ``NAME_hw4_p1.ipynb``); a part left out is a missing part.
    ``check_secrets``: the graders also run under these secrets (``report["seed_scores"]``)."""
    from gradekit.run.batch import BatchOptions, grade_batch
    from gradekit.spec import load
    assignment = load(assignment_id)
    src = tmp / "submissions"
    src.mkdir(parents=True, exist_ok=True)
    for name, nb in notebooks.items():
        if not isinstance(nb, nbformat.NotebookNode):  # {part id: notebook} (a NotebookNode is a dict too)
            assert assignment.parts, f"{assignment_id} has no parts: {name} must be one notebook"
            (src / name).mkdir()
            for pid, one in nb.items():  # a part id, or a file name of its own (a misnamed part)
                file_name = pid if pid.endswith(".ipynb") else assignment.part(pid).file_name(name)
                nbformat.write(one, str(src / name / file_name))
        else:
            nbformat.write(nb, str(src / f"{name}.ipynb"))
    limits = assignment.limits.replace(**limit_overrides) if limit_overrides else None
    reports = grade_batch([src], assignment, tmp / "out", BatchOptions(workers=workers, limits=limits, progress=False,
                                                                       check_secrets=check_secrets))
    # report.json's data: the contract every rendering and reader relies on; a parts submission
    # is named after its folder (no .ipynb to drop, and a name may hold a dot)
    return {r.submission.submitter if assignment.parts else Path(r.submission.submitter).stem: r.to_json()
            for r in reports}


def variant_part(assignment, variant: dict, masters: dict[str, nbformat.NotebookNode]) -> str:
    """The part whose master a variant or alternative of a ``[[parts]]`` assignment edits: its
    ``part``, else the part holding its ``question``, else the one part whose master holds
    every ``old`` text."""
    if "part" in variant:
        return assignment.part(variant["part"]).id
    if "question" in variant:
        return assignment.part_of(variant["question"]).id
    olds = [old for old, _ in variant["replace"]]
    hits = [pid for pid, nb in masters.items()
            if all(any(c.cell_type == "code" and old in c.source for c in nb.cells) for old in olds)]
    assert len(hits) == 1, (f"{variant['name']}: say which part it edits (part = ...); its text is in "
                            f"{len(hits)} parts' masters ({', '.join(hits) or 'none'})")
    return hits[0]


def part_points(assignment, part) -> float:
    """The automatic points of one part's questions."""
    return sum(assignment.question(q).points for q in part.questions if not assignment.question(q).manual)


def companion_part(assignment, part_id: str):
    """The part handed in beside a misnamed part ``part_id``: the other part worth the fewest
    automatic points (the cheapest to run; the spec's order breaks ties)."""
    return min((p for p in assignment.parts if p.id != part_id), key=lambda p: part_points(assignment, p))


def reachable_points(assignment, variant: dict) -> float:
    """The automatic points a wrong variant or valid alternative can score at most: all of
    them; with [[parts]] its own part's, as it is handed in alone (see SelectedNotebooks)."""
    if not assignment.parts:
        return assignment.auto_points
    masters = {p.id: nbformat.read(str(p.master), as_version=4) for p in assignment.parts}
    return part_points(assignment, assignment.part(variant_part(assignment, variant, masters)))


def master_and_variant_in_the_torch_image(assignment_id: str, variant: str, tmp: Path):
    """Grade the master and the wrong variant ``variant`` in the full Docker grading image, as
    `gradekit grade --sandbox docker` does, and check them as test_assignments.py checks the
    process sandbox's: the master full marks, the variant less exactly its question's points.
    Returns the master's report (a Report), for the caller's own checks."""
    from gradekit.model import BackendChoice
    from gradekit.run.batch import BatchOptions, grade_batch
    from gradekit.spec import load
    needs_root()
    a = load(assignment_id)
    master = nbformat.read(str(a.master_path), as_version=4)
    wrong = next(v for v in load_variants(assignment_id) if v["name"] == variant)
    src = tmp / "class"
    src.mkdir()
    for name, nb in {"master": master, "wrong": apply_variant(master, wrong["replace"])}.items():
        nbformat.write(nb, str(src / f"{name}.ipynb"))
    reports = {r.submission.submitter.removesuffix(".ipynb"): r for r in grade_batch(
        [src], a, tmp / "out", BatchOptions(backend=BackendChoice("docker", {"torch": True}), workers=2, progress=False))}
    good, bad = reports["master"], reports["wrong"]
    assert good.sandbox.backend == "docker"
    assert good.score == pytest.approx(a.auto_points), [(t.name, t.message[:200]) for t in good.tests if t.status != "passed"]
    losing = [wrong["question"], *wrong.get("also", [])]
    assert bad.score == pytest.approx(a.auto_points - sum(a.question(q).points for q in losing)), [
        (t.name, t.message[:200]) for t in bad.tests if t.status != "passed"]
    return good


class SelectedNotebooks:
    """An assignment's master, template, wrong variants and valid alternatives, graded lazily:
    only those that the run's selected tests need (``wanted``: assignment id -> names like
    "master", "template", "variant-NAME", "alt-NAME", and with [[parts]] "missing-PART": the
    masters less that part; "misnamed-PART" / "unmarked-PART": that part's master under a name
    no pattern matches, with / without the part in its metadata, beside :func:`companion_part`), in one batch per assignment. With [[parts]] each is a folder of
    the parts' notebooks, and a variant edits the part it names (``part``, else its question's),
    handed in alone (the other parts' kernels would only repeat the masters). A variant
    whose ``replace`` text is not in the master fails alone. ``grade``, ``variants`` and
    ``alternatives`` are seams for tests."""

    def __init__(self, wanted, tmp_path_factory, grade=None, variants=None, alternatives=None):
        self.wanted, self.tmp, self.done = wanted, tmp_path_factory, {}
        self.grade, self.variants = grade or grade_notebooks, variants or load_variants
        self.alternatives = alternatives or load_alternatives

    def __call__(self, aid: str, name: str) -> dict:
        from gradekit.spec import load
        if aid not in self.done:
            a = load(aid)
            # with [[parts]]: each notebook is {part id: notebook}, a submitter's folder of parts
            masters = {p.id if p else "": nbformat.read(str(m), as_version=4) for p, m, _ in a.templates}
            templates = {p.id if p else "": nbformat.read(str(t), as_version=4) for p, _, t in a.templates}
            master = masters if a.parts else masters[""]
            variants = {f"variant-{v['name']}": v for v in self.variants(aid)}
            variants.update({f"alt-{v['name']}": v for v in self.alternatives(aid)})
            notebooks, broken = {}, {}
            for want in sorted(self.wanted.get(aid, set()) | {name}):
                if want == "master":
                    notebooks[want] = master
                elif want == "template":
                    notebooks[want] = templates if a.parts else templates[""]
                elif want.startswith("missing-"):  # the masters less one part: that part is missing
                    notebooks[want] = {pid: nb for pid, nb in masters.items() if pid != want.removeprefix("missing-")}
                elif want.startswith(("misnamed-", "unmarked-")):  # one part's file named like no part
                    kind, _, gone = want.partition("-")
                    book = copy.deepcopy(masters[gone])
                    if kind == "misnamed":  # ... but its metadata names the part, as the template's does
                        book.metadata["gradekit"] = {"assignment": aid, "part": gone}
                    other = companion_part(a, gone).id  # one other part, so that a part is found at all
                    notebooks[want] = {other: masters[other], f"{want}_homework_{gone}_final.ipynb": book}
                else:
                    try:
                        if a.parts:  # the variant edits one part, handed in alone: the others are missing
                            pid = variant_part(a, variants[want], masters)
                            notebooks[want] = {pid: apply_variant(masters[pid], variants[want]["replace"])}
                        else:
                            notebooks[want] = apply_variant(master, variants[want]["replace"])
                    except AssertionError as exc:  # a typo in one variant fails that variant alone
                        broken[want] = str(exc)
            extra = {}
            if notebooks and self.grade is grade_notebooks:
                needs_root()
                # the torch assignments' graders take seconds a notebook: their seeds are checked by hand.
                # Three numpy notebooks at a time on two cores: a kernel waits while the graders
                # compute and the other way round (measured: 8 notebooks 24-32 s against 37-38 s)
                extra = {"check_secrets": () if a.torch else CHECK_SECRETS, "workers": 2 if a.torch else 3}
            self.done[aid] = (self.grade(aid, notebooks, self.tmp.mktemp(aid), **extra) if notebooks else {}, broken)
        reports, broken = self.done[aid]
        if name in broken:
            pytest.fail(f"{aid}:{name}: {broken[name]}", pytrace=False)
        return reports[name]


# Stand-ins for gradekit.run.worker.forked_main, run by the batch's fork server (so they live
# in an importable module): they misbehave for one named submission and grade the others.
def crashing_worker(job_file: str, log_file: str, environ: dict, cwd: str) -> None:
    from gradekit.run.worker import detach, main
    detach(log_file, environ, cwd)
    if "crash.ipynb" in Path(job_file).read_text():
        print("about to crash", flush=True)
        os.kill(os.getpid(), 11)  # SIGSEGV
    sys.exit(main([job_file]))


def hanging_worker(job_file: str, log_file: str, environ: dict, cwd: str) -> None:
    from gradekit.run.worker import detach, main
    detach(log_file, environ, cwd)
    if "hang.ipynb" in Path(job_file).read_text():
        import subprocess
        import time
        child = subprocess.Popen(["sleep", "600"])  # something it started, which must go too
        Path(os.environ["GK_TEST_PIDFILE"]).write_text(str(child.pid))
        time.sleep(600)
    sys.exit(main([job_file]))


def kernel_submission(tmp_path_factory, name: str, code: str, call_timeout: float):
    """A process-sandbox kernel that ran ``code`` as its one cell, as a bridge Submission
    (a generator for module fixtures: the kernel closes after the module's tests)."""
    from nbformat.v4 import new_code_cell, new_notebook
    from gradekit.bridge.host import Submission
    from gradekit.kernel.session import KernelSession
    from gradekit.model import KernelJob, Limits
    from gradekit.sandbox.process.backend import ProcessSandbox
    needs_root()
    sandbox = ProcessSandbox()
    sandbox.check()
    root = tmp_path_factory.mktemp(name)
    root.chmod(0o711)
    job = KernelJob(id=name, root=root / "job", limits=Limits(cell_timeout=60, total_timeout=120))
    job.root.mkdir()
    session = KernelSession(sandbox, job)
    result = session.execute(new_notebook(cells=[new_code_cell(code)]))
    assert result.status == "completed", result
    yield Submission(session, call_timeout=call_timeout)
    session.close()
