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

Deep-learning assignments add (docs/authoring.md, "Deep-learning notebooks")::

    [[data]]                     # a data set the notebook reads, mounted read-only
    name = "shapes"              # the notebook finds it at $GRADEKIT_DATA/shapes
    format = "image-folder"      # gradekit.data.formats.FORMATS; checked before grading
    path = "data/shapes"         # relative to the course root, or absolute
    mount = true                 # false: for the graders only (held-out labels)

    [grading.parameters]         # injected after the cell tagged `parameters` (papermill's rule)
    EPOCHS = 1
    [grading.cpu_parameters]     # on top, when the kernel has no GPU
    DEVICE = "cpu"
    [grading.gpu_parameters]     # on top, when it has one
    DEVICE = "cuda"

    [submission]                 # files handed in beside the notebook
    files = ["weights/*.pt", "codes_*.npy"]
    max_file_mb = 50
    max_total_mb = 200

An assignment handed in as several notebooks ("parts", docs/authoring.md, "Several
notebooks")::

    submission_timeout = 1500    # seconds for all parts' notebooks together
                                 # (default: limits.total_timeout times the number of parts)
    [[parts]]
    id = "p1"
    title = "Problem 1"
    pattern = "*_hw4_p1.ipynb"   # fnmatch on the file name, case-insensitive
    questions = ["q1", "q2"]     # every question belongs to exactly one part
    master = "master_p1.ipynb"   # beside assignment.toml (the default: master_<id>.ipynb)
    [parts.limits]               # this part's own limits, in place of [limits] (any field)
    memory_mb = 3072
    total_timeout = 300
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
from pathlib import Path, PurePosixPath
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .course import find as find_course
from .model import GPU_MODES, Limits

#: When students see a test's outcome, in Gradescope's words; only "visible" shows its details
#: (the expected value, a plain assert's message), every other one only that it failed.
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")


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
    visibility: str | None = None  # its tests' visibility (None: the assignment's [grading] visibility)


@dataclasses.dataclass(frozen=True)
class DataSet:
    """A data set the assignment reads, kept by the instructor (never downloaded)."""
    name: str
    format: str
    path: Path                  # where it is on this machine
    mount: bool = True          # False: the graders read it; the kernel never sees it
    synth: tuple[tuple[str, Any], ...] = ()  # `gradekit data synth`'s sizes for a stand-in set

    @property
    def env_override(self) -> str:
        """``GRADEKIT_DATA_<NAME>``: this machine's copy, when it is elsewhere."""
        return "GRADEKIT_DATA_" + "".join(c if c.isalnum() else "_" for c in self.name.upper())


@dataclasses.dataclass(frozen=True)
class SubmissionFiles:
    """Files a submission may hand in beside its notebook (``[submission]``)."""
    patterns: tuple[str, ...] = ()
    max_file_mb: float = 50.0
    max_total_mb: float = 200.0
    max_count: int = 100

    def matches(self, relative: str) -> bool:
        """``relative`` (a POSIX path inside the submission) matches one of the patterns."""
        path = PurePosixPath(relative)
        return any(path.match(p) and len(path.parts) == len(PurePosixPath(p).parts) for p in self.patterns)


@dataclasses.dataclass(frozen=True)
class GradingParameters:
    """Values injected after the notebook's ``parameters`` cell (papermill's convention)."""
    common: dict[str, Any] = dataclasses.field(default_factory=dict)
    cpu: dict[str, Any] = dataclasses.field(default_factory=dict)
    gpu: dict[str, Any] = dataclasses.field(default_factory=dict)

    def for_device(self, has_gpu: bool) -> dict[str, Any]:
        return {**self.common, **(self.gpu if has_gpu else self.cpu)}


@dataclasses.dataclass(frozen=True)
class Part:
    """One notebook of a submission made of several (``[[parts]]``)."""
    id: str
    title: str                  # for people: "Problem 2"
    pattern: str                # fnmatch pattern of the notebook's file name: "*_hw4_p2.ipynb"
    questions: tuple[str, ...]  # the questions graded against this notebook's kernel
    master: Path                # the part's master notebook
    staff_only: bool = False    # every question is graded by staff: the notebook may be prose only
    limits: tuple[tuple[str, float], ...] = ()  # [parts.limits]: (field, value) in place of [limits]

    def matches(self, file_name: str) -> bool:
        """``file_name`` (the last component only) matches the pattern, case-insensitively."""
        return fnmatch.fnmatchcase(PurePosixPath(file_name).name.lower(), self.pattern.lower())

    def file_name(self, who: str) -> str:
        """A file name this part's pattern matches, made for ``who``: ``*`` read as ``who``
        and ``?`` as ``x`` (``*_hw4_p1.ipynb`` -> ``alice_hw4_p1.ipynb``); a pattern with
        ``[...]``, or one the result would not match, gives ``<who>_<part id>.ipynb``, which
        intake finds by the notebook's metadata only."""
        name = self.pattern.replace("*", who).replace("?", "x")
        if "[" in name or not self.matches(name):
            return f"{who}_{self.id}.ipynb"
        return name

    @property
    def template_name(self) -> str:
        """The file name of this part's student template, ``netid_hw4_p1.ipynb`` for
        ``*_hw4_p1.ipynb``: named as the part already; the student puts their netid in it."""
        return self.file_name("netid")

    @property
    def missing_reason(self) -> str:
        """What the student reads when no notebook for this part was handed in."""
        return f"no notebook for {self.title} found (expected a file named like `{self.pattern}`)"


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
    data: tuple[DataSet, ...] = ()
    torch: bool = True          # False: the kernel needs no torch (the light grading image will do)
    parameters: GradingParameters = GradingParameters()
    files: SubmissionFiles = SubmissionFiles()
    parts: tuple[Part, ...] = ()  # empty: one notebook holds every question
    submission_timeout: float | None = None  # with parts: seconds for all their notebooks together
    #: what students see of a test whose grader and question say nothing ([grading] visibility):
    #: "hidden" unless the spec says otherwise, so no expected value shows by accident
    visibility: str = "hidden"

    def part(self, part_id: str) -> Part:
        for p in self.parts:
            if p.id == part_id:
                return p
        raise SpecError(f"assignment {self.id!r} has no part {part_id!r} "
                        f"(it has: {', '.join(p.id for p in self.parts) or 'none'})")

    def part_of(self, question_id: str) -> Part | None:
        """The part holding the question (None: the assignment has no parts)."""
        return next((p for p in self.parts if question_id in p.questions), None)

    def only_part(self, part: Part) -> "Assignment":
        """This assignment as far as one part goes: its questions only, no parts (what one
        notebook of the submission is graded against: names it must define, outputs shown)."""
        return dataclasses.replace(self, questions=tuple(q for q in self.questions if q.id in part.questions), parts=())

    def part_limits(self, part: Part, limits: Limits) -> Limits:
        """The limits ``part``'s notebook runs under: the batch's ``limits``, with the part's
        own ``[parts.limits]`` in place of ``[limits]``, except where the batch's differ from
        ``[limits]`` (a command-line option applies to every part)."""
        return limits.replace(**{k: v for k, v in part.limits if getattr(limits, k) == getattr(self.limits, k)})

    def kernel_limits(self, limits: Limits) -> tuple[Limits, ...]:
        """The limits of each notebook one submission runs: one per part, else ``limits``."""
        return tuple(self.part_limits(p, limits) for p in self.parts) or (limits,)

    def time_budget(self, limits: Limits) -> float:
        """Seconds the notebooks of one submission may run together."""
        if not self.parts:
            return limits.total_timeout
        return self.submission_timeout or sum(one.total_timeout for one in self.kernel_limits(limits))

    def hard_wall(self, limits: Limits) -> float:
        """Seconds one submission's grading may take at most, end to end (all its parts)."""
        if not self.parts:
            return limits.hard_wall
        return self.time_budget(limits) + sum(one.grading_allowance for one in self.kernel_limits(limits))

    def data_set(self, name: str) -> DataSet:
        for d in self.data:
            if d.name == name:
                return d
        raise SpecError(f"assignment {self.id!r} has no data set {name!r} "
                        f"(it has: {', '.join(d.name for d in self.data) or 'none'})")

    def with_data(self, locations: dict[str, Path]) -> "Assignment":
        """The same assignment with some data sets found elsewhere on this machine
        (``--data NAME=DIR``; ``GRADEKIT_DATA_<NAME>`` in the environment is read by :func:`load`)."""
        unknown = set(locations) - {d.name for d in self.data}
        if unknown:
            raise SpecError(f"--data: assignment {self.id!r} has no data set {sorted(unknown)} "
                            f"(it has: {', '.join(d.name for d in self.data) or 'none'})")
        moved = [dataclasses.replace(d, path=Path(locations[d.name]).resolve()) if d.name in locations else d
                 for d in self.data]
        return dataclasses.replace(self, data=tuple(moved))

    @property
    def mounted_data(self) -> tuple[DataSet, ...]:
        return tuple(d for d in self.data if d.mount)

    @property
    def master_path(self) -> Path:
        return self.root / "master.ipynb"

    @property
    def public_tests_dir(self) -> Path:
        return self.root / "public_tests"

    @property
    def template_path(self) -> Path:
        """The student template of an assignment without parts (with parts: :attr:`templates`)."""
        return self.course / "student_templates" / f"{self.id}.ipynb"

    @property
    def templates(self) -> tuple[tuple["Part | None", Path, Path], ...]:
        """(part, its master, its student template) for each notebook students get: one
        ``(None, master.ipynb, student_templates/ID.ipynb)`` without parts; with parts, one
        per part, its template in ``student_templates/ID/`` named as :attr:`Part.template_name`."""
        if not self.parts:
            return ((None, self.master_path, self.template_path),)
        folder = self.course / "student_templates" / self.id
        return tuple((p, p.master, folder / p.template_name) for p in self.parts)

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
                visibility=_visibility(q.get("visibility"), f"question {q.get('id')!r}", spec_file),
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
    parts = _parts(raw.get("parts", []), questions, folder, spec_file, limits)
    budget = raw.get("submission_timeout")
    if budget is not None:
        if not parts:
            raise SpecError(f"{spec_file}: submission_timeout is for assignments handed in as several notebooks "
                            "([[parts]]); without parts, limits.total_timeout is the notebook's time limit")
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
            raise SpecError(f"{spec_file}: submission_timeout must be a positive number of seconds, not {budget!r}")
    return Assignment(
        id=assignment_id,
        title=raw.get("title", assignment_id),
        course=root,
        root=folder,
        graders_dir=root / "graders" / assignment_id,
        questions=tuple(questions),
        limits=limits,
        gpu=gpu,
        data=_data_sets(raw.get("data", []), root, spec_file),
        torch=bool(raw.get("torch", True)),
        parameters=_parameters(raw.get("grading", {}), spec_file),
        visibility=_visibility(raw.get("grading", {}).get("visibility"), "[grading]", spec_file) or "hidden",
        files=_submission_files(raw.get("submission", {}), spec_file),
        parts=parts,
        submission_timeout=None if budget is None else float(budget),
    )


def _part_limits(raw: Any, base: Limits, where: str) -> tuple[tuple[str, float], ...]:
    """A part's ``[parts.limits]``: known fields, values valid as :class:`Limits` takes them."""
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: limits must be a table ([parts.limits]), not {raw!r}")
    known = {f.name for f in dataclasses.fields(Limits)}
    unknown = set(raw) - known
    if unknown:
        raise SpecError(f"{where}: unknown limits {sorted(unknown)}; known: {sorted(known)}")
    try:
        dataclasses.replace(base, **raw)  # Limits checks each value
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{where}: {exc}") from None
    return tuple(sorted(raw.items()))


def _parts(raw: Any, questions: list[Question], folder: Path, spec_file: Path, limits: Limits) -> tuple[Part, ...]:
    """``[[parts]]``, checked: every question in exactly one part, ids and patterns distinct,
    a part's own ``limits`` valid on top of the assignment's."""
    if not raw:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise SpecError(f"{spec_file}: parts must be [[parts]] tables")
    known = [q.id for q in questions]
    parts: list[Part] = []
    owner: dict[str, str] = {}
    for i, p in enumerate(raw):
        missing = [k for k in ("id", "pattern", "questions") if k not in p]
        if missing:
            raise SpecError(f"{spec_file}: part #{i + 1} lacks {', '.join(repr(k) for k in missing)}")
        unknown = set(p) - {"id", "title", "pattern", "questions", "master", "limits"}
        if unknown:
            raise SpecError(f"{spec_file}: part #{i + 1}: unknown keys {sorted(unknown)}")
        pid, pattern = str(p["id"]), str(p["pattern"])
        if not valid_id(pid):
            raise SpecError(f"{spec_file}: part id {pid!r} must be a name (letters, digits, '-', '_' and '.')")
        if "/" in pattern or "\\" in pattern or not pattern.lower().endswith(".ipynb"):
            raise SpecError(f"{spec_file}: part {pid!r}: pattern {pattern!r} must be a file name pattern "
                            "ending in .ipynb, such as '*_hw4_p1.ipynb' (no folders)")
        qids = p["questions"]
        if not isinstance(qids, list) or not qids or not all(isinstance(q, str) for q in qids):
            raise SpecError(f"{spec_file}: part {pid!r}: questions must be a list of question ids, not {qids!r}")
        for qid in qids:
            if qid not in known:
                raise SpecError(f"{spec_file}: part {pid!r} names question {qid!r}, which the assignment does not "
                                f"have (it has: {', '.join(known)})")
            if qid in owner:
                raise SpecError(f"{spec_file}: question {qid!r} is in two parts, {owner[qid]!r} and {pid!r}; "
                                "each question belongs to exactly one part")
            owner[qid] = pid
        master = Path(str(p.get("master", f"master_{pid}.ipynb")))
        if master.is_absolute() or ".." in master.parts:
            raise SpecError(f"{spec_file}: part {pid!r}: master {str(master)!r} must be a path inside the "
                            "assignment's folder")
        own = _part_limits(p.get("limits", {}), limits, f"{spec_file}: part {pid!r}")
        parts.append(Part(pid, str(p.get("title", pid)), pattern, tuple(qids), folder / master,
                          staff_only=all(q.manual for q in questions if q.id in qids), limits=own))
    ids = [p.id for p in parts]
    if len(set(ids)) != len(ids):
        raise SpecError(f"{spec_file}: part ids repeat: {ids}")
    patterns = [p.pattern.lower() for p in parts]
    if len(set(patterns)) != len(patterns):
        raise SpecError(f"{spec_file}: two parts have the same pattern ({', '.join(p.pattern for p in parts)}); "
                        "each part's notebook must be told apart by its name")
    for a in parts:
        for b in parts:
            if a is not b and b.matches(a.pattern.replace("*", "x").replace("?", "x")):
                raise SpecError(f"{spec_file}: parts {a.id!r} and {b.id!r}: a notebook named like {a.pattern!r} "
                                f"also matches {b.pattern!r}; make the patterns tell the parts apart")
    orphans = [q for q in known if q not in owner]
    if orphans:
        raise SpecError(f"{spec_file}: question(s) {', '.join(orphans)} belong to no part; with [[parts]], "
                        "each question belongs to exactly one part (list it in that part's questions)")
    return tuple(parts)


def _data_sets(raw: list, root: Path, spec_file: Path) -> tuple[DataSet, ...]:
    sets: list[DataSet] = []
    if not raw:
        return ()
    from .data.formats import FORMATS  # the formats' names only; nothing is read here
    for i, d in enumerate(raw):
        if not isinstance(d, dict) or not {"name", "format", "path"} <= set(d):
            raise SpecError(f"{spec_file}: [[data]] #{i + 1} needs name, format and path")
        name, fmt = str(d["name"]), str(d["format"])
        if not name.isidentifier():
            raise SpecError(f"{spec_file}: data set name {name!r} must be a plain name (letters, digits, _)")
        if fmt not in FORMATS:
            raise SpecError(f"{spec_file}: data set {name!r}: format {fmt!r} is not one of {', '.join(FORMATS)}")
        unknown = set(d) - {"name", "format", "path", "mount", "synth"}
        if unknown:
            raise SpecError(f"{spec_file}: data set {name!r}: unknown keys {sorted(unknown)}")
        if not isinstance(d.get("synth", {}), dict):
            raise SpecError(f"{spec_file}: data set {name!r}: synth must be a table of sizes")
        data_set = DataSet(name, fmt, Path(), bool(d.get("mount", True)), tuple(sorted(d.get("synth", {}).items())))
        # this machine's copy: GRADEKIT_DATA_<NAME>, else the spec's path (relative to the course)
        path = Path(os.path.expanduser(os.environ.get(data_set.env_override) or str(d["path"])))
        sets.append(dataclasses.replace(data_set, path=path if path.is_absolute() else root / path))
    names = [d.name for d in sets]
    if len(set(names)) != len(names):
        raise SpecError(f"{spec_file}: data set names repeat: {names}")
    return tuple(sets)


def _visibility(value: Any, where: str, spec_file: Path) -> str | None:
    if value is not None and value not in VISIBILITIES:
        raise SpecError(f"{spec_file}: {where} visibility must be one of {', '.join(VISIBILITIES)}, not {value!r}")
    return value


def _parameters(grading: dict, spec_file: Path) -> GradingParameters:
    tables = {}
    for key in ("parameters", "cpu_parameters", "gpu_parameters"):
        table = grading.get(key, {})
        if not isinstance(table, dict) or not all(isinstance(k, str) and k.isidentifier() for k in table):
            raise SpecError(f"{spec_file}: [grading.{key}] must map Python names to values")
        tables[key] = dict(table)
    unknown = set(grading) - set(tables) - {"visibility"}
    if unknown:
        raise SpecError(f"{spec_file}: unknown [grading] keys {sorted(unknown)}")
    return GradingParameters(tables["parameters"], tables["cpu_parameters"], tables["gpu_parameters"])


def _submission_files(raw: dict, spec_file: Path) -> SubmissionFiles:
    unknown = set(raw) - {"files", "max_file_mb", "max_total_mb", "max_count"}
    if unknown:
        raise SpecError(f"{spec_file}: unknown [submission] keys {sorted(unknown)}")
    patterns = tuple(str(p) for p in raw.get("files", ()))
    for p in patterns:
        pure = PurePosixPath(p)
        if pure.is_absolute() or ".." in pure.parts or p.lower().endswith(".ipynb"):
            raise SpecError(f"{spec_file}: [submission] files pattern {p!r} must be relative, stay inside "
                            "the submission and not name notebooks")
    try:
        files = SubmissionFiles(patterns, float(raw.get("max_file_mb", 50)), float(raw.get("max_total_mb", 200)),
                                int(raw.get("max_count", 100)))
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{spec_file}: [submission]: {exc}") from None
    if min(files.max_file_mb, files.max_total_mb, files.max_count) <= 0:
        raise SpecError(f"{spec_file}: [submission] limits must be positive")
    return files
