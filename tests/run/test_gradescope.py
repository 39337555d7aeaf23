"""The Gradescope autograder: the zip's layout, and the zip run in a container laid out as
Gradescope lays it out, scoring like ``gradekit grade`` on correct, wrong, broken and
tampering submissions.

The container test builds an image the way Gradescope does (the zip unpacked into
/autograder/source, ``setup.sh`` run as root), from the local debian:bookworm-slim (standing
in for Ubuntu 22.04) and a wheelhouse filled on the host under .cache/ (standing in for the
network). The image is tagged by the zip's hash and kept, so a rerun with unchanged sources
skips setup. Each submission then runs in a fresh container with no network and Gradescope's
default 768 MB, as ``run_autograder`` (root, in /autograder).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from support import ROOT, apply_variant, load_variants, needs_root
from gradekit.tools.autograder_zip import build_autograder, needs_torch, requirements, resource_warnings
from gradekit.intake import gradescope_submission
from gradekit.spec import load

CACHE = ROOT / ".cache" / "gradescope"
IMAGE_REPO = "gradekit-gradescope-test"
BASE_IMAGE = "debian:bookworm-slim"


# -- the zip ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def example_zip(tmp_path_factory) -> Path:
    return build_autograder("example", tmp_path_factory.mktemp("zip") / "autograder.zip", quiet=True)


def test_zip_layout(example_zip):
    with zipfile.ZipFile(example_zip) as zf:
        names = set(zf.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
        readme = zf.read("README.md").decode()
        reqs = zf.read("requirements.txt").decode()
        config = json.loads(zf.read("gradekit-autograder.json"))
    for script in ("setup.sh", "run_autograder"):
        assert script in names, f"{script} must be at the zip's root (Gradescope's spec)"
        assert modes[script] & stat.S_IXUSR, f"{script} must be executable"
    assert "graders/example/test_example.py" in names
    assert "assignments/example/assignment.toml" in names
    assert "assignments/example/public_tests/test_public.py" in names
    assert "gradekit/run/gradescope.py" in names and "reference/losses.py" in names
    leaked = [n for n in names if n.endswith("master.ipynb") or "/submissions/" in n or "__pycache__" in n]
    assert not leaked, f"the zip must not hold solutions, sample submissions or caches: {leaked}"
    pins = [line for line in reqs.splitlines() if line and not line.startswith("#")]
    assert pins and all("==" in p for p in pins), f"every requirement is pinned: {pins}"
    assert "requirements-torch.txt" not in names and config["torch"] is False  # the example uses no torch
    assert config["assignment"] == "example" and config["secret"]
    # The example lets its notebook use 1024 MB: more than Gradescope's 768 MB, said in the README.
    assert "768 MB" in readme and "Warnings" in readme and "limits.memory_mb" in readme


def test_zip_with_torch_pins_the_cpu_build(tmp_path):
    path = build_autograder("example", tmp_path / "a.zip", torch=True, quiet=True)
    with zipfile.ZipFile(path) as zf:
        torch_reqs = zf.read("requirements-torch.txt").decode()
        setup = zf.read("setup.sh").decode()
        readme = zf.read("README.md").decode()
    assert "torch==2.14.1" in torch_reqs and "torchvision==0.29.1" in torch_reqs
    assert "https://download.pytorch.org/whl/cpu" in setup and "GRADEKIT_WHEELHOUSE" in setup
    assert "CPU build" in readme


def test_minimal_requirements_are_the_engines():
    pypi, torch = requirements(ROOT, torch=False, minimal=True)
    names = {p.split("==")[0].lower() for p in pypi}
    assert {"numpy", "ipykernel", "jupyter_client", "nbformat", "nbclient", "pytest"} <= names
    assert "scipy" not in names and not torch


def test_resource_warnings_against_gradescope_defaults():
    a = load("example")
    warnings, memory, seconds = resource_warnings(a, torch=False)
    assert memory > 768 and any("768 MB" in w for w in warnings)
    small = dataclasses.replace(a, limits=a.limits.replace(memory_mb=400, total_timeout=60))
    assert resource_warnings(small, torch=False)[0] == []
    slow = dataclasses.replace(a, limits=a.limits.replace(memory_mb=400, total_timeout=900))
    assert any("10 minutes" in w for w in resource_warnings(slow, torch=False)[0])


def test_a_part_with_limits_of_its_own_sets_what_gradescope_must_give(tmp_path):
    """[[parts]]: the memory asked for is the largest part's (they run one at a time), the time
    all parts' together; a part that imports torch makes the zip a torch one."""
    from test_parts import SPEC, course_with_parts
    spec = SPEC.replace("submission_timeout = 14\n", "").replace(
        'questions = ["q3"]', 'questions = ["q3"]\n[parts.limits]\nmemory_mb = 1500\ntotal_timeout = 700')
    a = load("hw4", course_with_parts(tmp_path, spec))
    warnings, memory, seconds = resource_warnings(a, torch=False)
    assert memory - 1500 == resource_warnings(dataclasses.replace(a, parts=()), torch=False)[1] - 512
    assert seconds == 8 + 700 + 2 * a.limits.grading_allowance
    assert any("1500 MB" in w for w in warnings) and any("708 s" in w for w in warnings), warnings
    (a.root / "master_p2.ipynb").write_text('{"cells": [{"cell_type": "code", "source": "import torch"}]}')
    undeclared = dataclasses.replace(a, torch=None)  # what needs_torch looks at when a spec has no `torch`
    assert needs_torch(undeclared) and not needs_torch(dataclasses.replace(undeclared, parts=a.parts[:1]))


def test_data_sets_packed_or_missing_are_warned_about(tmp_path, monkeypatch):
    """2imm10-a2's real Tiny ImageNet cannot go into a zip: a big set and a missing one are
    both said, in the README and on stderr; a small one is packed without a word."""
    from gradekit.data.synth import synthesize
    from gradekit.tools import autograder_zip
    a = load("2imm10-a2")
    tiny, omniglot = tmp_path / "tiny", tmp_path / "omniglot"
    synthesize("tiny-imagenet", tiny, **dict(a.data_set("tiny").synth))
    monkeypatch.setenv("GRADEKIT_DATA_TINY", str(tiny))
    monkeypatch.setenv("GRADEKIT_DATA_OMNIGLOT", str(omniglot))  # not there
    path = build_autograder("2imm10-a2", tmp_path / "a.zip", quiet=True)
    with zipfile.ZipFile(path) as zf:
        names, readme = zf.namelist(), zf.read("README.md").decode()
    assert any(n.startswith("data/tiny/train/") for n in names) and not any(n.startswith("data/omniglot") for n in names)
    assert "the data set 'omniglot' is not at" in readme and "GRADEKIT_DATA_OMNIGLOT" in readme
    assert "data set 'tiny'" not in readme  # small: packed, nothing to say
    monkeypatch.setattr(autograder_zip, "DATA_WARN_MB", 0)
    build_autograder("2imm10-a2", tmp_path / "b.zip")
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        readme = zf.read("README.md").decode()
    assert "the data set 'tiny' adds 0 MB to the zip (more than 0 MB)" in readme, readme


# -- finding the notebook in /autograder/submission -------------------------------------
def _nb(path: Path, assignment: str | None) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    if assignment:
        nb.metadata["gradekit"] = {"assignment": assignment}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def test_find_notebook(tmp_path):
    one = tmp_path / "one"
    _nb(one / "hw.ipynb", None)
    (one / "notes.txt").parent.mkdir(exist_ok=True)
    (one / "notes.txt").write_text("hi")
    _nb(one / ".ipynb_checkpoints" / "hw-checkpoint.ipynb", "example")
    assert gradescope_submission(one, "example").source == "submission/hw.ipynb"

    several = tmp_path / "several"
    _nb(several / "scratch.ipynb", None)
    _nb(several / "sub" / "mine.ipynb", "example")
    _nb(several / "other.ipynb", "another-assignment")
    assert gradescope_submission(several, "example").source == "submission/sub/mine.ipynb"

    ambiguous = tmp_path / "ambiguous"
    _nb(ambiguous / "a.ipynb", None)
    _nb(ambiguous / "b.ipynb", None)
    assert "2 notebooks" in gradescope_submission(ambiguous, "example").rejected

    none = tmp_path / "none"
    none.mkdir()
    (none / "hw.py").write_text("print(1)")
    item = gradescope_submission(none, "example")
    assert item.missing and "no Jupyter notebook" in item.rejected and "hw.py" in item.rejected

    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "hw.ipynb").symlink_to("/etc/passwd")
    item = gradescope_submission(linked, "example")
    assert item.notebook is None and "a link, ignored" in item.rejected


# -- the zip, run as Gradescope runs it ---------------------------------------------------
TAMPER_CELL = r'''
import json, os, subprocess, sys
leaked = []
for p in ["/autograder/source/graders/example/test_example.py", "/autograder/source/gradekit-autograder.json",
          "/autograder/source/reference/losses.py", "/autograder/source/README.md"]:
    try:
        with open(p) as fh:
            fh.read()
        leaked.append(p)
    except Exception:
        pass
for d in ["/autograder/source", "/autograder/results", "/autograder/submission"]:
    try:
        if os.listdir(d):
            leaked.append(d)
    except Exception:
        pass
try:
    import reference  # noqa: F401
    leaked.append("import reference")
except Exception:
    pass
forged = json.dumps({"score": 999, "output": "forged", "tests": []})
for p in ["results.json", "/autograder/results/results.json", "/autograder/results/forged.json"]:
    try:
        with open(p, "w") as fh:
            fh.write(forged)
    except Exception:
        pass
# A process that outlives the kernel and keeps trying to forge the results.
subprocess.Popen([sys.executable, "-c",
    "import time\nfor _ in range(1200):\n    try:\n        open('/autograder/results/results.json', 'w').write('{\"score\": 999}')\n"
    "    except Exception:\n        pass\n    time.sleep(0.05)"], start_new_session=True,
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if leaked:  # a leak costs points, so the score comparison with `gradekit grade` catches it
    n_params_conv = -1
print("leaked:", leaked)
'''


def _submissions() -> dict[str, bytes]:
    a = load("example")
    master = nbformat.read(str(a.master_path), as_version=4)
    variants = {v["name"]: v for v in load_variants("example")}
    wrong = apply_variant(master, variants["softmax-over-wrong-axis"]["replace"] + variants["params-off-by-one"]["replace"])
    dies = copy.deepcopy(master)
    dies.cells.insert(1, nbformat.v4.new_code_cell("import os\nos._exit(3)"))
    tamper = copy.deepcopy(master)
    tamper.cells.append(nbformat.v4.new_code_cell(TAMPER_CELL))
    return {
        "correct": nbformat.writes(master).encode(),
        "wrong": nbformat.writes(wrong).encode(),
        "template": Path(a.template_path).read_bytes(),
        "dies": nbformat.writes(dies).encode(),
        "broken": b'{"cells": [ this is not a notebook',
        "tampering": nbformat.writes(tamper).encode(),
    }


def _docker_cli() -> str:
    """The Docker client, with an engine answering; fails under CI, skips elsewhere."""
    cli = os.environ.get("GRADEKIT_DOCKER") or ("/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker"))
    ok = bool(cli) and subprocess.run([cli, "info"], capture_output=True, timeout=60).returncode == 0
    if not ok and os.geteuid() == 0:
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure-docker.sh"), "--no-image"], capture_output=True, timeout=600)
        cli = cli or ("/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker"))
        ok = bool(cli) and subprocess.run([cli, "info"], capture_output=True, timeout=60).returncode == 0
    if not ok:
        msg = ("no Docker engine answers, so the Gradescope autograder cannot be run in a container. "
               "Start one with `bash scripts/ensure-docker.sh` (root, Debian), or see docs/gradescope.md.")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return cli


def _run(cmd: list[str], timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])}... failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _wheelhouse(reqs: str) -> Path:
    """Wheels for the zip's requirements, downloaded on the host once (pip takes the local
    copies), kept under .cache/ and reused while the requirements stay the same."""
    house = CACHE / "wheelhouse"
    stamp = CACHE / "wheelhouse.stamp"
    key = hashlib.sha256(reqs.encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == key and any(house.glob("*.whl")):
        return house
    house.mkdir(parents=True, exist_ok=True)
    req_file = CACHE / "requirements.txt"
    req_file.write_text(reqs)
    _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(house), "-r", str(req_file)])
    stamp.write_text(key)
    return house


def _python_base(cli: str) -> str:
    """The base image with Python and venv already installed, as setup.sh would install them
    (apt-get is the slow part of setup.sh; it changes only with the base image). Built once,
    kept; on a machine without it, setup.sh's own apt-get path is what builds it."""
    base_id = _run([cli, "image", "inspect", "--format", "{{.Id}}", BASE_IMAGE]).stdout.strip()
    tag = f"{IMAGE_REPO}-python:{hashlib.sha256(base_id.encode()).hexdigest()[:16]}"
    if _run([cli, "image", "inspect", tag], check=False).returncode == 0:
        return tag
    name = f"gk-gs-python-{os.getpid()}"
    _run([cli, "rm", "-f", name], check=False)
    try:
        _run([cli, "run", "--name", name, BASE_IMAGE, "bash", "-c",
              "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
              "apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates >/dev/null; "
              "rm -rf /var/lib/apt/lists/*"], timeout=900)
        _run([cli, "commit", name, tag])
    finally:
        _run([cli, "rm", "-f", name], check=False)
    return tag


def _image(cli: str, zip_path: Path, work: Path) -> tuple[str, float]:
    """The autograder image, as Gradescope builds it: zip unpacked in /autograder/source,
    setup.sh run as root. Tagged by the zip's hash and kept for the next run."""
    tag = f"{IMAGE_REPO}:{hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]}"
    if _run([cli, "image", "inspect", tag], check=False).returncode == 0:
        return tag, 0.0
    t0 = time.monotonic()
    if _run([cli, "image", "inspect", BASE_IMAGE], check=False).returncode != 0:
        env = dict(os.environ, DOCKER=cli)
        subprocess.run(["bash", str(ROOT / "scripts" / "build-base-image.sh")], env=env, check=True, timeout=600)
    with zipfile.ZipFile(zip_path) as zf:
        reqs = zf.read("requirements.txt").decode()
        source = work / "ctx" / "autograder" / "source"
        zf.extractall(source)
        for info in zf.infolist():  # zipfile drops modes; Gradescope keeps the executable bits
            os.chmod(source / info.filename, (info.external_attr >> 16) & 0o777 or 0o644)
    house = _wheelhouse(reqs)
    base = _python_base(cli)
    name = f"gk-gs-setup-{os.getpid()}"
    _run([cli, "rm", "-f", name], check=False)
    _run([cli, "create", "--name", name, "-v", f"{house}:/wheels:ro", "-e", "GRADEKIT_WHEELHOUSE=/wheels",
          base, "bash", "-c",
          "set -e; mkdir -p /autograder/results /autograder/submission; "
          "cp /autograder/source/run_autograder /autograder/run_autograder; "
          "cd /autograder/source && bash ./setup.sh"])
    try:
        _run([cli, "cp", str(work / "ctx" / "autograder"), f"{name}:/"])
        _run([cli, "start", "-a", name], timeout=900)
        _run([cli, "commit", "--change", "WORKDIR /autograder", name, tag])
    finally:
        _run([cli, "rm", "-f", name], check=False)
    # Keep only this zip's image: older ones (about 430 MB each) would pile up.
    old = _run([cli, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPO], check=False).stdout.split()
    for other in old:
        if other != tag:
            _run([cli, "rmi", other], check=False)
    return tag, time.monotonic() - t0


def _run_submission(cli: str, tag: str, name: str, data: bytes, work: Path) -> tuple[dict, str]:
    folder = work / "subs" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.ipynb").write_bytes(data)
    cname = f"gk-gs-{name}-{os.getpid()}"
    _run([cli, "rm", "-f", cname], check=False)
    # Gradescope's default container: 768 MB. No network: nothing may be downloaded now.
    _run([cli, "create", "--name", cname, "--network", "none", "--memory", "768m", "--memory-swap", "768m",
          tag, "bash", "-c", "cd /autograder && /autograder/run_autograder"])
    try:
        _run([cli, "cp", f"{folder}/.", f"{cname}:/autograder/submission"])
        proc = _run([cli, "start", "-a", cname], timeout=600)
        out = work / "results" / name
        out.mkdir(parents=True)
        _run([cli, "cp", f"{cname}:/autograder/results/.", str(out)])
        results = json.loads((out / "results.json").read_text())
        leftovers = sorted(p.name for p in out.iterdir() if p.name != "results.json")
        return results, proc.stdout + proc.stderr + (f"\nfiles in results: {leftovers}" if leftovers else "")
    finally:
        _run([cli, "rm", "-f", cname], check=False)


def _grade_on_host(subs: dict[str, bytes], work: Path) -> dict[str, dict]:
    from gradekit.run.batch import BatchOptions, grade_batch
    folder = work / "host-subs"
    folder.mkdir()
    for name, data in subs.items():
        (folder / f"{name}.ipynb").write_bytes(data)
    reports = grade_batch([folder], load("example"), work / "host-out", BatchOptions(workers=2, progress=False))
    return {Path(r.submission.submitter).stem: r.to_json() for r in reports}


@pytest.mark.docker
@pytest.mark.slow
def test_autograder_zip_in_a_gradescope_container(tmp_path):
    needs_root()
    cli = _docker_cli()
    t0 = time.monotonic()
    zip_path = build_autograder("example", tmp_path / "autograder.zip", minimal=True, secret="gradekit-test", quiet=True)
    tag, setup_s = _image(cli, zip_path, tmp_path)
    subs = _submissions()
    host = _grade_on_host(subs, tmp_path)
    seen, logs = {}, {}
    for name, data in subs.items():
        seen[name], logs[name] = _run_submission(cli, tag, name, data, tmp_path)
    took = time.monotonic() - t0
    print(f"\nzip {zip_path.stat().st_size} bytes; image {tag} ({'built in %.0f s' % setup_s if setup_s else 'cached'}); "
          f"whole test {took:.0f} s")
    for name in subs:
        print(f"  {name:10s} gradescope {seen[name]['score']:g}  gradekit grade {host[name]['score']:g}  "
              f"sandbox {seen[name].get('extra_data', {}).get('sandbox')}")

    for name in subs:
        why = f"{name}:\n{json.dumps(seen[name], indent=1)[:3000]}\n--- run_autograder output ---\n{logs[name][-3000:]}"
        assert seen[name]["score"] == pytest.approx(host[name]["score"]), why
        assert seen[name]["extra_data"]["sandbox"] in ("namespaces", "uid-drop"), why
        assert "forged" not in logs[name] or name == "tampering", why
    assert seen["correct"]["score"] == 5 and seen["wrong"]["score"] == 2 and seen["template"]["score"] == 0
    # Per-test visibility, times and readable output; the manual question is mentioned.
    tests = seen["correct"]["tests"]
    assert tests and all({"name", "score", "max_score", "visibility", "output", "execution_time"} <= set(t) for t in tests)
    assert "q4" in seen["correct"]["output"] and seen["correct"]["execution_time"] > 0
    failed = [t for t in seen["wrong"]["tests"] if t["status"] == "failed"]
    assert failed and all(t["output"].startswith("Failed") for t in failed)
    # Broken: a top-level message, no score.
    assert seen["broken"]["score"] == 0 and "could not be graded" in seen["broken"]["output"]
    # Tampering: nothing leaked (a leak would have cost points), the forged results were ignored
    # and reported, and only the trusted side's results.json is in /autograder/results.
    t = seen["tampering"]
    assert t["score"] == 5 and t["score"] != 999, json.dumps(t)[:2000]
    assert "results.json" in t.get("output", ""), "the notebook's own results.json should be reported"
    assert "files in results" not in logs["tampering"], logs["tampering"][-2000:]
    assert took < 600, f"the Gradescope container test took {took:.0f} s; keep it to a few minutes"
