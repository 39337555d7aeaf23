"""reference.retrieval against sklearn's average_precision_score, torch
(F.normalize, torchvision AlexNet), brute force and hypothesis properties."""

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.cluster import KMeans
from sklearn.metrics import average_precision_score

from reference import retrieval as R


def test_l2_normalize_matches_torch(rng):
    x = rng.standard_normal((5, 7))
    x[2] = 0
    ref = torch.nn.functional.normalize(torch.tensor(x), dim=1).numpy()
    assert np.allclose(R.l2_normalize(x), ref)
    assert np.allclose(np.linalg.norm(R.l2_normalize(x)[[0, 1, 3, 4]], axis=1), 1)


def test_gem_limits_and_reference(rng):
    x = rng.uniform(0.1, 2.0, (2, 4, 5, 6))
    assert np.allclose(R.gem_pool(x, p=1.0), x.mean(axis=(2, 3)))
    assert np.allclose(R.gem_pool(x, p=np.inf), x.max(axis=(2, 3)))
    assert np.allclose(R.gem_pool(x, p=500.0), x.max(axis=(2, 3)), rtol=1e-2)
    # p = 3 written out (cirtorch: clamp(eps).pow(p).mean().pow(1/p))
    xt = torch.tensor(x)
    ref = torch.nn.functional.avg_pool2d(xt.clamp(min=1e-6).pow(3), (5, 6)).pow(1 / 3).squeeze(-1).squeeze(-1)
    assert np.allclose(R.gem_pool(x, 3.0), ref.numpy())
    # N x N x 256 map pools to 256 values (retrieval practical Q8)
    assert R.gem_pool(rng.uniform(0, 1, (256, 7, 7))).shape == (256,)
    # per-channel p
    p = np.array([1.0, 2.0, 3.0, np.inf])
    out = R.gem_pool(x, p)
    for c in range(4):
        assert np.allclose(out[:, c], R.gem_pool(x[:, c:c + 1], p[c])[:, 0])


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, (3, 4, 4), elements=st.floats(0.01, 100.0)), st.floats(1.0, 50.0))
def test_property_gem_between_mean_and_max_and_monotone(x, p):
    g = R.gem_pool(x, p, eps=0)
    mean, mx = x.reshape(3, -1).mean(1), x.reshape(3, -1).max(1)
    assert np.all(g >= mean * (1 - 1e-9)) and np.all(g <= mx * (1 + 1e-9))
    assert np.all(R.gem_pool(x, p + 1.0, eps=0) >= g * (1 - 1e-9))  # power-mean inequality


def test_alexnet_fc7_is_classifier_without_last_layer(rng):
    torch.manual_seed(0)
    model = torchvision.models.alexnet(weights=None)
    x = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)
    feats = R.alexnet_fc7(model, x)
    assert feats.shape == (2, 4096) and feats.dtype == np.float64
    model.eval()
    with torch.no_grad():
        t = torch.tensor(x)
        h = torch.flatten(model.avgpool(model.features(t)), 1)
        ref = model.classifier[:-1](h).numpy()
    assert np.allclose(feats, ref, atol=1e-5)


def test_neural_codes_are_unit_length(rng):
    from reference.architectures import babenko_convnet

    torch.manual_seed(0)
    model = babenko_convnet()
    x = rng.uniform(0, 1, (3, 3, 64, 64)).astype(np.float32)
    codes = R.neural_codes(model, x)
    assert codes["layer5"].shape == (3, 12544) and codes["layer6"].shape == (3, 2048)
    for c in codes.values():
        assert np.allclose(np.linalg.norm(c, axis=1), 1)
    assert model.training  # restored


def test_ranking_and_euclidean_equivalence(rng):
    f = R.l2_normalize(rng.standard_normal((30, 8)))
    order = R.rank_by_inner_product(f, f, exclude_self=True)
    assert order.shape == (30, 29) and not np.any(order == np.arange(30)[:, None])
    d = np.linalg.norm(f[:, None] - f[None], axis=2) ** 2
    np.fill_diagonal(d, np.inf)
    assert np.array_equal(order[:, :5], np.argsort(d, axis=1, kind="stable")[:, :5])
    assert np.allclose(R.squared_euclidean_from_inner_product(f @ f.T), np.where(np.isinf(d), 0, d), atol=1e-12)
    idx, same = R.top_k_retrieval(f, 5, query_indices=range(10), labels=np.arange(30) % 3)
    assert np.array_equal(idx, order[:10, :5]) and same.shape == (10, 5)
    assert np.array_equal(same, (np.arange(30) % 3)[idx] == (np.arange(10) % 3)[:, None])


def test_average_precision_matches_sklearn_including_ties(rng):
    for trial in range(300):
        n = int(rng.integers(2, 40))
        if trial % 3 == 0:
            s = rng.standard_normal(n)
        else:
            s = rng.integers(-3, 4, n) * (0.5 if trial % 2 else 1.0)
        y = rng.random(n) < 0.3
        y[rng.integers(n)] = True
        assert R.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    # 1-ulp neighbours and signed zeros go through the exact path
    s = np.array([1.0, np.nextafter(1.0, 2.0), 0.0, -0.0, 0.5])
    y = np.array([0, 1, 1, 0, 1], bool)
    assert R.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_ap_hand_example():
    # ranking: rel, non, rel, non -> AP = (1/1 + 2/3) / 2
    assert R.average_precision([1, 0, 1, 0], [4.0, 3.0, 2.0, 1.0]) == pytest.approx((1 + 2 / 3) / 2)


def test_all_vs_all_map_matches_sklearn_loop(rng):
    n = 300
    labels = rng.integers(0, 6, n)
    f = R.l2_normalize(rng.standard_normal((n, 16)) + rng.standard_normal((6, 16))[labels])
    ap = R.average_precisions_all_vs_all(f, labels, chunk_size=37, n_jobs=2)
    s = f @ f.T
    ref = []
    for i in range(n):
        m = np.arange(n) != i
        ref.append(average_precision_score(labels[m] == labels[i], s[i, m]))
    assert np.allclose(ap, ref, atol=1e-12)
    assert R.mean_average_precision(f, labels) == pytest.approx(np.mean(ref), abs=1e-12)
    assert R.mean_average_precision(f, labels, n_jobs=1, chunk_size=1000) == pytest.approx(np.mean(ref), abs=1e-12)


def _sklearn_rows(s, rel, valid):
    return np.array([average_precision_score(rel[i][valid[i]], s[i][valid[i]]) for i in range(len(s))])


def test_ap_rows_near_ties_and_exact_ties_match_sklearn(rng):
    # scores 0, 1 or 2 ulps apart and exact ties, in rows long enough that
    # the 31-bit rank keys merge them: every row must take the exact path
    q, n = 40, 3000
    base = rng.choice([0.25, -0.5, 1.0], size=(q, n))
    s = np.where(rng.random((q, n)) < 0.5, base, np.nextafter(base, 2.0))
    s[::3] = np.nextafter(s[::3], 2.0)
    rel = rng.random((q, n)) < 0.2
    valid = rng.random((q, n)) < 0.9
    assert np.allclose(R.average_precision_rows(s, rel, valid), _sklearn_rows(s, rel, valid), atol=1e-12)


@pytest.mark.parametrize("keys_bytes", [None, 0], ids=["pair-keys", "product-per-chunk"])
def test_all_vs_all_with_too_narrow_bound_is_still_exact(rng, monkeypatch, keys_bytes):
    # the keys span [-bound, bound]; a wrong bound may merge keys (slower),
    # never reorder them: scores outside it are clipped to the end keys
    if keys_bytes is not None:
        monkeypatch.setattr(R, "KEYS_BYTES", keys_bytes)
    true_bound = R._score_bound
    monkeypatch.setattr(R, "_score_bound", lambda f: 0.2 * true_bound(f))
    # class 0 long vectors along +e1, class 1 short ones along -e1: a class-1
    # query sees its own class inside the bound and class 0 far below it
    n = 200
    labels = np.repeat([0, 1], n // 2)
    f = rng.standard_normal((n, 6)) * 0.05
    f[:, 0] += np.where(labels == 0, 3.0, -1.0)
    s = f @ f.T
    narrow = 0.2 * true_bound(f)
    valid = ~np.eye(n, dtype=bool)
    assert (s[labels == 1][:, labels == 0] < -narrow).all()
    assert (s[valid & (labels == 1)[:, None] & (labels == 1)[None, :]] < narrow).all()
    ref = _sklearn_rows(s, labels[:, None] == labels[None, :], valid)
    assert np.allclose(R.average_precisions_all_vs_all(f, labels, chunk_size=64, n_jobs=2), ref, atol=1e-12)


def test_all_vs_all_float32_keeps_its_precision_and_ties(rng):
    # small integer features: float32 products are exact, so ties are real and
    # sklearn sees the very same scores
    n = 400
    labels = rng.integers(0, 5, n)
    f = rng.integers(-2, 3, (n, 6)).astype(np.float32)
    s = f.astype(np.float64) @ f.T.astype(np.float64)
    valid = ~np.eye(n, dtype=bool)
    ref = _sklearn_rows(s, labels[:, None] == labels[None, :], valid)
    for jobs in (1, 2):
        ap = R.average_precisions_all_vs_all(f, labels, chunk_size=48, n_jobs=jobs)
        assert np.allclose(ap, ref, atol=1e-12, equal_nan=True)


def test_threads_leave_blas_thread_count_as_it_was(rng):
    import threadpoolctl  # a scikit-learn dependency

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    f = rng.standard_normal((300, 8))
    with threadpoolctl.threadpool_limits(2, user_api="blas"):  # a known count, whatever ran before
        assert blas_threads() and set(blas_threads()) == {2}
        R.mean_average_precision(f, rng.integers(0, 3, 300), n_jobs=2, chunk_size=32)
        assert set(blas_threads()) == {2}


@pytest.mark.parametrize("keys_bytes", [None, 0], ids=["pair-keys", "product-per-chunk"])
def test_all_vs_all_both_key_paths_match_sklearn(rng, monkeypatch, keys_bytes):
    if keys_bytes is not None:
        monkeypatch.setattr(R, "KEYS_BYTES", keys_bytes)
    monkeypatch.setattr(R, "BLOCK", 50)  # 6 blocks of 42-43 rows: edges inside chunks
    n = 257
    labels = rng.integers(0, 4, n)
    f = R.l2_normalize(rng.standard_normal((n, 12)) + rng.standard_normal((4, 12))[labels])
    s = f @ f.T
    valid = ~np.eye(n, dtype=bool)
    ref = _sklearn_rows(s, labels[:, None] == labels[None, :], valid)
    assert np.allclose(R.average_precisions_all_vs_all(f, labels, chunk_size=40, n_jobs=2), ref, atol=1e-12)


def test_pair_keys_are_the_rank_keys_of_every_score_mirrored(rng, monkeypatch):
    monkeypatch.setattr(R, "BLOCK", 30)
    n = 100
    labels = rng.integers(0, 3, n)
    f = rng.standard_normal((n, 5))
    bound = R._score_bound(f)
    scale = R._KEY_MAX / (2 * bound)
    with R._threads(2) as run:
        keys = R._pair_keys(f, labels, scale, bound * scale, run, R._Scratch())
    assert np.array_equal(keys, keys.T)  # each block serves its rows and, mirrored, its columns
    assert np.array_equal(keys & 1, labels[:, None] == labels[None, :])
    direct = R._rank_keys(f @ f.T, scale, bound * scale, clip=True).astype(np.int64)
    # the same key up to the rounding of a differently blocked product (one key step = 2)
    assert np.abs((keys.astype(np.int64) & ~1) - direct).max() <= 2


def test_all_vs_all_zero_features_tie_everything():
    # no usable score bound: every key ties and the exact path ranks all rows
    labels = np.repeat([0, 1, 2], 10)
    ap = R.average_precisions_all_vs_all(np.zeros((30, 4)), labels)
    assert np.allclose(ap, average_precision_score(np.r_[np.ones(9), np.zeros(20)], np.zeros(29)))
    assert np.allclose(ap, 9 / 29)
    assert R.average_precisions_all_vs_all(np.zeros((0, 4)), []).shape == (0,)


def test_map_query_without_relevant_items_is_left_out():
    f = np.eye(4)
    labels = np.array([0, 0, 1, 2])
    ap = R.average_precisions_all_vs_all(f, labels)
    assert np.isnan(ap[2]) and np.isnan(ap[3])
    assert R.mean_average_precision(f, labels) == pytest.approx(np.nanmean(ap))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_property_perfect_ranking_map_is_one(k, per, seed):
    r = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), per)
    centres = R.l2_normalize(r.standard_normal((k, 64))) * 10
    f = centres[labels] + 1e-3 * r.standard_normal((k * per, 64))
    assert R.mean_average_precision(f, labels) == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(2, 30), elements=st.floats(-5, 5)), st.data())
def test_property_ap_equals_sklearn(s, data):
    y = data.draw(arrays(bool, s.size))
    if not y.any():
        y[0] = True
    assert R.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_kmeans_reaches_sklearn_quality(rng):
    x = np.concatenate([rng.standard_normal((50, 2)) + c for c in ([0, 0], [8, 0], [0, 8])])
    c, a, inertia = R.kmeans(x, 3, seed=0)
    sk = KMeans(3, n_init=10, random_state=0).fit(x)
    assert inertia == pytest.approx(sk.inertia_, rel=1e-6)
    assert inertia == pytest.approx(((x - c[a]) ** 2).sum())
    c2, a2, _ = R.kmeans(x, 3, seed=0)
    assert np.array_equal(a, a2)  # reproducible from the seed


def test_product_quantisation_identities(rng):
    x = rng.standard_normal((400, 16))
    books = R.pq_train(x, num_subvectors=4, num_centroids=16, seed=0)
    assert books.shape == (4, 16, 4)
    codes = R.pq_encode(x, books)
    assert codes.shape == (400, 4) and codes.dtype == np.uint8
    rec = R.pq_decode(codes, books)
    # each sub-vector is mapped to its nearest centroid
    for m in range(4):
        d = ((x[:, None, 4 * m:4 * m + 4] - books[m][None]) ** 2).sum(-1)
        assert np.array_equal(codes[:, m], d.argmin(1))
    q = rng.standard_normal((5, 16))
    adc = R.pq_asymmetric_distances(q, codes, books)
    assert np.allclose(adc, ((q[:, None] - rec[None]) ** 2).sum(-1))  # ADC = ||q - q(y)||^2
    idx, dist = R.pq_search(q, codes, books, k=10)
    assert np.allclose(dist, np.sort(adc, axis=1)[:, :10])
    ex_idx, ex_d = R.exhaustive_search(q, x, k=10)
    assert np.allclose(ex_d, np.sort(((q[:, None] - x[None]) ** 2).sum(-1), axis=1)[:, :10])
    r100 = R.recall_at_r(R.pq_search(q, codes, books, k=100)[0], ex_idx, 100)
    assert R.recall_at_r(idx, ex_idx, 1) <= r100 <= 1.0
    assert 0 <= R.knn_intersection_recall(idx, ex_idx) <= 1


def test_pq_with_one_centroid_per_point_is_exact(rng):
    x = rng.standard_normal((12, 6))
    books = R.pq_train(x, 2, num_centroids=12, seed=1)
    codes = R.pq_encode(x, books)
    assert np.allclose(R.pq_decode(codes, books), x)
    q = rng.standard_normal((4, 6))
    assert R.recall_at_r(R.pq_search(q, codes, books, 1)[0], R.exhaustive_search(q, x, 1)[0], 1) == 1.0
    assert R.knn_intersection_recall(R.pq_search(q, codes, books, 3)[0], R.exhaustive_search(q, x, 3)[0]) == 1.0


def test_kmeans_from_given_centroids_matches_sklearn_lloyd(rng):
    """Same start, same algorithm: scikit-learn's Lloyd k-means from an explicit init."""
    x = rng.normal(size=(300, 4)) + np.repeat(np.eye(4)[:3] * 5, 100, axis=0)
    init = x[[0, 100, 200, 1, 2]]
    for n_iter in (1, 3, 20):
        sk = KMeans(5, init=init, n_init=1, max_iter=n_iter, algorithm="lloyd", tol=0).fit(x)
        c, assign, inertia = R.kmeans(x, 5, n_iter=n_iter, init=init, empty="keep")
        np.testing.assert_allclose(c, sk.cluster_centers_, rtol=1e-10, atol=1e-12)


def test_kmeans_keep_leaves_an_empty_cluster_in_place():
    x = np.array([[0.0], [0.1], [10.0], [10.1]])
    init = np.array([[0.0], [10.0], [100.0]])  # the third centroid never wins a point
    c, assign, _ = R.kmeans(x, 3, n_iter=5, init=init, empty="keep")
    np.testing.assert_allclose(c.ravel(), [0.05, 10.05, 100.0])
    c, _, _ = R.kmeans(x, 3, n_iter=5, init=init, empty="farthest")
    assert c[2, 0] != 100.0
