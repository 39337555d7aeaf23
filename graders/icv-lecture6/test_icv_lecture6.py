"""Hidden graders of Lecture 6 "Deep Learning III" (seed 002).

One test per auto-graded question, carrying all its points; every test draws fresh inputs
from ``rng`` and computes the expected values from ``reference`` here, on the trusted side.
Each test calls one student function (1a-1c call the same function in the mode their
question is about), so a mistake costs only its own question. 1d and 3c are graded by
staff (``manual = true`` in assignment.toml).
"""
import numpy as np

from gradekit.grading import StudentError, assert_close, assert_equal, expect_array, question
from reference import knn, layers, losses


def bn_inputs(rng, n=24, d=6):
    """A batch whose statistics are far from the running averages (so eval != train)."""
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d) + rng.uniform(-4, 4, d)
    gamma, beta = rng.uniform(0.5, 2.0, d), rng.normal(size=d)
    running_mean = x.mean(axis=0) + rng.uniform(1.0, 3.0, d) * rng.choice([-1, 1], d)
    running_var = x.var(axis=0) * rng.uniform(2.0, 5.0, d)
    rho = float(rng.uniform(0.6, 0.95))
    return x, gamma, beta, running_mean, running_var, rho


def bn_call(submission, training, x, gamma, beta, rm, rv, rho):
    got = submission.call("batchnorm_forward", x, gamma, beta, rm.copy(), rv.copy(), training, rho=rho)
    if not (isinstance(got, (tuple, list)) and len(got) == 3):
        raise StudentError("batchnorm_forward should return a tuple (y, new_running_mean, new_running_var)")
    return got


def images(rng, shape):
    return rng.integers(0, 256, size=shape).astype(np.uint8)


def norm_input(rng, n=3, c=8, h=4, w=5):
    """Channels and examples with their own offsets and scales: BN, LN, IN and GN all differ."""
    return (rng.normal(size=(n, c, h, w)) * rng.uniform(0.5, 3.0, (1, c, 1, 1))
            + rng.uniform(-3, 3, (1, c, 1, 1)) + rng.uniform(-2, 2, (n, 1, 1, 1)))


def probs_with_zeros(rng, n, k):
    p = losses.softmax(rng.normal(size=(n, k)) * 2)
    p[rng.random((n, k)) < 0.3] = 0.0
    p[np.arange(n), rng.integers(0, k, n)] = rng.uniform(0.1, 0.9, n)  # no row is all zeros
    return p / p.sum(axis=1, keepdims=True)


# -- 1 batch normalization ---------------------------------------------------------------
@question("1a", points=2)
def test_batchnorm_train_output(submission, rng, tolerance):
    x, gamma, beta, rm, rv, rho = bn_inputs(rng)
    y = bn_call(submission, True, x, gamma, beta, rm, rv, rho)[0]
    want = layers.batch_norm(x, gamma, beta, rm, rv, training=True, rho=rho)[0]
    assert_close(y, want, **tolerance, name="y of batchnorm_forward(..., training=True)")


@question("1b", points=1)
def test_batchnorm_running_averages(submission, rng, tolerance):
    x, gamma, beta, rm, rv, rho = bn_inputs(rng)
    _, new_rm, new_rv = bn_call(submission, True, x, gamma, beta, rm, rv, rho)
    _, want_rm, want_rv = layers.batch_norm(x, gamma, beta, rm, rv, training=True, rho=rho)
    assert_close(new_rm, want_rm, **tolerance, name=f"new_running_mean (rho={rho:.3f})")
    assert_close(new_rv, want_rv, **tolerance, name=f"new_running_var (rho={rho:.3f}, unbiased batch variance)")


@question("1c", points=2)
def test_batchnorm_eval_mode(submission, rng, tolerance):
    x, gamma, beta, rm, rv, rho = bn_inputs(rng)
    y, new_rm, new_rv = bn_call(submission, False, x, gamma, beta, rm, rv, rho)
    want = layers.batch_norm(x, gamma, beta, rm, rv, training=False, rho=rho)[0]
    assert_close(y, want, **tolerance, name="y of batchnorm_forward(..., training=False) (running averages, not batch statistics)")
    assert_close(new_rm, rm, rtol=0, atol=0, name="running_mean returned in eval mode (should be unchanged)")
    assert_close(new_rv, rv, rtol=0, atol=0, name="running_var returned in eval mode (should be unchanged)")
    one = bn_call(submission, False, x[:1], gamma, beta, rm, rv, rho)[0]  # a batch of one works at test time
    assert_close(one, want[:1], **tolerance, name="eval-mode y for a batch of one example")


# -- 2 layer / instance / group norm -----------------------------------------------------
@question("2a", points=1)
def test_layer_norm(submission, rng, tolerance):
    x = norm_input(rng)
    gamma, beta = rng.uniform(0.5, 2, x.shape[1]), rng.normal(size=x.shape[1])
    # Layer norm over (C, H, W) with per-channel affine = group norm with one group.
    assert_close(submission.call("layer_norm", x, gamma, beta), layers.group_norm(x, 1, gamma, beta),
                 **tolerance, name="layer_norm(x, gamma, beta)")


@question("2b", points=1)
def test_instance_norm(submission, rng, tolerance):
    x = norm_input(rng)
    gamma, beta = rng.uniform(0.5, 2, x.shape[1]), rng.normal(size=x.shape[1])
    assert_close(submission.call("instance_norm", x, gamma, beta), layers.instance_norm(x, gamma, beta),
                 **tolerance, name="instance_norm(x, gamma, beta)")


@question("2c", points=2)
def test_group_norm(submission, rng, tolerance):
    x = norm_input(rng)
    gamma, beta = rng.uniform(0.5, 2, x.shape[1]), rng.normal(size=x.shape[1])
    for g in (2, 4):
        assert_close(submission.call("group_norm", x, g, gamma, beta), layers.group_norm(x, g, gamma, beta),
                     **tolerance, name=f"group_norm(x, num_groups={g}, gamma, beta)")


# -- 3 dropout ----------------------------------------------------------------------------
def dropout_case(rng, which, tolerance, submission):
    inverted = which == "dropout_inverted"
    p = float(rng.uniform(0.3, 0.8))
    x = rng.normal(size=(6, 10))
    mask = layers.dropout_mask(x.shape, p, rng=rng)
    assert_close(submission.call(which, x, p, True, mask=mask),
                 layers.dropout(x, p, training=True, mask=mask, inverted=inverted)[0],
                 **tolerance, name=f"{which}(x, p={p:.2f}, training=True, mask)")
    test_out = submission.call(which, x, p, False)
    assert_close(test_out, layers.dropout(x, p, training=False, inverted=inverted)[0],
                 **tolerance, name=f"{which}(x, p={p:.2f}, training=False)")
    # Test-time output = expected training output: average over many masks passed in.
    reps = 4000
    xs = np.repeat(x[:1], reps, axis=0)
    masks = layers.dropout_mask(xs.shape, p, rng=rng)
    train_mean = expect_array(submission.call(which, xs, p, True, mask=masks), f"{which} on {reps} masks",
                              shape=xs.shape).mean(axis=0)
    spread = np.abs(x[0]) * np.sqrt(p * (1 - p) / reps) / (p if inverted else 1.0)
    test_row = expect_array(test_out, f"{which} at test time", shape=x.shape)[0]
    gap = np.abs(train_mean - test_row)
    assert np.all(gap <= 6 * spread + 1e-9), (
        f"{which}: the test-time output is not the expected training output "
        f"(largest gap {gap.max():.3g} over {reps} masks)")


@question("3a", points=1)
def test_dropout_vanilla(submission, rng, tolerance):
    dropout_case(rng, "dropout_vanilla", tolerance, submission)


@question("3b", points=2)
def test_dropout_inverted(submission, rng, tolerance):
    dropout_case(rng, "dropout_inverted", tolerance, submission)


# -- 4 distances and k-NN -----------------------------------------------------------------
def distance_case(submission, rng, tolerance, fn, reference_fn):
    """``fn(X, Y)`` on uint8 images, flat and in colour, against ``reference_fn``."""
    for shapes, what in ((((5, 4, 4), (7, 4, 4)), "4x4"), (((3, 6, 6, 3), (4, 6, 6, 3)), "6x6x3")):
        x, y = images(rng, shapes[0]), images(rng, shapes[1])
        assert_close(submission.call(fn, x, y), reference_fn(x.astype(float), y.astype(float)),
                     **tolerance, name=f"{fn}(X, Y) of uint8 {what} images")


@question("4a", points=1)
def test_pairwise_l1(submission, rng, tolerance):
    distance_case(submission, rng, tolerance, "pairwise_l1", knn.pairwise_l1_distances)


@question("4b", points=1)
def test_pairwise_l2(submission, rng, tolerance):
    distance_case(submission, rng, tolerance, "pairwise_l2", knn.pairwise_l2_distances)


@question("4c", points=3)
def test_knn_predict(submission, rng):
    # Points on a small integer grid: many exactly equal distances and tied votes, so both
    # tie rules of the notebook matter (reference.knn.knn_predict, tie_break="nearest").
    n_train, n_test, n_classes = 40, 40, 4
    train_x = rng.integers(0, 7, (n_train, 2)).astype(float)
    train_y = rng.integers(0, n_classes, n_train)
    test_x = rng.integers(0, 7, (n_test, 2)).astype(float)
    dists = knn.pairwise_l2_distances(test_x, train_x)
    for k in (1, 3, 4, 5):
        got = expect_array(submission.call("knn_predict", dists, train_y, k), f"knn_predict(dists, labels, k={k})",
                           shape=(n_test,))
        want = knn.knn_predict(train_x, train_y, test_x, k=k, tie_break="nearest")
        wrong = np.flatnonzero(got != want)
        if wrong.size:
            raise StudentError(f"knn_predict(dists, labels, k={k}): {wrong.size} of {n_test} predictions are wrong "
                               "(check the majority vote and both tie rules)")


# -- 5 losses -------------------------------------------------------------------------------
@question("5a", points=2)
def test_svm_loss(submission, rng, tolerance):
    n, k = 10, 5
    scores = rng.normal(size=(n, k)) * 1.5
    labels = rng.integers(0, k, n)
    assert_close(submission.call("svm_loss", scores, labels), losses.multiclass_svm_loss(scores, labels),
                 **tolerance, name="svm_loss(scores, labels)")


@question("5b", points=2)
def test_softmax(submission, rng, tolerance):
    z = rng.normal(size=(6, 5)) * 3
    assert_close(submission.call("softmax", z), losses.softmax(z), **tolerance, name="softmax(z)")
    beta = float(rng.uniform(0.2, 3.0))
    assert_close(submission.call("softmax", z, beta=beta), losses.softmax(z, beta=beta), **tolerance,
                 name=f"softmax(z, beta={beta:.3f})")
    big = z * 400
    assert_close(submission.call("softmax", big), losses.softmax(big), **tolerance, name="softmax of large logits")


@question("5c", points=1)
def test_cross_entropy(submission, rng, tolerance):
    n, k = 8, 6
    P = probs_with_zeros(rng, n, k)
    Q = losses.softmax(rng.normal(size=(n, k)))
    Q[P == 0] = np.where(rng.random(int((P == 0).sum())) < 0.5, 0.0, Q[P == 0])  # Q may be 0 where P is
    assert_close(submission.call("cross_entropy", P, Q), losses.cross_entropy(P, Q, reduction="none"),
                 **tolerance, name="cross_entropy(P, Q)")


@question("5d", points=1)
def test_nll_loss(submission, rng, tolerance):
    n, k = 12, 7
    probs = losses.softmax(rng.normal(size=(n, k)) * 2)
    labels = rng.integers(0, k, n)
    labels[0], labels[1] = 0, k - 1
    assert_close(submission.call("nll_loss", probs, labels), losses.negative_log_likelihood(probs, labels),
                 **tolerance, name="nll_loss(probs, labels)")


@question("5e", points=2)
def test_softmax_cross_entropy(submission, rng, tolerance):
    n, k = 9, 5
    scores = rng.normal(size=(n, k)) * 2
    labels = rng.integers(0, k, n)
    assert_close(submission.call("softmax_cross_entropy", scores, labels),
                 losses.softmax_cross_entropy(scores, labels), **tolerance, name="softmax_cross_entropy(scores, labels)")
    big = scores * 500
    assert_close(submission.call("softmax_cross_entropy", big, labels),
                 losses.softmax_cross_entropy(big, labels), **tolerance, name="softmax_cross_entropy of large scores")


@question("5f", points=1)
def test_loss_at_initialization(submission, tolerance):
    uniform = np.full((1, 10), 0.1)
    want = losses.cross_entropy(losses.one_hot([3], 10), uniform)
    assert_close(submission.get("ce_loss_at_init_10_classes"), want, rtol=tolerance["rtol"],
                 name="ce_loss_at_init_10_classes")


# -- 6 KL divergence -------------------------------------------------------------------------
@question("6a", points=2)
def test_kl_divergence(submission, rng, tolerance):
    n, k = 8, 6
    P = probs_with_zeros(rng, n, k)
    Q = losses.softmax(rng.normal(size=(n, k)))
    assert_close(submission.call("kl_divergence", P, Q), losses.kl_divergence(P, Q), **tolerance,
                 name="kl_divergence(P, Q)")


@question("6b", points=1)
def test_kl_asymmetry(submission, tolerance):
    P, Q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    assert_close(submission.get("kl_p_q"), losses.kl_divergence(P, Q), rtol=tolerance["rtol"], name="kl_p_q")
    assert_close(submission.get("kl_q_p"), losses.kl_divergence(Q, P), rtol=tolerance["rtol"], name="kl_q_p")
    assert_equal(submission.get("kl_is_symmetric"), False, name="kl_is_symmetric")


# -- 7 regularization ------------------------------------------------------------------------
def weights(rng):
    return rng.normal(size=(5, 7)) * rng.uniform(0.5, 2)


@question("7a", points=1)
def test_l1_penalty(submission, rng, tolerance):
    w = weights(rng)
    assert_close(submission.call("l1_penalty", w), losses.l1_penalty(w), **tolerance, name="l1_penalty(W)")


@question("7b", points=1)
def test_l2_penalty(submission, rng, tolerance):
    w = weights(rng)
    assert_close(submission.call("l2_penalty", w), losses.l2_penalty(w), **tolerance, name="l2_penalty(W)")


@question("7c", points=1)
def test_elastic_net_penalty(submission, rng, tolerance):
    w = weights(rng)
    beta = float(rng.uniform(0.1, 3.0))
    assert_close(submission.call("elastic_net_penalty", w, beta), losses.elastic_net_penalty(w, beta),
                 **tolerance, name=f"elastic_net_penalty(W, beta={beta:.3f})")
