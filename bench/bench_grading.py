"""Grading throughput and per-submission overhead, in one run, on the same submissions.

    .venv/bin/python bench/bench_grading.py [--trivial 20] [--torch 10] [--modes ...] [--workers 1 2] [--json FILE]

Submissions: ``--trivial`` notebooks that use numpy only (the example assignment's answers)
and ``--torch`` notebooks that import torch and train a tiny model. Each set is graded
sequentially and with 2 workers through:

* ``nbclient``  — bare ``nbclient`` execution of the notebook, nothing else (the floor);
* ``process``   — ``gradekit grade --sandbox process`` (execution, graders, reports);
* ``docker``    — ``gradekit grade --sandbox docker`` (one container per submission);
* ``otter``     — ``otter run`` (otter-grader, non-containerized) on each submission, with
  equivalent OK-format tests, installed in its own venv under ``.cache/bench-venv``.

Per submission: the wall time from its start to its end (gradekit: successive completions
in a sequential batch, so worker start-up, kernel/container start, graders and reports are
included). Throughput: submissions per minute for the whole set. Prints medians and the
ratios the targets name:

* docker − nbclient ≤ 1.0 s per trivial submission (median, sequential);
* docker with 2 workers ≥ 3× the submissions per minute of ``otter run`` with 2 workers.

The gradekit modes call :func:`gradekit.run.batch.grade_batch` in-process (what ``gradekit
grade`` runs), with ``BatchOptions(backend=BackendChoice(...))``; each submission's completion
is stamped by ``BatchOptions.on_done``.

This is a benchmark, not a test: it asserts nothing and exits 0; read the table.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook  # noqa: E402

CACHE = ROOT / ".cache" / "bench"
OTTER_VENV = ROOT / ".cache" / "bench-venv"

TORCH_NOTEBOOK = [
    "import numpy as np\nimport torch\nfrom torch import nn\ntorch.manual_seed({seed})",
    "X = torch.randn(256, 8)\ny = (X[:, :1] * 2 - X[:, 1:2] + 0.1 * torch.randn(256, 1))",
    "model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))\n"
    "n_params = sum(p.numel() for p in model.parameters())",
    "opt = torch.optim.SGD(model.parameters(), lr=0.05)\nlosses = []\n"
    "for step in range(200):\n    opt.zero_grad()\n    loss = nn.functional.mse_loss(model(X), y)\n"
    "    loss.backward()\n    opt.step()\n    losses.append(loss.item())\n"
    "initial_loss, final_loss = losses[0], losses[-1]",
]

TORCH_SPEC = """\
title = "Bench: a tiny model trained with torch"
gpu = "none"
torch = true

[limits]
memory_mb = 2048
cell_timeout = 120
total_timeout = 300
call_timeout = 30

[[questions]]
id = "q1"
title = "Parameter count"
points = 1
defines = ["n_params"]

[[questions]]
id = "q2"
title = "The loss went down"
points = 1
defines = ["initial_loss", "final_loss"]
"""

TORCH_GRADER = '''\
from gradekit.grading import question


@question("q1", points=1)
def test_n_params(submission):
    assert submission.get("n_params") == 8 * 16 + 16 + 16 + 1


@question("q2", points=1)
def test_loss_went_down(submission):
    assert submission.get("final_loss") < 0.5 * submission.get("initial_loss")
'''

OTTER_TESTS = {
    "trivial": {
        "q1": ">>> import numpy as np\n>>> z = np.array([[1.0, 2.0, 3.0]])\n"
              ">>> bool(np.allclose(softmax(z).sum(), 1.0))\nTrue",
        "q2": ">>> import numpy as np\n>>> z = np.zeros((2, 3)); q = np.eye(3)[[0, 2]]\n"
              ">>> cross_entropy_grad(z, q).shape\n(2, 3)",
        "q3": ">>> n_params_conv\n18496",
    },
    "torch": {
        "q1": ">>> n_params\n161",
        "q2": ">>> bool(final_loss < 0.5 * initial_loss)\nTrue",
    },
}


# -------------------------------------------------------------------------- submissions

def make_submissions(n_trivial: int, n_torch: int) -> dict[str, Path]:
    """Folders of distinct notebooks (distinct content hashes: no de-duplication)."""
    from gradekit.spec import load
    sets = {}
    master = nbformat.read(str(load("example", ROOT).master_path), as_version=4)
    trivial = CACHE / "submissions" / "trivial"
    shutil.rmtree(trivial, ignore_errors=True)
    trivial.mkdir(parents=True)
    for i in range(n_trivial):
        nb = copy.deepcopy(master)
        nb.cells.insert(0, new_markdown_cell(f"Submission {i}"))
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(trivial / f"student{i:02d}.ipynb"))
    sets["trivial"] = trivial
    torch_dir = CACHE / "submissions" / "torch"
    shutil.rmtree(torch_dir, ignore_errors=True)
    torch_dir.mkdir(parents=True)
    for i in range(n_torch):
        nb = new_notebook(cells=[new_code_cell(c.format(seed=i)) for c in TORCH_NOTEBOOK])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(torch_dir / f"student{i:02d}.ipynb"))
    sets["torch"] = torch_dir
    return sets


def bench_project() -> Path:
    """A course root with the example assignment and a torch one (graders included)."""
    proj = CACHE / "project"
    shutil.rmtree(proj, ignore_errors=True)
    (proj / "assignments").mkdir(parents=True)
    (proj / "gradekit.toml").write_text('title = "bench"\n')
    (proj / "graders").mkdir()
    shutil.copytree(ROOT / "assignments" / "example", proj / "assignments" / "example",
                    ignore=shutil.ignore_patterns("submissions"))
    shutil.copytree(ROOT / "graders" / "example", proj / "graders" / "example")
    (proj / "assignments" / "bench-torch").mkdir()
    (proj / "assignments" / "bench-torch" / "assignment.toml").write_text(TORCH_SPEC)
    (proj / "graders" / "bench-torch").mkdir()
    (proj / "graders" / "bench-torch" / "test_bench_torch.py").write_text(TORCH_GRADER)
    return proj


# -------------------------------------------------------------------------- the runners

def run_nbclient(paths: list[Path], workers: int) -> tuple[list[float], float]:
    """Bare nbclient, one kernel per notebook; workers as separate processes."""
    t0 = time.monotonic()
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        times = list(pool.map(_nbclient_one, [str(p) for p in paths]))
    return times, time.monotonic() - t0


def _nbclient_one(path: str) -> float:
    from nbclient import NotebookClient
    t = time.monotonic()
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=True).execute(
        stderr=subprocess.DEVNULL)
    return time.monotonic() - t


def backend_choice(sandbox: str, torch: bool):
    """The BackendChoice ``gradekit grade --sandbox SANDBOX`` makes for an assignment."""
    from gradekit.model import BackendChoice
    return BackendChoice(sandbox, {"torch": torch} if sandbox == "docker" else {})


def run_gradekit(folder: Path, assignment_id: str, project: Path, sandbox: str, workers: int,
                 out: Path) -> tuple[list[float], float, list]:
    """`gradekit grade` in-process; per-submission times from successive completions
    (stamped by ``BatchOptions.on_done``). Returns gradekit.model.Report objects."""
    from gradekit.run.batch import BatchOptions, grade_batch
    from gradekit.spec import load
    assignment = load(assignment_id, project)
    stamps: list[float] = []

    def on_done(report) -> None:   # called from the batch's threads as each submission ends
        stamps.append(time.monotonic())

    options = BatchOptions(backend=backend_choice(sandbox, assignment.torch), workers=workers,
                           progress=False, on_done=on_done)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.monotonic()
    results = grade_batch([folder], assignment, out, options)
    wall = time.monotonic() - t0
    stamps.sort()
    times = [b - a for a, b in zip([t0] + stamps[:-1], stamps)] if workers == 1 else \
        [r.timing.get("total", float("nan")) for r in results]
    return times, wall, results


def otter_available() -> bool:
    return (OTTER_VENV / "bin" / "otter").exists()


def ensure_otter(log=print) -> bool:
    """otter-grader in its own venv; it sees the project venv's packages (torch) through
    a .pth file appended after its own, so its dependencies win where they overlap."""
    if not otter_available():
        log("bench: installing otter-grader into .cache/bench-venv (once)")
        subprocess.run([sys.executable, "-m", "venv", str(OTTER_VENV)], check=True)
        res = subprocess.run([str(OTTER_VENV / "bin" / "pip"), "install", "-q", "otter-grader",
                              "ipykernel", "nbclient"], capture_output=True, text=True)
        if res.returncode != 0:
            log("bench: could not install otter-grader: " + res.stderr.strip()[-400:])
            return False
    site = next((OTTER_VENV / "lib").glob("python3*/site-packages"))
    ours = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"), None)
    if ours is not None:
        (site / "zz_gradekit_bench.pth").write_text(str(ours) + "\n")
    return True


def otter_autograder(kind: str) -> Path:
    work = CACHE / "otter" / kind
    shutil.rmtree(work, ignore_errors=True)
    (work / "tests").mkdir(parents=True)
    for q, code in OTTER_TESTS[kind].items():
        test = {"name": q, "points": 1, "suites": [{
            "cases": [{"code": code, "hidden": False, "locked": False}],
            "scored": True, "setup": "", "teardown": "", "type": "doctest"}]}
        (work / "tests" / f"{q}.py").write_text("OK_FORMAT = True\ntest = " + repr(test) + "\n")
    subprocess.run([str(OTTER_VENV / "bin" / "otter"), "generate", "-t", "tests", "-o", "autograder.zip",
                    "--no-requirements", "--no-environment", "--no-config"],
                   cwd=work, check=True, capture_output=True)
    return work / "autograder.zip"


def run_otter(paths: list[Path], autograder: Path, workers: int) -> tuple[list[float], float, list[float]]:
    out_root = Path(tempfile.mkdtemp(prefix="otter-out-"))

    def one(p: Path) -> tuple[float, float]:
        out = out_root / p.stem
        out.mkdir()
        t = time.monotonic()
        subprocess.run([str(OTTER_VENV / "bin" / "otter"), "run", "-a", str(autograder), "-o", str(out),
                        "--no-logo", str(p)], capture_output=True, cwd=out)
        took = time.monotonic() - t
        try:
            res = json.loads((out / "results.json").read_text())
            score = sum(t.get("score") or 0 for t in res.get("tests", []))
        except (OSError, ValueError):
            score = float("nan")
        return took, score

    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        got = list(pool.map(one, paths))
    wall = time.monotonic() - t0
    shutil.rmtree(out_root, ignore_errors=True)
    return [g[0] for g in got], wall, [g[1] for g in got]


# -------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trivial", type=int, default=20)
    p.add_argument("--torch", type=int, default=10)
    p.add_argument("--modes", nargs="+", default=["nbclient", "process", "docker", "otter"])
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    p.add_argument("--json", type=Path, help="also write the numbers here")
    a = p.parse_args(argv)

    sets = make_submissions(a.trivial, a.torch)
    project = bench_project()
    assignment_of = {"trivial": "example", "torch": "bench-torch"}
    modes = list(a.modes)
    if "docker" in modes:
        from gradekit.sandbox import registry
        from gradekit.sandbox.base import SandboxUnavailable
        try:
            for torch in (False, True):
                registry.make(backend_choice("docker", torch)).check()   # builds a missing image before timing
        except SandboxUnavailable as e:
            print(f"bench: skipping docker: {e}")
            modes.remove("docker")
    if "otter" in modes and not ensure_otter():
        modes.remove("otter")
    autograders = {k: otter_autograder(k) for k in sets} if "otter" in modes else {}

    rows = []
    for kind, folder in sets.items():
        paths = sorted(folder.glob("*.ipynb"))
        if not paths:
            continue
        for mode in modes:
            for workers in a.workers:
                label = f"{kind:<8} {mode:<8} w={workers}"
                print(f"bench: {label} ({len(paths)} submissions) ...", flush=True)
                scores = None
                if mode == "nbclient":
                    times, wall = run_nbclient(paths, workers)
                elif mode in ("process", "docker"):
                    times, wall, results = run_gradekit(folder, assignment_of[kind], project, mode, workers,
                                                        CACHE / "out" / f"{kind}-{mode}-{workers}")
                    scores = [r.score for r in results]
                    bad = [r for r in results if r.status != "graded"]
                    if bad:
                        print(f"bench:   {len(bad)} not graded: {[r.status for r in bad[:3]]} "
                              f"({(bad[0].reason or '')[:300]})")
                else:
                    times, wall, scores = run_otter(paths, autograders[kind], workers)
                parts = {}
                if mode in ("process", "docker"):
                    for key in ("execute", "grade", "total"):
                        vals = [r.timing[key] for r in results if key in r.timing]
                        parts[key] = statistics.median(vals) if vals else float("nan")
                row = {"set": kind, "mode": mode, "workers": workers, "n": len(paths), "parts": parts,
                       "median_s": statistics.median(times), "wall_s": wall,
                       "per_min": 60 * len(paths) / wall,
                       "scores": sorted(set(scores)) if scores is not None else None}
                rows.append(row)
                print(f"bench:   median {row['median_s']:.2f} s/submission, wall {wall:.1f} s, "
                      f"{row['per_min']:.1f}/min, scores {row['scores']}", flush=True)

    print()
    print(f"{'set':<8} {'mode':<9} {'workers':>7} {'median s':>9} {'wall s':>8} {'per min':>8}")
    for r in rows:
        print(f"{r['set']:<8} {r['mode']:<9} {r['workers']:>7} {r['median_s']:>9.2f} {r['wall_s']:>8.1f} "
              f"{r['per_min']:>8.1f}")

    def get(kind, mode, workers):
        return next((r for r in rows if (r["set"], r["mode"], r["workers"]) == (kind, mode, workers)), None)

    print("\nwhere a gradekit submission's time goes (medians, s): execute = kernel or container start"
          "\n+ the notebook + shutdown; grade = the pytest graders and their bridge calls; rest = the"
          "\nworker process (forked from the fork server), reports and the batch's bookkeeping")
    for r in rows:
        if r["parts"]:
            rest = r["median_s"] - r["parts"]["total"] if r["workers"] == 1 else float("nan")
            print(f"{r['set']:<8} {r['mode']:<8} w={r['workers']}  execute {r['parts']['execute']:.2f}  "
                  f"grade {r['parts']['grade']:.2f}  rest {rest:.2f}")
    print()
    for kind in sets:
        base = get(kind, "nbclient", 1)
        for mode in ("process", "docker", "otter"):
            r = get(kind, mode, 1)
            if base and r:
                print(f"{kind:<8} {mode:<8} sequential: {r['median_s'] - base['median_s']:+.2f} s per submission "
                      f"over bare nbclient (median), x{r['median_s'] / base['median_s']:.2f}")
        d2, o2 = get(kind, "docker", 2), get(kind, "otter", 2)
        if d2 and o2:
            print(f"{kind:<8} docker w=2 vs otter run w=2: x{d2['per_min'] / o2['per_min']:.2f} submissions per minute")
    tgt_d, tgt_b = get("trivial", "docker", 1), get("trivial", "nbclient", 1)
    if tgt_d and tgt_b:
        extra = tgt_d["median_s"] - tgt_b["median_s"]
        print(f"\ntarget 1 (docker adds <= 1.0 s per trivial submission): {extra:+.2f} s -> "
              f"{'met' if extra <= 1.0 else 'NOT met'}")
    d2, o2 = get("trivial", "docker", 2), get("trivial", "otter", 2)
    if d2 and o2:
        ratio = d2["per_min"] / o2["per_min"]
        print(f"target 2 (docker w=2 >= 3x otter run w=2, trivial): x{ratio:.2f} -> {'met' if ratio >= 3 else 'NOT met'}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
