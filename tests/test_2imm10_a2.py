"""2imm10-a2 end to end (issue 13): valid alternatives keep full marks; the reference ConvNet
is Babenko et al.'s with the assignment's changes, and agrees with its own layer table.

Master, template and wrong variants are graded with every other assignment's in
tests/test_assignments.py."""
from __future__ import annotations

import tomllib

import nbformat
import pytest

from support import ROOT, apply_variant, grade_notebooks, needs_root
from gradekit.spec import load

AID = "2imm10-a2"
ALTERNATIVES = tomllib.loads((ROOT / "tests" / "fixtures" / AID / "alternatives.toml").read_text())["alternative"]


def master() -> nbformat.NotebookNode:
    return nbformat.read(str(load(AID).master_path), as_version=4)


@pytest.fixture(scope="module")
def alternatives(tmp_path_factory):
    needs_root()
    notebooks = {f"alt-{a['name']}": apply_variant(master(), a["replace"]) for a in ALTERNATIVES}
    notebooks["template"] = nbformat.read(str(load(AID).template_path), as_version=4)
    return grade_notebooks(AID, notebooks, tmp_path_factory.mktemp("alternatives"))


@pytest.mark.parametrize("alt", ALTERNATIVES, ids=[a["name"] for a in ALTERNATIVES])
def test_valid_alternative_keeps_full_marks(alternatives, alt):
    rep = alternatives[f"alt-{alt['name']}"]
    failed = [f"{t['name']}: {t['message'][:300]}" for t in rep["tests"] if t["status"] != "passed"]
    assert rep["score"] == pytest.approx(load(AID).auto_points), failed


def test_spec_has_enough_alternatives_and_variants():
    from support import load_variants
    assert len(ALTERNATIVES) >= 5
    assert len(load_variants(AID)) >= 30


def test_the_padding_convention_is_named_in_the_report(alternatives):
    rep = alternatives["alt-valid-padding"]
    test = next(t for t in rep["tests"] if t["name"].endswith("test_pooling_and_the_fully_connected_layers"))
    text = test["message"] + " ".join(rep.get("notes", []))
    assert "convolutions valid, valid, valid, valid, valid; poolings no padding" in text, test


def test_staff_see_the_retrieval_figure_or_are_told_there_is_none(alternatives):
    """1.3-discussion is graded by staff with the figure: the report carries its PNG (the
    spec raises output_bytes for it); a notebook whose figure cell failed says so."""
    import base64
    row = next(q for q in alternatives["alt-sequential-model"]["questions"] if q["id"] == "1.3-discussion")
    assert row["status"] == "manual" and row["message"] == "", row["message"]
    (shown,) = row["outputs"]
    (png,) = shown["images"]
    assert base64.b64decode(png).startswith(b"\x89PNG") and "mAP per layer" in shown["text"]
    row = next(q for q in alternatives["template"]["questions"] if q["id"] == "1.3-discussion")
    assert row["message"].startswith("no figure: no cell tagged `retrieval-figure` showed an image"), row
    from gradekit.model import Report
    from gradekit.report.render.markdown import to_markdown
    feedback = to_markdown(Report.from_json(alternatives["template"]))
    assert "Graded by course staff later:" in feedback and "pts; no figure: no cell tagged" in feedback, feedback


@pytest.mark.docker
def test_master_and_a_wrong_variant_in_the_torch_image(full_image, tmp_path):
    """The same grading in the full grading image, as `gradekit grade` does it: both data sets
    mounted read-only under /data, grading-time parameters injected, a GPU-optional
    assignment on the CPU."""
    from gradekit.model import BackendChoice
    from gradekit.run.batch import BatchOptions, grade_batch
    from support import load_variants
    needs_root()
    wrong = next(v for v in load_variants(AID) if v["name"] == "amsgrad-off")
    src = tmp_path / "class"
    src.mkdir()
    for name, nb in {"master": master(), "wrong": apply_variant(master(), wrong["replace"])}.items():
        nbformat.write(nb, str(src / f"{name}.ipynb"))
    reports = {r.submission.submitter.removesuffix(".ipynb"): r for r in grade_batch(
        [src], load(AID), tmp_path / "out",
        BatchOptions(backend=BackendChoice("docker", {"torch": True}), workers=2, progress=False))}
    a = load(AID)
    good, bad = reports["master"], reports["wrong"]
    assert good.sandbox.backend == "docker"
    assert good.score == pytest.approx(a.auto_points), [(t.name, t.message[:200]) for t in good.tests if t.status != "passed"]
    assert bad.score == pytest.approx(a.auto_points - a.question("1.2-optimizer").points)
    assert good.parameters.values["DEVICE"] == "cpu" and good.parameters.values["TRIPLET_STEPS"] == 40
