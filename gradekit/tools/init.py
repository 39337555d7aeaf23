"""``gradekit init DIR``: a new course folder, in a repository of its own if you like.

It lays out ``gradekit.toml``, ``assignments/``, ``graders/`` and ``student_templates/``,
with the bundled ``example`` assignment as a starting point (spec, master, public tests,
graders), and a ``.gitignore`` for grading output.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..course import BUNDLED, CONFIG_NAME

GITIGNORE = "build/\ngradekit-out/\n*.pyc\n__pycache__/\n"


def init_course(target: Path, title: str = "My course") -> list[Path]:
    target = Path(target).resolve()
    if (target / CONFIG_NAME).exists():
        raise FileExistsError(f"{target} is already a gradekit course ({CONFIG_NAME} exists)")
    made = []
    for d in ("assignments", "graders", "student_templates"):
        (target / d).mkdir(parents=True, exist_ok=True)
        made.append(target / d)
    (target / CONFIG_NAME).write_text(f'# The root of a gradekit course: gradekit finds it from here or any folder below.\ntitle = "{title}"\n')
    (target / ".gitignore").write_text(GITIGNORE)
    made += [target / CONFIG_NAME, target / ".gitignore"]
    example = BUNDLED / "assignments" / "example"
    if example.is_dir() and not (target / "assignments" / "example").exists():
        shutil.copytree(example, target / "assignments" / "example", ignore=shutil.ignore_patterns("submissions", "__pycache__"))
        shutil.copytree(BUNDLED / "graders" / "example", target / "graders" / "example",
                        ignore=shutil.ignore_patterns("__pycache__"))
        made += [target / "assignments" / "example", target / "graders" / "example"]
    return made
