"""Hidden graders of Lecture 6 "Deep Learning III" (seed 002).

One test per auto-graded question, carrying all its points; every test draws fresh inputs
from ``rng`` and computes the expected values from ``reference`` here, on the trusted side.
Each test calls one student function (1a-1c call the same function in the mode their
question is about), so a mistake costs only its own question. 1d and 3c are graded by
staff (``manual = true`` in assignment.toml).

What every test does, following the authoring checklist (docs/authoring.md, section 3):

* **Every argument counts.** Arguments with defaults (``rho``, ``eps``, ``beta``) are passed
  with values far from the default (an ``eps`` of 0.2-0.5 moves the output by about 1 %), and
  the defaults are used as well; every size (batch, channels, groups, image shapes, ``k``,
  number of classes, the shape of ``W``) takes at least two values, so code written for one
  shape fails.
* **Every documented edge case is built on purpose**, never left to chance: tied votes and
  equal distances in k-NN (fixed rows on top of random grid points), ``P = 0`` with ``Q = 0``
  in the cross-entropy and KL, rows of logits a thousand apart for softmax, uint8 images *and*
  float images for the distances, a batch of one in eval-mode batch norm, ``W`` of 1, 2 and 4
  dimensions.
* **"Do not modify the arguments in place"** (batch norm) is checked with
  ``submission.call_watching``: 1a owns ``x``/``gamma``/``beta`` in train mode, 1b the running
  averages in train mode, 1c every argument in eval mode.
* **One dtype policy** (the notebook's rules say so): float32 answers are accepted. The spec's
  tolerances are floors; the tests raise them to ``F32`` (or ``NORM`` for the normalisations,
  whose outputs are O(1-10)), 100x or more above what a float32 computation of these inputs
  is off by and 50x or more below the smallest mistake (an ignored ``eps``, ``N`` instead of
  ``N - 1``). Large logits are integers, which float32 holds exactly, so a float32 answer
  passes for every draw. Integer conversions that truncate float inputs fail for every draw.
"""
import numpy as np

from gradekit.grading import StudentError, assert_close, assert_equal, expect_array, question
from reference import knn, layers, losses

F32 = {"rtol": 1e-4, "atol": 1e-6}
NORM = {"rtol": 1e-4, "atol": 1e-4}


def tol(tolerance, floor=F32):
    """The question's tolerance, raised to what a float32 answer needs (never lowered)."""
    return {"rtol": max(tolerance["rtol"], floor["rtol"]), "atol": max(tolerance["atol"], floor["atol"])}


def far_eps(rng):
    """An eps far from the default 1e-5, large enough to move every output by about 1 %."""
    return float(rng.uniform(0.2, 0.5))


# -- 1 batch normalization ---------------------------------------------------------------
BN_SHAPES = ((24, 6), (7, 3))                  # (N, D): two batch sizes, two feature counts
BN_ARGS = {"argument 1": "x", "argument 2": "gamma", "argument 3": "beta",
           "argument 4": "running_mean", "argument 5": "running_var"}


def bn_inputs(rng, n, d):
    """A batch whose statistics are far from the running averages (so eval != train)."""
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d) + rng.uniform(-4, 4, d)
    gamma, beta = rng.uniform(0.5, 2.0, d), rng.normal(size=d)
    running_mean = x.mean(axis=0) + rng.uniform(1.0, 3.0, d) * rng.choice([-1, 1], d)
    running_var = x.var(axis=0) * rng.uniform(2.0, 5.0, d)
    return x, gamma, beta, running_mean, running_var


def bn_settings(rng):
    """Keyword sets for one call each: rho and eps not the defaults, then the defaults."""
    return ({"rho": float(rng.uniform(0.6, 0.85)), "eps": far_eps(rng)}, {})


def bn_call(submission, training, x, gamma, beta, rm, rv, kw):
    """``(y, new_rm, new_rv), changed, what``; ``changed`` names the arguments changed in place."""
    shown = ", ".join(f"{k}={v:.3f}" for k, v in kw.items())
    what = f"batchnorm_forward(x {x.shape}, gamma, beta, running_mean, running_var, training={training}" + (
        f", {shown})" if shown else ")")
    got, changed = submission.call_watching("batchnorm_forward", x, gamma, beta, rm, rv, training, **kw)
    if not (isinstance(got, (tuple, list)) and len(got) == 3):
        raise StudentError("batchnorm_forward should return a tuple (y, new_running_mean, new_running_var)")
    return got, changed, what


def bn_expected(x, gamma, beta, rm, rv, training, kw):
    return layers.batch_norm(x, gamma, beta, rm, rv, training=training, rho=kw.get("rho", 0.9),
                             eps=kw.get("eps", 1e-5))


def not_modified(changed, names, what):
    bad = [BN_ARGS[c] for c in changed if BN_ARGS.get(c) in names]
    if bad:
        raise StudentError(f"{what} modified {', '.join(bad)} in place: the instructions say not to modify the "
                           "arguments (work on a copy, e.g. x = x - mu instead of x -= mu)")


@question("1a", points=2)
def test_batchnorm_train_output(submission, rng, tolerance):
    for n, d in BN_SHAPES:
        x, gamma, beta, rm, rv = bn_inputs(rng, n, d)
        for kw in bn_settings(rng):
            (y, _, _), changed, what = bn_call(submission, True, x, gamma, beta, rm, rv, kw)
            assert_close(y, bn_expected(x, gamma, beta, rm, rv, True, kw)[0], **tol(tolerance, NORM), name=f"y of {what}")
            not_modified(changed, ("x", "gamma", "beta"), what)


@question("1b", points=1)
def test_batchnorm_running_averages(submission, rng, tolerance):
    for n, d in BN_SHAPES:
        x, gamma, beta, rm, rv = bn_inputs(rng, n, d)
        for kw in bn_settings(rng):
            (_, new_rm, new_rv), changed, what = bn_call(submission, True, x, gamma, beta, rm, rv, kw)
            _, want_rm, want_rv = bn_expected(x, gamma, beta, rm, rv, True, kw)
            assert_close(new_rm, want_rm, **tol(tolerance), name=f"new_running_mean of {what} (rho weighs the old value)")
            assert_close(new_rv, want_rv, **tol(tolerance),
                         name=f"new_running_var of {what} (rho weighs the old value, unbiased batch variance)")
            not_modified(changed, ("running_mean", "running_var"), what)


@question("1c", points=2)
def test_batchnorm_eval_mode(submission, rng, tolerance):
    for n, d in BN_SHAPES:
        x, gamma, beta, rm, rv = bn_inputs(rng, n, d)
        for kw in bn_settings(rng):
            for batch in (x, x[:1]):  # a batch of one works at test time
                (y, new_rm, new_rv), changed, what = bn_call(submission, False, batch, gamma, beta, rm, rv, kw)
                want = bn_expected(batch, gamma, beta, rm, rv, False, kw)[0]
                assert_close(y, want, **tol(tolerance, NORM),
                             name=f"y of {what} (running averages, not batch statistics)")
                assert_close(new_rm, rm, **tol(tolerance), name=f"running_mean returned by {what} (should be unchanged)")
                assert_close(new_rv, rv, **tol(tolerance), name=f"running_var returned by {what} (should be unchanged)")
                not_modified(changed, tuple(BN_ARGS.values()), what)


# -- 2 layer / instance / group norm -----------------------------------------------------
# (N, C, H, W) with the group counts tried on it: two shapes, five group counts (1 and C too).
NORM_CASES = (((3, 8, 4, 5), (2, 4)), ((2, 6, 3, 7), (1, 3, 6)))


def norm_input(rng, n, c, h, w):
    """Channels and examples with their own offsets and scales: BN, LN, IN and GN all differ."""
    return (rng.normal(size=(n, c, h, w)) * rng.uniform(0.5, 3.0, (1, c, 1, 1))
            + rng.uniform(-3, 3, (1, c, 1, 1)) + rng.uniform(-2, 2, (n, 1, 1, 1)))


def norm_cases(rng):
    """(x, gamma, beta, groups, kw) per shape and eps setting (a far eps, then the default)."""
    for shape, groups in NORM_CASES:
        x = norm_input(rng, *shape)
        gamma, beta = rng.uniform(0.5, 2, shape[1]), rng.normal(size=shape[1])
        for kw in ({"eps": far_eps(rng)}, {}):
            yield x, gamma, beta, groups, kw


def _kw(kw):
    return "".join(f", eps={v:.3f}" for v in kw.values())


@question("2a", points=1)
def test_layer_norm(submission, rng, tolerance):
    for x, gamma, beta, _, kw in norm_cases(rng):
        # Layer norm over (C, H, W) with per-channel affine = group norm with one group.
        assert_close(submission.call("layer_norm", x, gamma, beta, **kw), layers.group_norm(x, 1, gamma, beta, **kw),
                     **tol(tolerance, NORM), name=f"layer_norm(x {x.shape}, gamma, beta{_kw(kw)})")


@question("2b", points=1)
def test_instance_norm(submission, rng, tolerance):
    for x, gamma, beta, _, kw in norm_cases(rng):
        assert_close(submission.call("instance_norm", x, gamma, beta, **kw), layers.instance_norm(x, gamma, beta, **kw),
                     **tol(tolerance, NORM), name=f"instance_norm(x {x.shape}, gamma, beta{_kw(kw)})")


@question("2c", points=2)
def test_group_norm(submission, rng, tolerance):
    for x, gamma, beta, groups, kw in norm_cases(rng):
        for g in groups:
            assert_close(submission.call("group_norm", x, g, gamma, beta, **kw), layers.group_norm(x, g, gamma, beta, **kw),
                         **tol(tolerance, NORM), name=f"group_norm(x {x.shape}, num_groups={g}, gamma, beta{_kw(kw)})")


# -- 3 dropout ----------------------------------------------------------------------------
def dropout_case(rng, which, tolerance, submission):
    inverted = which == "dropout_inverted"
    # two keep probabilities (one below 1/2, one above) and two shapes of x
    for p, shape in ((float(rng.uniform(0.25, 0.45)), (6, 10)), (float(rng.uniform(0.55, 0.85)), (3, 4, 5))):
        x = rng.normal(size=shape)
        mask = layers.dropout_mask(x.shape, p, rng=rng)
        assert_close(submission.call(which, x, p, True, mask=mask),
                     layers.dropout(x, p, training=True, mask=mask, inverted=inverted)[0],
                     **tol(tolerance), name=f"{which}(x {shape}, p={p:.2f}, training=True, mask)")
        test_out = submission.call(which, x, p, False)
        assert_close(test_out, layers.dropout(x, p, training=False, inverted=inverted)[0],
                     **tol(tolerance), name=f"{which}(x {shape}, p={p:.2f}, training=False)")
    # Test-time output = expected training output: average over many masks passed in.
    reps = 4000
    xs = np.repeat(x.reshape(1, -1)[:, :10], reps, axis=0)
    masks = layers.dropout_mask(xs.shape, p, rng=rng)
    train_mean = expect_array(submission.call(which, xs, p, True, mask=masks), f"{which} on {reps} masks",
                              shape=xs.shape).mean(axis=0)
    spread = np.abs(xs[0]) * np.sqrt(p * (1 - p) / reps) / (p if inverted else 1.0)
    test_row = expect_array(submission.call(which, xs[:1], p, False), f"{which} at test time", shape=(1, 10))[0]
    gap = np.abs(train_mean - test_row)
    assert np.all(gap <= 6 * spread + 1e-6), (
        f"{which}: the test-time output is not the expected training output "
        f"(largest gap {gap.max():.3g} over {reps} masks)")


@question("3a", points=1)
def test_dropout_vanilla(submission, rng, tolerance):
    dropout_case(rng, "dropout_vanilla", tolerance, submission)


@question("3b", points=2)
def test_dropout_inverted(submission, rng, tolerance):
    dropout_case(rng, "dropout_inverted", tolerance, submission)


# -- 4 distances and k-NN -----------------------------------------------------------------
def images(rng, shape, kind):
    if kind == "uint8":
        return rng.integers(0, 256, size=shape).astype(np.uint8)
    return rng.uniform(0.0, 1.0, size=shape)  # float images with fractions: an int conversion truncates them


def distance_case(submission, rng, tolerance, fn, reference_fn):
    """``fn(X, Y)`` on uint8 images (4x4 as on the slide, 6x6x3 colour) and float images (5x5)."""
    for (sx, sy), kind in ((((5, 4, 4), (7, 4, 4)), "uint8"), (((3, 6, 6, 3), (4, 6, 6, 3)), "uint8"),
                           (((4, 5, 5), (6, 5, 5)), "float")):
        x, y = images(rng, sx, kind), images(rng, sy, kind)
        assert_close(submission.call(fn, x, y), reference_fn(x.astype(float), y.astype(float)),
                     **tol(tolerance), name=f"{fn}(X, Y) of {kind} images, X {sx}, Y {sy}")


@question("4a", points=1)
def test_pairwise_l1(submission, rng, tolerance):
    distance_case(submission, rng, tolerance, "pairwise_l1", knn.pairwise_l1_distances)


@question("4b", points=1)
def test_pairwise_l2(submission, rng, tolerance):
    distance_case(submission, rng, tolerance, "pairwise_l2", knn.pairwise_l2_distances)


def knn_rules(dists, labels, k):
    """The notebook's three rules on a distance matrix (reference.knn.knn_predict takes points,
    not distances: this is its tie_break="nearest" on given distances)."""
    pred = []
    for row in dists:
        votes = labels[np.argsort(row, kind="stable")[:k]]
        counts = {int(v): int(np.sum(votes == v)) for v in votes}
        best = max(counts.values())
        pred.append(next(int(v) for v in votes if counts[int(v)] == best))
    return np.array(pred)


# Rows built so that every rule matters for every k whatever the draw: equal distances that
# straddle the k-th neighbour (lower index first), tied votes whose nearest label is not the
# smallest, a majority that is not the nearest label, and fractional distances that an
# integer conversion would make equal.
KNN_LABELS = np.array([2, 0, 1, 0, 2, 1, 1, 0])
KNN_ROWS = np.array([
    [5, 1, 5, 5, 1, 5, 5, 5],            # k=1: two nearest at the same distance, labels 0 (index 1) and 2
    [5, 1.7, 5, 5, 1.2, 5, 5, 5],        # k=1: 1.2 beats 1.7 (truncated, both would be 1)
    [1, 3, 2, 9, 9, 9, 9, 9],            # k=3: votes 2, 1, 0 all tied: the nearest (2), not the smallest (0)
    [1, 1.5, 9, 9, 2, 9, 9, 2],          # k=3: the third neighbour is index 4 (label 2), not index 7 (label 0)
    [1, 2, 9, 3, 9, 9, 9, 9],            # k=3: majority 0 although the nearest is 2
    [9, 2, 1, 3, 9, 4, 9, 9],            # k=4: votes 1, 0, 0, 1 tied: 1, not 0
    [9, 1, 1, 1, 9, 1, 9, 9],            # k=4: four at equal distance, in index order 0, 1, 0, 1: 0
    [1, 2, 5, 3, 4, 9, 9, 9],            # k=5: votes 2, 0, 0, 2, 1: 2, not 0
    [2.5, 2.5, 2.5, 1, 2.5, 2.5, 2.5, 2.5],  # k=5: index 3 (0), then 0, 1, 2, 4 (2, 0, 1, 2): tie 0/2 -> 0
    [2.5, 2.2, 2.5, 1, 2.5, 2.5, 2.5, 2.5],  # k=5: truncation would reorder
])


@question("4c", points=3)
def test_knn_predict(submission, rng):
    # Points on a small integer grid: many exactly equal distances and tied votes, so both
    # tie rules of the notebook matter (reference.knn.knn_predict, tie_break="nearest"),
    # then the fixed rows above, where each rule decides at least one prediction for each k.
    n_train, n_test, n_classes = 40, 40, 4
    train_x = rng.integers(0, 7, (n_train, 2)).astype(float)
    train_y = rng.integers(0, n_classes, n_train)
    test_x = rng.integers(0, 7, (n_test, 2)).astype(float)
    dists = knn.pairwise_l2_distances(test_x, train_x)
    for k in (1, 3, 4, 5):
        for d, labels, want, what in (
                (dists, train_y, knn.knn_predict(train_x, train_y, test_x, k=k, tie_break="nearest"), "grid points"),
                (KNN_ROWS, KNN_LABELS, knn_rules(KNN_ROWS, KNN_LABELS, k), "distances with ties")):
            got = expect_array(submission.call("knn_predict", d, labels, k), f"knn_predict(dists, labels, k={k})",
                               shape=want.shape)
            wrong = np.flatnonzero(got != want)
            if wrong.size:
                raise StudentError(f"knn_predict(dists, labels, k={k}) on {what}: {wrong.size} of {want.size} "
                                   "predictions are wrong (check the majority vote and both tie rules)")


# -- 5 losses -------------------------------------------------------------------------------
def classes(rng, n, k):
    """Labels of n examples over k classes, with the first and the last class present."""
    labels = rng.integers(0, k, n)
    labels[0], labels[1] = 0, k - 1
    return labels


@question("5a", points=2)
def test_svm_loss(submission, rng, tolerance):
    for n, k in ((10, 5), (7, 3)):
        scores = rng.normal(size=(n, k)) * 1.5
        labels = classes(rng, n, k)
        assert_close(submission.call("svm_loss", scores, labels), losses.multiclass_svm_loss(scores, labels),
                     **tol(tolerance), name=f"svm_loss(scores {scores.shape}, labels)")


def large_logits(rng, n, k):
    """Integer logits (float32 holds them exactly) in rows about a thousand apart: |z| up to ~1300."""
    offsets = np.resize([-1000.0, 1000.0, 0.0, 600.0, -600.0], n)[:, None]
    return offsets + rng.integers(-300, 301, (n, k)).astype(float)


@question("5b", points=2)
def test_softmax(submission, rng, tolerance):
    for shape in ((6, 5), (4, 7)):
        z = rng.normal(size=shape) * 3
        assert_close(submission.call("softmax", z), losses.softmax(z), **tol(tolerance), name=f"softmax(z {shape})")
        for beta in (float(rng.uniform(0.2, 0.8)), float(rng.uniform(1.5, 3.0))):
            assert_close(submission.call("softmax", z, beta=beta), losses.softmax(z, beta=beta), **tol(tolerance),
                         name=f"softmax(z {shape}, beta={beta:.3f})")
    big = large_logits(rng, 5, 6)
    assert_close(submission.call("softmax", big), losses.softmax(big), **tol(tolerance),
                 name="softmax of large logits (rows about 1000 apart)")
    assert_close(submission.call("softmax", big, beta=2.0), losses.softmax(big, beta=2.0), **tol(tolerance),
                 name="softmax of large logits, beta=2")


def probs_with_zeros(rng, n, k):
    p = losses.softmax(rng.normal(size=(n, k)) * 2)
    p[rng.random((n, k)) < 0.3] = 0.0
    p[:, 0] = 0.0                                                    # every row has a zero
    p[np.arange(n), rng.integers(1, k, n)] = rng.uniform(0.1, 0.9, n)  # and no row is all zeros
    return p / p.sum(axis=1, keepdims=True)


def q_zero_where_p_is(rng, P):
    """A prediction Q > 0 where P > 0, and Q = 0 at some (always at least one) places where P = 0."""
    Q = losses.softmax(rng.normal(size=P.shape))
    zero = (P == 0) & (rng.random(P.shape) < 0.5)
    zero[0] = P[0] == 0
    Q[zero] = 0.0
    return Q


@question("5c", points=1)
def test_cross_entropy(submission, rng, tolerance):
    for n, k in ((8, 6), (5, 3)):
        P = probs_with_zeros(rng, n, k)
        Q = q_zero_where_p_is(rng, P)
        assert_close(submission.call("cross_entropy", P, Q), losses.cross_entropy(P, Q, reduction="none"),
                     **tol(tolerance), name=f"cross_entropy(P, Q) of shape {P.shape}, with P = 0 (and Q = 0) in places")


@question("5d", points=1)
def test_nll_loss(submission, rng, tolerance):
    for n, k in ((12, 7), (5, 3)):
        probs = losses.softmax(rng.normal(size=(n, k)) * 2)
        labels = classes(rng, n, k)
        assert_close(submission.call("nll_loss", probs, labels), losses.negative_log_likelihood(probs, labels),
                     **tol(tolerance), name=f"nll_loss(probs {probs.shape}, labels)")


@question("5e", points=2)
def test_softmax_cross_entropy(submission, rng, tolerance):
    for n, k in ((9, 5), (4, 8)):
        scores = rng.normal(size=(n, k)) * 2
        labels = classes(rng, n, k)
        assert_close(submission.call("softmax_cross_entropy", scores, labels),
                     losses.softmax_cross_entropy(scores, labels), **tol(tolerance),
                     name=f"softmax_cross_entropy(scores {scores.shape}, labels)")
        big = large_logits(rng, n, k)
        assert_close(submission.call("softmax_cross_entropy", big, labels),
                     losses.softmax_cross_entropy(big, labels), **tol(tolerance),
                     name=f"softmax_cross_entropy of large scores {big.shape}")


@question("5f", points=1)
def test_loss_at_initialization(submission, tolerance):
    uniform = np.full((1, 10), 0.1)
    want = losses.cross_entropy(losses.one_hot([3], 10), uniform)
    assert_close(submission.get("ce_loss_at_init_10_classes"), want, rtol=tolerance["rtol"],
                 name="ce_loss_at_init_10_classes")


# -- 6 KL divergence -------------------------------------------------------------------------
@question("6a", points=2)
def test_kl_divergence(submission, rng, tolerance):
    for n, k in ((8, 6), (5, 3)):
        P = probs_with_zeros(rng, n, k)
        Q = q_zero_where_p_is(rng, P)
        assert_close(submission.call("kl_divergence", P, Q), losses.kl_divergence(P, Q), **tol(tolerance),
                     name=f"kl_divergence(P, Q) of shape {P.shape}, with P = 0 (and Q = 0) in places")


@question("6b", points=1)
def test_kl_asymmetry(submission, tolerance):
    P, Q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    assert_close(submission.get("kl_p_q"), losses.kl_divergence(P, Q), rtol=tolerance["rtol"], name="kl_p_q")
    assert_close(submission.get("kl_q_p"), losses.kl_divergence(Q, P), rtol=tolerance["rtol"], name="kl_q_p")
    assert_equal(submission.get("kl_is_symmetric"), False, name="kl_is_symmetric")


# -- 7 regularization ------------------------------------------------------------------------
W_SHAPES = ((5, 7), (12,), (4, 3, 2, 2))       # "W (any shape)": a matrix, a vector, a conv kernel


def weights(rng):
    for shape in W_SHAPES:
        yield rng.normal(size=shape) * rng.uniform(0.5, 2)


@question("7a", points=1)
def test_l1_penalty(submission, rng, tolerance):
    for w in weights(rng):
        assert_close(submission.call("l1_penalty", w), losses.l1_penalty(w), **tol(tolerance),
                     name=f"l1_penalty(W {w.shape})")


@question("7b", points=1)
def test_l2_penalty(submission, rng, tolerance):
    for w in weights(rng):
        assert_close(submission.call("l2_penalty", w), losses.l2_penalty(w), **tol(tolerance),
                     name=f"l2_penalty(W {w.shape})")


@question("7c", points=1)
def test_elastic_net_penalty(submission, rng, tolerance):
    for w, beta in zip(weights(rng), (float(rng.uniform(0.1, 0.6)), float(rng.uniform(1.5, 3.0)),
                                      float(rng.uniform(0.1, 3.0)))):
        assert_close(submission.call("elastic_net_penalty", w, beta), losses.elastic_net_penalty(w, beta),
                     **tol(tolerance), name=f"elastic_net_penalty(W {w.shape}, beta={beta:.3f})")
