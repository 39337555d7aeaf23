"""dl-example end to end (issue 12): files handed in beside the notebook reach the kernel and
never the trusted side; grading-time parameters are injected and reported; data sets are
mounted read-only and checked before grading; held-out labels never enter the sandbox.

Master, template, wrong variants and valid alternatives are graded with every other
assignment's in tests/test_assignments.py."""
from __future__ import annotations

import pickle

import nbformat
import pytest

from support import apply_variant, grade_notebooks, load_alternatives, needs_root
from gradekit.run.batch import BatchOptions, DataMissing, grade_batch
from gradekit.spec import load

AID = "dl-example"


def master() -> nbformat.NotebookNode:
    return nbformat.read(str(load(AID).master_path), as_version=4)


def test_spec_has_enough_alternatives():
    assert len(load_alternatives(AID)) >= 5


class Canary:
    """A pickle that, if anything on the trusted side ever loads it, writes a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def with_files(tmp_path_factory):
    """One submitter's folder: the master, its (untrained) weights, a booby-trapped pickle,
    an oversize file and a stray one; graded once."""
    import torch
    needs_root()
    tmp = tmp_path_factory.mktemp("files")
    canary = tmp / "canary-loaded-on-the-trusted-side"
    alice = tmp / "class" / "alice"
    (alice / "weights").mkdir(parents=True)
    nbformat.write(master(), str(alice / "hw.ipynb"))
    shapes = {"conv1.weight": (16, 3, 3, 3), "conv1.bias": (16,), "conv2.weight": (32, 16, 3, 3), "conv2.bias": (32,),
              "fc1.weight": (64, 2048), "fc1.bias": (64,), "fc2.weight": (3, 64), "fc2.bias": (3,)}
    torch.save({k: torch.zeros(v) for k, v in shapes.items()}, alice / "weights" / "tiny.pt")  # a constant model
    (alice / "weights" / "evil.pt").write_bytes(pickle.dumps(Canary(str(canary))))
    (alice / "weights" / "huge.pt").write_bytes(b"\0" * (6 * 1024 * 1024))
    (alice / "notes.txt").write_text("not asked for")
    reports = grade_batch([tmp / "class"], load(AID), tmp / "out", BatchOptions(progress=False))
    assert len(reports) == 1
    return reports[0], canary


def test_handed_in_files_are_listed_accepted_ignored_or_refused(with_files):
    rep, _ = with_files
    assert rep.files is not None
    assert sorted(rep.files.accepted) == ["weights/evil.pt", "weights/tiny.pt"]
    assert rep.files.ignored == ["notes.txt"]
    assert len(rep.files.refused) == 1 and rep.files.refused[0].startswith("weights/huge.pt: 6.0 MB")
    assert any("File refused: weights/huge.pt" in n for n in rep.notes)


def test_handed_in_weights_are_what_the_notebook_loads(with_files):
    rep, _ = with_files
    held_out = next(t for t in rep.tests if t.name.endswith("held_out_images"))
    # all-zero weights predict one class for every image: far below the 50% asked for
    assert held_out.status == "failed", held_out
    assert [t.name for t in rep.tests if t.status != "passed"] == [held_out.name]


def test_the_report_records_what_the_kernel_ran_on(with_files):
    import torch
    rep, _ = with_files
    assert rep.platform is not None
    assert rep.platform.torch == torch.__version__ and rep.platform.device == "cpu"
    assert "NVIDIA_TF32_OVERRIDE=0" in rep.platform.tf32


def test_a_handed_in_pickle_is_never_opened_on_the_trusted_side(with_files):
    _, canary = with_files
    assert not canary.exists()


def test_parameters_are_injected_after_the_tagged_cell_and_reported(with_files):
    rep, _ = with_files
    spec = load(AID).parameters.for_device(False)
    assert rep.parameters is not None and rep.parameters.values == spec
    assert rep.parameters.tagged_cell == 2 and rep.parameters.note == ""
    assert any("Graded with the parameters EPOCHS = 8" in n for n in rep.notes)


def test_a_notebook_without_the_parameters_tag_is_graded_and_told(tmp_path):
    needs_root()
    nb = master()
    for c in nb.cells:
        c.metadata.pop("tags", None)
    rep = grade_notebooks(AID, {"untagged": nb}, tmp_path)["untagged"]
    assert rep["parameters"]["tagged_cell"] is None
    assert "No code cell tagged `parameters`" in rep["parameters"]["note"]
    # its own EPOCHS = 8 and LR = 1e-3 run after the injected ones: still graded, within the limits
    assert rep["status"] == "graded" and rep["execution"]["status"] == "completed"


def test_data_set_is_read_only_and_held_out_labels_are_not_in_the_sandbox(tmp_path):
    needs_root()
    nb = master()
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os\n"
        "try:\n"
        "    open(os.path.join(DATA, 'circle', 'x.jpg'), 'w').write('x')\n"
        "    data_writable = True\n"
        "except OSError:\n"
        "    data_writable = False\n"
        "not_images = [os.path.join(f, n) for f, _, names in os.walk(os.environ['GRADEKIT_DATA'])\n"
        "              for n in names if not n.endswith('.jpg')]\n"
        "leaks = [os.path.join(f, n) for top in ('/tmp', os.path.expanduser('~'), os.getcwd())\n"
        "         for f, _, names in os.walk(top) for n in names if n in ('test_dl_example.py', 'assignment.toml')]\n"
        "grading_env = sorted(k for k in os.environ if 'GRADEKIT' in k or 'LABEL' in k.upper())\n"
        "print('FOUND', data_writable, not_images, leaks, grading_env)\n"))
    rep = grade_notebooks(AID, {"snoop": nb}, tmp_path)["snoop"]
    assert rep["score"] == pytest.approx(load(AID).auto_points)
    executed = nbformat.read(str(next((tmp_path / "out").glob("*/executed.ipynb"))), as_version=4)
    text = "".join(o.get("text", "") for o in executed.cells[-1].get("outputs", []))
    assert text.startswith("FOUND False [] [] ['GRADEKIT_DATA'"), executed.cells[-1].outputs
    assert "SECRET" not in text and "LABEL" not in text.upper(), text


def test_a_missing_data_set_stops_the_batch_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADEKIT_DATA_SHAPES", str(tmp_path / "nowhere"))
    with pytest.raises(DataMissing) as caught:
        grade_batch([tmp_path], load(AID), tmp_path / "out", BatchOptions(progress=False))
    assert "data set 'shapes' (image-folder" in str(caught.value) and "does not exist" in str(caught.value)
    assert "--data shapes=DIR" in str(caught.value)
    assert not (tmp_path / "out" / "gradebook.csv").exists()
    # the command it suggests is the CLI's own syntax, and makes a set the batch accepts
    hint = "gradekit data synth DIR --assignment dl-example --name shapes"
    assert hint in str(caught.value), str(caught.value)
    from gradekit.cli import main
    made = tmp_path / "made"
    assert main(hint.replace("DIR", str(made)).split()[1:]) == 0
    from gradekit.run.batch import data_problems
    assert data_problems(load(AID).with_data({"shapes": made})) == []


def test_a_data_set_in_the_wrong_format_stops_the_batch(tmp_path, monkeypatch):
    bad = tmp_path / "flat"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not really")
    monkeypatch.setenv("GRADEKIT_DATA_SHAPES", str(bad))
    with pytest.raises(DataMissing, match="image-folder"):
        grade_batch([tmp_path], load(AID), tmp_path / "out", BatchOptions(progress=False))


def test_the_cli_names_a_data_set_elsewhere(tmp_path):
    from gradekit.cli import main
    sub = tmp_path / "subs"
    sub.mkdir()
    assert main(["grade", str(sub), "-a", AID, "--out", str(tmp_path / "out"), "--sandbox", "process",
                 "--data", f"shapes={tmp_path / 'missing'}", "--quiet"]) == 2


@pytest.mark.docker
def test_master_and_a_wrong_variant_in_the_torch_image(full_image, tmp_path):
    """The same grading in the full grading image: data set at /data/shapes, files beside the
    notebook copied in, the image's torch reported."""
    import torch
    from gradekit.model import BackendChoice
    needs_root()
    from support import load_variants
    wrong = next(v for v in load_variants(AID) if v["name"] == "train-step-without-zero-grad")
    src = tmp_path / "class"
    for name, nb in {"master": master(), "wrong": apply_variant(master(), wrong["replace"])}.items():
        (src / name / "weights").mkdir(parents=True)
        nbformat.write(nb, str(src / name / "hw.ipynb"))
        (src / name / "weights" / "unused.pt").write_bytes(b"not loaded: the notebook only loads tiny.pt")
    reports = {r.submission.submitter: r for r in grade_batch(
        [src], load(AID), tmp_path / "out",
        BatchOptions(backend=BackendChoice("docker", {"torch": True}), workers=2, progress=False))}
    a = load(AID)
    master_report, wrong_report = reports["master"], reports["wrong"]
    assert master_report.sandbox.backend == "docker"
    assert master_report.score == pytest.approx(a.auto_points), [(t.name, t.message[:200]) for t in master_report.tests]
    assert wrong_report.score == pytest.approx(a.auto_points - a.question("q4").points)
    assert master_report.files.accepted == ["weights/unused.pt"]
    assert master_report.platform.torch.split("+")[0] == torch.__version__.split("+")[0]


def test_data_sets_named_to_grade_batch_reach_the_workers(tmp_path, monkeypatch):
    """An assignment whose data set was moved (``with_data``) is graded with that copy, as
    ``--data`` is: the worker process reads the location from its job."""
    needs_root()
    import os
    moved = tmp_path / "elsewhere"
    os.symlink(os.environ["GRADEKIT_DATA_SHAPES"], moved)
    monkeypatch.setenv("GRADEKIT_DATA_SHAPES", str(tmp_path / "not-here"))
    src = tmp_path / "subs"
    src.mkdir()
    nbformat.write(master(), str(src / "m.ipynb"))
    [rep] = grade_batch([src], load(AID).with_data({"shapes": moved}), tmp_path / "out", BatchOptions(progress=False))
    assert rep.score == pytest.approx(load(AID).auto_points), [(t.name, t.message[:200]) for t in rep.tests]
