"""Hidden graders of CV1 Assignment 5 (seed 000).

One test per auto-graded question, carrying all its points; every test draws fresh inputs
from ``rng`` and computes the expected values from ``reference`` here, on the trusted side.
Each test calls exactly one student function or reads only its own answer variables, so a
mistake costs only its own question. Questions 1.1-1.3, 2.d and 3.j are graded by staff
(``manual = true`` in assignment.toml) and have no test here.
"""
import numpy as np

from gradekit.grading import StudentError, assert_close, assert_equal, expect_array, question
from reference import architectures, losses, retrieval


# -- helpers ------------------------------------------------------------------------------
def clustered(rng, n, d=16, n_clusters=20, spread=1.0):
    """Vectors around a few random centres: PQ has structure to find, like real descriptors."""
    centres = rng.normal(size=(n_clusters, d)) * spread
    return centres, centres[rng.integers(0, n_clusters, n)] + rng.normal(size=(n, d))


def lloyd_from_init(x, init_codebooks, n_iter):
    """Expected codebooks of 1.3a: Lloyd's k-means in each sub-space from the given
    centroids, an empty cluster keeping its centroid (the notebook's contract)."""
    books = np.array(init_codebooks, dtype=float)
    m, k, ds = books.shape
    return np.stack([retrieval.kmeans(x[:, j * ds:(j + 1) * ds], k, n_iter=n_iter, init=books[j], empty="keep")[0]
                     for j in range(m)])


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
@question("1.3a", points=2)
def test_pq_train(submission, rng, tolerance):
    n, d, m, k = 2000, 16, 8, 16
    ds = d // m
    centres, x = clustered(rng, n, d)
    init = np.stack([x[rng.choice(n, k, replace=False), j * ds:(j + 1) * ds] for j in range(m)])
    for n_iter in (1, 4):
        books = submission.call("pq_train", x, init.copy(), n_iter)
        expected = lloyd_from_init(x, init, n_iter)
        assert_close(books, expected, **tolerance, name=f"pq_train(x, init_codebooks, n_iter={n_iter})")
    # The codebooks retrieve as well as the reference's, measured against exhaustive search.
    queries = centres[rng.integers(0, len(centres), 100)] + rng.normal(size=(100, d))
    exact = retrieval.exhaustive_search(queries, x, k=1)[0][:, 0]
    got = retrieval.recall_at_r(retrieval.pq_search(queries, retrieval.pq_encode(x, books), books, 10)[0], exact, 10)
    want = retrieval.recall_at_r(retrieval.pq_search(queries, retrieval.pq_encode(x, expected), expected, 10)[0], exact, 10)
    assert got >= want - 0.02, f"recall@10 with your codebooks is {got:.2f}; the reference codebooks reach {want:.2f}"


@question("1.3b", points=1)
def test_pq_encode(submission, rng):
    n, d, m, k = 500, 16, 8, 16
    _, x = clustered(rng, n, d)
    books = retrieval.pq_train(x, m, k, n_iter=5, rng=rng)
    codes = as_indices(submission.call("pq_encode", x, books), "pq_encode(x, codebooks)", (n, m), k)
    expected = retrieval.pq_encode(x, books).astype(np.int64)
    wrong = int(np.count_nonzero(codes != expected))
    assert wrong == 0, (f"pq_encode(x, codebooks): {wrong} of {codes.size} codes are not the index "
                        "of the nearest centroid of their sub-space")


@question("1.3c", points=2)
def test_pq_search_recall_against_exhaustive(submission, rng, tolerance):
    n, nq, d, m, k, top = 2000, 100, 16, 8, 16, 10  # 16**8 cells: codes are (almost) unique
    centres, x = clustered(rng, n, d)
    queries = centres[rng.integers(0, len(centres), nq)] + rng.normal(size=(nq, d))
    books = retrieval.pq_train(x, m, k, n_iter=8, rng=rng)
    codes = retrieval.pq_encode(x, books)
    idx = as_indices(submission.call("pq_search", queries, codes, books, k=top),
                     "pq_search(queries, codes, codebooks, k=10)", (nq, top), n)
    if any(len(set(row)) != top for row in idx.tolist()):
        raise StudentError("pq_search returned the same database item twice for a query")
    adc = retrieval.pq_asymmetric_distances(queries, codes, books)
    ref_idx, ref_d = retrieval.pq_search(queries, codes, books, k=top)
    # Ties between items with equal codes may come in any order: compare the distances.
    assert_close(np.take_along_axis(adc, idx, axis=1), ref_d, **tolerance,
                 name="ADC distances of the items pq_search returned, in order")
    exact = retrieval.exhaustive_search(queries, x, k=1)[0][:, 0]
    for r in (1, top):
        got, want = retrieval.recall_at_r(idx, exact, r), retrieval.recall_at_r(ref_idx, exact, r)
        assert got >= want - 0.02, f"recall@{r} against exhaustive search is {got:.2f}; the reference reaches {want:.2f}"


# -- Task 2: cross-entropy and label smoothing ---------------------------------------------
@question("2.1a", points=2)
def test_cross_entropy_grad(submission, rng, tolerance):
    n, m = 8, 5
    z = rng.normal(size=(n, m)) * 3
    labels = rng.integers(0, m, n)
    q_hot = losses.one_hot(labels, m)
    assert_close(submission.call("cross_entropy_grad", z, q_hot), losses.cross_entropy_grad(z, labels),
                 **tolerance, name="cross_entropy_grad(z, q) for one-hot q")
    q_soft = losses.softmax(rng.normal(size=(n, m)))
    assert_close(submission.call("cross_entropy_grad", z, q_soft), losses.cross_entropy_grad(z, q_soft),
                 **tolerance, name="cross_entropy_grad(z, q) for soft targets q")
    big = z * 400  # logits of about +-1000: exp overflows unless the softmax is stabilised
    assert_close(submission.call("cross_entropy_grad", big, q_hot), losses.cross_entropy_grad(big, labels),
                 **tolerance, name="cross_entropy_grad of large logits")


@question("2.1b", points=1)
def test_gradient_bounds(submission, tolerance):
    b = losses.cross_entropy_grad_bounds()
    assert_close(submission.get("grad_min"), b["min"], rtol=0, atol=tolerance["atol"], name="grad_min")
    assert_close(submission.get("grad_max"), b["max"], rtol=0, atol=tolerance["atol"], name="grad_max")
    assert_equal(submission.get("grad_bounds_attained"), b["attained"], name="grad_bounds_attained")


@question("2.2a", points=1)
def test_cross_entropy(submission, rng, tolerance):
    n, m = 9, 6
    labels = rng.integers(0, m, n)
    q_hot = losses.one_hot(labels, m)
    p = probabilities(rng, n, m, zeros=True)
    p[np.arange(n), labels] = rng.uniform(0.05, 0.9, n)  # the true class keeps some probability
    # One-hot targets with zero probabilities elsewhere: the loss is -log p_h, finite.
    assert_close(submission.call("cross_entropy", q_hot, p), losses.cross_entropy(q_hot, p, reduction="none"),
                 **tolerance, name="cross_entropy(one_hot, p) (should be -log p_h)")
    q_soft = losses.softmax(rng.normal(size=(n, m)))
    p_soft = probabilities(rng, n, m)
    assert_close(submission.call("cross_entropy", q_soft, p_soft),
                 losses.cross_entropy(q_soft, p_soft, reduction="none"), **tolerance,
                 name="cross_entropy(q, p) for soft targets")


@question("2.2b", points=1)
def test_nll_loss(submission, rng, tolerance):
    n, m = 12, 7
    p = probabilities(rng, n, m)
    labels = rng.integers(0, m, n)
    labels[0], labels[1] = 0, m - 1  # both ends of the label range
    assert_close(submission.call("nll_loss", p, labels), losses.negative_log_likelihood(p, labels),
                 **tolerance, name="nll_loss(p, labels)")


@question("2.3a", points=1)
def test_smooth_labels(submission, rng, tolerance):
    n, m = 10, int(rng.integers(4, 9))
    labels = rng.integers(0, m, n)
    eps = float(rng.uniform(0.05, 0.3))
    assert_close(submission.call("smooth_labels", labels, m, eps), losses.label_smoothing_targets(labels, m, eps),
                 **tolerance, name=f"smooth_labels(labels, m={m}, eps={eps:.3f})")


@question("2.3b", points=2)
def test_label_smoothing_decomposition(submission, rng, tolerance):
    n, m = 10, 6
    p = probabilities(rng, n, m)
    labels = rng.integers(0, m, n)
    eps = float(rng.uniform(0.05, 0.3))
    got = submission.call("label_smoothing_decomposition", p, labels, eps)
    if not (isinstance(got, (tuple, list)) and len(got) == 3):
        raise StudentError("label_smoothing_decomposition should return a tuple (total, data_term, prior_term)")
    want = losses.label_smoothing_decomposition(p, labels, eps, reduction="none")
    for value, expected, name in zip(got, want, ("total", "data_term", "prior_term")):
        assert_close(value, expected, **tolerance, name=f"{name} of label_smoothing_decomposition")


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
