"""The Ray executor against the local executor, in one run, on the same submissions.

    .venv/bin/python bench/bench_ray.py [--submissions 12] [--nodes 2] [--json FILE]

Submissions: ``--submissions`` distinct copies of the example assignment's master (numpy
only, full marks). They are graded, with the process sandbox, by:

* ``local`` — ``gradekit grade -j N`` (the default fork-server executor, N = ``--nodes``);
* ``ray``   — ``gradekit grade --executor ray --ray-address ...`` on a local Ray cluster of
  ``--nodes`` nodes with one grading slot each (``ray.cluster_utils.Cluster``, the head
  included), started before the clock starts, as a course's cluster would be.

Both run N submissions at once. Prints each wall time, the ratio ray / local, the time Ray
adds per submission ((ray wall - local wall) x N / submissions), and how long a task spent
on its node around the worker (the task's span on the node, from ``report.placement``,
minus the worker's own ``timing.total``). On one machine the nodes share its cores with the
driver and Ray's own processes.

This is a benchmark, not a test: it asserts nothing and exits 0 (1 when a submission was not
graded); read the figures.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402
from nbformat.v4 import new_markdown_cell  # noqa: E402


def make_submissions(folder: Path, n: int) -> Path:
    """``n`` distinct notebooks (distinct content hashes: no de-duplication)."""
    from gradekit.spec import load
    master = nbformat.read(str(load("example", ROOT).master_path), as_version=4)
    folder.mkdir(parents=True)
    for i in range(n):
        nb = copy.deepcopy(master)
        nb.cells.insert(0, new_markdown_cell(f"Submission {i}"))
        nbformat.write(nb, str(folder / f"student{i:02d}.ipynb"))
    return folder


def grade(folder: Path, out: Path, **options) -> tuple[float, list]:
    """``gradekit grade`` in-process: the wall time and the reports."""
    from gradekit.model import BackendChoice
    from gradekit.run.batch import BatchOptions, grade_batch
    from gradekit.spec import load
    t0 = time.monotonic()
    reports = grade_batch([folder], load("example", ROOT), out,
                          BatchOptions(backend=BackendChoice("process"), progress=False, **options))
    return time.monotonic() - t0, reports


def local_cluster(nodes: int):
    """A Ray cluster of ``nodes`` one-slot nodes on this machine (the head is one of them)."""
    from ray.cluster_utils import Cluster
    from gradekit.run.ray_executor import SLOT
    slot = dict(num_cpus=1, resources={SLOT: 1})
    cluster = Cluster(initialize_head=True, head_node_args={**slot, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(**slot)
    cluster.wait_for_nodes()
    return cluster


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--submissions", type=int, default=12)
    p.add_argument("--nodes", type=int, default=2, help="Ray nodes of one slot each; also the local workers")
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args(argv)
    try:
        import ray
    except ImportError:
        print("bench_ray: Ray is not installed (pip install 'gradekit[ray]', or make venv)")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="gk-bench-ray-"))
    try:
        subs = make_submissions(tmp / "subs", a.submissions)
        print(f"bench_ray: {a.submissions} submissions, local executor -j {a.nodes} ...", flush=True)
        local_wall, local = grade(subs, tmp / "local", workers=a.nodes)
        print(f"bench_ray: starting a local Ray cluster of {a.nodes} one-slot nodes ...", flush=True)
        cluster = local_cluster(a.nodes)
        try:
            ray.init(address=cluster.address, log_to_driver=False)
            print("bench_ray: Ray executor ...", flush=True)
            ray_wall, remote = grade(subs, tmp / "ray", executor="ray")
        finally:
            ray.shutdown()
            cluster.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bad = [r for r in local + remote if r.status != "graded"]
    around = [r.placement.finished - r.placement.started - r.timing.get("total", 0.0)
              for r in remote if r.placement is not None]
    figures = {
        "submissions": a.submissions, "nodes": a.nodes,
        "local_wall_s": round(local_wall, 2), "ray_wall_s": round(ray_wall, 2),
        "ratio_ray_over_local": round(ray_wall / local_wall, 3),
        "ray_added_s_per_submission": round((ray_wall - local_wall) * a.nodes / a.submissions, 3),
        "node_time_around_worker_median_s": round(statistics.median(around), 3) if around else None,
    }
    print()
    print(f"{'executor':<8} {'slots':>5} {'wall s':>8} {'per min':>8}")
    for name, wall in (("local", local_wall), ("ray", ray_wall)):
        print(f"{name:<8} {a.nodes:>5} {wall:>8.1f} {60 * a.submissions / wall:>8.1f}")
    print(f"\nray / local wall time: x{figures['ratio_ray_over_local']:.2f}")
    print(f"Ray adds {figures['ray_added_s_per_submission']:+.2f} s per submission (per slot; target <= 0.1 s)")
    if around:
        print(f"a task's time on its node around the worker (median): {figures['node_time_around_worker_median_s']:.2f} s")
    if bad:
        print(f"bench_ray: {len(bad)} reports not graded: {[(r.status, r.reason) for r in bad[:3]]}")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
