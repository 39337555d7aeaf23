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
define), so ``gradekit check`` can find its assignment. Outputs are cleared; the result is
deterministic, so a stale committed template is detectable.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

from ..spec import Assignment

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


def make_template(master: nbformat.NotebookNode, assignment: Assignment) -> nbformat.NotebookNode:
    nb = copy.deepcopy(master)
    cells = []
    for i, cell in enumerate(nb.cells):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if "instructor" in tags:
            continue
        if cell.cell_type == "code":
            cell.source = "# YOUR CODE HERE" if "solution" in tags else strip_code(cell.source, f"{assignment.master_path.name}, {cell_label(master, i)}")
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
    nb.metadata = nbformat.NotebookNode({
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "gradekit": {"assignment": assignment.id, "questions": [
            {"id": q.id, "points": q.points, "manual": q.manual, "defines": list(q.defines)}
            for q in assignment.questions]},
    })
    return nb


def template_text(assignment: Assignment) -> str:
    master = nbformat.read(str(assignment.master_path), as_version=4)
    return nbformat.writes(make_template(master, assignment)) + "\n"


def check_contract(assignment: Assignment, template: str) -> list[str]:
    """Names each question must define should be visible in the template (the contract)."""
    problems = []
    for q in assignment.questions:
        for name in q.defines:
            if not re.search(rf"\b{re.escape(name)}\b", template):
                problems.append(f"question {q.id}: `{name}` is never mentioned in the student template")
    return problems


def write_template(assignment: Assignment) -> Path:
    path = assignment.template_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template_text(assignment))
    return path


def is_stale(assignment: Assignment) -> bool:
    path = assignment.template_path
    return not path.exists() or path.read_text() != template_text(assignment)
