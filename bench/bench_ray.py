"""The Ray executor against the local executor, in one run, on the same submissions; and a
simulated scaling figure for Ray's scheduler.

    .venv/bin/python bench/bench_ray.py [--submissions 40] [--local-workers 2] [--nodes 1,2,3]
                                        [--sim-nodes 1,2,4,8,16] [--sim-seconds 1] [--sim-rounds 4]
                                        [--no-grading] [--no-sim] [--json FILE]

Grading. ``--submissions`` distinct copies of the example assignment's master (numpy only,
full marks), graded with the process sandbox by:

* ``local`` — ``gradekit grade -j W`` (the default fork-server executor, W = ``--local-workers``),
  the baseline;
* ``ray N`` — ``gradekit grade --executor ray --ray-address ...`` on a local Ray cluster of N
  nodes with one grading slot each (``ray.cluster_utils.Cluster``, the head included),
  started before the clock starts, as a course's cluster would be; one run per N in ``--nodes``.

For each: the wall time, the throughput (submissions a minute), a submission's cost in
slot-seconds (wall x slots / submissions) and what Ray adds to it over the local baseline,
the median time a task spent on its node around the worker (the task's span on the node,
from ``report.placement``, minus the worker's own ``timing.total``), and the scaling
efficiency (throughput at N nodes / (N x throughput at 1 node)). On a small machine the
nodes share its cores with the driver and Ray's own processes: past the number of cores,
grading cannot scale, whatever the scheduler does.

Simulation. To see the scheduler alone scale: one local cluster of max(``--sim-nodes``)
one-slot nodes; a run "at N nodes" sends its tasks with a resource only the first N nodes
declare (``gk_sim_N``), so exactly N nodes take them. The tasks are shaped like the
executor's (a generator task, ``num_cpus=0``, one slot, the job, notebook and course bundle
as arguments, "started" then the result; the driver follows each from a thread, as the
batch does) but sleep ``--sim-seconds`` instead of grading. One untimed round first starts a
Ray worker on each node; then ``--sim-rounds`` x N tasks are timed. Efficiency against
linear: (wall at 1 node) / (wall at N nodes) — N times the tasks in the same time is 100%.

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
from concurrent.futures import ThreadPoolExecutor
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


def local_cluster(nodes: int, resources=None):
    """A Ray cluster of ``nodes`` one-slot nodes on this machine (the head is one of them).
    ``resources(i)``: extra resources of node ``i``."""
    from ray.cluster_utils import Cluster
    from gradekit.run.ray_executor import SLOT

    def args(i: int) -> dict:
        return dict(num_cpus=1, resources={SLOT: 1, **(resources(i) if resources else {})},
                    object_store_memory=100 * 2**20)
    cluster = Cluster(initialize_head=True, head_node_args={**args(0), "include_dashboard": False})
    for i in range(1, nodes):
        cluster.add_node(**args(i))
    cluster.wait_for_nodes()
    return cluster


# -- grading -------------------------------------------------------------------------------
def grading(a, tmp: Path) -> tuple[list[dict], list]:
    import ray
    subs = make_submissions(tmp / "subs", a.submissions)
    rows, reports = [], []

    def row(name: str, slots: int, wall: float, graded: list) -> dict:
        around = [r.placement.finished - r.placement.started - r.timing.get("total", 0.0)
                  for r in graded if r.placement is not None and r.placement.executor == "ray"]
        worker = [r.timing.get("total", 0.0) for r in graded if r.timing]
        reports.extend(graded)
        return dict(executor=name, slots=slots, wall_s=round(wall, 2),
                    per_min=round(60 * a.submissions / wall, 1),
                    slot_s_per_submission=round(wall * slots / a.submissions, 3),
                    worker_median_s=round(statistics.median(worker), 3) if worker else None,
                    around_worker_median_s=round(statistics.median(around), 3) if around else None)

    print(f"bench_ray: {a.submissions} submissions, local executor -j {a.local_workers} ...", flush=True)
    wall, graded = grade(subs, tmp / "local", workers=a.local_workers)
    rows.append(row("local", a.local_workers, wall, graded))
    for n in a.nodes:
        print(f"bench_ray: a local Ray cluster of {n} one-slot node(s), Ray executor ...", flush=True)
        cluster = local_cluster(n)
        try:
            ray.init(address=cluster.address, log_to_driver=False)
            wall, graded = grade(subs, tmp / f"ray{n}", executor="ray")
        finally:
            ray.shutdown()
            cluster.shutdown()
        rows.append(row(f"ray {n}", n, wall, graded))
    base = rows[0]
    one = next((r for r in rows if r["executor"] == "ray 1"), None)
    for r in rows[1:]:
        r["added_slot_s_per_submission"] = round(r["slot_s_per_submission"] - base["slot_s_per_submission"], 3)
        r["ratio_wall_over_local"] = round(r["wall_s"] / base["wall_s"], 3)
        if one is not None:
            r["scaling_efficiency"] = round(r["per_min"] / (r["slots"] * one["per_min"]), 3)
    return rows, reports


def print_grading(rows: list[dict], a) -> None:
    print(f"\ngrading {a.submissions} submissions (process sandbox; {_cores()} cores here)")
    print(f"{'executor':<8} {'slots':>5} {'wall s':>7} {'per min':>8} {'slot-s/sub':>10} {'+ vs local':>10} "
          f"{'worker s':>8} {'around s':>8} {'scaling':>7}")
    for r in rows:
        added, eff, around = (r.get("added_slot_s_per_submission"), r.get("scaling_efficiency"),
                              r["around_worker_median_s"])
        print(f"{r['executor']:<8} {r['slots']:>5} {r['wall_s']:>7.1f} {r['per_min']:>8.1f} "
              f"{r['slot_s_per_submission']:>10.3f} {'' if added is None else f'{added:+.3f}':>10} "
              f"{r['worker_median_s'] or 0:>8.3f} {'' if around is None else f'{around:.3f}':>8} "
              f"{'' if eff is None else f'{eff:.0%}':>7}")
    print("slot-s/sub: wall x slots / submissions; + vs local: what that adds over the local baseline "
          "(target <= 0.1 s at the same number of slots); around s: a task's median time on its node "
          "outside the worker; scaling: throughput / (nodes x throughput at 1 node)")


def _cores() -> int:
    import os
    return len(os.sched_getaffinity(0))


# -- simulation ----------------------------------------------------------------------------
def sim_task(job: dict, notebook: str, files, bundle_sha: str, bundle: bytes, seconds: float):
    """Shaped like :func:`gradekit.run.ray_executor.grade_on_node`, but sleeps."""
    import ray
    started = time.time()
    yield "started"
    node = ray.get_runtime_context().get_node_id()
    time.sleep(seconds)
    yield {"node": node, "started": started, "finished": time.time(), "report": job}


def simulation(a) -> list[dict]:
    import hashlib
    import ray
    from gradekit.run.ray_executor import course_bundle
    from gradekit.spec import load
    sizes = sorted(a.sim_nodes)
    most = sizes[-1]
    print(f"\nbench_ray: simulation, a local Ray cluster of {most} one-slot nodes ...", flush=True)
    t0 = time.monotonic()
    cluster = local_cluster(most, resources=lambda i: {f"gk_sim_{n}": 1 for n in sizes if i < n})
    print(f"bench_ray: cluster up in {time.monotonic() - t0:.0f} s", flush=True)
    rows = []
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        assignment = load("example", ROOT)
        bundle = course_bundle(assignment)
        sha, ref = hashlib.sha256(bundle).hexdigest(), ray.put(bundle)
        notebook = assignment.master_path.read_text()
        job = {"assignment": "example", "limits": {"hard_wall": 600}, "seed": 0}
        task = ray.remote(max_retries=0, retry_exceptions=False)(sim_task)

        def one(n: int) -> dict:
            gen = task.options(resources={f"gk_sim_{n}": 1}, num_cpus=0).remote(
                job, notebook, None, sha, ref, a.sim_seconds)
            while not ray.wait([gen], timeout=0.5)[0]:
                pass
            ray.get(next(gen))
            while not ray.wait([gen], timeout=0.5)[0]:
                pass
            return ray.get(next(gen))

        for n in sizes:
            with ThreadPoolExecutor(max_workers=n) as pool:
                list(pool.map(one, [n] * n))  # warm-up: a Ray worker on each of the n nodes
                t = time.monotonic()
                done = list(pool.map(one, [n] * (n * a.sim_rounds)))
                wall = time.monotonic() - t
            rows.append(dict(nodes=n, tasks=len(done), wall_s=round(wall, 2),
                             nodes_used=len({d["node"] for d in done}),
                             per_s=round(len(done) / wall, 2),
                             vs_ideal=round(a.sim_rounds * a.sim_seconds / wall, 3)))
            print(f"bench_ray: {n:>2} nodes: {len(done)} tasks in {wall:.2f} s", flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    for r in rows:
        r["efficiency_vs_linear"] = round(rows[0]["wall_s"] / r["wall_s"], 3)
    return rows


def print_simulation(rows: list[dict], a) -> None:
    print(f"\nsimulated scaling: tasks that sleep {a.sim_seconds:g} s, {a.sim_rounds} per node, one slot a node")
    print(f"{'nodes':>5} {'tasks':>5} {'used':>4} {'wall s':>7} {'tasks/s':>7} {'vs ideal':>8} {'vs linear':>9}")
    for r in rows:
        print(f"{r['nodes']:>5} {r['tasks']:>5} {r['nodes_used']:>4} {r['wall_s']:>7.2f} {r['per_s']:>7.2f} "
              f"{r['vs_ideal']:>8.0%} {r['efficiency_vs_linear']:>9.0%}")
    print("vs ideal: (rounds x seconds) / wall; vs linear: wall at 1 node / wall at N nodes (target >= 90% at 16)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--submissions", type=int, default=40)
    p.add_argument("--local-workers", type=int, default=2, help="the local executor's workers (-j)")
    p.add_argument("--nodes", type=ints, default=[1, 2, 3], help="Ray nodes of one slot each, one run per number")
    p.add_argument("--sim-nodes", type=ints, default=[1, 2, 4, 8, 16])
    p.add_argument("--sim-seconds", type=float, default=1.0, help="how long each simulated task sleeps")
    p.add_argument("--sim-rounds", type=int, default=4, help="simulated tasks per node")
    p.add_argument("--no-grading", action="store_true", help="only the simulation")
    p.add_argument("--no-sim", action="store_true", help="only the grading")
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        print("bench_ray: Ray is not installed (pip install 'gradekit[ray]', or make venv)")
        return 1
    figures: dict = {"submissions": a.submissions}
    bad = []
    tmp = Path(tempfile.mkdtemp(prefix="gk-bench-ray-"))
    try:
        if not a.no_grading:
            figures["grading"], reports = grading(a, tmp)
            bad = [r for r in reports if r.status != "graded"]
        if not a.no_sim:
            figures["simulation"] = simulation(a)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "grading" in figures:
        print_grading(figures["grading"], a)
    if "simulation" in figures:
        print_simulation(figures["simulation"], a)
    if bad:
        print(f"bench_ray: {len(bad)} reports not graded: {[(r.status, r.reason) for r in bad[:3]]}")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
