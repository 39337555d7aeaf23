"""dlip-a2 end to end (issue 14): the mistakes the issue names are among the wrong variants,
the student's `gradekit check` agrees with the graded report on every public test, and the
torch image grades it as the process sandbox does.

Master, template, wrong variants and valid alternatives are graded with every other
assignment's in tests/test_assignments.py (their reports are shared through ``graded``)."""
from __future__ import annotations

import re

import pytest

from support import load_alternatives, load_variants, master_and_variant_in_the_torch_image, needs_root
from gradekit.spec import load

AID = "dlip-a2"

#: The mistakes issue 14 lists, each a wrong variant of ours (variant name -> question).
ISSUE_MISTAKES = {
    "fc7-before-relu": "fc7-features", "fc6-instead-of-fc7": "fc7-features",
    "finetune-1000-classes-kept": "finetune-last-layer", "finetune-every-layer-reinitialised": "finetune-init",
    "gem-p-after-the-mean": "gem", "gem-without-eps-clamp": "gem",
    "ap-junk-as-negatives": "oxford-ap", "ap-junk-as-positives": "oxford-ap", "ap-step-rule": "oxford-ap",
    "map-query-kept-in-its-ranking": "oxford-map", "whitening-learned-on-the-test-set": "whitening-learn",
    "whitening-not-renormalised": "whitening-apply", "triplet-loss-without-margin": "triplet-loss",
    "augment-changes-output-size": "augmentation",
}


def test_the_issues_mistakes_are_variants_and_there_are_enough():
    variants = {v["name"]: v["question"] for v in load_variants(AID)}
    assert {name: variants.get(name) for name in ISSUE_MISTAKES} == ISSUE_MISTAKES
    assert len(variants) >= 30 and len(load_alternatives(AID)) >= 5


@pytest.mark.notebooks(AID, "master", "template")
@pytest.mark.parametrize("name", ["master", "template"])
def test_check_agrees_with_the_graded_report_on_every_public_test(graded, name):
    """The student's `gradekit check` on the master and on the template: the public tests it
    fails are those the graded report failed (public tests run with the hidden ones there)."""
    import os
    import subprocess
    import sys

    from support import ROOT
    needs_root()
    public = {t["name"].rsplit("::", 1)[-1]: t["status"] for t in graded(AID, name)["tests"] if t["public"]}
    failed = {n for n, status in public.items() if status != "passed"}
    assert public and (failed == set() if name == "master" else failed == set(public)), public
    path = load(AID).master_path if name == "master" else load(AID).template_path
    proc = subprocess.run([sys.executable, "-m", "gradekit", "check", "-a", AID, str(path)], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    assert proc.returncode == (0 if name == "master" else 1), proc.stdout + proc.stderr
    assert f"{len(public) - len(failed)}/{len(public)} public tests passed" in proc.stdout, proc.stdout
    assert set(re.findall(r"✗ (test_\w+)", proc.stdout)) == failed, proc.stdout


@pytest.mark.docker
def test_master_and_a_wrong_variant_in_the_torch_image(full_image, tmp_path):
    """The same grading in the full grading image, as `gradekit grade` does it: the three data
    sets mounted read-only under /data, grading-time parameters injected, on the CPU."""
    good = master_and_variant_in_the_torch_image(AID, "gem-without-eps-clamp", tmp_path)
    assert good.parameters.values["DEVICE"] == "cpu" and good.parameters.values["IMAGE_SIZE"] == 64
