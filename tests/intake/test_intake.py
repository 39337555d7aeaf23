"""Intake refuses bad input with a plain reason, and never touches the filesystem for zips."""
from __future__ import annotations

import io
import json
import stat
import zipfile

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from gradekit import intake
import sys

import gradekit.intake.collect  # noqa: F401 - the module, for monkeypatching its limit

intake.collect_module = sys.modules["gradekit.intake.collect"]


def _nb(code="x = 1") -> bytes:
    nb = new_notebook()
    nb.cells = [new_code_cell(code)]
    return nbformat.writes(nb).encode()


def test_valid_notebook_is_accepted_and_keyed_by_content(tmp_path):
    data = _nb()
    (tmp_path / "a.ipynb").write_bytes(data)
    (tmp_path / "b.ipynb").write_bytes(data)
    subs = intake.collect([tmp_path])
    assert [s.rejected for s in subs] == [None, None]
    assert subs[0].sha256 == subs[1].sha256 and len(subs[0].id) == 16


@pytest.mark.parametrize("data,reason", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not text"),
    (json.dumps({"cells": [], "nbformat": 3, "nbformat_minor": 0, "metadata": {}}).encode(), "version 3"),
    (json.dumps({"hello": 1}).encode(), "no 'cells'"),
    (json.dumps({"cells": [{"cell_type": "code"}], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}).encode(), "schema"),
    (nbformat.writes(new_notebook()).encode(), "no code"),
    (b'{"cells": [], "metadata": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
])
def test_bad_notebooks_are_rejected_with_a_reason(tmp_path, data, reason):
    (tmp_path / "x.ipynb").write_bytes(data)
    sub, = intake.collect([tmp_path / "x.ipynb"])
    assert sub.notebook is None and reason in sub.rejected


def test_non_notebook_and_missing_and_oversize(tmp_path, monkeypatch):
    (tmp_path / "essay.pdf").write_bytes(b"%PDF")
    assert "not a notebook" in intake.collect([tmp_path / "essay.pdf"])[0].rejected
    assert "no such file" in intake.collect([tmp_path / "nope.ipynb"])[0].rejected
    monkeypatch.setattr(intake.collect_module, "MAX_NOTEBOOK_BYTES", 100)
    (tmp_path / "big.ipynb").write_bytes(_nb("x = '" + "a" * 500 + "'"))
    assert "over the limit" in intake.collect([tmp_path / "big.ipynb"])[0].rejected


def test_symlinked_submission_is_refused(tmp_path):
    (tmp_path / "real.ipynb").write_bytes(_nb())
    (tmp_path / "link.ipynb").symlink_to(tmp_path / "real.ipynb")
    assert "symbolic link" in intake.collect([tmp_path / "link.ipynb"])[0].rejected


def _zip(entries: list[tuple[str, bytes, int | None]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def test_zip_export_with_hostile_entries(tmp_path):
    (tmp_path / "class.zip").write_bytes(_zip([
        ("alice/hw.ipynb", _nb("a = 1"), None),
        ("../escape.ipynb", _nb(), None),
        ("/etc/abs.ipynb", _nb(), None),
        ("link.ipynb", b"/etc/passwd", stat.S_IFLNK | 0o777),
        ("__MACOSX/alice/._hw.ipynb", b"junk", None),
        ("bob/notes.txt", b"hi", None),
        ("carol/hw.ipynb", b"{broken", None),
    ]))
    subs = {s.source.split(":", 1)[1]: s for s in intake.collect([tmp_path / "class.zip"])}
    assert subs["alice/hw.ipynb"].notebook is not None
    assert "leaves the archive" in subs["../escape.ipynb"].rejected
    assert "absolute" in subs["/etc/abs.ipynb"].rejected
    assert "symbolic link" in subs["link.ipynb"].rejected
    assert "not valid JSON" in subs["carol/hw.ipynb"].rejected
    assert not any("MACOSX" in k or k.endswith(".txt") for k in subs)
    assert not (tmp_path.parent / "escape.ipynb").exists()


def test_unreadable_and_empty_zip(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    assert "cannot be read" in intake.collect([tmp_path / "bad.zip"])[0].rejected
    (tmp_path / "empty.zip").write_bytes(_zip([("readme.txt", b"x", None)]))
    assert "no .ipynb" in intake.collect([tmp_path / "empty.zip"])[0].rejected


def test_two_submitters_of_one_name_stay_two(tmp_path):
    for section in ("a", "b"):
        (tmp_path / section).mkdir()
        (tmp_path / section / "hw.ipynb").write_bytes(_nb(f"x = '{section}'"))
    items = intake.collect([tmp_path / "a", tmp_path / "b"])
    assert len({i.submitter for i in items}) == 2 and all("hw.ipynb" in i.submitter for i in items)


def test_a_zip_made_on_windows_names_its_submitters(tmp_path):
    (tmp_path / "class.zip").write_bytes(_zip([("alice\\hw.ipynb", _nb(), None)]))
    item, = intake.collect([tmp_path / "class.zip"])
    assert item.submitter == "alice" and item.notebook is not None and item.source == "class.zip:alice\\hw.ipynb"


def test_a_deep_submitter_folder_is_not_walked_to_the_bottom(tmp_path):
    """os.walk recurses once per level: a tree deeper than Python's recursion limit would
    crash intake. gradekit looks MAX_FOLDER_DEPTH deep, no deeper."""
    path = tmp_path / "class" / "mallory"
    for _ in range(intake.collect_module.MAX_FOLDER_DEPTH + 5):
        path = path / "d"
    path.mkdir(parents=True)
    (path / "hw.ipynb").write_bytes(_nb())
    (tmp_path / "class" / "alice").mkdir()
    (tmp_path / "class" / "alice" / "hw.ipynb").write_bytes(_nb())
    items = {i.submitter: i for i in intake.collect([tmp_path / "class"])}
    assert items["alice"].notebook is not None
    assert items["mallory"].missing  # its notebook is below the depth gradekit looks at


def _big_nb(tag: int, size: int = 2 * 1024 * 1024) -> bytes:
    """A notebook of about ``size`` bytes (one long string in a cell's outputs), distinct per tag."""
    nb = new_notebook()
    cell = new_code_cell(f"x = {tag}")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=[f"{tag} " + "y" * 79 + "\n"] * (size // 80))]
    nb.cells = [cell]
    return nbformat.writes(nb).encode()


def _class_of_zips(folder, distinct: int, copies: int):
    """``copies`` zips each holding the same big notebook, and ``distinct`` zips of others."""
    folder.mkdir()
    same = _big_nb(0)
    for k in range(copies):
        with zipfile.ZipFile(folder / f"copy{k}.zip", "w") as z:
            z.writestr(f"student{k}/hw.ipynb", same)
    for k in range(1, distinct + 1):
        with zipfile.ZipFile(folder / f"own{k}.zip", "w") as z:
            z.writestr(f"other{k}/hw.ipynb", _big_nb(k))
    return same


def test_a_batch_keeps_its_notebooks_on_disk_not_in_memory(tmp_path):
    """Issue 17.13: under `spooling` (what grade_batch does) each accepted notebook is kept as
    one file per distinct content and dropped from memory as soon as it is validated."""
    import tracemalloc
    same = _class_of_zips(tmp_path / "class", distinct=5, copies=20)
    tracemalloc.start()
    held = intake.collect([tmp_path / "class"])
    _, peak_held = tracemalloc.get_traced_memory()
    del held
    tracemalloc.reset_peak()
    with intake.spooling(tmp_path / "spool"):
        items = intake.collect([tmp_path / "class"])
    _, peak_spooled = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(items) == 25 and all(i.gradable and i.notebook is None for i in items)
    assert len(list((tmp_path / "spool").glob("*.ipynb"))) == 6     # the 20 copies: one file
    assert items[0].load().cells[0].source == "x = 0" and items[0].spooled.read_bytes() == same
    assert peak_spooled < peak_held / 3, (peak_spooled, peak_held)  # one notebook at a time, not 6 of them


def test_the_intake_budget_is_the_batchs_and_copies_cost_nothing_more(tmp_path):
    same = _class_of_zips(tmp_path / "class", distinct=3, copies=10)
    with intake.spooling(tmp_path / "spool", budget=len(same) * 2 + 100):  # room for two distinct notebooks
        items = intake.collect([tmp_path / "class"])
    refused = [i for i in items if not i.gradable]
    assert len(items) == 13 and len(refused) == 2, [i.rejected for i in items]
    assert all("over the intake's limit" in i.rejected and "smaller batches" in i.rejected for i in refused)
    assert all(i.gradable for i in items if i.source.startswith("copy"))   # the ten copies: one file's bytes


def test_a_notebook_nested_past_the_parser_is_refused_in_parts_and_among_several_too(tmp_path):
    """Its metadata cannot be read either: the other notebook is graded, nothing raises."""
    from gradekit.spec import Part
    deep = b'{"cells": [], "metadata": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    alice = tmp_path / "class" / "alice"
    alice.mkdir(parents=True)
    (alice / "deep_p1.ipynb").write_bytes(deep)
    (alice / "mine_p2.ipynb").write_bytes(_nb())
    parts = (Part("p1", "Problem 1", "*_p1.ipynb", ("q1",), tmp_path), Part("p2", "Problem 2", "*_p2.ipynb", ("q2",), tmp_path))
    item = intake.collect([tmp_path / "class"], "a", None, parts)[0]
    assert item.gradable and "nested too deeply" in item.parts["p1"].rejected and item.parts["p2"].has_notebook
    (alice / "deep_p1.ipynb").rename(alice / "other.ipynb")
    item = intake.collect([tmp_path / "class"], "a")[0]    # two notebooks, neither says which
    assert not item.gradable and "2 notebooks" in item.rejected
