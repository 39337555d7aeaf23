"""reference.retrieval for dlip-a2 (issue 14): Oxford 5k AP / mAP, PCA whitening, GeM gradients."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.metrics import average_precision_score

from reference import retrieval as R


# ----------------------------------------------------------------------------- Oxford AP
def _compute_ap_loop(ranked, positives, junk):
    """compute_ap.cpp's walk, restated: skip junk without advancing the rank; at every other
    item, add the recall step times the mean of the precision before and after it."""
    positives, junk = set(positives), set(junk)
    hits = rank = 0
    ap, recall_before, precision_before = 0.0, 0.0, 1.0
    for item in ranked:
        if item in junk:
            continue
        hits += item in positives
        rank += 1
        recall, precision = hits / len(positives), hits / rank
        ap += (recall - recall_before) * (precision_before + precision) / 2
        recall_before, precision_before = recall, precision
    return ap


def test_hand_computed_example():
    # ranking [p, n, p, junk, n, p], 3 positives. Junk out: [p, n, p, n, p], the positives
    # at 0-based ranks r = 0, 2, 4 (k = 0, 1, 2 positives before each).
    #   k=0, r=0: before 1 (nothing ranked yet), after 1/1           -> mean 1
    #   k=1, r=2: before 1/2,                   after 2/3            -> mean 7/12
    #   k=2, r=4: before 2/4,                   after 3/5            -> mean 11/20
    # AP = (1 + 7/12 + 11/20) / 3 = (60 + 35 + 33) / 60 / 3 = 128/180 = 32/45 = 0.7111...
    ranked = ["a", "x", "b", "j", "y", "c"]
    ap = R.oxford_average_precision(ranked, good=["a", "b"], ok=["c"], junk=["j"])
    assert ap == pytest.approx(32 / 45, abs=1e-15)
    assert _compute_ap_loop(ranked, ["a", "b", "c"], ["j"]) == pytest.approx(32 / 45, abs=1e-15)
    # the same with indices, as a numpy array and as a tensor
    idx = np.array([0, 7, 1, 9, 8, 2])
    assert R.oxford_average_precision(idx, [0, 1], [2], [9]) == pytest.approx(32 / 45, abs=1e-15)
    assert R.oxford_average_precision(torch.tensor(idx), np.array([0, 1, 2]), junk=[9]) == pytest.approx(32 / 45)


def test_junk_is_removed_not_negative():
    ranked = ["a", "x", "b", "j", "y", "c"]
    # junk kept as a negative: [p, n, p, n, n, p], the last positive at r=5:
    # before 2/5, after 3/6 -> 9/20; AP = (1 + 7/12 + 9/20)/3 = 122/180 = 61/90
    assert R.oxford_average_precision(ranked, ["a", "b", "c"]) == pytest.approx(61 / 90, abs=1e-15)
    # where the junk stands does not matter, nor how many there are
    for moved in (["j", "a", "x", "b", "y", "c"], ["a", "x", "b", "y", "c", "j"],
                  ["j", "a", "k", "x", "b", "y", "l", "c"]):
        assert R.oxford_average_precision(moved, ["a", "b", "c"], junk=["j", "k", "l"]) == pytest.approx(32 / 45)
    # a junk image is never a positive, even first
    assert R.oxford_average_precision(["j", "a"], ["a"], junk=["j"]) == 1.0


def test_ok_counts_as_positive():
    ranked = ["a", "x", "b", "j", "y", "c"]
    ap = R.oxford_average_precision(ranked, good=["a", "b", "c"], junk=["j"])
    assert R.oxford_average_precision(ranked, good=["a"], ok=["b", "c"], junk=["j"]) == ap
    assert R.oxford_average_precision(ranked, good=["c"], ok=["a", "b"], junk=["j"]) == ap
    # leaving ok out makes b and c negatives: [p, n, n, n, n], AP = 1/1
    assert R.oxford_average_precision(ranked, good=["a"], junk=["j"]) == 1.0
    # ... and with ok counted the AP is lower (two positives further down)
    assert ap < 1.0
    # an image in both good and ok counts once
    assert R.oxford_average_precision(ranked, good=["a", "b", "c"], ok=["c"], junk=["j"]) == ap


def test_positives_never_retrieved_add_nothing():
    # 4 positives, a top-3 list retrieves 2: [p, n, p] -> (1 + (1/2 + 2/3)/2) / 4 = 19/48
    assert R.oxford_average_precision(["a", "x", "b"], ["a", "b", "c", "d"]) == pytest.approx(19 / 48, abs=1e-15)
    # a perfect top-k that misses some positives: recall stops at 2/4, AP = 1/2
    assert R.oxford_average_precision(["a", "b"], ["a", "b", "c", "d"]) == pytest.approx(0.5)
    assert R.oxford_average_precision([], ["a", "b", "c", "d"]) == 0.0


def test_errors():
    with pytest.raises(ValueError, match="no positive images: good and ok are both empty"):
        R.oxford_average_precision(["a", "b"], good=[], ok=[], junk=["a"])
    with pytest.raises(ValueError, match="ranked lists 'b' more than once"):
        R.oxford_average_precision(["a", "b", "c", "b"], ["a"])
    with pytest.raises(TypeError, match="sequence of names, not a single string"):
        R.oxford_average_precision("abc", ["a"])


@st.composite
def _labelled_rankings(draw):
    n = draw(st.integers(1, 30))
    kinds = draw(st.lists(st.sampled_from("gonj"), min_size=n, max_size=n))  # good, ok, negative, junk
    if "g" not in kinds and "o" not in kinds:
        kinds[draw(st.integers(0, n - 1))] = "g"
    cut = draw(st.integers(0, n))  # the ranking may be a top-k list
    return list(range(n)), kinds, cut


@settings(max_examples=200, deadline=None)
@given(_labelled_rankings())
def test_property_matches_the_compute_ap_walk(case):
    items, kinds, cut = case
    good = [i for i, k in zip(items, kinds) if k == "g"]
    ok = [i for i, k in zip(items, kinds) if k == "o"]
    junk = [i for i, k in zip(items, kinds) if k == "j"]
    ap = R.oxford_average_precision(items[:cut], good, ok, junk)
    assert ap == pytest.approx(_compute_ap_loop(items[:cut], good + ok, junk), abs=1e-12)
    assert 0.0 <= ap <= 1.0


@settings(max_examples=200, deadline=None)
@given(_labelled_rankings())
def test_property_against_sklearn(case):
    """With every item ranked and junk dropped, sklearn's step-wise AP is (1/|P|) sum of the
    precision after each positive; the trapezoid also averages in the precision before it,
    so it is never larger; the gap is (1/2|P|) sum_k (r_k - k) / (r_k (r_k + 1))."""
    items, kinds, _ = case
    kept = [k for k in kinds if k != "j"]
    y = np.array([k in "go" for k in kept])
    scores = -np.arange(len(kept), dtype=float)  # distinct, decreasing with the rank
    ours = R.oxford_average_precision(items, [i for i, k in zip(items, kinds) if k == "g"],
                                      [i for i, k in zip(items, kinds) if k == "o"],
                                      [i for i, k in zip(items, kinds) if k == "j"])
    theirs = average_precision_score(y, scores)
    r = np.flatnonzero(y)
    k = np.arange(r.size)
    gap = np.sum(np.divide(r - k, r * (r + 1.0), out=np.zeros(r.size), where=r > 0)) / (2 * r.size)
    assert ours == pytest.approx(theirs - gap, abs=1e-12)
    assert ours <= theirs + 1e-12
    perfect = not np.any(np.diff(y.astype(int)) > 0)  # no negative before a positive
    assert (ours == pytest.approx(theirs, abs=1e-12)) == perfect


def test_sklearn_agrees_on_perfect_rankings_and_differs_otherwise():
    # conventions agree: all positives first (junk anywhere), both give 1
    ranked = ["a", "j", "b", "c", "x", "y"]
    y = np.array([1, 1, 1, 0, 0])  # junk dropped
    assert R.oxford_average_precision(ranked, ["a", "b", "c"], junk=["j"]) == 1.0
    assert average_precision_score(y, -np.arange(5)) == 1.0
    # documented difference, [p, n, p]: sklearn (1 + 2/3)/2 = 5/6; trapezoid (1 + (1/2 + 2/3)/2)/2 = 19/24
    assert average_precision_score([1, 0, 1], [3, 2, 1]) == pytest.approx(5 / 6)
    assert R.oxford_average_precision(["a", "x", "b"], ["a", "b"]) == pytest.approx(19 / 24)
    # the existing sklearn-identical AP in the module is the step-wise one
    assert R.average_precision([1, 0, 1], [3, 2, 1]) == pytest.approx(5 / 6)


def test_oxford_map_over_queries():
    rankings = {"q1": ["a", "x", "b", "j", "y", "c"], "q2": ["x", "a"], "q3": np.array([5, 6])}
    gt = {"q1": {"good": ["a", "b"], "ok": ["c"], "junk": ["j"]},
          "q2": SimpleNamespace(good=("a",), ok=(), junk=()),  # a record with attributes
          "q3": {"good": [6]}}  # ok and junk missing: empty
    mean, aps = R.oxford_map(rankings, gt)
    # q2: [n, p], the positive at r=1: before 0/1, after 1/2 -> AP 1/4; q3 likewise
    assert aps == pytest.approx({"q1": 32 / 45, "q2": 0.25, "q3": 0.25})
    assert list(aps) == ["q1", "q2", "q3"]
    assert mean == pytest.approx((32 / 45 + 0.25 + 0.25) / 3)
    with pytest.raises(ValueError, match="no ground truth for ranked query 'q4'"):
        R.oxford_map({**rankings, "q4": ["a"]}, gt)
    with pytest.raises(ValueError, match="no ranking for query 'q3' of the ground truth"):
        R.oxford_map({"q1": rankings["q1"], "q2": ["a"]}, gt)
    with pytest.raises(ValueError, match="query 'q2': no positive images"):
        R.oxford_map(rankings, {**gt, "q2": {"good": [], "ok": []}})


def test_oxford_map_of_55_perfect_queries_is_one(rng):
    names = [f"{lm}_{k}" for lm in range(11) for k in range(1, 6)]
    rankings, gt = {}, {}
    for q in names:
        good = [f"{q}_g{i}" for i in range(rng.integers(1, 6))]
        junk = [f"{q}_j{i}" for i in range(3)]
        rankings[q] = list(rng.permutation(good + junk)) + ["n1", "n2"]  # junk among the positives
        gt[q] = {"good": good, "junk": junk}
    mean, aps = R.oxford_map(rankings, gt)
    assert len(aps) == 55 and mean == 1.0


# ----------------------------------------------------------------------------- PCA whitening
def _correlated(rng, n, d):
    scales = np.linspace(3.0, 0.2, d)  # distinct variances: components defined up to sign
    return rng.standard_normal((n, d)) * scales @ np.linalg.qr(rng.standard_normal((d, d)))[0] + 5.0


def _same_up_to_sign(a, b, atol=1e-8):
    signs = np.sign(np.sum(a * b, axis=0))
    return np.allclose(a, b * signs, atol=atol)


@pytest.mark.parametrize("dim, eps", [(None, 0.0), (4, 1e-2), (2, 0.3)])
def test_whitening_matches_sklearn_up_to_sign(rng, dim, eps):
    train, test = _correlated(rng, 300, 7), _correlated(rng, 50, 7)
    model = R.pca_whitening_fit(train, dim=dim, eps=eps)
    ref = PCA(n_components=dim, whiten=True).fit(train)
    assert np.allclose(model.mean, ref.mean_)
    assert np.allclose(model.eigenvalues, ref.explained_variance_)
    assert np.all(np.diff(model.eigenvalues) < 0)  # decreasing
    assert _same_up_to_sign(model.eigenvectors, ref.components_.T)
    # sklearn divides by sqrt(lambda); here sqrt(lambda + eps): undo the difference
    undo = np.sqrt((model.eigenvalues + eps) / model.eigenvalues)
    for x in (train, test):  # learned on one set, applied to another
        ours = R.pca_whitening_apply(model, x, renormalize=False)
        assert ours.shape == (x.shape[0], dim or 7)
        assert _same_up_to_sign(ours * undo, ref.transform(x))
        if eps > 0:
            assert not _same_up_to_sign(ours, ref.transform(x))  # eps is really used
    # the sign rule: each eigenvector's largest-magnitude entry is positive
    u = model.eigenvectors
    assert np.all(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])] > 0)
    assert np.allclose(model.projection, (u / np.sqrt(model.eigenvalues + eps)).T)


def test_whitened_training_data_has_identity_covariance(rng):
    x = _correlated(rng, 200, 6)
    z = R.pca_whitening_apply(R.pca_whitening_fit(x, eps=0.0), x, renormalize=False)
    assert np.allclose(z.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(np.cov(z, rowvar=False), np.eye(6), atol=1e-10)
    z = R.pca_whitening_apply(R.pca_whitening_fit(x, dim=3, eps=0.0, ddof=0), x, renormalize=False)
    assert np.allclose(np.cov(z, rowvar=False, ddof=0), np.eye(3), atol=1e-10)
    # with eps the covariance is diag(lambda / (lambda + eps))
    m = R.pca_whitening_fit(x, eps=0.5)
    z = R.pca_whitening_apply(m, x, renormalize=False)
    assert np.allclose(np.cov(z, rowvar=False), np.diag(m.eigenvalues / (m.eigenvalues + 0.5)), atol=1e-10)


def test_whitening_renormalises_and_matches_cirtorch(rng):
    train, test = _correlated(rng, 100, 5), _correlated(rng, 20, 5)
    z = R.pca_whitening_apply(R.pca_whitening_fit(train, dim=3), test)
    assert z.shape == (20, 3) and np.allclose(np.linalg.norm(z, axis=1), 1.0)
    # cirtorch (pcawhitenlearn / whitenapply), written out on columns: covariance / N, no eps
    xt = train.T
    m = xt.mean(axis=1, keepdims=True)
    cov = (xt - m) @ (xt - m).T / xt.shape[1]
    val, vec = np.linalg.eigh(cov)
    order = val.argsort()[::-1]
    p = np.diag(val[order] ** -0.5) @ vec[:, order].T
    w = p[:3] @ (test.T - m)
    w = (w / (np.linalg.norm(w, axis=0, keepdims=True) + 1e-6)).T
    z0 = R.pca_whitening_apply(R.pca_whitening_fit(train, dim=3, eps=0.0, ddof=0), test)
    assert _same_up_to_sign(z0, w, atol=1e-5)
    assert _same_up_to_sign(z, w, atol=1e-5)  # ddof=1 and eps=1e-8: same after re-normalising
    # one vector in, one out
    assert np.allclose(R.pca_whitening_apply(R.pca_whitening_fit(train, dim=3), test[0]), z[0])


def test_whitening_errors(rng):
    x = rng.standard_normal((10, 4))
    with pytest.raises(ValueError, match="dim must be between 1 and 4"):
        R.pca_whitening_fit(x, dim=5)
    with pytest.raises(ValueError, match="more than 1 sample"):
        R.pca_whitening_fit(x[:1])
    with pytest.raises(ValueError, match="a kept eigenvalue is 0 and eps is 0"):
        R.pca_whitening_fit(np.c_[x, np.zeros(10)], eps=0.0)
    with pytest.raises(ValueError, match=r"x must be \(n, 4\)"):
        R.pca_whitening_apply(R.pca_whitening_fit(x), rng.standard_normal((3, 5)))
    # rank-deficient data with the default eps stays finite
    z = R.pca_whitening_apply(R.pca_whitening_fit(x[:3]), x)
    assert np.all(np.isfinite(z))


# ----------------------------------------------------------------------------- GeM gradients
def _torch_gem(x, p, eps=1e-6):
    """GeM as cirtorch writes it: clamp(eps), power p, spatial mean, power 1/p."""
    return x.clamp(min=eps).pow(p.view(1, -1, 1, 1)).mean(dim=(-2, -1)).pow(1.0 / p.view(1, -1))


def _numeric_grad(f, a, h=1e-6):
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        up, down = a.copy(), a.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(up) - f(down)) / (2 * h)
    return g


@pytest.mark.parametrize("p0", [[3.0, 3.0], [1.5, 4.0]])
def test_gem_gradients_match_torch_autograd(rng, p0):
    x = rng.uniform(0.1, 2.0, (2, 2, 3, 3))
    w = rng.standard_normal((2, 2))  # a random linear read-out, so every output matters
    p = np.array(p0)
    xt = torch.tensor(x, requires_grad=True)
    pt = torch.tensor(p, requires_grad=True)
    out = _torch_gem(xt, pt)
    assert np.allclose(out.detach().numpy(), R.gem_pool(x, p))
    (out * torch.tensor(w)).sum().backward()
    gx = _numeric_grad(lambda a: np.sum(R.gem_pool(a, p) * w), x)
    gp = _numeric_grad(lambda a: np.sum(R.gem_pool(x, a) * w), p)
    assert np.allclose(xt.grad.numpy(), gx, atol=1e-6)
    assert np.allclose(pt.grad.numpy(), gp, atol=1e-6)
    # closed forms: f = M^(1/p), M = mean(x^p);
    #   df/dx_i = x_i^(p-1) f^(1-p) / |X|,  df/dp = f (mean(x^p ln x) / (p M) - ln M / p^2)
    f = R.gem_pool(x, p)[:, :, None, None]
    pp = p[None, :, None, None]
    dfdx = x ** (pp - 1) * f ** (1 - pp) / 9
    assert np.allclose(xt.grad.numpy(), dfdx * w[:, :, None, None])
    big_m = np.mean(x ** pp, axis=(2, 3))
    dfdp = f[..., 0, 0] * (np.mean(x ** pp * np.log(x), axis=(2, 3)) / (p * big_m) - np.log(big_m) / p ** 2)
    assert np.allclose(pt.grad.numpy(), np.sum(dfdp * w, axis=0))


def test_gem_eps_clamp(rng):
    x = rng.uniform(0.1, 2.0, (1, 3, 4, 4))
    x[0, :, 0, :2] = [0.0, -0.5]  # post-ReLU zeros, and a negative the clamp also lifts
    eps = 1e-3
    assert np.allclose(R.gem_pool(x, 3.0, eps=eps), R.gem_pool(np.maximum(x, eps), 3.0, eps=0))
    assert not np.allclose(R.gem_pool(x, 3.0, eps=0.5), R.gem_pool(np.maximum(x, 0), 3.0, eps=1e-12))
    with pytest.raises(ValueError, match="non-negative"):
        R.gem_pool(x, 3.0, eps=0)
    # clamped entries get no gradient, in torch and in the reference's finite differences
    xt = torch.tensor(x, requires_grad=True)
    _torch_gem(xt, torch.tensor([3.0] * 3), eps).sum().backward()
    gx = _numeric_grad(lambda a: R.gem_pool(a, 3.0, eps=eps).sum(), x, h=1e-5)
    assert np.all(xt.grad.numpy()[0, :, 0, :2] == 0) and np.allclose(gx[0, :, 0, :2], 0)
    assert np.allclose(xt.grad.numpy(), gx, atol=1e-6)
