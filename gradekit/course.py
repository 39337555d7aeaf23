"""Which course gradekit works on: a folder with ``gradekit.toml`` at its root.

A course holds ``assignments/ID/`` (spec, master, public tests), ``graders/ID/`` (hidden)
and ``student_templates/``. It is found, in this order:

1. ``--course DIR`` (or ``GRADEKIT_COURSE``);
2. the nearest ``gradekit.toml`` in the working directory or above it (as git finds ``.git``);
3. the course bundled with gradekit's own repository (its ``assignments/`` beside the
   package), when gradekit runs from a checkout.

So a course can live in a repository of its own, with gradekit installed as a package
(``gradekit init DIR`` lays one out), and a copy of a course is graded as that copy.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
from pathlib import Path

CONFIG_NAME = "gradekit.toml"
ENV = "GRADEKIT_COURSE"
#: Where gradekit keeps what must not live in a course's repository (the course secrets).
HOME_ENV = "GRADEKIT_HOME"
#: gradekit's own checkout: its assignments are the default course.
BUNDLED = Path(__file__).resolve().parent.parent


class CourseError(ValueError):
    """No course could be found; the message says how to name one."""


@dataclasses.dataclass(frozen=True)
class Course:
    root: Path
    how: str          # how it was found, for the line gradekit prints

    @property
    def assignments_dir(self) -> Path:
        return self.root / "assignments"

    def assignment_ids(self) -> list[str]:
        return sorted(p.parent.name for p in self.assignments_dir.glob("*/assignment.toml"))

    def describe(self) -> str:
        return f"course {self.root} ({self.how})"

    def secret(self) -> str:
        """This course's grading secret, made on first use and kept outside the course
        (``$GRADEKIT_HOME/secrets/``, default ``~/.config/gradekit``; folder 0700, file 0600,
        so no sandboxed kernel's user can read it). Every submission's inputs depend on it:
        without it they could be predicted from the notebook alone. It stays the same for
        the course, so ``--resume`` keeps working."""
        home = Path(os.environ.get(HOME_ENV) or Path(os.environ.get("XDG_CONFIG_HOME") or "~/.config") / "gradekit")
        folder = home.expanduser() / "secrets"
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        path = folder / hashlib.sha256(str(self.root).encode()).hexdigest()[:24]
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        return path.read_text().strip()


def _is_course(d: Path) -> bool:
    return (d / CONFIG_NAME).is_file() or (d / "assignments").is_dir()


def find(explicit: str | Path | None = None, start: Path | None = None) -> Course:
    """The course to use (see the module doc)."""
    named = explicit or os.environ.get(ENV)
    if named:
        root = Path(named).expanduser().resolve()
        if not _is_course(root):
            raise CourseError(f"{root} is not a gradekit course: it has no {CONFIG_NAME} and no assignments/ "
                              f"(make one with: gradekit init {root})")
        return Course(root, "--course" if explicit else ENV)
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / CONFIG_NAME).is_file():
            return Course(d, f"{CONFIG_NAME} found from {here}" if d != here else CONFIG_NAME)
    if (BUNDLED / "assignments").is_dir():
        return Course(BUNDLED, "the course bundled with gradekit")
    raise CourseError(f"no gradekit course here: no {CONFIG_NAME} in {here} or above it. Run gradekit in a "
                      f"course folder, pass --course DIR, or make one with: gradekit init DIR")
