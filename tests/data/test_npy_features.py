"""gradekit.data.features (the ``npy-features`` format): the synthetic set reads back with the
synthetic Oxford 5k's names, ranks its landmarks first, and every broken layout is refused
with its reason (a pickled array never unpickled)."""
from __future__ import annotations

import numpy as np
import pytest

from gradekit.data.features import read_npy_features, write_synthetic_npy_features
from gradekit.data.formats import check
from gradekit.data.oxford5k import write_synthetic_oxford5k
from gradekit.data.synth import synthesize
from reference import retrieval

SIZES = dict(num_landmarks=2, queries_per_landmark=3, images_per_landmark=6, distractors=4, seed=5)


@pytest.fixture
def small(tmp_path):
    return write_synthetic_npy_features(tmp_path / "f", models=("finetuned", "triplet"), dim=12, **SIZES)


def test_rows_carry_the_synthetic_oxford_names_and_rank_its_landmarks_first(small, tmp_path):
    oxford = write_synthetic_oxford5k(tmp_path / "ox", image_size=16, **SIZES)
    assert small.database_names == oxford.image_names and small.query_names == tuple(oxford.queries)
    assert sorted(small.models) == ["finetuned", "triplet"]
    for m in small.models.values():
        assert m.database.shape == (len(oxford.image_names), 12) and m.queries.shape == (6, 12)
        assert m.database.dtype == np.float32
    queries = [oxford.queries[n] for n in small.query_names]
    maps = {}
    for name, m in small.models.items():
        order = retrieval.rank_by_inner_product(retrieval.l2_normalize(m.queries.astype(np.float64)),
                                                retrieval.l2_normalize(m.database.astype(np.float64)))
        aps = [retrieval.oxford_average_precision([small.database_names[i] for i in row], q.good, q.ok, q.junk)
               for row, q in zip(order, queries)]
        maps[name] = float(np.mean(aps))
    assert all(0.5 < v <= 1.0 for v in maps.values()), maps     # descriptors that retrieve, not noise
    assert maps["finetuned"] != maps["triplet"]                   # two models, two results
    assert read_npy_features(small.root).models["triplet"].queries.tobytes() == small.models["triplet"].queries.tobytes()


def test_the_same_arguments_give_the_same_bytes(tmp_path):
    a = write_synthetic_npy_features(tmp_path / "a", **SIZES)
    b = write_synthetic_npy_features(tmp_path / "b", **SIZES)
    c = write_synthetic_npy_features(tmp_path / "c", **{**SIZES, "seed": 6})
    assert a.models["trained"].database.tobytes() == b.models["trained"].database.tobytes()
    assert a.models["trained"].database.tobytes() != c.models["trained"].database.tobytes()


def test_synthesize_and_check_know_the_format(tmp_path):
    rec = synthesize("npy-features", tmp_path / "f", seed=1, models=["a", "b"], dim=8, landmarks=2, queries=2,
                     per_landmark=4, distractors=3)
    assert rec.counts == {"models": 2, "images": 11, "queries": 4}
    assert check("npy-features", rec.root) == []


@pytest.mark.parametrize("damage,reason", [
    (lambda r: (r / "queries.txt").unlink(), "queries.txt is missing"),
    (lambda r: (r / "database.txt").write_text("a\na\n"), "database.txt names a row twice"),
    (lambda r: np.save(r / "m" / "database.npy", np.zeros((3, 4), np.float32)), "m/database.npy has 3 rows"),
    (lambda r: np.save(r / "m" / "queries.npy", np.zeros((2, 5), np.float32)), "the queries' 5"),
    (lambda r: np.save(r / "m" / "queries.npy", np.zeros((2, 4), np.int64)), "should be a 2-d float array"),
    (lambda r: np.save(r / "m" / "queries.npy", np.zeros(8, np.float32)), "should be a 2-d float array"),
    (lambda r: np.save(r / "m" / "queries.npy", np.array([[np.nan] * 4] * 2, np.float32)), "NaN or infinite"),
    (lambda r: np.save(r / "m" / "queries.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True),
     "holds Python objects"),
    (lambda r: (r / "m" / "queries.npy").write_bytes(b"not numpy"), "not a .npy file"),
    (lambda r: (r / "m" / "database.npy").unlink(), "m/database.npy is missing"),
    (lambda r: (r / "m e").mkdir(), "'m e' is not a model name"),
])
def test_a_broken_layout_is_refused_with_its_reason(tmp_path, damage, reason):
    root = tmp_path / "f"
    root.mkdir()
    (root / "database.txt").write_text("a\nb\n")
    (root / "queries.txt").write_text("q1\nq2\n")
    (root / "m").mkdir()
    np.save(root / "m" / "database.npy", np.ones((2, 4), np.float32))
    np.save(root / "m" / "queries.npy", np.ones((2, 4), np.float64))
    assert check("npy-features", root) == []
    damage(root)
    with pytest.raises(ValueError, match="npy-features at ") as err:
        read_npy_features(root)
    assert reason in str(err.value)
    assert any(reason in p for p in check("npy-features", root))


def test_no_model_and_no_folder_are_problems_too(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no model folder" in " ".join(check("npy-features", tmp_path / "empty"))
    assert check("npy-features", tmp_path / "absent") == [f"npy-features at {tmp_path / 'absent'}: the folder does not exist"]
