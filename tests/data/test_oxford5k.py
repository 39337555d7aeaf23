"""gradekit.data.oxford5k: the synthetic set reads back as written, in the real format, and
every layout fault is reported in plain words."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradekit.data.oxford5k import (
    LANDMARKS,
    Oxford5k,
    OxfordQuery,
    read_oxford5k,
    write_synthetic_oxford5k,
)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def small(tmp_path) -> Oxford5k:
    return write_synthetic_oxford5k(tmp_path / "ox", num_landmarks=2, queries_per_landmark=3,
                                    images_per_landmark=6, distractors=4, image_size=48, seed=3)


def test_round_trip(small):
    back = read_oxford5k(small.root)
    assert back == small and isinstance(back, Oxford5k)
    assert back.images_dir == small.root / "jpg" and back.gt_dir == small.root / "gt_files"
    assert len(back.image_names) == 2 * 6 + 4 and list(back.image_names) == sorted(back.image_names)
    assert list(back.queries) == ["all_souls_1", "all_souls_2", "all_souls_3",
                                  "ashmolean_1", "ashmolean_2", "ashmolean_3"]
    assert back.landmarks == ("all_souls", "ashmolean")
    q = back.queries["ashmolean_2"]
    assert isinstance(q, OxfordQuery) and q.landmark == "ashmolean"
    # 6 images a landmark: 3 good, 2 ok, 1 junk; the query image is a good one, each query its own
    assert (len(q.good), len(q.ok), len(q.junk)) == (3, 2, 1)
    assert q.image == q.good[1] and q.positives == set(q.good) | set(q.ok)
    assert all(re.fullmatch(r"ashmolean_\d{6}", n) for n in q.good + q.ok + q.junk)
    assert sum(n.startswith("oxford_") for n in back.image_names) == 4
    assert back.index(q.image) == back.image_names.index(q.image)
    with pytest.raises(KeyError, match="not an image of this data set"):
        back.index("nowhere_000000")


def test_files_are_in_the_real_format(small):
    """Read with nothing from the module: the gt files and the images as the Oxford page
    ships them."""
    gt, images = small.root / "gt_files", small.root / "jpg"
    assert sorted(p.name for p in small.root.iterdir()) == ["gt_files", "jpg"]
    jpgs = {p.stem for p in images.iterdir()}
    assert all(p.suffix == ".jpg" for p in images.iterdir())
    for name in ("all_souls_1", "ashmolean_3"):
        line = (gt / f"{name}_query.txt").read_text()
        m = re.fullmatch(r"oxc1_(\S+) (\d+\.\d) (\d+\.\d) (\d+\.\d) (\d+\.\d)\n", line)
        assert m, line
        x1, y1, x2, y2 = map(float, m.groups()[1:])
        assert 0 <= x1 < x2 < 48 and 0 <= y1 < y2 < 48
        assert m.group(1) in jpgs
        assert small.queries[name].box == (x1, y1, x2, y2)
        for kind in ("good", "ok", "junk"):
            text = (gt / f"{name}_{kind}.txt").read_text()
            assert text.endswith("\n") and ".jpg" not in text
            assert set(text.split()) <= jpgs
    with Image.open(images / f"{small.queries['all_souls_1'].image}.jpg") as im:
        assert im.format == "JPEG" and im.size == (48, 48) and im.mode == "RGB"


def test_query_crop_and_images(small):
    q = small.queries["all_souls_1"]
    full = small.load_image(q.image)
    assert full.shape == (48, 48, 3) and full.dtype == np.uint8
    crop = small.load_query("all_souls_1")
    x1, y1, x2, y2 = (round(v) for v in q.box)  # PIL's crop rounds the box
    assert crop.shape == (y2 - y1, x2 - x1, 3)
    assert np.array_equal(crop, full[y1:y2, x1:x2])
    assert np.array_equal(small.load_query("all_souls_1", crop=False), full)


def test_55_queries_and_determinism(tmp_path):
    a = write_synthetic_oxford5k(tmp_path / "a", num_landmarks=11, images_per_landmark=10, seed=7)
    b = write_synthetic_oxford5k(tmp_path / "b", num_landmarks=11, images_per_landmark=10, seed=7)
    c = write_synthetic_oxford5k(tmp_path / "c", num_landmarks=11, images_per_landmark=10, seed=8)
    assert len(a.queries) == 55 and a.landmarks == LANDMARKS
    assert {n.rsplit("_", 1)[1] for n in a.queries} == {"1", "2", "3", "4", "5"}
    ta, tb, tc = _tree(a.root), _tree(b.root), _tree(c.root)
    assert ta == tb and ta != tc
    assert read_oxford5k(a.root) == a


def test_retrieval_on_the_synthetic_set_beats_chance(tmp_path):
    """A colour histogram ranks a landmark's images above the rest well beyond a random
    ranking, so an assignment's pipeline has something to find; oxford_map takes the
    reader's queries as they are."""
    from reference.retrieval import l2_normalize, oxford_map, rank_by_inner_product

    data = write_synthetic_oxford5k(tmp_path / "ox", num_landmarks=6, seed=0)

    def describe(img):
        q = (img // 64).reshape(-1, 3).astype(int)
        return np.sqrt(np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64))

    names = list(data.queries)
    db = l2_normalize(np.array([describe(data.load_image(n)) for n in data.image_names]))
    qs = l2_normalize(np.array([describe(data.load_query(n)) for n in names]))
    order = rank_by_inner_product(qs, db)
    found, _ = oxford_map({q: [data.image_names[i] for i in order[k]] for k, q in enumerate(names)},
                          data.queries)
    rng = np.random.default_rng(0)
    chance, _ = oxford_map({q: list(rng.permutation(data.image_names)) for q in names}, data.queries)
    assert found > 2 * chance and found > 0.3, (found, chance)


def test_writer_refuses_a_used_folder_and_bad_sizes(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("an instructor's file")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        write_synthetic_oxford5k(tmp_path / "used")
    with pytest.raises(ValueError, match="num_landmarks must be 1..11"):
        write_synthetic_oxford5k(tmp_path / "new", num_landmarks=12)
    with pytest.raises(ValueError, match="queries_per_landmark must be 1..2"):
        write_synthetic_oxford5k(tmp_path / "new", images_per_landmark=4, queries_per_landmark=3)
    with pytest.raises(ValueError, match="too small to draw"):
        write_synthetic_oxford5k(tmp_path / "new", image_size=8)
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------- validation


@pytest.fixture
def copy(small, tmp_path) -> Path:
    """A copy to break."""
    return Path(shutil.copytree(small.root, tmp_path / "broken"))


def test_missing_folders(tmp_path, copy):
    with pytest.raises(FileNotFoundError, match="the data folder does not exist"):
        read_oxford5k(tmp_path / "nowhere")
    shutil.rmtree(copy / "gt_files")
    with pytest.raises(FileNotFoundError, match=r"the ground-truth folder gt_files/ is missing "
                                                r"\(unpack gt_files_170407.tgz into .*gt_files\)"):
        read_oxford5k(copy)
    (copy / "gt_files").mkdir()
    shutil.rmtree(copy / "jpg")
    with pytest.raises(FileNotFoundError, match="the images folder jpg/ is missing"):
        read_oxford5k(copy)


def test_other_folder_names(small, tmp_path):
    root = tmp_path / "renamed"
    shutil.copytree(small.root / "jpg", root / "oxbuild_images")
    shutil.copytree(small.root / "gt_files", root / "gt_files_170407")
    data = read_oxford5k(root, images="oxbuild_images", gt="gt_files_170407")
    assert data.image_names == small.image_names and dict(data.queries) == dict(small.queries)


def test_query_with_no_good_images(copy):
    (copy / "gt_files" / "all_souls_2_good.txt").write_text("")
    with pytest.raises(ValueError, match=r"query all_souls_2: all_souls_2_good.txt lists no images "
                                         r"\(every query needs a good one\)"):
        read_oxford5k(copy)


def test_a_listed_name_without_its_image(copy, small):
    junk = small.queries["ashmolean_1"].junk[0]
    (copy / "jpg" / f"{junk}.jpg").unlink()
    with pytest.raises(ValueError, match=rf"query ashmolean_1: ashmolean_1_junk.txt names 1 image\(s\) "
                                         rf"with no .jpg in the images folder, e.g. {junk}"):
        read_oxford5k(copy)


def test_a_query_image_without_its_file(copy, small):
    image = small.queries["all_souls_3"].image
    (copy / "jpg" / f"{image}.jpg").unlink()
    with pytest.raises(ValueError, match=rf"query all_souls_3: its image {image}.jpg is not in the images folder"):
        read_oxford5k(copy)


def test_malformed_query_lines(copy):
    line = (copy / "gt_files" / "all_souls_1_query.txt").read_text()
    (copy / "gt_files" / "all_souls_1_query.txt").write_text(line.removeprefix("oxc1_"))  # Paris 6k style
    (copy / "gt_files" / "all_souls_2_query.txt").write_text("oxc1_x 1 2 3\n")
    (copy / "gt_files" / "ashmolean_1_query.txt").write_text(re.sub(r" \S+\n", " 1.0\n", line))  # y2 < y1
    with pytest.raises(ValueError) as err:
        read_oxford5k(copy)
    text = str(err.value)
    assert "3 problem(s)" in text
    assert f"gt_files/all_souls_1_query.txt should be one line 'oxc1_<image> x1 y1 x2 y2', found {line.strip()[5:]!r}" in text
    assert "gt_files/all_souls_2_query.txt should be one line" in text
    assert re.search(r"gt_files/ashmolean_1_query.txt: the box \[.*\] is empty \(needs x2 > x1, y2 > y1\)", text)


def test_missing_list_and_orphan_list(copy):
    (copy / "gt_files" / "ashmolean_3_ok.txt").unlink()
    (copy / "gt_files" / "ashmolean_3_query.txt").rename(copy / "gt_files" / "keep_aside.txt")
    (copy / "gt_files" / "all_souls_2_ok.txt").unlink()
    with pytest.raises(ValueError) as err:
        read_oxford5k(copy)
    text = str(err.value)
    assert "query all_souls_2: gt_files/all_souls_2_ok.txt is missing" in text
    assert "gt_files/ashmolean_3_good.txt has no ashmolean_3_query.txt beside it" in text
    assert "gt_files/ashmolean_3_junk.txt has no ashmolean_3_query.txt beside it" in text


def test_empty_folders(tmp_path):
    (tmp_path / "e" / "gt_files").mkdir(parents=True)
    (tmp_path / "e" / "jpg").mkdir()
    with pytest.raises(ValueError) as err:
        read_oxford5k(tmp_path / "e")
    assert "jpg/ has no .jpg images" in str(err.value)
    assert "gt_files/ has no <query>_query.txt files (expected e.g. all_souls_1_query.txt)" in str(err.value)
