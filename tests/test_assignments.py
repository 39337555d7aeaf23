"""Every assignment's graders can fail: master full marks, template zero, each wrong variant
(tests/fixtures/ID/variants.toml) loses exactly its question's points, and each valid
alternative (tests/fixtures/ID/alternatives.toml) keeps full marks. With [[parts]], a variant
or alternative is handed in as its own part alone: full marks are that part's points.

Each variant is a test of its own (``-k 'cv1-a5:bn-eval'`` selects one): only the selected
notebooks are graded, in one batch per assignment (conftest's ``graded``, which other
modules share), and a variant whose ``replace`` text is not in the master fails alone."""
from __future__ import annotations

import pytest

from support import ROOT, companion_part, load_alternatives, load_variants, part_points, reachable_points
from gradekit.tools.assign import stale_templates
from gradekit.spec import load

ASSIGNMENTS = sorted(p.parent.name for p in (ROOT / "assignments").glob("*/assignment.toml"))


def same_verdict_under_other_secrets(report: dict) -> None:
    """The graders ran again on the same executed notebook with other inputs (support.CHECK_SECRETS,
    numpy assignments): every run gave the same score."""
    assert all(s == pytest.approx(report["score"]) for s in report["seed_scores"]), (
        f"the score depends on the inputs drawn: {report['score']} with the batch's secret, "
        f"{report['seed_scores']} with others:\n{_explain(report)}")


def _explain(report: dict) -> str:
    lines = [f"{t['question']} {t['name']}: {t['status']} {t['points_earned']}/{t['points_possible']} {t['message'][:200]}"
             for t in report["tests"]]
    ex = report.get("execution") or {}
    return "\n".join(lines + [f"execution: {ex.get('status')} {ex.get('message')}", f"reason: {report.get('reason')}"])


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_template_is_current(aid):
    stale = stale_templates(load(aid))
    assert not stale, f"{', '.join(str(p.relative_to(ROOT)) for p in stale)}: stale, run `gradekit assign {aid}`"


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_master_scores_full_marks(graded, aid):
    rep = graded(aid, "master")
    a = load(aid)
    assert rep["status"] == "graded", rep["reason"]
    assert rep["score"] == pytest.approx(a.auto_points), _explain(rep)
    assert all(t["status"] == "passed" for t in rep["tests"]), _explain(rep)
    same_verdict_under_other_secrets(rep)


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_template_scores_zero(graded, aid):
    rep = graded(aid, "template")
    assert rep["status"] == "graded", rep["reason"]
    assert rep["score"] == 0, _explain(rep)
    assert any(t["status"] == "failed" for t in rep["tests"])
    same_verdict_under_other_secrets(rep)


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_manual_questions_are_reported_as_manual(graded, aid):
    rep = graded(aid, "master")
    for q in load(aid).questions:
        row = next(r for r in rep["questions"] if r["id"] == q.id)
        assert (row["status"] == "manual") == q.manual, row


VARIANTS = [(aid, v) for aid in ASSIGNMENTS for v in load_variants(aid)]


@pytest.mark.parametrize("aid,variant", VARIANTS, ids=[f"{a}:{v['name']}" for a, v in VARIANTS])
def test_wrong_variant_loses_exactly_its_question(graded, aid, variant):
    a = load(aid)
    rep = graded(aid, f"variant-{variant['name']}")
    assert rep["status"] == "graded", rep["reason"]
    per_q = {q["id"]: q for q in rep["questions"]}
    # `also`: questions a mistake ruins downstream too (a loss without its hinge trains nothing)
    losing = [variant["question"], *variant.get("also", [])]
    for qid in losing:
        assert per_q[qid]["points_earned"] == 0, f"{variant['name']} kept points on {qid}:\n{_explain(rep)}"
        # a question worth no points (a check shown to staff) must still fail
        assert per_q[qid]["status"] != "passed", f"{variant['name']} passed {qid}:\n{_explain(rep)}"
    want = reachable_points(a, variant) - sum(a.question(qid).points for qid in losing)
    assert rep["score"] == pytest.approx(want), f"{variant['name']} lost points elsewhere:\n{_explain(rep)}"
    same_verdict_under_other_secrets(rep)


def test_every_auto_question_has_a_variant():
    """Each auto-graded question has at least one wrong variant that proves its test can fail."""
    missing = [f"{aid}:{q.id}" for aid in ASSIGNMENTS for q in load(aid).questions
               if not q.manual and q.id not in {v["question"] for v in load_variants(aid)}]
    assert not missing, f"auto-graded questions without a wrong-variant fixture: {missing}"


ALTERNATIVES = [(aid, alt) for aid in ASSIGNMENTS for alt in load_alternatives(aid)]


@pytest.mark.parametrize("aid,alternative", ALTERNATIVES, ids=[f"{a}:{v['name']}" for a, v in ALTERNATIVES])
def test_valid_alternative_keeps_full_marks(graded, aid, alternative):
    rep = graded(aid, f"alt-{alternative['name']}")
    assert rep["status"] == "graded", rep["reason"]
    assert rep["score"] == pytest.approx(reachable_points(load(aid), alternative)), _explain(rep)
    same_verdict_under_other_secrets(rep)


PARTS = [(aid, p.id) for aid in ASSIGNMENTS for p in load(aid).parts]


@pytest.mark.parametrize("aid,missing_part", PARTS, ids=[f"{a}:missing-{p}" for a, p in PARTS])
def test_a_missing_part_loses_its_questions_and_says_why(graded, aid, missing_part):
    """[[parts]]: the masters handed in without one part's notebook: that part's questions score
    zero as missing, with the reason naming the file expected; every other part keeps its marks."""
    a = load(aid)
    part = a.part(missing_part)
    rep = graded(aid, f"missing-{missing_part}")
    assert rep["status"] == "graded", rep["reason"]
    assert rep["score"] == pytest.approx(a.auto_points - part_points(a, part)), _explain(rep)
    rows = {q["id"]: q for q in rep["questions"]}
    for qid in part.questions:  # a manual question stays manual: staff grade what there is
        if not a.question(qid).manual:
            assert rows[qid]["status"] == "missing" and rows[qid]["points_earned"] == 0, rows[qid]
    assert part.missing_reason in str(rep), _explain(rep)


@pytest.mark.parametrize("aid,misnamed_part", PARTS, ids=[f"{a}:misnamed-{p}" for a, p in PARTS])
def test_a_misnamed_part_is_graded_by_its_metadata_or_reported(graded, aid, misnamed_part):
    """[[parts]]: a part's notebook under a name no pattern matches, handed in beside one other
    part (the cheapest, support.companion_part). Marked as the part in its
    metadata (as every template is): graded as that part, full marks, with a note. Unmarked:
    not graded, that part's questions lost as missing, and the notes name the file."""
    a = load(aid)
    part = a.part(misnamed_part)
    beside = part_points(a, companion_part(a, misnamed_part))  # the one other part handed in with it
    rep = graded(aid, f"misnamed-{misnamed_part}")
    assert rep["status"] == "graded", rep["reason"]
    assert rep["score"] == pytest.approx(beside + part_points(a, part)), _explain(rep)
    assert f"but its metadata marks it as {part.title} of this assignment" in str(rep), _explain(rep)
    rep = graded(aid, f"unmarked-{misnamed_part}")
    assert rep["status"] == "graded", rep["reason"]
    assert rep["score"] == pytest.approx(beside), _explain(rep)
    notes = "\n".join(rep.get("notes") or [])
    assert f"unmarked-{misnamed_part}_homework_{misnamed_part}_final.ipynb` was not graded: its name matches no part" \
        in notes, notes
    assert part.missing_reason in str(rep), _explain(rep)
