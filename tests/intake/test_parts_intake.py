"""Intake of submissions made of several notebooks (the spec's [[parts]], issue 15): which
notebook is which part, by its name or its metadata, from folders and zips."""
from __future__ import annotations

import zipfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from gradekit.intake import collect, gradescope_submission
from gradekit.intake.collect import match_parts
from gradekit.spec import Part

PARTS = (Part("p1", "Problem 1", "*_hw4_p1.ipynb", ("q1", "q2"), Path("m1.ipynb")),
         Part("p2", "Problem 2", "*_hw4_p2.ipynb", ("q3",), Path("m2.ipynb")))
MISSING_P2 = "no notebook for Problem 2 found (expected a file named like `*_hw4_p2.ipynb`)"


def nb(code: str = "x = 1", part: str | None = None, assignment: str | None = "hw4"):
    book = new_notebook(cells=[new_code_cell(code)])
    book.cells[0]["id"] = "c1"  # same code, same bytes
    if part is not None:
        book.metadata["gradekit"] = {"part": part, **({"assignment": assignment} if assignment else {})}
    return book


def write(folder: Path, name: str, book=None) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(book or nb(name), str(folder / name))


def one(paths, parts=PARTS):
    items = collect(paths, "hw4", None, parts)
    assert len(items) == 1, [(i.submitter, i.source) for i in items]
    return items[0]


def test_a_folder_of_parts_is_one_submission_with_each_part_found_by_name(tmp_path):
    write(tmp_path / "class" / "alice", "ALICE_HW4_P1.ipynb")
    write(tmp_path / "class" / "alice", "sub/alice_hw4_p2.ipynb")
    item = one([tmp_path / "class"])
    assert item.submitter == "alice" and item.gradable and item.notebook is None
    assert list(item.parts) == ["p1", "p2"]
    assert item.parts["p1"].source == "class/alice/ALICE_HW4_P1.ipynb"
    assert item.parts["p2"].source == "class/alice/sub/alice_hw4_p2.ipynb"
    assert item.sha256 and item.sha256 not in (item.parts["p1"].sha256, item.parts["p2"].sha256)
    assert not item.notes and not item.parts["p1"].note


def test_the_submission_key_changes_with_any_part(tmp_path):
    write(tmp_path / "a" / "s", "s_hw4_p1.ipynb", nb("x = 1"))
    write(tmp_path / "a" / "s", "s_hw4_p2.ipynb", nb("y = 1"))
    write(tmp_path / "b" / "s", "s_hw4_p1.ipynb", nb("x = 1"))
    write(tmp_path / "b" / "s", "s_hw4_p2.ipynb", nb("y = 2"))
    write(tmp_path / "c" / "s", "s_hw4_p1.ipynb", nb("x = 1"))
    write(tmp_path / "c" / "s", "s_hw4_p2.ipynb", nb("y = 1"))
    a, b, c = (one([tmp_path / k]) for k in "abc")
    assert a.content_key != b.content_key and a.content_key == c.content_key


def test_the_same_parts_with_other_notes_are_graded_apart(tmp_path):
    """Identical notebooks are graded once and the report copied to each submitter: a submitter
    whose folder also holds a notebook that was not graded must not get the other's report,
    which would lose the note saying so (found by hw4-cnn's misnamed-part test)."""
    for k in "ab":
        write(tmp_path / k / "s", "s_hw4_p1.ipynb", nb("x = 1"))
    write(tmp_path / "b" / "s", "s_homework_p2_final.ipynb", nb("y = 1"))  # named like no part, unmarked
    a, b = (one([tmp_path / k]) for k in "ab")
    assert b.notes and "`s_homework_p2_final.ipynb` was not graded" in b.notes[0] and not a.notes
    assert a.parts["p1"].sha256 == b.parts["p1"].sha256 and a.content_key != b.content_key


def test_a_missing_part_has_the_reason(tmp_path):
    write(tmp_path / "class" / "bob", "bob_hw4_p1.ipynb")
    item = one([tmp_path / "class"])
    assert item.gradable and item.parts["p2"].notebook is None
    assert item.parts["p2"].rejected == MISSING_P2 and item.parts["p2"].missing


def test_a_misnamed_notebook_marked_as_a_missing_part_is_accepted_with_a_note(tmp_path):
    write(tmp_path / "carol", "carol_hw4_p1.ipynb")
    write(tmp_path / "carol", "Problem 2 (final).ipynb", nb("y = 2", part="p2"))
    item = one([tmp_path / "carol"])
    assert item.submitter == "carol"
    p2 = item.parts["p2"]
    assert p2.notebook is not None and p2.source.endswith("Problem 2 (final).ipynb")
    assert "is not named like `*_hw4_p2.ipynb`, but its metadata marks it as Problem 2" in p2.note


def test_metadata_of_another_assignment_or_of_a_part_already_handed_in_is_not_used(tmp_path):
    write(tmp_path / "s", "s_hw4_p1.ipynb")
    write(tmp_path / "s", "other.ipynb", nb(part="p2", assignment="hw3"))
    write(tmp_path / "s", "again.ipynb", nb(part="p1"))
    item = one([tmp_path / "s"])
    assert item.parts["p2"].rejected == MISSING_P2
    assert any("`other.ipynb` was not graded" in n for n in item.notes)
    assert any("`again.ipynb` was not graded" in n for n in item.notes)


def test_a_notebook_matching_no_part_and_no_metadata_is_named_in_a_note(tmp_path):
    write(tmp_path / "dave", "dave_hw4_p1.ipynb")
    write(tmp_path / "dave", "scratch.ipynb")
    item = one([tmp_path / "dave"])
    assert item.parts["p2"].rejected == MISSING_P2
    assert item.notes == ["`scratch.ipynb` was not graded: its name matches no part of the assignment (expected "
                          "names like `*_hw4_p1.ipynb`, `*_hw4_p2.ipynb`) and its metadata names no part that is missing"]


def test_no_part_found_at_all_is_missing_with_every_reason(tmp_path):
    write(tmp_path / "class" / "ivan", "notes.ipynb")
    item = one([tmp_path / "class"])
    assert not item.gradable and item.missing and item.sha256 == ""
    assert "no notebook for Problem 1 found" in item.rejected and MISSING_P2 in item.rejected
    assert "`notes.ipynb` was not graded" in item.rejected


def test_two_notebooks_for_one_part_are_refused_unless_metadata_tells_which(tmp_path):
    write(tmp_path / "e", "e_hw4_p1.ipynb")
    write(tmp_path / "e", "e_hw4_p2.ipynb")
    write(tmp_path / "e", "old/e_hw4_p2.ipynb")
    item = one([tmp_path])
    assert item.parts["p2"].notebook is None and not item.parts["p2"].missing
    assert item.parts["p2"].rejected.startswith("2 notebooks for Problem 2 were found (`e_hw4_p2.ipynb`, "
                                                "`old/e_hw4_p2.ipynb`) and none of them is marked")
    write(tmp_path / "e", "e_hw4_p2.ipynb", nb(part="p2"))
    item = one([tmp_path])
    assert item.parts["p2"].source.endswith("e/e_hw4_p2.ipynb") and "was graded" in item.parts["p2"].note


def test_an_invalid_part_is_refused_with_the_reason_and_the_others_are_kept(tmp_path):
    write(tmp_path / "f", "f_hw4_p1.ipynb")
    (tmp_path / "f" / "f_hw4_p2.ipynb").write_text("{not json")
    item = one([tmp_path / "f"])
    assert item.gradable and "not valid JSON" in item.parts["p2"].rejected and not item.parts["p2"].missing


def test_a_zip_with_the_parts_at_its_top_is_one_submission(tmp_path):
    with zipfile.ZipFile(tmp_path / "gina.zip", "w") as z:
        z.writestr("gina_hw4_p1.ipynb", nbformat.writes(nb()))
        z.writestr("gina_hw4_p2.ipynb", nbformat.writes(nb("y = 1")))
    item = one([tmp_path / "gina.zip"])
    assert item.submitter == "gina" and item.parts["p1"].source == "gina.zip:gina_hw4_p1.ipynb"
    assert item.parts["p2"].notebook is not None


def test_a_class_zip_of_folders_is_one_submission_per_folder(tmp_path):
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as z:
        for who in ("hank", "iris"):
            z.writestr(f"{who}/{who}_hw4_p1.ipynb", nbformat.writes(nb()))
        z.writestr("hank/hank_hw4_p2.ipynb", nbformat.writes(nb("y = 1")))
    items = {i.submitter: i for i in collect([tmp_path / "export.zip"], "hw4", None, PARTS)}
    assert set(items) == {"hank", "iris"}
    assert items["hank"].parts["p2"].notebook is not None and items["iris"].parts["p2"].rejected == MISSING_P2


def test_loose_parts_in_a_folder_given_are_that_folders_submission(tmp_path):
    write(tmp_path / "jack", "jack_hw4_p1.ipynb")
    write(tmp_path / "jack", "jack_hw4_p2.ipynb", nb("y = 1"))
    item = one([tmp_path / "jack"])
    assert item.submitter == "jack" and all(p.notebook is not None for p in item.parts.values())


def test_one_notebook_given_is_its_part(tmp_path):
    write(tmp_path, "kim_hw4_p2.ipynb")
    item = one([tmp_path / "kim_hw4_p2.ipynb"])
    assert item.parts["p2"].notebook is not None and item.parts["p1"].missing


def test_hostile_names_are_shown_escaped(tmp_path):
    write(tmp_path / "m", "m_hw4_p1.ipynb")
    write(tmp_path / "m", "evil\x1b[2J\nname.ipynb")
    item = one([tmp_path / "m"])
    assert "\x1b" not in item.notes[0] and "\n" not in item.notes[0] and "\\x1b" in item.notes[0]


def test_a_gradescope_submission_folder_holds_the_parts(tmp_path):
    write(tmp_path / "submission", "n_hw4_p1.ipynb")
    write(tmp_path / "submission", "n_hw4_p2.ipynb", nb("y = 1"))
    item = gradescope_submission(tmp_path / "submission", "hw4", None, PARTS)
    assert item.gradable and set(item.parts) == {"p1", "p2"}


def test_without_parts_intake_is_unchanged(tmp_path):
    write(tmp_path / "class" / "o", "o_hw4_p1.ipynb")
    write(tmp_path / "class" / "o", "o_hw4_p2.ipynb")
    items = collect([tmp_path / "class"], "hw4")
    assert len(items) == 1 and items[0].notebook is None and "holds 2 notebooks" in items[0].rejected
    assert items[0].parts == {}


def test_match_parts_prefers_a_single_pattern(tmp_path):
    found, notes = match_parts(["a_hw4_p1.ipynb"], lambda n: b"{}", "hw4", PARTS)
    assert found["p1"] == ("a_hw4_p1.ipynb", "", "") and found["p2"] == (None, "", MISSING_P2) and notes == []


def test_a_part_staff_grade_alone_may_be_prose_only_and_no_other_part_may(tmp_path):
    """Problem 3 of Homework 4 is all prose: its notebook may hold Markdown only. A part with an
    automatically graded question still needs code (an empty notebook is refused as empty), in a
    folder and in a zip alike."""
    from nbformat.v4 import new_markdown_cell
    parts = (PARTS[0], Part("p2", "Problem 2", "*_hw4_p2.ipynb", ("q3",), Path("m2.ipynb"), staff_only=True))
    prose = new_notebook(cells=[new_markdown_cell("My answer: semi-supervised learning ...")])
    for name, kept in (("p2", True), ("p1", False)):  # prose handed in for the staff-only part, then for the other
        folder = tmp_path / name / "carol"
        write(folder, f"carol_hw4_{name}.ipynb", prose)
        write(folder, f"carol_hw4_{'p1' if name == 'p2' else 'p2'}.ipynb")
        item = one([folder.parent], parts)
        assert bool(item.parts[name].rejected) is not kept, item.parts[name].rejected
        if not kept:
            assert "no code to run" in item.parts[name].rejected
        zipped = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(zipped, "w") as zf:
            for f in folder.iterdir():
                zf.write(f, f.name)
        assert bool(one([zipped], parts).parts[name].rejected) is not kept


def test_a_part_is_staff_only_when_each_of_its_questions_is_manual():
    from gradekit.spec import load
    a = load("hw4-cnn")
    assert [p.staff_only for p in a.parts] == [False, True]   # p1 has automatic questions, p3 none
