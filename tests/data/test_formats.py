"""gradekit.data.formats: every format read back as written, and check() finding planted faults."""
from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradekit.data import (
    FORMATS,
    SHAPES,
    ImageFolder,
    Omniglot,
    TinyImageNet,
    check,
    synthesize,
)
from gradekit.data.formats import IMG_EXTENSIONS


def test_known_formats_and_unknown_names():
    assert FORMATS == ("tiny-imagenet", "omniglot", "image-folder", "torch-weights", "oxford5k", "npy-features")
    with pytest.raises(ValueError, match="tiny-imagenet, omniglot, image-folder, torch-weights, oxford5k, npy-features"):
        check("mnist", "/nowhere")
    with pytest.raises(ValueError, match="known formats"):
        synthesize("mnist", "/nowhere")


def test_image_extensions_are_torchvisions():
    from torchvision.datasets.folder import IMG_EXTENSIONS as theirs
    assert IMG_EXTENSIONS == tuple(theirs)


# ---------------------------------------------------------------------------- tiny-imagenet


@pytest.fixture
def tiny(tmp_path) -> Path:
    return synthesize("tiny-imagenet", tmp_path / "tiny", seed=3, classes=4, train=6, val=8, test=3).root


def test_tiny_imagenet_reads_back_what_was_written(tiny):
    assert check("tiny-imagenet", tiny) == []
    t = TinyImageNet(tiny)
    wnids = (tiny / "wnids.txt").read_text().split()
    assert t.wnids == wnids and len(wnids) == 4 and all(re.fullmatch(r"n0\d{7}", w) for w in wnids)
    assert t.class_to_idx == {w: i for i, w in enumerate(wnids)}  # wnids.txt order, not sorted
    # words.txt names each class's shape (and lists decoys that are not classes)
    assert t.words == {w: SHAPES[i].replace("stripes", " stripes") for i, w in enumerate(wnids)}

    train = t.train()
    assert len(train) == 24
    for path, label in train:
        assert Path(path).parent == tiny / "train" / wnids[label] / "images"
        assert re.fullmatch(rf"{wnids[label]}_\d+\.JPEG", Path(path).name)
    assert np.bincount([label for _, label in train]).tolist() == [6, 6, 6, 6]
    for w in wnids:  # one box line per training image, in the real TAB layout
        boxes = (tiny / "train" / w / f"{w}_boxes.txt").read_text().splitlines()
        assert sorted(line.split("\t")[0] for line in boxes) == sorted(
            os.listdir(tiny / "train" / w / "images"))
        assert all(len(line.split("\t")) == 5 for line in boxes)

    # val labels come from val_annotations.txt, read here independently
    rows = [line.split("\t") for line in (tiny / "val" / "val_annotations.txt").read_text().splitlines()]
    expected = [(str(tiny / "val" / "images" / r[0]), wnids.index(r[1])) for r in rows]
    assert t.val() == expected and len(expected) == 8
    assert sorted(Counter(label for _, label in expected).values()) == [2, 2, 2, 2]

    assert [Path(p).name for p in t.test()] == ["test_0.JPEG", "test_1.JPEG", "test_2.JPEG"]
    images, labels = t.load_images(t.val())
    assert images.shape == (8, 64, 64, 3) and images.dtype == np.uint8
    assert labels.tolist() == [label for _, label in expected]
    images, labels = t.load_images(t.test())
    assert images.shape == (3, 64, 64, 3) and labels is None


def test_tiny_imagenet_faults(tiny, tmp_path):
    w0 = (tiny / "wnids.txt").read_text().split()[0]

    (tiny / "val" / "images" / "val_0.JPEG").write_bytes(np.random.default_rng(0).bytes(2000))
    problems = check("tiny-imagenet", tiny)
    assert len(problems) == 1 and "val/images/val_0.JPEG" in problems[0] and "not a readable image" in problems[0]

    with open(tiny / "val" / "val_annotations.txt", "a") as f:
        f.write("val_0.JPEG\tn09999999\t1\t2\t3\t4\n")
    assert any("labels val_0.JPEG as n09999999, which is not in wnids.txt" in p
               for p in check("tiny-imagenet", tiny))

    for image in (tiny / "train" / w0 / "images").iterdir():
        image.unlink()
    assert any(f"class folder 'train/{w0}' has no images" in p for p in check("tiny-imagenet", tiny))

    (tiny / "wnids.txt").unlink()
    problems = check("tiny-imagenet", tiny)
    assert problems[0] == f"tiny-imagenet at {tiny}: wnids.txt is missing (one WordNet id a line, e.g. n01443537)"
    with pytest.raises(FileNotFoundError, match="wnids.txt is missing"):
        TinyImageNet(tiny)


def test_decoding_is_sampled_unless_asked_for_all(tiny):
    w1 = (tiny / "wnids.txt").read_text().split()[1]
    middle = tiny / "train" / w1 / "images" / f"{w1}_3.JPEG"
    middle.write_bytes(b"\xff\xd8\xff" + bytes(100))  # a JPEG header, then nothing
    assert check("tiny-imagenet", tiny) == []  # cheap: only a few files are opened
    problems = check("tiny-imagenet", tiny, decode=None)
    assert len(problems) == 1 and f"{w1}_3.JPEG" in problems[0]


def test_symlinks_leaving_the_root_are_problems(tiny, tmp_path):
    outside = tmp_path / "secret.JPEG"
    shutil.copy(tiny / "test" / "images" / "test_0.JPEG", outside)
    inside_target = tiny / "test" / "images" / "test_0.JPEG"
    os.symlink(inside_target, tiny / "test" / "images" / "test_9.JPEG")  # stays inside: fine
    assert check("tiny-imagenet", tiny) == []
    os.symlink(outside, tiny / "test" / "images" / "test_10.JPEG")
    os.symlink(tmp_path, tiny / "train" / "escape")  # a folder link is not followed, only named
    os.symlink(tmp_path / "nothing", tiny / "dangling")
    problems = check("tiny-imagenet", tiny)
    assert any("'test/images/test_10.JPEG' is a link to" in p and "outside the data set" in p
               for p in problems)
    assert any("'train/escape' is a link to" in p for p in problems)
    assert any("'dangling' is a broken link" in p for p in problems)


@pytest.mark.parametrize("format", FORMATS)
def test_a_missing_root_or_a_file(format, tmp_path):
    assert check(format, tmp_path / "absent") == [f"{format} at {tmp_path / 'absent'}: the folder does not exist"]
    (tmp_path / "file").write_text("x")
    assert check(format, tmp_path / "file") == [f"{format} at {tmp_path / 'file'}: this is a file, not a folder"]
    assert check(format, tmp_path / "absent", decode=None)  # decoding all changes nothing here


def test_loaders_refuse_a_missing_root(tmp_path):
    for loader in (TinyImageNet, Omniglot, ImageFolder):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            loader(tmp_path / "absent")


# ---------------------------------------------------------------------------- omniglot


def test_omniglot_reads_back_what_was_written(tmp_path):
    rec = synthesize("omniglot", tmp_path / "omni", seed=1, alphabets=2, characters=3, drawers=5)
    assert rec.counts == {"alphabets": 4, "characters": 12, "images": 60}
    assert check("omniglot", rec.root) == []
    o = Omniglot(rec.root)
    background, evaluation = o.alphabets("background"), o.alphabets("evaluation")
    assert len(background) == len(evaluation) == 2 and not set(background) & set(evaluation)
    numbers = set()
    for split, alphabets in (("background", background), ("evaluation", evaluation)):
        chars = o.characters(split)
        assert [(a, c) for a, c, _ in chars] == [(a, f"character{k:02d}") for a in alphabets for k in (1, 2, 3)]
        for _, _, paths in chars:
            names = [Path(p).name for p in paths]
            number = names[0][:4]
            assert names == [f"{number}_{d:02d}.png" for d in range(1, 6)]
            numbers.add(number)
    assert len(numbers) == 12  # one number per character across both splits, as the real set

    path = o.characters("background")[0][2][0]
    with Image.open(path) as im:
        assert im.mode == "1" and im.size == (105, 105)
    page = o.load(path)
    assert page.shape == (105, 105) and page.dtype == np.float32
    assert set(np.unique(page).tolist()) == {0.0, 1.0} and 0.002 < (page == 0).mean() < 0.3
    with pytest.raises(ValueError, match="background"):
        o.alphabets("train")


def test_omniglot_faults(tmp_path):
    root = synthesize("omniglot", tmp_path / "omni", splits=("background",)).root
    assert check("omniglot", root) == []  # one split alone is fine
    char = root / "images_background" / "Synthetic_alphabet_01" / "character02"
    for p in char.iterdir():
        p.unlink()
    (root / "images_background" / "Synthetic_alphabet_02" / "stray").mkdir()
    problems = check("omniglot", root)
    assert any("'images_background/Synthetic_alphabet_01/character02' has no images" in p for p in problems)
    assert any("'images_background/Synthetic_alphabet_02/stray' has no images" in p for p in problems)
    shutil.move(root / "images_background", tmp_path / "elsewhere")
    assert check("omniglot", root) == [
        f"omniglot at {root}: neither images_background nor images_evaluation exists"]


# ---------------------------------------------------------------------------- image-folder


def _same_as_torchvision(root: Path):
    from torchvision.datasets import ImageFolder as Theirs
    ours, theirs = ImageFolder(root), Theirs(root)
    assert ours.classes == theirs.classes
    assert ours.class_to_idx == theirs.class_to_idx
    assert ours.samples == theirs.samples
    assert ours.targets == theirs.targets
    return ours


def test_image_folder_is_torchvisions(tmp_path):
    rec = synthesize("image-folder", tmp_path / "folder", classes=4, per_class=5, size=40)
    assert rec.counts == {"classes": 4, "images": 20}
    assert check("image-folder", rec.root) == []
    ours = _same_as_torchvision(rec.root)
    assert ours.classes == sorted(SHAPES[:4]) and len(ours) == 20
    assert ours.load(ours.samples[0][0]).shape == (40, 40, 3)

    # the corners of ImageFolder's rules: nested folders in sorted(os.walk()) order,
    # upper-case extensions, other files skipped, names sorted as strings, and a hidden
    # folder counted as a class
    circle = rec.root / "circle"
    (circle / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(circle / "0000.jpg", circle / "nested" / "deeper" / "A.JPG")
    shutil.copy(circle / "0001.jpg", circle / "nested" / "10.png")
    shutil.copy(circle / "0002.jpg", circle / "nested" / "9.png")
    (circle / "nested-2").mkdir()  # sorted(os.walk()) puts it before nested/deeper
    shutil.copy(circle / "0003.jpg", circle / "nested-2" / "x.webp")
    (circle / "notes.txt").write_text("not an image")
    (rec.root / ".ipynb_checkpoints").mkdir()
    shutil.copy(circle / "0000.jpg", rec.root / ".ipynb_checkpoints" / "x.jpg")
    ours = _same_as_torchvision(rec.root)
    assert ours.classes[0] == ".ipynb_checkpoints" and len(ours) == 25
    assert check("image-folder", rec.root) == [
        (f"image-folder at {rec.root}: hidden folder '.ipynb_checkpoints' counts as a class "
         "for ImageFolder; delete it")]


def test_image_folder_faults(tmp_path):
    root = synthesize("image-folder", tmp_path / "folder", per_class=4).root
    (root / "cat").mkdir()
    (root / "cat" / "readme.md").write_text("no images here")
    (root / "square" / "0001.jpg").write_bytes(b"")  # not a class's first: only decode=None opens it
    shutil.copy(root / "circle" / "0001.jpg", root / "stray.jpg")
    problems = check("image-folder", root)
    assert f"image-folder at {root}: class folder 'cat' has no images (extensions: " \
           f"{', '.join(IMG_EXTENSIONS)})" in problems
    assert not any("square/0001.jpg" in p for p in problems)
    assert any("1 image(s) lie directly in the folder" in p for p in problems)
    assert any("'square/0001.jpg' is not a readable image" in p for p in check("image-folder", root, decode=None))
    with pytest.raises(FileNotFoundError, match="no images in class folder"):
        ImageFolder(root)

    splits = tmp_path / "splits"
    (splits / "train" / "circle").mkdir(parents=True)
    (splits / "val" / "circle").mkdir(parents=True)
    problems = check("image-folder", splits)
    assert any("looks like a folder of splits" in p for p in problems)
    assert check("image-folder", tmp_path / "splits" / "train" / "circle") == [
        (f"image-folder at {splits / 'train' / 'circle'}: no class folders (expected "
         "<root>/<class>/<image>.jpg ...)")]


# ---------------------------------------------------------------------------- torch-weights


def test_torch_weights_check(tmp_path):
    assert check("torch-weights", tmp_path) == [
        (f"torch-weights at {tmp_path}: hub/checkpoints/ is missing (root must be a TORCH_HOME: "
         "<root>/hub/checkpoints/<file>.pth)")]
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    assert check("torch-weights", tmp_path) == [f"torch-weights at {tmp_path}: hub/checkpoints/ has no .pth files"]
    (folder / "resnet18-f37072fd.pth").write_bytes(b"<html>404 Not Found</html>")
    assert check("torch-weights", tmp_path) == [
        (f"torch-weights at {tmp_path}: hub/checkpoints/resnet18-f37072fd.pth is not a file written "
         "by torch.save (empty, truncated or another format)")]


def test_reading_data_needs_no_torch():
    import subprocess
    import sys
    code = "import sys, gradekit.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- oxford5k
def test_oxford5k_is_synthesized_and_checked_like_the_other_formats(tmp_path):
    rec = synthesize("oxford5k", tmp_path / "ox", seed=2, landmarks=2, queries=3, per_landmark=6, distractors=4, size=32)
    assert rec.counts == {"landmarks": 2, "queries": 6, "images": 2 * 6 + 4}
    assert check("oxford5k", rec.root) == []
    (rec.root / "gt_files" / "all_souls_1_good.txt").write_text("no_such_image\n")
    problems = check("oxford5k", rec.root)
    assert problems and all(p.startswith(f"oxford5k at {rec.root}: ") for p in problems), problems
    assert any("no_such_image" in p for p in problems), problems
    import shutil
    shutil.rmtree(rec.root / "gt_files")
    assert check("oxford5k", rec.root) == [f"oxford5k at {rec.root}: the ground-truth folder gt_files/ is missing "
                                           f"(unpack gt_files_170407.tgz into {rec.root / 'gt_files'})"]
