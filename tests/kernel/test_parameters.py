"""Grading-time parameters: papermill's placement, a forged injected cell dropped."""
from __future__ import annotations

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from gradekit.kernel.parameters import INJECTED_TAG, inject, is_injected


def notebook(tagged: bool = True):
    params = new_code_cell("EPOCHS = 50\nLR = 0.1")
    if tagged:
        params.metadata["tags"] = ["parameters"]
    forged = new_code_cell("EPOCHS = 10**9")
    forged.metadata["tags"] = [INJECTED_TAG]
    return new_notebook(cells=[new_markdown_cell("# hw"), new_code_cell("import torch"), params, forged,
                               new_code_cell("train(EPOCHS)")])


def test_values_go_right_after_the_tagged_cell():
    nb = notebook()
    done = inject(nb, {"EPOCHS": 2, "DEVICE": "cpu", "SIZES": [1, 2]})
    assert done.tagged_cell == 2 and done.note == ""
    injected = [c for c in nb.cells if is_injected(c)]
    assert len(injected) == 1 and nb.cells.index(injected[0]) == 3   # the forged one is gone
    namespace = {}
    exec(injected[0].source, namespace)
    assert (namespace["EPOCHS"], namespace["DEVICE"], namespace["SIZES"]) == (2, "cpu", [1, 2])


def test_without_a_tagged_cell_the_values_go_first_and_a_note_says_so():
    nb = notebook(tagged=False)
    done = inject(nb, {"EPOCHS": 2})
    assert done.tagged_cell is None and "No code cell tagged `parameters`" in done.note
    assert is_injected(nb.cells[0])


def test_nothing_to_inject_leaves_the_notebook_alone():
    nb = notebook()
    assert inject(nb, {}) is None and len(nb.cells) == 5
