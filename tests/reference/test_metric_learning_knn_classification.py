"""reference.metric_learning, reference.knn and reference.classification
against brute force, scipy, scikit-learn and the seeds' worked examples."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import top_k_accuracy_score
from sklearn.neighbors import KNeighborsClassifier

from reference import classification as C
from reference import knn as K
from reference import metric_learning as M

TEST_IMG = np.array([[56, 32, 10, 18], [90, 23, 128, 133], [24, 26, 178, 200], [2, 0, 255, 220]])
TRAIN_IMG = np.array([[10, 20, 24, 17], [8, 10, 89, 100], [12, 16, 178, 170], [4, 32, 233, 112]])


def test_l1_distance_lecture_example():
    # Lecture 6: pixel-wise absolute differences add up to 456
    assert K.l1_distance(TEST_IMG, TRAIN_IMG) == 456.0
    assert K.l1_distance(TEST_IMG.astype(np.uint8), TRAIN_IMG.astype(np.uint8)) == 456.0  # no uint8 wrap-around
    assert K.l2_distance(TEST_IMG, TRAIN_IMG) == pytest.approx(np.sqrt(((TEST_IMG - TRAIN_IMG) ** 2).sum()))


def test_pairwise_distances_match_scipy(rng):
    a, b = rng.standard_normal((7, 2, 3)), rng.standard_normal((5, 2, 3))
    assert np.allclose(K.pairwise_l1_distances(a, b, chunk_size=3), cdist(a.reshape(7, -1), b.reshape(5, -1), "cityblock"))
    assert np.allclose(K.pairwise_l2_distances(a, b), cdist(a.reshape(7, -1), b.reshape(5, -1)))
    x = rng.standard_normal((6, 4))
    assert np.allclose(M.pairwise_distances(x), cdist(x, x), atol=1e-7)


@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_knn_matches_sklearn_with_smallest_label_ties(rng, k):
    x = rng.standard_normal((60, 3))
    y = rng.integers(0, 4, 60)
    t = rng.standard_normal((40, 3))
    sk = KNeighborsClassifier(k, algorithm="brute").fit(x, y).predict(t)
    assert np.array_equal(K.knn_predict(x, y, t, k, tie_break="smallest_label"), sk)


def test_knn_nearest_tie_rule_and_l1():
    x = np.array([[0.0], [1.0], [-2.0], [3.0]])
    y = np.array([5, 2, 2, 5])
    # k = 2 at 0.4: neighbours 0 (label 5, d .4) and 1 (label 2, d .6): tie -> nearest is label 5
    assert K.knn_predict(x, y, [[0.4]], 2).tolist() == [5]
    assert K.knn_predict(x, y, [[0.4]], 2, tie_break="smallest_label").tolist() == [2]
    assert K.knn_predict(x, y, [[0.9]], 2).tolist() == [2]
    # k = 3: two votes for 2 beat one for 5
    assert K.knn_predict(x, y, [[0.0]], 3).tolist() == [2]
    assert K.knn_predict(x, y, [[2.9]], 1, metric="l1").tolist() == [5]


def test_random_triplets_follow_the_recipe():
    labels = np.repeat(np.arange(5), 4)
    labels = np.concatenate([labels, [9]])  # a class with one image can only be a negative
    t = M.random_triplets(labels, 500, seed=0)
    assert t.shape == (500, 3)
    assert np.all(labels[t[:, 0]] == labels[t[:, 1]]) and np.all(t[:, 0] != t[:, 1])
    assert np.all(labels[t[:, 2]] != labels[t[:, 0]])
    assert np.array_equal(t, M.random_triplets(labels, 500, seed=0))
    assert not np.array_equal(t, M.random_triplets(labels, 500, seed=1))
    assert 9 not in labels[t[:, 0]] and 9 in labels[t[:, 2]]


def test_hard_triplets_choose_nearest_negative_by_brute_force(rng):
    labels = np.repeat(np.arange(4), 6)
    e = rng.standard_normal((24, 5))
    for mode in ("random", "any"):
        t = M.hard_triplets(e, labels, 100, seed=3, negative_class=mode)
        for a, p, n in t:
            assert labels[a] == labels[p] and a != p and labels[n] != labels[a]
            pool = [j for j in range(24) if (labels[j] == labels[n] if mode == "random" else labels[j] != labels[a])]
            assert n == min(pool, key=lambda j: (np.sum((e[j] - e[a]) ** 2), j))


def test_hardest_negatives_vectorised_equals_loop(rng):
    labels = rng.integers(0, 8, 200)
    e = rng.standard_normal((200, 16))
    fast = M.hardest_negatives(e, labels)
    for i in range(200):
        cand = [j for j in range(200) if labels[j] != labels[i]]
        assert fast[i] == min(cand, key=lambda j: np.sum((e[j] - e[i]) ** 2))
    assert M.hardest_negatives(np.zeros((2, 2)), [1, 1]).tolist() == [-1, -1]


def test_one_shot_tasks_and_accuracy():
    labels = np.repeat(np.arange(30), 3)
    tasks = M.make_one_shot_tasks(labels, n_way=20, num_tasks=250, seed=7)
    q, s, tg = tasks["query"], tasks["support"], tasks["target"]
    assert q.shape == (250,) and s.shape == (250, 20)
    assert np.all(labels[s[np.arange(250), tg]] == labels[q])
    assert np.all(s[np.arange(250), tg] != q)
    for row in s:
        assert len(set(labels[row])) == 20  # 20 distinct classes
    assert np.array_equal(tasks["support"], M.make_one_shot_tasks(labels, 20, 250, seed=7)["support"])
    # embeddings = class centres: every task is solved; targets are spread over positions
    perfect = np.eye(30)[labels] * 5.0
    assert M.one_shot_accuracy(perfect, tasks) == 1.0
    assert M.one_shot_accuracy(perfect, tasks, metric="inner_product") == 1.0
    # constant embeddings: ties go to position 0 -> accuracy = share of targets at 0
    assert M.one_shot_accuracy(np.zeros((90, 2)), tasks) == pytest.approx(np.mean(tg == 0))
    assert len(np.unique(tg)) > 10


def test_select_threshold_equals_brute_force(rng):
    d = np.round(rng.uniform(0, 2, 80), 2)
    lab = (d + rng.normal(0, 0.4, 80) > 1).astype(int)  # 1 = different
    t, acc = M.select_threshold(d, lab)
    grid = np.unique(np.concatenate([d, d - 1e-9, [d.min() - 1]]))
    best = max(np.mean((d > g).astype(int) == lab) for g in grid)
    assert acc == pytest.approx(best)
    assert np.mean(M.verification_predictions(d, t) == lab) == pytest.approx(acc)
    assert M.select_threshold([0.1, 0.2, 0.9, 1.0], [0, 0, 1, 1]) == (pytest.approx(0.55), 1.0)


def test_accuracy_and_top_k_against_sklearn(rng):
    s = rng.standard_normal((50, 10))
    y = rng.integers(0, 10, 50)
    assert C.accuracy(y, s) == pytest.approx(np.mean(s.argmax(1) == y))
    assert C.accuracy(y, s.argmax(1)) == C.accuracy(y, s)
    for k in (1, 3, 5):
        assert C.top_k_accuracy(y, s, k) == pytest.approx(top_k_accuracy_score(y, s, k=k, labels=np.arange(10)))
    assert C.top_k_accuracy(y, s, 10) == 1.0


def test_early_stopping_rules():
    v = [1.0, 0.8, 0.7, 0.72, 0.6, 0.65, 0.5]
    r = C.early_stopping(v)  # stop as soon as the loss starts to increase
    assert r == {"stop_epoch": 3, "best_epoch": 2, "best_loss": 0.7}
    assert C.early_stopping(v, patience=1)["stop_epoch"] is None  # increases are not consecutive
    assert C.early_stopping([1.0, 0.9, 0.95, 0.97], patience=1)["stop_epoch"] == 3
    assert C.early_stopping([3, 2, 1])["stop_epoch"] is None
    assert C.early_stopping([1.0, 1.0, 0.9])["stop_epoch"] is None  # equal is not an increase
    assert C.early_stopping([1.0, 1.0, 0.9], rule="no_improvement")["stop_epoch"] == 1
    assert C.early_stopping(v, rule="no_improvement", patience=1)["stop_epoch"] is None
    es = C.EarlyStopping()
    stops = [es.step(x) for x in v]
    assert stops.index(True) == 3 and es.best_epoch == 2
