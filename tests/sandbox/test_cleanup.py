"""Clean-up removes any tree a notebook can make (issue 17.3)."""
from __future__ import annotations

import os
import shutil

import pytest

from gradekit.sandbox.cleanup import MAX_OPEN, remove_tree


def deep_tree(root, depth: int) -> None:
    """``root/d/d/.../d/f`` ``depth`` folders deep, made with folder descriptors (the path
    is far longer than PATH_MAX)."""
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)


def test_shutil_rmtree_cannot_remove_a_deep_tree(tmp_path):
    """Why remove_tree exists (if this starts to pass, shutil got iterative)."""
    deep_tree(tmp_path / "t", 3000)
    try:
        with pytest.raises((RecursionError, OSError)):
            shutil.rmtree(tmp_path / "t")
    finally:  # pytest removes old tmp folders with rmtree too: leave nothing deep behind
        remove_tree(tmp_path / "t")


def test_a_tree_thousands_of_folders_deep_is_removed(tmp_path):
    deep_tree(tmp_path / "t", 5000)
    assert remove_tree(tmp_path / "t")
    assert os.listdir(tmp_path) == []


def test_links_are_removed_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    tree = tmp_path / "t"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "link").symlink_to(outside, target_is_directory=True)
    (tree / "file-link").symlink_to(outside / "keep.txt")
    for i in range(MAX_OPEN + 5):   # wide and deeper than the descriptor stack
        (tree / "a" / "b" / f"f{i}").write_text("x")
    assert remove_tree(tree)
    assert (outside / "keep.txt").read_text() == "mine"


def test_a_file_a_link_or_nothing(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "nowhere")
    assert remove_tree(tmp_path / "f") and remove_tree(tmp_path / "l") and remove_tree(tmp_path / "none")
    assert os.listdir(tmp_path) == []
