"""The student bundle: what students need to check their notebook, and nothing hidden.

``gradekit assign ID`` writes ``build/student/ID.zip``::

    ID/ID.ipynb                          the student template (with [[parts]]: one per part,
                                         named as the part, e.g. ID/netid_hw4_p1.ipynb)
    ID/gradekit.toml                     makes the folder a course, so `gradekit check` finds it
    ID/assignments/ID/assignment.toml    the spec (questions, points, limits)
    ID/assignments/ID/public_tests/      the public tests
    ID/gradekit/                         the checker (the engine; no graders, no reference code)
    ID/README.md                         how to install and run the checker

No master notebook, no graders, no reference implementations: tests check this.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from .. import __version__
from ..course import CONFIG_NAME
from ..spec import Assignment

ENGINE = Path(__file__).resolve().parents[1]
CHECKER_REQUIREMENTS = ["numpy", "nbformat", "nbclient", "jupyter_client", "ipykernel", "pytest", "rich",
                        "jinja2", "markdown-it-py", "tomli"]  # tomli: Python 3.10 reads TOML with it


def readme(assignment: Assignment) -> str:
    aid = assignment.id
    if assignment.parts:
        names = [path.name for _, _, path in assignment.templates]
        yours = ("Your notebooks, one per part, are " + ", ".join(
            f"`{path.name}` ({part.title})" for part, _, path in assignment.templates)
            + ". Rename each with your netid in place of `netid` (each name must match "
            + ", ".join(f"`{p.pattern}`" for p in assignment.parts) + " respectively). Work in them, then "
            "check one against the public tests of its part, or the folder holding all of them:")
        run = f".venv/bin/python -m gradekit check {names[0]}\n.venv/bin/python -m gradekit check . -a {aid}"
        hand_in = "Hand in every part's notebook, named as above (not this folder)."
    else:
        yours = f"Your notebook is `{aid}.ipynb`. Work in it, then check it against the public tests:"
        run = f".venv/bin/python -m gradekit check {aid}.ipynb"
        hand_in = f"Hand in `{aid}.ipynb` (not this folder)."
    return f"""# {assignment.title}

{yours}

```
python -m venv .venv && .venv/bin/pip install {' '.join(CHECKER_REQUIREMENTS)}
{run}
```

(run these commands in this folder; on Windows use `.venv\\Scripts\\python`). The check runs
your notebook from top to bottom in a fresh kernel, then the public tests, and prints one
line per question. Passing the public tests does not guarantee full marks: hidden tests run
when you submit, on inputs of their own. Questions marked "graded by course staff" are
read by a person.

{hand_in}

Made by gradekit {__version__}.
"""


def _add(zf: zipfile.ZipFile, name: str, data: bytes | str) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o100644 << 16
    zf.writestr(info, data.encode() if isinstance(data, str) else data)


def write_bundle(assignment: Assignment, out: Path | None = None) -> Path:
    aid = assignment.id
    out = Path(out) if out else assignment.course / "build" / "student" / f"{aid}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for _, _, template in assignment.templates:  # one, or one per part
            _add(zf, f"{aid}/{template.name if assignment.parts else f'{aid}.ipynb'}", template.read_bytes())
        _add(zf, f"{aid}/{CONFIG_NAME}", f'# A gradekit course folder: `gradekit check` finds {aid} here.\ntitle = "{aid} (student bundle)"\n')
        _add(zf, f"{aid}/assignments/{aid}/assignment.toml", (assignment.root / "assignment.toml").read_bytes())
        if assignment.public_tests_dir.is_dir():
            for f in sorted(assignment.public_tests_dir.rglob("*.py")):
                _add(zf, f"{aid}/assignments/{aid}/public_tests/{f.relative_to(assignment.public_tests_dir).as_posix()}",
                     f.read_bytes())
        for f in sorted(ENGINE.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                _add(zf, f"{aid}/gradekit/{f.relative_to(ENGINE).as_posix()}", f.read_bytes())
        _add(zf, f"{aid}/README.md", readme(assignment))
    tmp.replace(out)
    return out
