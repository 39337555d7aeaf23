"""Hidden graders of CV1 Assignment 5 (seed 000).

One test per auto-graded question, carrying all its points; every test draws fresh inputs
from ``rng`` and computes the expected values here, on the trusted side (from ``reference``,
or, where ``reference`` has no such function, from a few lines written and explained here).
Each test calls exactly one student function or reads only its own answer variables, so a
mistake costs only its own question. Questions 1.1-1.3, 2.d and 3.j are graded by staff
(``manual = true`` in assignment.toml) and have no test here.

What every test does, following the authoring checklist (docs/authoring.md, section 3):

* **Every argument counts.** ``n_iter`` (default 10) and ``k`` (default 10) are passed with
  other values, positionally and by keyword, and left out once so the default is used too;
  ``eps`` is drawn far from the customary 0.1 and takes two values; ``m`` is passed with
  labels that never reach the last class, so inferring it from the labels fails. Every size
  (M, K, sub-vector dimension, N, number of classes) takes at least two values, so code
  written for one shape fails.
* **Every documented edge case is built on purpose**, never left to chance: exact ties in
  k-means and in the encoding (two identical centroids: every formula, float32 included,
  gives both the same distance, so "lower index" decides), an empty cluster (a centroid far
  from all the data, which must keep its position), ``K`` above 256 (codes that do not fit
  ``uint8``), ``uint8`` codes for the search (``j * K + code`` in ``uint8`` wraps around),
  ``q_i = 0`` where ``p_i = 0`` for soft targets too, and rows of logits thousands apart (a
  softmax stabilised with the batch's maximum instead of each row's gives NaN).
* **"Do not modify init_codebooks in place"** (1.3a) is checked with ``call_watching``.
* **One dtype policy** (the notebook's rules say so): float32 answers are accepted. The
  spec's tolerances are floors; ``tol`` raises them to ``F32``, 100x or more above what a
  float32 computation of these inputs is off by, and far below the smallest mistake. Large
  logits are integers, which float32 holds exactly. Where the answer is a choice (a
  centroid, a ranking) rather than a number, the inputs leave no near-ties that rounding
  could decide: 1.3a redraws its data until every assignment step of the reference's run
  has a margin of at least ``MARGIN`` between the nearest centroid and the next distinct one
  (about 1000x float32's error on these distances; a redraw is needed about one time in six),
  1.3b accepts any centroid within rounding of the nearest one (the lowest index among
  identical centroids), and 1.3c compares the distances of what was returned. A float32
  answer therefore passes for every draw, and a wrong one fails for every draw.
"""
import numpy as np

from gradekit.grading import StudentError, assert_close, assert_equal, expect_array, question
from reference import architectures, losses, retrieval

F32 = {"rtol": 1e-4, "atol": 1e-6}
MARGIN = 1e-4        # smallest gap (squared distance) between nearest and next distinct centroid in 1.3a


def tol(tolerance, floor=F32):
    """The question's tolerance, raised to what a float32 answer needs (never lowered)."""
    return {"rtol": max(tolerance["rtol"], floor["rtol"]), "atol": max(tolerance["atol"], floor["atol"])}


# -- helpers ------------------------------------------------------------------------------
def clustered(rng, n, d=16, n_clusters=20, spread=1.0):
    """Vectors around a few random centres: PQ has structure to find, like real descriptors."""
    centres = rng.normal(size=(n_clusters, d)) * spread
    return centres, centres[rng.integers(0, n_clusters, n)] + rng.normal(size=(n, d))


def lloyd_from_init(x, init_codebooks, n_iter):
    """Expected codebooks of 1.3a, and the run's smallest assignment margin.

    Lloyd's k-means in each sub-space from the given centroids, ties to the lower index, an
    empty cluster keeping its centroid (the notebook's contract; ``reference.retrieval.kmeans``
    measures distances by the expanded formula and reports no margins, so it is written out
    here). The margin is the smallest gap, over every point and iteration, between the
    distance to the chosen centroid and to the nearest centroid not identical to it: ties
    between identical centroids are exact in every arithmetic, any other near-tie could be
    decided by rounding."""
    books = np.array(init_codebooks, dtype=float)
    m, k, ds = books.shape
    n = x.shape[0]
    margin = np.inf
    for j in range(m):
        sub = x[:, j * ds:(j + 1) * ds]
        c = books[j]
        for _ in range(n_iter):
            d = ((sub[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
            assign = d.argmin(axis=1)
            same = np.all(c[None, :, :] == c[assign][:, None, :], axis=2)
            gap = np.where(same, np.inf, d - d[np.arange(n), assign][:, None]).min(axis=1)
            margin = min(margin, float(gap.min()))
            for i in range(k):
                members = sub[assign == i]
                if len(members):
                    c[i] = members.mean(axis=0)
    return books, margin


def pq_train_case(rng, n, m, k, ds, n_iter_max=10):
    """Data and initial codebooks for 1.3a with both documented edge cases built in:
    centroid 1 is a copy of centroid 0 (every point that is nearest to them ties, and goes to
    0, so 1 is empty in the first iteration), and the last centroid lies far from all data (it
    never gets a point and must stay where it is). Redrawn until the reference's run has no
    near-ties that float rounding could decide (``MARGIN``)."""
    for _ in range(100):
        _, x = clustered(rng, n, m * ds)
        init = np.stack([x[rng.choice(n, k, replace=False), j * ds:(j + 1) * ds] for j in range(m)])
        init[:, 1] = init[:, 0]
        init[:, k - 1] = 20.0 + rng.uniform(0, 5, (m, ds))
        if lloyd_from_init(x, init, n_iter_max)[1] > MARGIN:
            return x, init
    raise RuntimeError("no well-separated draw for pq_train in 100 tries")  # never seen: about 1 in 6 is redrawn


def as_indices(value, name, shape, upper):
    arr = expect_array(value, name, shape=shape)
    if not np.all(arr == np.round(arr)):
        raise StudentError(f"{name} should hold integer indices")
    if arr.size and (arr.min() < 0 or arr.max() >= upper):
        raise StudentError(f"{name} holds indices outside 0..{upper - 1}")
    return arr.astype(np.int64)


def probabilities(rng, n, m, zeros=False):
    p = losses.softmax(rng.normal(size=(n, m)) * 2)
    if zeros:  # some exact zeros (never on the rows' true classes: the caller decides where)
        p[rng.random((n, m)) < 0.3] = 0.0
    return p


# -- Task 1: product quantization ---------------------------------------------------------
PQ_TRAIN_CASES = ((300, 2, 7, 4), (240, 4, 5, 2))    # (N, M, K, ds): two of each size


@question("1.3a", points=2)
def test_pq_train(submission, rng, tolerance):
    t = tol(tolerance, {"rtol": 1e-4, "atol": 1e-5})
    (n, m, k, ds), (n2, m2, k2, ds2) = PQ_TRAIN_CASES
    x, init = pq_train_case(rng, n, m, k, ds)
    calls = [((x, init, 1), {}, 1), ((x, init, 3), {}, 3), ((x, init), {}, 10)]   # 10: the default
    x2, init2 = pq_train_case(rng, n2, m2, k2, ds2)
    calls += [((x2, init2), {"n_iter": 2}, 2), ((x2, init2), {"n_iter": 7}, 7)]
    for args, kwargs, n_iter in calls:
        shown = "n_iter=10 (the default)" if len(args) == 2 and not kwargs else f"n_iter={n_iter}"
        what = f"pq_train(x, init_codebooks, {shown}) with M={args[1].shape[0]}, K={args[1].shape[1]}"
        books, changed = submission.call_watching("pq_train", *args, **kwargs)
        if changed:
            raise StudentError(f"{what} changed the init_codebooks it was given (in place); "
                               "train on a copy and leave the argument as it was")
        expected = lloyd_from_init(args[0], args[1], n_iter)[0]
        got = expect_array(books, what, shape=expected.shape)
        if not np.allclose(got[:, -1], expected[:, -1], rtol=0, atol=0.1):  # moved, not just rounded
            raise StudentError(f"{what}: a centroid that no sub-vector is assigned to should keep its position")
        assert_close(got, expected, **t, name=f"{what} (ties go to the lower index; an empty centroid stays)")


ENCODE_CASES = ((500, 8, 16, 2), (400, 2, 300, 3))   # (N, M, K, ds): K above 256 in the second


def encode_books(rng, x, m, k, ds):
    """Codebooks for 1.3b: centroids drawn from the data, and every fourth one a copy of the
    one before it, so that exact ties (lower index wins) occur for many points."""
    books = np.stack([x[rng.choice(len(x), k, replace=False), j * ds:(j + 1) * ds] for j in range(m)])
    books += rng.normal(scale=0.05, size=books.shape)
    books[:, 1::4] = books[:, 0:-1:4][:, :books[:, 1::4].shape[1]]
    return books


def check_codes(codes, x, books, what):
    """Each code is the nearest centroid of its sub-space: within rounding of the smallest
    distance (any float type), and the lowest index among centroids identical to it."""
    m, k, ds = books.shape
    for j in range(m):
        sub = x[:, j * ds:(j + 1) * ds]
        d = ((sub[:, None, :] - books[j][None, :, :]) ** 2).sum(axis=2)
        c = codes[:, j]
        chosen = d[np.arange(len(x)), c]
        slack = 1e-5 * (1.0 + (sub ** 2).sum(axis=1) + (books[j] ** 2).sum(axis=1).max())
        far = int(np.count_nonzero(chosen > d.min(axis=1) + slack))
        if far:
            raise StudentError(f"{what}: {far} of {len(x)} codes of sub-space {j} are not the index of the "
                               "nearest centroid")
        first = np.array([np.flatnonzero(np.all(books[j] == books[j][ci], axis=1))[0] for ci in range(k)])
        tied = int(np.count_nonzero(first[c] != c))
        if tied:
            raise StudentError(f"{what}: {tied} codes of sub-space {j} name a centroid that has an identical "
                               "copy at a lower index (on a tie, the lower index wins)")


@question("1.3b", points=1)
def test_pq_encode(submission, rng):
    for n, m, k, ds in ENCODE_CASES:
        _, x = clustered(rng, n, m * ds)
        books = encode_books(rng, x, m, k, ds)
        what = f"pq_encode(x, codebooks) with N={n}, M={m}, K={k}"
        codes = as_indices(submission.call("pq_encode", x, books), what, (n, m), k)
        check_codes(codes, x, books, what)


def pessimistic_recall(adc, exact, r):
    """Recall@r of the best possible ADC ranking, counting the true neighbour as found only if
    it is among the first r whatever order exactly tied items take."""
    d_nn = adc[np.arange(len(exact)), exact]
    rank = (adc <= d_nn[:, None]).sum(axis=1) - 1
    return float(np.mean(rank < r))


SEARCH_CASES = (  # (N, n_queries, M, K, ds, codes dtype, calls as (args after codebooks, kwargs, top))
    (2000, 80, 8, 16, 2, np.int64, [((), {"k": 3}, 3), ((12,), {}, 12)]),
    (1500, 60, 4, 100, 4, np.uint8, [((), {}, 10), ((7,), {}, 7)]),       # k=10: the default
)


@question("1.3c", points=2)
def test_pq_search_recall_against_exhaustive(submission, rng, tolerance):
    t = tol(tolerance)
    for n, nq, m, k, ds, code_type, calls in SEARCH_CASES:
        centres, x = clustered(rng, n, m * ds)
        queries = centres[rng.integers(0, len(centres), nq)] + rng.normal(size=(nq, m * ds))
        books = retrieval.pq_train(x, m, k, n_iter=8, rng=rng)
        codes = retrieval.pq_encode(x, books).astype(code_type)
        adc = retrieval.pq_asymmetric_distances(queries, codes, books)
        exact = retrieval.exhaustive_search(queries, x, k=1)[0][:, 0]
        for more, kwargs, top in calls:
            shown = ", ".join([*(str(a) for a in more), *(f"{key}={v}" for key, v in kwargs.items())]) or "k=10 (the default)"
            what = f"pq_search(queries, codes, codebooks, {shown}) with M={m}, K={k}, {np.dtype(code_type).name} codes"
            idx = as_indices(submission.call("pq_search", queries, codes, books, *more, **kwargs), what, (nq, top), n)
            if any(len(set(row)) != top for row in idx.tolist()):
                raise StudentError(f"{what} returned the same database item twice for a query")
            ref_d = np.sort(adc, axis=1)[:, :top]
            # Ties between items with equal codes may come in any order: compare the distances.
            assert_close(np.take_along_axis(adc, idx, axis=1), ref_d, **t,
                         name=f"ADC distances of the items {what} returned, in order")
            for r in sorted({1, top}):
                got, want = retrieval.recall_at_r(idx, exact, r), pessimistic_recall(adc, exact, r)
                assert got >= want - 0.02, (f"{what}: recall@{r} against exhaustive search is {got:.2f}; "
                                            f"the reference reaches {want:.2f}")


# -- Task 2: cross-entropy and label smoothing ---------------------------------------------
def far_apart_logits(rng, n, m):
    """Integer logits (float32 holds them exactly), |z| up to about 3300, in rows thousands
    apart: exp overflows unless the softmax is stabilised, and a batch-wide maximum instead of
    each row's own leaves rows whose exponentials all underflow (0 / 0)."""
    offsets = rng.permutation(np.resize([-3000, -1500, 0, 1500, 3000], n))[:, None]
    return (offsets + rng.integers(-300, 301, (n, m))).astype(float)


def soft_targets(rng, n, m, zero_share=0.3):
    """Probability vectors with some exact zeros (at least one positive entry per row)."""
    q = losses.softmax(rng.normal(size=(n, m)))
    q[rng.random((n, m)) < zero_share] = 0.0
    empty = q.sum(axis=1) == 0
    q[empty, rng.integers(0, m, int(empty.sum()))] = 1.0
    return q / q.sum(axis=1, keepdims=True)


@question("2.1a", points=2)
def test_cross_entropy_grad(submission, rng, tolerance):
    t = tol(tolerance)
    for n, m in ((8, 5), (5, 11)):
        z = rng.normal(size=(n, m)) * 3
        labels = rng.integers(0, m, n)
        q_hot = losses.one_hot(labels, m)
        assert_close(submission.call("cross_entropy_grad", z, q_hot), losses.cross_entropy_grad(z, labels),
                     **t, name=f"cross_entropy_grad(z, q) for one-hot q, shape ({n}, {m})")
        q_soft = soft_targets(rng, n, m)
        assert_close(submission.call("cross_entropy_grad", z, q_soft), losses.cross_entropy_grad(z, q_soft),
                     **t, name=f"cross_entropy_grad(z, q) for soft targets q, shape ({n}, {m})")
        big = far_apart_logits(rng, n, m)
        assert_close(submission.call("cross_entropy_grad", big, q_soft), losses.cross_entropy_grad(big, q_soft),
                     **t, name=f"cross_entropy_grad of large logits (|z| up to ~3300, rows far apart), shape ({n}, {m})")


@question("2.1b", points=1)
def test_gradient_bounds(submission, tolerance):
    b = losses.cross_entropy_grad_bounds()
    assert_close(submission.get("grad_min"), b["min"], rtol=0, atol=tolerance["atol"], name="grad_min")
    assert_close(submission.get("grad_max"), b["max"], rtol=0, atol=tolerance["atol"], name="grad_max")
    assert_equal(submission.get("grad_bounds_attained"), b["attained"], name="grad_bounds_attained")


@question("2.2a", points=1)
def test_cross_entropy(submission, rng, tolerance):
    t = tol(tolerance)
    for n, m in ((9, 6), (4, 13)):
        labels = rng.integers(0, m, n)
        q_hot = losses.one_hot(labels, m)
        p = probabilities(rng, n, m, zeros=True)
        p[np.arange(n), labels] = rng.uniform(0.05, 0.9, n)  # the true class keeps some probability
        # One-hot targets with zero probabilities elsewhere: the loss is -log p_h, finite.
        assert_close(submission.call("cross_entropy", q_hot, p), losses.cross_entropy(q_hot, p, reduction="none"),
                     **t, name=f"cross_entropy(one_hot, p) (should be -log p_h), shape ({n}, {m})")
        # Soft targets with zeros, and p = 0 at some of those places: 0 log 0 = 0.
        q_soft = soft_targets(rng, n, m)
        p_soft = probabilities(rng, n, m)
        p_soft[(q_soft == 0) & (rng.random((n, m)) < 0.7)] = 0.0
        p_soft /= p_soft.sum(axis=1, keepdims=True)
        assert_close(submission.call("cross_entropy", q_soft, p_soft),
                     losses.cross_entropy(q_soft, p_soft, reduction="none"), **t,
                     name=f"cross_entropy(q, p) for soft targets with zeros, shape ({n}, {m})")


@question("2.2b", points=1)
def test_nll_loss(submission, rng, tolerance):
    t = tol(tolerance)
    for n, m, label_type in ((12, 7, np.int64), (5, 3, np.int32)):
        p = probabilities(rng, n, m)
        labels = rng.integers(0, m, n)
        labels[0], labels[1] = 0, m - 1  # both ends of the label range
        assert_close(submission.call("nll_loss", p, labels.astype(label_type)),
                     losses.negative_log_likelihood(p, labels), **t, name=f"nll_loss(p, labels), shape ({n}, {m})")


@question("2.3a", points=1)
def test_smooth_labels(submission, rng, tolerance):
    t = tol(tolerance)
    eps1 = float(rng.uniform(0.15, 0.45))
    eps2 = float(rng.uniform(0.02, 0.08))
    # The first batch never uses the last class: m must come from the argument, not the labels.
    for n, m, eps, top in ((10, int(rng.integers(5, 9)), eps1, -1), (6, 3, eps2, 0)):
        labels = rng.integers(0, m + top, n)
        if top == 0:
            labels[0] = m - 1
        assert_close(submission.call("smooth_labels", labels, m, eps), losses.label_smoothing_targets(labels, m, eps),
                     **t, name=f"smooth_labels(labels, m={m}, eps={eps:.3f})")


@question("2.3b", points=2)
def test_label_smoothing_decomposition(submission, rng, tolerance):
    t = tol(tolerance)
    for n, m, eps in ((10, 6, float(rng.uniform(0.15, 0.45))), (4, 9, float(rng.uniform(0.02, 0.08)))):
        p = probabilities(rng, n, m)
        labels = rng.integers(0, m, n)
        what = f"label_smoothing_decomposition(p, labels, eps={eps:.3f}), shape ({n}, {m})"
        got = submission.call("label_smoothing_decomposition", p, labels, eps)
        if not (isinstance(got, (tuple, list)) and len(got) == 3):
            raise StudentError(f"{what} should return a tuple (total, data_term, prior_term)")
        want = losses.label_smoothing_decomposition(p, labels, eps, reduction="none")
        for value, expected, name in zip(got, want, ("total", "data_term", "prior_term")):
            assert_close(value, expected, **t, name=f"{name} of {what}")


# -- Task 3: convolutional layers (answer cells) -------------------------------------------
ANSWERS = architectures.conv_layer_questions(filters_prev=32, filters=64, kernel_size=3, output_size=112, bias=True)


@question("3.1", points=1)
def test_input_volume_l_minus_1(submission):
    assert_equal(submission.get("input_volume_l_minus_1"), ANSWERS["input_l_minus_1"], name="input_volume_l_minus_1")


@question("3.2", points=1)
def test_input_volume_l(submission):
    assert_equal(submission.get("input_volume_l"), ANSWERS["input_l"], name="input_volume_l")


@question("3.3", points=1)
def test_padding(submission):
    assert_equal(submission.get("layer_l_uses_padding"), ANSWERS["padding_l"] > 0, name="layer_l_uses_padding")
    assert_equal(submission.get("layer_l_padding"), ANSWERS["padding_l"], name="layer_l_padding")


@question("3.4", points=1)
def test_bias_and_output_size(submission):
    assert_equal(submission.get("bias_changes_output_size"), ANSWERS["bias_changes_spatial_size"],
                 name="bias_changes_output_size")


@question("3.5", points=1)
def test_parameter_count(submission):
    expected = architectures.conv_param_count(32, 64, 3, bias=True)
    assert expected == ANSWERS["params_l"]
    assert_equal(submission.get("n_params_layer_l"), expected, name="n_params_layer_l")
