"""dl-example: what gradekit adds to a torch notebook's own run time, in one run.

    .venv/bin/python bench/bench_dl.py [--copies 10] [--modes process docker] [--workers 1 2] [--json FILE]

Submissions: ``--copies`` copies of the dl-example master (each made distinct by a markdown
cell, so none is deduplicated), graded with the spec's grading parameters (8 epochs on the
CPU) and its synthetic data set. For each backend, in the same environment:

* ``floor``    — the notebook's code cells, with the same injected parameters, run by one
  Python process and nothing else: the host venv's Python for the process backend (its
  kernels run there), ``docker run`` of the full grading image for the docker backend (one
  container per notebook: the floor pays the container start too);
* ``gradekit`` — :func:`gradekit.run.batch.grade_batch` (what ``gradekit grade`` runs):
  intake, worker, sandbox, kernel, every grader's bridge calls, reports.

Per submission, sequential runs: the median wall time (gradekit: intervals between
successive completions, so worker start, kernel start, graders and reports are included).
Overhead: (gradekit − floor) / floor. Throughput: submissions per minute with 1 and 2
workers. A benchmark, not a test: it asserts nothing; read the table.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from gradekit.data.synth import synthesize  # noqa: E402
from gradekit.kernel.parameters import inject  # noqa: E402
from gradekit.model import BackendChoice  # noqa: E402
from gradekit.run.batch import BatchOptions, grade_batch  # noqa: E402
from gradekit.spec import load  # noqa: E402

AID = "dl-example"
CACHE = ROOT / ".cache" / "bench-dl"


def prepare(copies: int) -> tuple[Path, Path]:
    """(data set folder, submissions folder), made fresh."""
    shutil.rmtree(CACHE, ignore_errors=True)
    CACHE.mkdir(parents=True)
    os.chmod(CACHE, 0o755)
    spec = load(AID).data_set("shapes")
    sizes = dict(spec.synth)
    data = CACHE / "shapes"
    synthesize(spec.format, data, seed=sizes.pop("seed", 0), **sizes)
    subs = CACHE / "subs"
    subs.mkdir()
    master = nbformat.read(str(load(AID).master_path), as_version=4)
    for i in range(copies):
        nb = nbformat.from_dict(json.loads(json.dumps(master)))
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"copy {i}"))
        nbformat.write(nb, str(subs / f"student{i:02d}.ipynb"))
    return data, subs


def script_of(path: Path) -> str:
    """The notebook's code cells after the grading parameters' injection, as one script."""
    nb = nbformat.read(str(path), as_version=4)
    inject(nb, load(AID).parameters.for_device(False))
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")


def floor_process(paths: list[Path], data: Path, workers: int) -> tuple[list[float], float]:
    def one(p: Path) -> float:
        t = time.monotonic()
        subprocess.run([sys.executable, "-c", script_of(p)], check=True, capture_output=True,
                       env=dict(os.environ, GRADEKIT_DATA=str(data.parent), OMP_NUM_THREADS="1"))
        return time.monotonic() - t
    return _pool(one, paths, workers)


def floor_docker(paths: list[Path], data: Path, workers: int, image: str) -> tuple[list[float], float]:
    from gradekit.sandbox.docker.image import docker_cli
    cli = docker_cli()

    def one(p: Path) -> float:
        t = time.monotonic()
        subprocess.run([cli, "run", "--rm", "-i", "--network", "none", "--cpus", "1", "-e", "GRADEKIT_DATA=/data",
                        "-e", "OMP_NUM_THREADS=1", "--mount", f"type=bind,source={data},target=/data/shapes,readonly",
                        image, "python", "-"], input=script_of(p).encode(), check=True, capture_output=True)
        return time.monotonic() - t
    return _pool(one, paths, workers)


def _pool(one, paths, workers) -> tuple[list[float], float]:
    t = time.monotonic()
    with cf.ThreadPoolExecutor(workers) as pool:
        each = list(pool.map(one, paths))
    return each, time.monotonic() - t


def run_gradekit(subs: Path, data: Path, backend: BackendChoice, workers: int) -> tuple[list[float], float]:
    stamps, lock = [], threading.Lock()

    def on_done(report) -> None:
        with lock:
            stamps.append((time.monotonic(), report.score))
    out = CACHE / f"out-{backend.name}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    t = time.monotonic()
    grade_batch([subs], load(AID).with_data({"shapes": data}), out,
                BatchOptions(backend=backend, workers=workers, progress=False, on_done=on_done))
    total = time.monotonic() - t
    times = [b - a for (a, _), (b, _) in zip([(t, None)] + stamps[:-1], stamps)]
    full = load(AID).auto_points
    bad = [s for _, s in stamps if s != full]
    if bad:
        print(f"  warning: {len(bad)} submissions did not score full marks: {bad}", file=sys.stderr)
    return times, total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--modes", nargs="+", default=["process", "docker"], choices=["process", "docker"])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    data, subs = prepare(args.copies)
    paths = sorted(subs.glob("*.ipynb"))
    rows = []
    for mode in args.modes:
        image = None
        if mode == "docker":
            from gradekit.sandbox.docker import image as images
            image = images.ensure(torch=True)
        for workers in args.workers:
            floor = floor_process(paths, data, workers) if mode == "process" else floor_docker(paths, data, workers, image)
            backend = BackendChoice("docker", {"torch": True}) if mode == "docker" else BackendChoice("process")
            graded = run_gradekit(subs, data, backend, workers)
            for kind, (each, total) in (("floor", floor), ("gradekit", graded)):
                rows.append({"mode": mode, "workers": workers, "kind": kind, "median_s": statistics.median(each),
                             "min_s": min(each), "max_s": max(each), "per_min": 60 * len(each) / total})
                r = rows[-1]
                print(f"{mode:8s} {workers} worker(s) {kind:9s} median {r['median_s']:6.2f} s/sub "
                      f"(min {r['min_s']:.2f}, max {r['max_s']:.2f}), {r['per_min']:5.1f} per min", flush=True)
            f, g = rows[-2], rows[-1]
            if workers == 1:
                print(f"{mode:8s} overhead over the floor: {(g['median_s'] - f['median_s']) / f['median_s']:+.0%} "
                      f"({g['median_s'] - f['median_s']:+.2f} s per submission)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
