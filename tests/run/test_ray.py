"""``gradekit grade --executor ray`` on a real local multi-node Ray cluster (ray.cluster_utils).

One cluster for the module: three nodes (the head and two more) of one grading slot each
(``gradekit_slot``), two of them with a (fake) GPU. The process sandbox
grades (fast); the executor runs the same worker code under Docker on real nodes.
The node-killing test comes last among the cluster's tests: it takes a node away.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest
import ray  # installed by the project's setup (make venv: .[dev,ray]); missing, this module fails
from ray.cluster_utils import Cluster

from support import ROOT, needs_root
from gradekit import cli
from gradekit.model import BackendChoice
from gradekit.run import ray_executor
from gradekit.run.batch import BatchOptions, grade_batch
from gradekit.spec import load

HERE = Path(__file__).resolve().parent
EXAMPLES = ROOT / "assignments" / "example" / "submissions"
FAST = dict(cell_timeout=5, total_timeout=30)  # carol's endless loop costs 5 s, not 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    needs_root()
    node_root = tmp_path_factory.mktemp("ray-nodes")
    with pytest.MonkeyPatch.context() as mp:
        # what the nodes' workers inherit: where they keep course material, and the test stand-ins
        mp.setenv(ray_executor.NODE_DIR_ENV, str(node_root / "gk"))
        mp.setenv("PYTHONPATH", os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]))
        mp.setenv("GK_TEST_PIDFILE", str(node_root / "hang.pid"))
        slot = dict(num_cpus=1, resources={ray_executor.SLOT: 1})
        c = Cluster(initialize_head=True, head_node_args={
            **slot, "num_gpus": 1, "include_dashboard": False,
            "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                               "health_check_failure_threshold": 3}})
        nodes = [c.head_node] + [c.add_node(**slot, num_gpus=gpus) for gpus in (1, 0)]
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False)
        try:
            yield c, nodes, node_root / "gk"
        finally:
            ray.shutdown()
            c.shutdown()


def _notebooks() -> dict[str, nbformat.NotebookNode]:
    """The example's submissions (correct, partly wrong, timing out, broken, tampering) and the master."""
    master = nbformat.read(str(load("example").master_path), as_version=4)
    return {"master": master, **{p.stem.split("_")[0]: nbformat.read(str(p), as_version=4)
                                 for p in sorted(EXAMPLES.glob("*.ipynb")) if "broken" not in p.name}}


def _write(folder: Path, notebooks: dict[str, nbformat.NotebookNode]) -> Path:
    folder.mkdir(parents=True)
    for name, nb in notebooks.items():
        nbformat.write(nb, str(folder / f"{name}.ipynb"))
    return folder


def _distinct(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    copy = nbformat.from_dict(json.loads(json.dumps(nb)))
    copy.cells.append(nbformat.v4.new_code_cell(f"# copy {tag}"))
    return copy


def _by_name(reports) -> dict[str, dict]:
    return {Path(r.submission.submitter).stem: r.to_json() for r in reports}


# when and where, never what (a later part's time_limit is what the clock left of the budget)
VOLATILE = {"created", "timing", "duration", "placement", "time_limit"}


def _content(value):
    """A report's content: everything but the clock, the place it was graded, and the memory
    addresses in the reprs of the student's objects (two local runs differ in those too)."""
    if isinstance(value, dict):
        return {k: _content(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_content(v) for v in value]
    return re.sub(r" at 0x[0-9a-f]+", " at 0x?", value) if isinstance(value, str) else value


def test_same_reports_as_the_local_executor(cluster, tmp_path):
    subs = _write(tmp_path / "subs", _notebooks())
    (subs / "dave.ipynb").write_bytes((EXAMPLES / "dave_broken.ipynb").read_bytes())  # not a notebook: as is
    a = load("example")
    limits = a.limits.replace(**FAST)
    seen = []
    local = _by_name(grade_batch([subs], a, tmp_path / "local", BatchOptions(workers=2, progress=False, limits=limits)))
    remote = _by_name(grade_batch([subs], a, tmp_path / "ray", BatchOptions(
        executor="ray", progress=False, limits=limits, on_done=seen.append)))
    names = {"master", "alice", "bob", "carol", "dave", "mallory"}
    assert set(remote) == set(local) == names
    for name in names:
        assert _content(remote[name]) == _content(local[name]), name
    assert remote["master"]["status"] == "graded" and remote["master"]["score"] == a.auto_points  # full marks
    assert remote["alice"]["score"] == a.auto_points and 0 < remote["bob"]["score"] < a.auto_points
    assert remote["dave"]["status"] == "rejected"
    assert any(c["status"] == "timeout" for c in remote["carol"]["execution"]["cells"])
    assert any("ignored" in n for n in remote["mallory"]["notes"])  # tampering noticed on the node too
    for name in names - {"dave"}:
        p = remote[name]["placement"]
        assert p["executor"] == "ray" and p["attempts"] == 1 and p["node"] and p["gpus"] == [], p
        assert local[name]["placement"] is None
        files = {f.name for f in (tmp_path / "ray" / remote[name]["submission"]["id"]).iterdir()}
        assert {"report.json", "results.json", "feedback.md", "feedback.html"} <= files
        assert files == {f.name for f in (tmp_path / "local" / local[name]["submission"]["id"]).iterdir()}, name
    assert len(seen) == len(names)  # the progress callback, once per submitter
    rows = (tmp_path / "ray" / "gradebook.csv").read_text().strip().splitlines()
    assert rows == (tmp_path / "local" / "gradebook.csv").read_text().strip().splitlines()


def test_a_submission_of_several_notebooks_is_graded_as_locally(cluster, tmp_path):
    """[[parts]]: one task per submitter; each part runs in its own kernel on the node, under its
    own limits; the report, the executed notebook of each part and the gradebook are the local
    executor's."""
    from test_parts import P1, P2, course_with_parts, nb, write
    a = load("hw4", course_with_parts(tmp_path))
    subs = tmp_path / "class"
    write(subs / "alice", "alice_hw4_p1.ipynb", nb(P1))
    write(subs / "alice", "alice_hw4_p2.ipynb", nb(P2))
    write(subs / "bob", "bob_hw4_p1.ipynb", nb(P1))                        # no Problem 2
    local = _by_name(grade_batch([subs], a, tmp_path / "local", BatchOptions(workers=2, progress=False)))
    remote = _by_name(grade_batch([subs], a, tmp_path / "ray", BatchOptions(executor="ray", progress=False)))
    assert set(remote) == set(local) == {"alice", "bob"}
    for name in remote:
        assert _content(remote[name]) == _content(local[name]), name
        assert remote[name]["placement"]["executor"] == "ray"
        files = {f.name for f in (tmp_path / "ray" / remote[name]["submission"]["id"]).iterdir()}
        assert files == {f.name for f in (tmp_path / "local" / local[name]["submission"]["id"]).iterdir()}, name
    assert (remote["alice"]["score"], remote["bob"]["score"]) == (7, 3)
    assert {f.name for f in (tmp_path / "ray" / remote["alice"]["submission"]["id"]).glob("executed*")} == {
        "executed_p1.ipynb", "executed_p2.ipynb"}
    p1, p2 = remote["alice"]["parts"]
    assert p1["time_limit"] == 8 and 0 < p2["time_limit"] <= 10  # p1's own limit ([parts.limits]), p2's [limits]


@pytest.mark.docker
def test_the_nodes_grade_in_the_docker_sandbox(cluster, light_image, tmp_path):
    a = load("example")
    subs = _write(tmp_path / "subs", {"alice": _distinct(nbformat.read(str(EXAMPLES / "alice_correct.ipynb"),
                                                                       as_version=4), "docker")})
    r = _by_name(grade_batch([subs], a, tmp_path / "out", BatchOptions(
        backend=BackendChoice("docker", {"torch": False}), executor="ray", progress=False)))["alice"]
    assert (r["status"], r["score"], r["sandbox"]["backend"]) == ("graded", a.auto_points, "docker"), r["reason"]
    assert r["placement"]["executor"] == "ray" and r["placement"]["node"]


def test_course_folder_on_a_node_is_private_and_checked(cluster, tmp_path):
    _, nodes, node_root = cluster
    a = load("example")
    nb = _distinct(nbformat.read(str(a.master_path), as_version=4), "private")
    subs = _write(tmp_path / "subs", {"one": nb})
    r = _by_name(grade_batch([subs], a, tmp_path / "out", BatchOptions(executor="ray", progress=False)))["one"]
    assert r["status"] == "graded"
    courses = list(node_root.glob("*/course/*"))
    assert courses, "no course folder was unpacked on a node"
    for folder in [node_root, *node_root.iterdir(), *courses, *(c.parent for c in courses)]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert (courses[0] / "graders" / "example").is_dir() and (courses[0] / "reference").is_dir()
    assert not (courses[0] / "assignments" / "example" / "submissions").exists()
    # a course folder that other users could read, on every node (the task may land on any):
    # the node refuses to grade, and says why
    readable = []
    for n in nodes:
        folder = node_root / n.node_id[:16] / "course" / courses[0].name
        if not folder.exists():
            folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copytree(courses[0], folder)
        folder.chmod(0o755)
        readable.append(folder)
    try:
        again = _by_name(grade_batch([subs], a, tmp_path / "out2", BatchOptions(executor="ray", progress=False)))["one"]
    finally:
        for folder in readable:
            folder.chmod(0o700)
    assert again["status"] == "error" and "readable by other users" in again["reason"], (again["placement"], readable, [n.node_id for n in nodes], sorted(str(p) + oct(p.stat().st_mode) for p in node_root.glob("*/course/*")))


def test_two_fake_gpus_each_leased_to_one_task_at_a_time(cluster, tmp_path):
    _, nodes, _ = cluster
    gpu_nodes = {n.node_id for n in nodes[:2]}
    a = dataclasses.replace(load("example"), gpu="optional")
    master = nbformat.read(str(a.master_path), as_version=4)
    subs = _write(tmp_path / "subs", {f"g{i}": _distinct(master, f"gpu {i}") for i in range(3)})
    reports = _by_name(grade_batch([subs], a, tmp_path / "out", BatchOptions(executor="ray", progress=False)))
    spans: dict[str, list[tuple[float, float]]] = {}
    for name, r in reports.items():
        p = r["placement"]
        assert r["status"] == "graded" and r["score"] == a.auto_points, name
        assert p["node"] in gpu_nodes and p["gpus"] == ["0"], p  # the node-local id Ray leased
        assert r["sandbox"]["gpus"] == ["0"]  # ... is the one the sandbox was given
        spans.setdefault(p["node"], []).append((p["started"], p["finished"]))
    assert set(spans) == gpu_nodes  # both GPUs were used
    for node, s in spans.items():
        s.sort()
        assert all(prev[1] <= nxt[0] for prev, nxt in zip(s, s[1:])), f"two tasks shared the GPU of {node}: {s}"


@pytest.mark.parametrize("who", ["node", "driver"])
def test_hard_limit_stops_the_worker_and_all_it_started(cluster, tmp_path, monkeypatch, who):
    """The node stops a worker at the hard limit; the driver's cancel is the backstop for a
    node that does not (here made to come first): either way the worker and its child go."""
    _, _, node_root = cluster
    monkeypatch.setattr(ray_executor, "NODE_ENTRY", "ray_nodes:hanging_main")
    if who == "driver":  # the driver cancels 3 s into the task, before the node's own 6 s
        monkeypatch.setattr(ray_executor, "DRIVER_MARGIN", -3.0)
    pidfile = node_root.parent / "hang.pid"
    pidfile.unlink(missing_ok=True)
    a = load("example")
    master = nbformat.read(str(a.master_path), as_version=4)
    subs = _write(tmp_path / "subs", {"hang": _distinct(master, f"hang {who}")})
    limits = a.limits.replace(total_timeout=2, grading_allowance=4)  # the hard limit: 6 s
    out = tmp_path / "out"
    reports = _by_name(grade_batch([subs], a, out, BatchOptions(executor="ray", progress=False, limits=limits)))
    assert reports["hang"]["status"] == "error" and "hard limit of 6 s" in reports["hang"]["reason"]
    assert json.loads((out / reports["hang"]["submission"]["id"] / "report.json").read_text())["reason"] == \
        reports["hang"]["reason"]
    assert "hang.ipynb" in (out / "gradebook.csv").read_text()
    pids = list(map(int, pidfile.read_text().split()))  # the hung worker, and the child it started
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.2)
    assert not [p for p in pids if _running(p)], "the hung worker or its child outlived the hard limit"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_interrupted_driver_resumes_without_regrading(cluster, tmp_path):
    c, _, _ = cluster
    a = load("example")
    master = nbformat.read(str(a.master_path), as_version=4)
    nbs = {f"s{i}": _distinct(master, f"resume {i}") for i in range(3)}
    nbs["s2"] = _distinct(nbformat.read(str(EXAMPLES / "carol_timing_out.ipynb"), as_version=4), "slow")
    subs = _write(tmp_path / "subs", nbs)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gradekit.cli", "grade", str(subs), "-a", "example", "-o", str(out), "--sandbox",
           "process", "--executor", "ray", "--ray-address", c.address, "--quiet", "--cell-timeout", "8"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list(out.glob("*/report.json"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # carol's notebook is still in its endless loop
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output.decode()
    first = {json.loads(p.read_text())["submission"]["submitter"]: json.loads(p.read_text())
             for p in out.glob("*/report.json")}
    done = {k for k, r in first.items() if r["status"] == "graded"}
    assert {"s0.ipynb", "s1.ipynb"} <= done and first["s2.ipynb"]["status"] == "error"
    mark = "2000-01-01T00:00:00+00:00"
    for p in out.glob("*/report.json"):
        data = json.loads(p.read_text())
        if data["status"] == "graded":
            p.write_text(json.dumps(dict(data, created=mark)))
    again = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    after = {json.loads(p.read_text())["submission"]["submitter"]: json.loads(p.read_text())
             for p in out.glob("*/report.json")}
    assert all(after[k]["created"] == mark for k in done)  # reused, not graded again
    assert after["s2.ipynb"]["status"] == "graded" and after["s2.ipynb"]["created"] != mark


def test_a_node_killed_mid_batch_loses_nothing_and_counts_nothing_twice(cluster, tmp_path):
    c, nodes, _ = cluster
    a = load("example")
    master = nbformat.read(str(a.master_path), as_version=4)
    subs = _write(tmp_path / "subs", {f"k{i}": _distinct(master, f"kill {i}") for i in range(6)})
    out = tmp_path / "out"
    results: list = []
    batch = threading.Thread(target=lambda: results.extend(grade_batch(
        [subs], a, out, BatchOptions(executor="ray", progress=False))))
    before = set(Path(tempfile.gettempdir()).glob("gk-ray-*"))  # a cancelled task's folder may be left
    batch.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:  # a node while it grades (its run folder exists)
        for n in nodes[1:]:  # not the head: the cluster ends with it
            if set(Path(tempfile.gettempdir()).glob(f"gk-ray-{n.node_id[:8]}-*/job")) - {p / "job" for p in before}:
                victim = n
                break
        time.sleep(0.05)
    assert victim is not None, "no node started grading"
    c.remove_node(victim, allow_graceful=False)
    nodes.remove(victim)
    batch.join(timeout=120)
    assert not batch.is_alive()
    reports = _by_name(results)
    assert sorted(reports) == [f"k{i}" for i in range(6)]
    assert all(r["status"] == "graded" and r["score"] == a.auto_points for r in reports.values()), \
        {k: (r["status"], r["reason"]) for k, r in reports.items()}
    retried = [r for r in reports.values() if r["placement"]["attempts"] > 1]
    assert retried, "no submission was graded again after its node died"
    for r in retried:
        assert r["placement"]["node"] != victim.node_id and any("attempt 2" in n for n in r["notes"])
    assert len(list(out.glob("*/report.json"))) == 6  # one report per submission, written once
    rows = (out / "gradebook.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6


def test_without_ray_grade_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    code = cli.main(["grade", str(EXAMPLES / "alice_correct.ipynb"), "-a", "example", "-o", str(tmp_path / "out"),
                     "--sandbox", "process", "--executor", "ray", "--quiet"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and "Ray, which is not installed" in err and "pip install 'gradekit[ray]'" in err
    assert not list((tmp_path / "out").glob("*/report.json"))


def test_the_course_bundle_is_the_same_bytes_every_time():
    a = load("example")
    bundle = ray_executor.course_bundle(a)
    assert bundle[4:8] == bytes(4)  # gzip's header keeps no time: the hash names the content
    assert bundle == ray_executor.course_bundle(a)
