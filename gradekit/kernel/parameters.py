"""Grading-time parameters, by papermill's convention.

A notebook's knobs (``EPOCHS``, ``TRAIN_SUBSET``, ``DEVICE``...) sit in a code cell tagged
``parameters``; the spec's ``[grading.parameters]`` overrides them with a cell inserted
right after it, tagged ``injected-parameters``, as papermill does (``papermill
--parameters``: the same placement and tags; written here, since papermill itself brings
an HTTP and cloud-storage stack into the trusted side for these few lines). Without a
tagged cell the values go first in the notebook, as papermill does too, and the report
says so: a notebook that then overwrites them is still bounded by the time limits.

Values are TOML's (strings, numbers, booleans, lists, tables), written with ``repr``,
which is valid Python for each of them.
"""
from __future__ import annotations

from typing import Any

import nbformat

from ..model import InjectedParameters

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def is_injected(cell) -> bool:
    """The cell gradekit put in (not the student's: not numbered, not graded)."""
    return INJECTED_TAG in (cell.get("metadata", {}).get("tags") or [])


def _tags(cell) -> list:
    tags = cell.get("metadata", {}).get("tags") or []
    return tags if isinstance(tags, list) else []


def inject(nb: nbformat.NotebookNode, values: dict[str, Any]) -> InjectedParameters | None:
    """Insert ``values`` after the first code cell tagged ``parameters`` (in place).

    Returns what was done, for the report; None when there is nothing to inject."""
    if not values:
        return None
    nb.cells = [c for c in nb.cells if not is_injected(c)]  # a student's forged one is dropped
    lines = ["# Parameters injected by gradekit for grading (papermill's convention)"]
    lines += [f"{name} = {value!r}" for name, value in values.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines) + "\n")
    cell.metadata["tags"] = [INJECTED_TAG]
    number = 0
    for index, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        number += 1
        if PARAMETERS_TAG in _tags(c):
            nb.cells.insert(index + 1, cell)
            return InjectedParameters(dict(values), number)
    nb.cells.insert(0, cell)
    return InjectedParameters(dict(values), None, note=(
        "No code cell tagged `parameters` was found, so the grading parameters ("
        + ", ".join(values) + ") were set before your first cell; if your notebook sets them again, "
        "it runs with its own values, within the time limits."))
