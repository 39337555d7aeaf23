"""``gradekit assign``: make the student notebook from the master, and prove the graders right.

Solution markers in the master notebook (documented in docs/authoring.md):

* a block between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` lines becomes
  ``# YOUR CODE HERE`` + ``raise NotImplementedError()`` at the block's indentation;
* a line ending in ``# SOLUTION`` keeps what is left of ``=`` and gets ``...`` on the right
  (``n_params = 73856  # SOLUTION`` → ``n_params = ...  # YOUR ANSWER HERE``);
* in Markdown, text between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->``
  becomes ``*Your answer here.*``;
* a cell tagged ``solution`` is emptied; a cell tagged ``instructor`` is dropped.

The template carries ``metadata.gradekit`` (assignment id, questions and the names each must
define), so ``gradekit check`` can find its assignment. An assignment with ``[[parts]]`` gets
one template per part, made from that part's master, in ``student_templates/ID/`` and named
as the part's pattern asks (``*_hw4_p1.ipynb`` -> ``netid_hw4_p1.ipynb``); its metadata
names the part and lists that part's questions only. Outputs are cleared; the result is
deterministic, so a stale committed template is detectable.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

from ..spec import Assignment, Part

_BEGIN = re.compile(r"^(\s*)#+\s*BEGIN SOLUTION\b.*$", re.IGNORECASE)
_END = re.compile(r"^\s*#+\s*END SOLUTION\b.*$", re.IGNORECASE)
_LINE = re.compile(r"^(\s*)([^#\n]*?)\s*=\s*(.+?)\s*#\s*SOLUTION\s*$", re.IGNORECASE)
_MD = re.compile(r"<!--\s*BEGIN SOLUTION\s*-->.*?<!--\s*END SOLUTION\s*-->", re.IGNORECASE | re.DOTALL)


class MarkerError(ValueError):
    """A solution marker in the master is unbalanced; the message names the cell as Jupyter shows it."""


def _top_level_commas(text: str) -> int:
    depth, count = 0, 0
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        count += ch == "," and depth == 0
    return count


def strip_code(source: str, where: str = "") -> str:
    out: list[str] = []
    inside = False
    indent = ""
    begin_line = 0
    for n, line in enumerate(source.splitlines(), 1):
        if _BEGIN.match(line):
            if inside:
                raise MarkerError(f"{where}, line {n}: `# BEGIN SOLUTION` inside another solution block "
                                  "(close the first with `# END SOLUTION`)")
            inside, indent, begin_line = True, _BEGIN.match(line).group(1), n
            out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
            continue
        if _END.match(line):
            if not inside:
                raise MarkerError(f"{where}, line {n}: `# END SOLUTION` without a `# BEGIN SOLUTION` above it")
            inside = False
            continue
        if inside:
            continue
        m = _LINE.match(line)
        if m:
            targets = _top_level_commas(m.group(2)) + 1  # `a, b = 1, 2` needs `..., ...`
            out.append(f"{m.group(1)}{m.group(2)} = {', '.join(['...'] * targets)}  # YOUR ANSWER HERE")
            continue
        out.append(line)
    if inside:
        raise MarkerError(f"{where}: `# BEGIN SOLUTION` (line {begin_line}) has no `# END SOLUTION` after it; "
                          "add one where the solution ends, or the template would lose the rest of the cell")
    return "\n".join(out)


def cell_label(nb: nbformat.NotebookNode, index: int) -> str:
    """A cell as an instructor finds it in Jupyter: "code cell 4 (cell 7 of 12, `def pq_encode(...`)"."""
    cell = nb.cells[index]
    kind_number = sum(1 for c in nb.cells[:index + 1] if c.cell_type == cell.cell_type)
    head = (cell.source.strip().splitlines() or [""])[0][:50]
    return f"{cell.cell_type} cell {kind_number} (cell {index + 1} of {len(nb.cells)}, `{head}`)"


def make_template(master: nbformat.NotebookNode, assignment: Assignment,
                  part: Part | None = None) -> nbformat.NotebookNode:
    """The student template of ``master``; with ``part``, of that part's master: its metadata
    lists that part's questions only and names the part (``metadata.gradekit.part``), so intake
    and ``gradekit check`` know it even when the student misnames the file."""
    nb = copy.deepcopy(master)
    master_name = part.master.name if part is not None else assignment.master_path.name
    questions = assignment.only_part(part).questions if part is not None else assignment.questions
    cells = []
    for i, cell in enumerate(nb.cells):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if "instructor" in tags:
            continue
        if cell.cell_type == "code":
            cell.source = "# YOUR CODE HERE" if "solution" in tags else strip_code(cell.source, f"{master_name}, {cell_label(master, i)}")
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            cell.source = "*Your answer here.*" if "solution" in tags else _MD.sub("*Your answer here.*", cell.source)
        cell.metadata.pop("execution", None)
        cell.pop("attachments", None) if cell.cell_type == "code" else None
        cells.append(cell)
    nb.cells = cells
    for i, cell in enumerate(nb.cells):  # stable ids keep the template byte-for-byte reproducible
        cell["id"] = f"cell-{i:03d}"
    gk = {"assignment": assignment.id}
    if part is not None:
        gk["part"] = part.id
    gk["questions"] = [{"id": q.id, "points": q.points, "manual": q.manual, "defines": list(q.defines)}
                       for q in questions]
    nb.metadata = nbformat.NotebookNode({
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "gradekit": gk,
    })
    return nb


def template_text(assignment: Assignment, part: Part | None = None) -> str:
    """The template's text: of the assignment's master, or with ``part``, of that part's."""
    master_path = part.master if part is not None else assignment.master_path
    if not master_path.is_file():
        where = f"the master of part {part.id!r}" if part is not None else "the master notebook"
        raise MarkerError(f"{where} {master_path} does not exist")
    master = nbformat.read(str(master_path), as_version=4)
    return nbformat.writes(make_template(master, assignment, part)) + "\n"


def check_contract(assignment: Assignment, template: str, part: Part | None = None) -> list[str]:
    """Names each question must define should be visible in the template (the contract);
    with ``part``, that part's questions in that part's template."""
    problems = []
    try:  # the cells only: the metadata lists every name each question defines, so it would always match
        template = "\n".join(c.source for c in nbformat.reads(template, as_version=4).cells)
    except Exception:  # not a notebook's text: search it as it is
        pass
    questions = assignment.only_part(part).questions if part is not None else assignment.questions
    for q in questions:
        for name in q.defines:
            if not re.search(rf"\b{re.escape(name)}\b", template):
                where = f"the student template of {part.title}" if part is not None else "the student template"
                problems.append(f"question {q.id}: `{name}` is never mentioned in {where}")
    return problems


def check_contracts(assignment: Assignment) -> list[str]:
    """:func:`check_contract` on every template the assignment has (one per part with parts)."""
    return [p for part, _, _ in assignment.templates
            for p in check_contract(assignment, template_text(assignment, part), part)]


def write_templates(assignment: Assignment) -> list[Path]:
    """Write every student template (one, or one per part in ``student_templates/ID/``); all
    are made before any is written, so a marker error in one part writes nothing."""
    texts = [(path, template_text(assignment, part)) for part, _, path in assignment.templates]
    for path, text in texts:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return [path for path, _ in texts]


def write_template(assignment: Assignment) -> Path:
    """The one template of an assignment without parts (see :func:`write_templates`)."""
    if assignment.parts:
        raise ValueError(f"assignment {assignment.id!r} has parts: use write_templates (one template per part)")
    return write_templates(assignment)[0]


def stale_templates(assignment: Assignment) -> list[Path]:
    """The templates that are missing or differ from what the masters give now."""
    return [path for part, _, path in assignment.templates
            if not path.exists() or path.read_text() != template_text(assignment, part)]


def is_stale(assignment: Assignment) -> bool:
    return bool(stale_templates(assignment))
