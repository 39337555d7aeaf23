"""2imm10-a2 end to end (issue 13): the report names the padding convention it recognised, staff
see the retrieval figure, and the torch image grades it as the process sandbox does.

Master, template, wrong variants and valid alternatives are graded with every other
assignment's in tests/test_assignments.py (their reports are shared through ``graded``)."""
from __future__ import annotations

import pytest

from support import load_alternatives, load_variants, master_and_variant_in_the_torch_image

AID = "2imm10-a2"


def test_spec_has_enough_alternatives_and_variants():
    assert len(load_alternatives(AID)) >= 5
    assert len(load_variants(AID)) >= 30


@pytest.mark.notebooks(AID, "alt-valid-padding")
def test_the_padding_convention_is_named_in_the_report(graded):
    rep = graded(AID, "alt-valid-padding")
    test = next(t for t in rep["tests"] if t["name"].endswith("test_pooling_and_the_fully_connected_layers"))
    text = test["message"] + " ".join(rep.get("notes", []))
    assert "convolutions valid, valid, valid, valid, valid; poolings no padding" in text, test


@pytest.mark.notebooks(AID, "alt-sequential-model", "template")
def test_staff_see_the_retrieval_figure_or_are_told_there_is_none(graded):
    """1.3-discussion is graded by staff with the figure: the report carries its PNG (the
    spec raises output_bytes for it); a notebook whose figure cell failed says so."""
    import base64
    row = next(q for q in graded(AID, "alt-sequential-model")["questions"] if q["id"] == "1.3-discussion")
    assert row["status"] == "manual" and row["message"] == "", row["message"]
    (shown,) = row["outputs"]
    (png,) = shown["images"]
    assert base64.b64decode(png).startswith(b"\x89PNG") and "mAP per layer" in shown["text"]
    row = next(q for q in graded(AID, "template")["questions"] if q["id"] == "1.3-discussion")
    assert row["message"].startswith("no figure: no cell tagged `retrieval-figure` showed an image"), row
    from gradekit.model import Report
    from gradekit.report.render.markdown import to_markdown
    feedback = to_markdown(Report.from_json(graded(AID, "template")))
    assert "Graded by course staff later:" in feedback and "pts; no figure: no cell tagged" in feedback, feedback


@pytest.mark.docker
def test_master_and_a_wrong_variant_in_the_torch_image(full_image, tmp_path):
    """The same grading in the full grading image, as `gradekit grade` does it: both data sets
    mounted read-only under /data, grading-time parameters injected, a GPU-optional
    assignment on the CPU."""
    good = master_and_variant_in_the_torch_image(AID, "amsgrad-off", tmp_path)
    assert good.parameters.values["DEVICE"] == "cpu" and good.parameters.values["TRIPLET_STEPS"] == 40
