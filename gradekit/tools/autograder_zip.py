"""Build a Gradescope autograder zip: ``gradekit gradescope ID -o autograder.zip``.

Gradescope's specification (https://gradescope-autograders.readthedocs.io/en/latest/specs/):
the zip holds ``setup.sh`` (run once, as root, when Gradescope builds the image; it
installs everything) and ``run_autograder`` (run once per submission, as root, in
``/autograder``); the zip is unpacked into ``/autograder/source``, the student's files land
in ``/autograder/submission``, and ``/autograder/results/results.json`` is what Gradescope
reads. Nothing is downloaded at grading time.

What the zip holds (unpacked, ``/autograder/source`` is the project root of a small copy of
the project, so :func:`gradekit.spec.load` finds the assignment there)::

    setup.sh  run_autograder  README.md (resources, pins, warnings)
    gradekit/                 the engine (also copied by setup.sh to /opt/gradekit/engine,
                              the only part the student's side can import)
    reference/                reference implementations      } hidden from the student's
    assignments/ID/           spec, public tests, data       } kernel: /autograder/source
    graders/ID/               hidden graders                 } is covered or made 0700
    requirements.txt          pinned packages (PyPI)
    requirements-torch.txt    torch/torchvision pins (PyTorch's CPU index), when needed
    gradekit-autograder.json  what run_autograder needs (assignment, seed secret, sizes)

The master notebook (it holds the solutions) and everything else of the assignment folder
stays out. See docs/gradescope.md and :mod:`gradekit.run.gradescope`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sys
import zipfile
from pathlib import Path

from .. import __version__
from ..run.gradescope import CONFIG as RUNNER_CONFIG
from ..sandbox.cleanup import remove_tree
from ..sandbox.docker.image import source_root
from ..spec import Assignment, SpecError, load

ENGINE = Path(__file__).resolve().parents[1]             # the gradekit package
REFERENCE = Path(__file__).resolve().parents[2] / "reference"

#: Gradescope's default autograder container: 768 MB of memory, a 10-minute timeout.
GRADESCOPE_MEMORY_MB = 768
GRADESCOPE_TIMEOUT_S = 600
#: Memory of the trusted side (Python, pytest, jupyter_client, numpy) next to the kernel's
#: limit, measured roughly; torch adds its own import to the trusted side when graders use it.
TRUSTED_OVERHEAD_MB = 200
TRUSTED_OVERHEAD_TORCH_MB = 600
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: Above this, a packed data set gets a warning (gradekit's own threshold: Gradescope publishes
#: no zip size we could check, and a big zip is slow to upload and to build into an image).
DATA_WARN_MB = 100
#: Where the image requirement pins live (the Docker grading image uses the same files).
IMAGE_REQUIREMENTS = Path("scripts") / "image"
#: The engine's own packages that the grading image does not list (the trusted side runs
#: pytest and nbclient; the kernel does not need them). Python 3.10 needs tomli.
ENGINE_PINS = ["nbformat==5.11.1", "nbclient==0.11.0", "pytest==9.2.0", "rich==15.0.0", "jinja2==3.1.6",
               "markdown-it-py==4.3.0", "tomli==2.2.1; python_version < '3.11'"]
#: The packages a notebook's kernel needs at the least (``minimal=True``).
MINIMAL_IMAGE_PACKAGES = {"numpy", "ipykernel", "jupyter_client", "pyzmq"}
_SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".git", "submissions"}


def _read_pins(path: Path) -> list[str]:
    if not path.is_file():
        raise SpecError(f"{path} is missing: the Gradescope zip takes its package pins from the grading image's "
                        "requirement files")
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()
            if line.split("#", 1)[0].strip()]


def _name(pin: str) -> str:
    return re.split(r"[=<>!~;\[ ]", pin, maxsplit=1)[0].strip().lower().replace("-", "_")


def requirements(project_root: Path, *, torch: bool, minimal: bool = False) -> tuple[list[str], list[str]]:
    """(PyPI pins, torch pins). ``minimal``: only what the kernel and the engine need
    (numpy, ipykernel, ...), not the grading image's whole scientific stack."""
    folder = project_root / IMAGE_REQUIREMENTS
    image = _read_pins(folder / "requirements.txt")
    if minimal:
        image = [p for p in image if _name(p) in MINIMAL_IMAGE_PACKAGES]
    pypi = image + [p for p in ENGINE_PINS if _name(p) not in {_name(q) for q in image}]
    torch_pins = []
    if torch:
        torch_pins = _read_pins(folder / "requirements-torch.txt") + _read_pins(folder / "requirements-torchvision.txt")
    return pypi, torch_pins


def needs_torch(assignment: Assignment) -> bool:
    """The spec's ``torch`` field when it has one, else whether anything of the assignment
    (master, public tests, graders) imports torch."""
    declared = getattr(assignment, "torch", None)
    if isinstance(declared, bool):
        return declared
    pattern = re.compile(r"^\s*(import torch|from torch)", re.M)
    masters = [master for _, master, _ in assignment.templates]  # each part's, with [[parts]]
    sources = [_code_of(m) for m in masters if m.is_file()]
    sources += [f.read_text(errors="replace") for f in (*assignment.public_tests_dir.rglob("*.py"),
                                                        *assignment.graders_dir.rglob("*.py")) if f.is_file()]
    return any(pattern.search(text) for text in sources)


def _code_of(notebook: Path) -> str:
    """A trusted notebook's code cells, one after the other (its JSON would hide ``import`` behind quotes)."""
    nb = json.loads(notebook.read_text(errors="replace"))
    return "\n".join("".join(c.get("source", "")) for c in nb.get("cells", []) if c.get("cell_type") == "code")


def resource_warnings(assignment: Assignment, *, torch: bool) -> tuple[list[str], int, int]:
    """Warnings when the assignment needs more than Gradescope's defaults; and the memory
    (MB) and time (s) it needs."""
    lim = assignment.limits
    kernel_mb = max(one.memory_mb for one in assignment.kernel_limits(lim))  # parts run one at a time
    memory = kernel_mb + (TRUSTED_OVERHEAD_TORCH_MB if torch else TRUSTED_OVERHEAD_MB)
    seconds = int(assignment.hard_wall(lim))  # with [[parts]]: all their notebooks, and grading each
    warnings = []
    if memory > GRADESCOPE_MEMORY_MB:
        warnings.append(
            f"the notebook may use {kernel_mb} MB (limits.memory_mb) and the grader about "
            f"{memory - kernel_mb} MB more, {memory} MB in all: more than Gradescope's default "
            f"{GRADESCOPE_MEMORY_MB} MB. Give the autograder more memory in Gradescope's autograder "
            f"settings, or lower limits.memory_mb in assignments/{assignment.id}/assignment.toml.")
    if seconds > GRADESCOPE_TIMEOUT_S:
        warnings.append(
            f"the notebook may run {assignment.time_budget(lim):g} s (limits.total_timeout"
            f"{', of every part together' if assignment.parts else ''}), {seconds} s with "
            f"grading (limits.grading_allowance): more than Gradescope's default timeout of {GRADESCOPE_TIMEOUT_S // 60} minutes. Raise "
            f"the autograder timeout in Gradescope's settings, or lower limits.total_timeout.")
    if assignment.gpu == "required":
        warnings.append("the assignment requires a GPU, and Gradescope offers none: its notebooks will run on "
                        "the CPU (PyTorch's CPU build), and may not finish in time.")
    return warnings, memory, seconds


def data_warnings(data_set, packed_bytes: int) -> list[str]:
    """What the staff must know about a data set packed into the zip (``packed_bytes``), or not."""
    where = f"set GRADEKIT_DATA_{data_set.name.upper()} in the autograder's environment to a copy on the grading machine"
    if not data_set.path.is_dir():
        return [f"the data set {data_set.name!r} is not at {data_set.path}, so the zip holds none: graded "
                f"notebooks will stop at their first read of it. Build the zip where the set is "
                f"(GRADEKIT_DATA_{data_set.name.upper()}=DIR gradekit gradescope ...), or {where}."]
    mb = packed_bytes / 2**20
    if mb > DATA_WARN_MB:
        return [f"the data set {data_set.name!r} adds {mb:.0f} MB to the zip (more than {DATA_WARN_MB} MB): a zip "
                f"this large is slow to upload and to build on Gradescope, and may be refused. Grade such an "
                f"assignment with `gradekit grade` on your own machines, or {where}."]
    return []


def _files(folder: Path):
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part in _SKIP_PARTS for part in rel.parts) or p.suffix in (".pyc", ".pyo"):
            continue
        if p.is_symlink():
            raise SpecError(f"{p} is a symbolic link; the autograder zip takes plain files only")
        if p.is_file():
            yield p


def _add(zf: zipfile.ZipFile, arcname: str, data: bytes | str, executable: bool = False) -> None:
    info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible bytes
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
    zf.writestr(info, data.encode() if isinstance(data, str) else data)


def build_autograder(assignment_id: str, output_path: Path, *, torch: bool | None = None, minimal: bool = False,
                     project_root: Path | None = None, secret: str | None = None, quiet: bool = False) -> Path:
    """Write the autograder zip for ``assignment_id`` to ``output_path`` and return its path.

    ``torch``: install PyTorch's CPU build in setup.sh (default: when the assignment needs
    it, see :func:`needs_torch`). ``minimal``: install only numpy and the engine's packages,
    not the grading image's whole scientific stack (scipy, pandas, ...). ``secret`` is mixed
    into each submission's seed (random per zip unless given)."""
    assignment = load(assignment_id, project_root)
    root = source_root() or ENGINE.parent  # the image's requirement pins live in gradekit's source
    if not assignment.graders_dir.is_dir():
        raise SpecError(f"assignment {assignment_id!r} has no graders folder ({assignment.graders_dir})")
    torch = needs_torch(assignment) if torch is None else torch
    pypi, torch_pins = requirements(root, torch=torch, minimal=minimal)
    warnings, memory, seconds = resource_warnings(assignment, torch=torch)
    members: dict[str, bytes] = {}
    for package, folder in (("gradekit", ENGINE), ("reference", REFERENCE)):
        for f in _files(folder):
            members[f"{package}/{f.relative_to(folder).as_posix()}"] = f.read_bytes()
    a_root = assignment.root
    keep = [a_root / "assignment.toml", *(_files(assignment.public_tests_dir) if assignment.public_tests_dir.is_dir() else [])]
    for f in keep:
        members[f"assignments/{assignment.id}/{f.relative_to(a_root).as_posix()}"] = f.read_bytes()
    for d in assignment.data:  # packed as data/<name>/ (or named on the grading machine: GRADEKIT_DATA_<NAME>)
        packed = 0
        if d.path.is_dir():
            for f in _files(d.path):
                data = members[f"data/{d.name}/{f.relative_to(d.path).as_posix()}"] = f.read_bytes()
                packed += len(data)
        warnings += data_warnings(d, packed)
    for f in _files(assignment.graders_dir):
        members[f"graders/{assignment.id}/{f.relative_to(assignment.graders_dir).as_posix()}"] = f.read_bytes()
    members["requirements.txt"] = ("# Installed by setup.sh from PyPI (pinned).\n" + "\n".join(pypi) + "\n").encode()
    if torch_pins:
        members["requirements-torch.txt"] = (f"# Installed by setup.sh from PyTorch's CPU index ({TORCH_CPU_INDEX}).\n"
                                             + "\n".join(torch_pins) + "\n").encode()
    config = {"assignment": assignment.id, "gradekit": __version__, "torch": torch, "minimal": minimal,
              "secret": secret if secret is not None else secrets.token_hex(16),
              "memory_mb_needed": memory, "seconds_needed": seconds, "warnings": warnings}
    members[RUNNER_CONFIG] = (json.dumps(config, indent=2) + "\n").encode()
    members["README.md"] = readme(assignment, pypi, torch_pins, warnings, memory, seconds, torch=torch).encode()
    content_hash = hashlib.sha256(b"".join(k.encode() + b"\0" + v for k, v in sorted(members.items())
                                           if k != RUNNER_CONFIG)).hexdigest()[:16]

    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        _add(zf, "setup.sh", SETUP_SH, executable=True)
        _add(zf, "run_autograder", RUN_AUTOGRADER, executable=True)
        for name in sorted(members):
            _add(zf, name, members[name])
        zf.comment = f"gradekit {__version__} autograder for {assignment.id} ({content_hash})".encode()
    tmp.replace(output_path)
    if not quiet:
        for w in warnings:
            print(f"gradekit: warning: {w}", file=sys.stderr)
    return output_path


def try_autograder(zip_path: Path, notebook: Path, *, keep: Path | None = None) -> str:
    """Run an autograder zip on one notebook the way Gradescope does, on this machine: the
    zip unpacked as ``/autograder/source`` (in a temporary folder), the notebook as the
    submission, and run_autograder's command with this interpreter. Returns a one-line
    summary; ``results.json`` is printed by the runner and kept under ``keep`` when given."""
    import shutil
    import subprocess
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="gk-autograder-"))
    try:
        source, submission, results = root / "source", root / "submission", root / "results"
        for d in (source, submission, results):
            d.mkdir()
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(source)
        shutil.copy(notebook, submission / Path(notebook).name)
        env = dict(os.environ, PYTHONPATH=str(source))
        proc = subprocess.run([sys.executable, "-m", "gradekit.run.gradescope", "--source", str(source),
                               "--submission", str(submission), "--results", str(results)],
                              env=env, cwd=root, capture_output=True, text=True, timeout=3600)
        print(proc.stdout, end="")
        print(proc.stderr, end="", file=sys.stderr)
        out = json.loads((results / "results.json").read_text())
        if keep is not None:
            Path(keep).write_text(json.dumps(out, indent=2))
        return f"score {out.get('score')} ({len(out.get('tests', []))} tests)"
    finally:
        remove_tree(root)


def readme(assignment: Assignment, pypi: list[str], torch_pins: list[str], warnings: list[str],
           memory: int, seconds: int, *, torch: bool) -> str:
    lim = assignment.limits
    overhead = TRUSTED_OVERHEAD_TORCH_MB if torch else TRUSTED_OVERHEAD_MB
    lines = [
        f"# Gradescope autograder: {assignment.title} (`{assignment.id}`)", "",
        f"Built by gradekit {__version__}. Upload this zip as the assignment's autograder "
        "(Configure Autograder → Zip file upload), base image **Ubuntu 22.04**.", "",
        "## Resources", "",
        "| | this assignment needs | Gradescope's default |", "|---|---|---|",
        f"| memory | {memory} MB ({memory - overhead} MB for the notebook + the grader) | {GRADESCOPE_MEMORY_MB} MB |",
        f"| time | {seconds} s ({assignment.time_budget(lim):g} s for the notebook"
        f"{'s' if assignment.parts else ''}, {max(one.cell_timeout for one in assignment.kernel_limits(lim)):g} s "
        "per cell at most, + grading) "
        f"| {GRADESCOPE_TIMEOUT_S} s |",
        "| GPU | " + {"none": "none", "optional": "optional (runs on the CPU here)",
                     "required": "required (Gradescope has none)"}[assignment.gpu] + " | none |", "",
    ]
    if warnings:
        lines += ["**Warnings:**", ""] + [f"- {w}" for w in warnings] + [""]
    else:
        lines += ["The defaults are enough.", ""]
    lines += [
        "## Questions", "",
        "| question | points | graded |", "|---|---|---|",
        *[f"| {q.id}: {q.title} | {q.points:g} | {'by staff (manual)' if q.manual else 'automatically'} |"
          for q in assignment.questions], "",
        "## What setup.sh installs", "",
        "Python ≥ 3.11 (Ubuntu 22.04: `python3.11` from its own archive), a venv in `/opt/gradekit/venv`, "
        "and these pins (nothing else is downloaded, at setup or grading time):", "",
        "```", *pypi, "```", "",
    ]
    if torch_pins:
        lines += [f"PyTorch, CPU build, from `{TORCH_CPU_INDEX}` (Gradescope has no GPU):", "",
                  "```", *torch_pins, "```", ""]
    else:
        lines += ["No PyTorch: this assignment does not use it.", ""]
    lines += [
        "Offline (a local test image): set `GRADEKIT_WHEELHOUSE=/path/to/wheels` and setup.sh installs "
        "with `pip --no-index --find-links` from there.", "",
        "## How a submission is graded", "",
        "`run_autograder` finds the one `.ipynb` in `/autograder/submission` (several: the one whose metadata "
        "names this assignment), then, as root, runs `python -m gradekit.run.gradescope`. The notebook's kernel "
        "runs as the unprivileged user `gradekit-sandbox`: it cannot read `/autograder/source` (graders, "
        "reference code, this file), nor write `/autograder/results`; where the container allows namespaces "
        "it has no network either. The graders run on the trusted side and write `results.json`.", "",
    ]
    return "\n".join(lines)


SETUP_SH = r"""#!/usr/bin/env bash
# gradekit: Gradescope runs this once, as root, when it builds the autograder image.
# Installs Python >= 3.11 and the pinned packages into /opt/gradekit/venv, and the engine
# (gradekit/ only, no graders, no reference code) where the sandboxed kernel may import it.
# Offline: GRADEKIT_WHEELHOUSE=/dir/with/wheels installs from there (pip --no-index).
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV=/opt/gradekit/venv
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
say() { printf 'gradekit setup: %s\n' "$*" >&2; }

new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
PY=""
for c in python3.12 python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 && new_enough "$c" && "$c" -c 'import ensurepip, venv' 2>/dev/null; then
        PY="$(command -v "$c")"; break
    fi
done
if [ -z "$PY" ]; then
    say "installing Python"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates >/dev/null
    if new_enough python3; then
        PY="$(command -v python3)"
    else  # Ubuntu 22.04's python3 is 3.10; its archive has 3.11 too
        apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv >/dev/null
        PY="$(command -v python3.11)"
    fi
    rm -rf /var/lib/apt/lists/*
fi
say "$("$PY" --version) -> $VENV"
"$PY" -m venv "$VENV"
PIP="$VENV/bin/pip"

if [ -n "${GRADEKIT_WHEELHOUSE:-}" ]; then
    say "installing from the wheelhouse $GRADEKIT_WHEELHOUSE (offline)"
    [ -f "$SRC/requirements-torch.txt" ] && "$PIP" install -q --no-index --find-links "$GRADEKIT_WHEELHOUSE" -r "$SRC/requirements-torch.txt"
    "$PIP" install -q --no-index --find-links "$GRADEKIT_WHEELHOUSE" -r "$SRC/requirements.txt"
else
    if [ -f "$SRC/requirements-torch.txt" ]; then
        say "installing PyTorch (CPU build)"
        "$PIP" install -q --index-url https://download.pytorch.org/whl/cpu -r "$SRC/requirements-torch.txt"
    fi
    "$PIP" install -q -r "$SRC/requirements.txt"
fi

# The engine, importable by everything run with the venv's Python (the sandbox's launcher
# needs it before it drops privileges). Graders and reference code stay in $SRC, hidden.
mkdir -p /opt/gradekit/engine
rm -rf /opt/gradekit/engine/gradekit
cp -R "$SRC/gradekit" /opt/gradekit/engine/gradekit
chmod -R a+rX /opt/gradekit
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo /opt/gradekit/engine >"$SITE/gradekit-engine.pth"
"$VENV/bin/python" -c 'import gradekit, nbclient, ipykernel, numpy, pytest'
say "done"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# gradekit: Gradescope runs this once per submission, as root, in /autograder.
# The trusted side (this script and gradekit.run.gradescope) may read the graders and the
# reference code; the student's kernel runs as gradekit-sandbox and cannot.
set -uo pipefail
SRC=/autograder/source
RESULTS=/autograder/results
mkdir -p "$RESULTS"
cd /autograder
PYTHONPATH="$SRC" /opt/gradekit/venv/bin/python -m gradekit.run.gradescope \
    --source "$SRC" --submission /autograder/submission --results "$RESULTS"
rc=$?
if [ "$rc" != 0 ] || [ ! -s "$RESULTS/results.json" ]; then
    echo "gradekit: the autograder failed (exit $rc); see the output above" >&2
    if [ ! -s "$RESULTS/results.json" ]; then
        printf '{"score": 0, "output": "**The autograder itself failed** (exit %s), so this submission could not be graded. Course staff can see why in the autograder output; please tell them.", "tests": []}\n' "$rc" >"$RESULTS/results.json"
    fi
fi
chmod 0755 "$RESULTS" 2>/dev/null || true
chmod 0644 "$RESULTS/results.json" 2>/dev/null || true
exit 0
"""
