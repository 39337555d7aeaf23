"""Assignment specs: ``assignments/ID/assignment.toml``, read into plain dataclasses.

Example::

    title = "Softmax and friends"
    gpu = "none"                 # none | optional | required
    torch = false                # the kernel needs no torch: the light image is enough

    [limits]                     # any field of gradekit.model.Limits
    memory_mb = 1024
    cell_timeout = 30

    [[questions]]
    id = "q1"
    title = "Softmax with temperature"
    points = 2
    defines = ["softmax"]        # the contract: names the student must define

    [[questions]]
    id = "q4"
    title = "Why does product quantization speed up search?"
    points = 1
    manual = true                # graded by a person; shown as such in every report
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .course import find as find_course
from .model import GPU_MODES, Limits


class SpecError(ValueError):
    """The assignment is not set up right; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Question:
    id: str
    title: str
    points: float
    manual: bool = False
    defines: tuple[str, ...] = ()
    rtol: float | None = None
    atol: float | None = None
    shows: tuple[str, ...] = ()   # cell tags whose outputs (a plot, a table) the feedback shows


@dataclasses.dataclass(frozen=True)
class Assignment:
    id: str
    title: str
    course: Path                # the course root (see gradekit.course)
    root: Path                  # assignments/ID
    graders_dir: Path           # graders/ID (hidden)
    questions: tuple[Question, ...]
    limits: Limits
    gpu: str = "none"
    data_dir: Path | None = None
    torch: bool = True          # False: the kernel needs no torch (the light grading image will do)

    @property
    def master_path(self) -> Path:
        return self.root / "master.ipynb"

    @property
    def public_tests_dir(self) -> Path:
        return self.root / "public_tests"

    @property
    def template_path(self) -> Path:
        return self.course / "student_templates" / f"{self.id}.ipynb"

    @property
    def auto_points(self) -> float:
        return sum(q.points for q in self.questions if not q.manual)

    @property
    def total_points(self) -> float:
        return sum(q.points for q in self.questions)

    def question(self, qid: str) -> Question:
        for q in self.questions:
            if q.id == qid:
                return q
        raise SpecError(f"assignment {self.id!r} has no question {qid!r} "
                        f"(it has: {', '.join(q.id for q in self.questions)})")

    def secret_paths(self) -> tuple[Path, ...]:
        """What a student's kernel must never see: the whole project (graders, reference
        code, masters, tests, history) and wherever the reference package is installed."""
        paths = {self.course.resolve()}
        try:
            import reference
            paths.update(Path(p).resolve() for p in getattr(reference, "__path__", []))
        except ImportError:
            pass
        return tuple(sorted(paths))


def valid_id(assignment_id: str) -> bool:
    """Assignment ids are names (a folder under assignments/), never paths."""
    return (bool(assignment_id) and assignment_id not in (".", "..") and len(assignment_id) <= 100
            and all(c.isalnum() or c in "-_." for c in assignment_id))


def load(assignment_id: str, root: Path | None = None) -> Assignment:
    """The assignment ``assignment_id`` of the course at ``root`` (default: the course
    :func:`gradekit.course.find` finds)."""
    if not isinstance(assignment_id, str) or not valid_id(assignment_id):
        raise SpecError(f"{assignment_id!r} is not an assignment id (a name of letters, digits, '-', '_' and '.')")
    root = Path(root) if root is not None else find_course().root
    folder = root / "assignments" / assignment_id
    spec_file = folder / "assignment.toml"
    if not spec_file.is_file():
        known = sorted(p.name for p in (root / "assignments").glob("*/assignment.toml") for p in [p.parent])
        raise SpecError(f"no assignment {assignment_id!r}: {spec_file} does not exist"
                        + (f" (known: {', '.join(known)})" if known else ""))
    with spec_file.open("rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{spec_file}: {exc}") from None
    questions = []
    for i, q in enumerate(raw.get("questions", [])):
        try:
            questions.append(Question(
                id=str(q["id"]), title=str(q.get("title", q["id"])), points=float(q["points"]),
                manual=bool(q.get("manual", False)), defines=tuple(q.get("defines", ())),
                rtol=q.get("rtol"), atol=q.get("atol"), shows=tuple(str(t) for t in q.get("shows", ())),
            ))
        except KeyError as exc:
            raise SpecError(f"{spec_file}: question #{i + 1} lacks {exc.args[0]!r}") from None
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise SpecError(f"{spec_file}: question ids repeat: {ids}")
    if not questions:
        raise SpecError(f"{spec_file}: no [[questions]]")
    limit_fields = {f.name for f in dataclasses.fields(Limits)}
    unknown = set(raw.get("limits", {})) - limit_fields
    if unknown:
        raise SpecError(f"{spec_file}: unknown limits {sorted(unknown)}; known: {sorted(limit_fields)}")
    try:
        limits = Limits(**raw.get("limits", {}))
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{spec_file}: {exc}") from None
    gpu = raw.get("gpu", "none")
    if gpu not in GPU_MODES:
        raise SpecError(f"{spec_file}: gpu must be one of {GPU_MODES}, not {gpu!r}")
    data_dir = raw.get("data_dir")
    return Assignment(
        id=assignment_id,
        title=raw.get("title", assignment_id),
        course=root,
        root=folder,
        graders_dir=root / "graders" / assignment_id,
        questions=tuple(questions),
        limits=limits,
        gpu=gpu,
        data_dir=(folder / data_dir) if data_dir else None,
        torch=bool(raw.get("torch", True)),
    )
