"""Files beside the notebook: kept by pattern and size, the rest listed, in folders and zips."""
from __future__ import annotations

import io
import zipfile

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from gradekit.intake import collect
from gradekit.intake.files import content_key
from gradekit.spec import SubmissionFiles

RULES = SubmissionFiles(patterns=("weights/*.pt", "codes_*.npy"), max_file_mb=1, max_total_mb=1.5)
NB = nbformat.writes(new_notebook(cells=[new_code_cell("x = 1")]))


def test_patterns_match_whole_relative_paths():
    assert RULES.matches("weights/a.pt") and RULES.matches("codes_train.npy")
    assert not RULES.matches("deep/weights/a.pt") and not RULES.matches("weights/sub/a.pt")
    assert not RULES.matches("weights/a.pth") and not RULES.matches("codes.npy")


def test_a_submitter_folder_keeps_wanted_files_and_lists_the_rest(tmp_path):
    alice = tmp_path / "class" / "alice"
    (alice / "weights").mkdir(parents=True)
    (alice / "hw.ipynb").write_text(NB)
    (alice / "weights" / "a.pt").write_bytes(b"a" * 1000)
    (alice / "weights" / "b.pt").write_bytes(b"b" * 900_000)  # would pass the 1.5 MB total
    (alice / "codes_x.npy").write_bytes(b"c" * 700_000)       # first in name order
    (alice / "weights" / "big.pt").write_bytes(b"d" * 1_100_000)  # over 1 MB alone
    (alice / "notes.txt").write_text("hi")
    (alice / "weights" / "link.pt").symlink_to("/etc/passwd")
    [item] = collect([tmp_path / "class"], files=RULES)
    assert [f.relative for f in item.files] == ["codes_x.npy", "weights/a.pt"]
    assert item.handed_in.accepted == ["codes_x.npy", "weights/a.pt"]
    assert sorted(item.handed_in.ignored) == ["notes.txt", "weights/link.pt (a link, ignored)"]
    assert [r.split(":")[0] for r in item.handed_in.refused] == ["weights/b.pt", "weights/big.pt"]
    assert "together" in item.handed_in.refused[0] and "per file" in item.handed_in.refused[1]


def test_a_zip_export_keeps_each_submitters_files(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("alice/hw.ipynb", NB)
        z.writestr("alice/weights/m.pt", b"alice")
        z.writestr("bob/hw.ipynb", NB)
        z.writestr("bob/weights/m.pt", b"bob")
        z.writestr("bob/weights/../../escape.pt", b"x")
    (tmp_path / "export.zip").write_bytes(buf.getvalue())
    items = {i.submitter: i for i in collect([tmp_path / "export.zip"], files=RULES)}
    assert items["alice"].files[0].data == b"alice" and items["bob"].files[0].data == b"bob"
    # same notebook, other files: not the same submission
    assert items["alice"].sha256 == items["bob"].sha256
    assert items["alice"].content_key != items["bob"].content_key


def test_without_rules_nothing_beside_the_notebook_is_kept(tmp_path):
    alice = tmp_path / "class" / "alice"
    alice.mkdir(parents=True)
    (alice / "hw.ipynb").write_text(NB)
    (alice / "w.pt").write_bytes(b"x")
    [item] = collect([tmp_path / "class"])
    assert item.files == [] and item.handed_in is None
    assert content_key(item.sha256, []) == item.sha256


def test_names_with_escape_codes_are_shown_escaped(tmp_path):
    alice = tmp_path / "class" / "alice"
    (alice / "weights").mkdir(parents=True)
    (alice / "hw.ipynb").write_text(NB)
    (alice / "weights" / "\x1b[31mred.pt").write_bytes(b"x")
    (alice / "\x1b[2Jclear.txt").write_bytes(b"x")
    (alice / "\x1b]link").symlink_to("/etc/passwd")
    [item] = collect([tmp_path / "class"], files=RULES)
    shown = item.handed_in.accepted + item.handed_in.ignored
    assert len(shown) == 3 and not any("\x1b" in s for s in shown), shown
