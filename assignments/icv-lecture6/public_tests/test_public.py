"""Public tests of the Lecture 6 exercises: students run these with `gradekit check`.
Worth no points: names, shapes, types and the worked examples on the slides."""
import numpy as np

from gradekit.grading import assert_close, expect_array, question

# The 4x4 test and training images of the slide "Distance Metric" (L1 distance 456).
TEST_IMAGE = np.array([[56, 32, 10, 18], [90, 23, 128, 133], [24, 26, 178, 200], [2, 0, 255, 220]], dtype=np.uint8)
TRAIN_IMAGE = np.array([[10, 20, 24, 17], [8, 10, 89, 100], [12, 16, 178, 170], [4, 32, 233, 112]], dtype=np.uint8)


def _is_float(v):
    return isinstance(v, float)


@question("1a", points=0)
def test_batchnorm_returns_three_arrays(submission):
    x = np.arange(12.0).reshape(4, 3)
    got = submission.call("batchnorm_forward", x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), True)
    assert isinstance(got, (tuple, list)) and len(got) == 3, "return (y, new_running_mean, new_running_var)"
    y = expect_array(got[0], "y", shape=(4, 3))
    assert np.allclose(y.mean(axis=0), 0, atol=1e-6), "in train mode with gamma=1, beta=0 each column of y has mean 0"


@question("2a", points=0)
def test_layer_norm_shape(submission):
    expect_array(submission.call("layer_norm", np.random.default_rng(0).normal(size=(2, 4, 3, 3)), np.ones(4), np.zeros(4)),
                 "layer_norm(x, gamma, beta)", shape=(2, 4, 3, 3))


@question("2b", points=0)
def test_instance_norm_shape(submission):
    expect_array(submission.call("instance_norm", np.random.default_rng(0).normal(size=(2, 4, 3, 3)), np.ones(4), np.zeros(4)),
                 "instance_norm(x, gamma, beta)", shape=(2, 4, 3, 3))


@question("2c", points=0)
def test_group_norm_shape(submission):
    expect_array(submission.call("group_norm", np.random.default_rng(0).normal(size=(2, 4, 3, 3)), 2, np.ones(4), np.zeros(4)),
                 "group_norm(x, 2, gamma, beta)", shape=(2, 4, 3, 3))


@question("3a", points=0)
def test_dropout_vanilla_shape(submission):
    x, mask = np.ones((2, 3)), np.array([[True, False, True], [False, True, True]])
    expect_array(submission.call("dropout_vanilla", x, 0.5, True, mask=mask), "dropout_vanilla (train)", shape=(2, 3))
    expect_array(submission.call("dropout_vanilla", x, 0.5, False), "dropout_vanilla (test)", shape=(2, 3))


@question("3b", points=0)
def test_dropout_inverted_shape(submission):
    x, mask = np.ones((2, 3)), np.array([[True, False, True], [False, True, True]])
    expect_array(submission.call("dropout_inverted", x, 0.5, True, mask=mask), "dropout_inverted (train)", shape=(2, 3))
    expect_array(submission.call("dropout_inverted", x, 0.5, False), "dropout_inverted (test)", shape=(2, 3))


@question("4a", points=0)
def test_l1_slide_example(submission):
    d = submission.call("pairwise_l1", TEST_IMAGE[None], TRAIN_IMAGE[None])
    assert_close(d, [[456.0]], name="L1 distance of the slide's two 4x4 images")


@question("4b", points=0)
def test_l2_shape(submission):
    expect_array(submission.call("pairwise_l2", TEST_IMAGE[None], np.stack([TRAIN_IMAGE, TEST_IMAGE])),
                 "pairwise_l2(X, Y)", shape=(1, 2))


@question("4c", points=0)
def test_knn_shape(submission):
    dists = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    got = expect_array(submission.call("knn_predict", dists, np.array([0, 1, 1]), 1), "knn_predict(dists, labels, 1)",
                       shape=(2,))
    assert got.tolist() == [0, 1], f"with k=1 each test point takes its nearest training label; got {got.tolist()}"


@question("5a", points=0)
def test_svm_loss_is_a_number(submission):
    v = submission.call("svm_loss", np.array([[3.2, 5.1, -1.7]]), np.array([0]))
    assert _is_float(v), f"svm_loss should return a float, not {v!r}"


@question("5b", points=0)
def test_softmax_slide_example(submission):
    p = submission.call("softmax", np.array([[3.2, 5.1, -1.7]]))
    assert_close(p, [[0.13, 0.87, 0.00]], atol=0.005, name="softmax of the slide's cat/car/frog scores")


@question("5c", points=0)
def test_cross_entropy_shape(submission):
    expect_array(submission.call("cross_entropy", np.eye(3)[[0, 1]], np.full((2, 3), 1 / 3)), "cross_entropy(P, Q)",
                 shape=(2,))


@question("5d", points=0)
def test_nll_is_a_number(submission):
    v = submission.call("nll_loss", np.full((2, 3), 1 / 3), np.array([0, 2]))
    assert _is_float(v), f"nll_loss should return a float, not {v!r}"


@question("5e", points=0)
def test_softmax_ce_is_a_number(submission):
    v = submission.call("softmax_cross_entropy", np.array([[3.2, 5.1, -1.7]]), np.array([0]))
    assert _is_float(v), f"softmax_cross_entropy should return a float, not {v!r}"


@question("5f", points=0)
def test_init_loss_is_a_number(submission):
    v = submission.get("ce_loss_at_init_10_classes")
    assert isinstance(v, (int, float)) and not isinstance(v, bool), f"ce_loss_at_init_10_classes should be a number, not {v!r}"


@question("6a", points=0)
def test_kl_of_equal_distributions_is_zero(submission):
    p = np.array([[0.2, 0.3, 0.5]])
    assert_close(submission.call("kl_divergence", p, p), [0.0], atol=1e-12, name="kl_divergence(P, P)")


@question("6b", points=0)
def test_kl_answer_types(submission):
    for name in ("kl_p_q", "kl_q_p"):
        v = submission.get(name)
        assert isinstance(v, (int, float)) and not isinstance(v, bool), f"{name} should be a number, not {v!r}"
    assert isinstance(submission.get("kl_is_symmetric"), bool), "kl_is_symmetric should be True or False"


@question("7a", points=0)
def test_l1_penalty_is_a_number(submission):
    assert _is_float(submission.call("l1_penalty", np.ones((2, 2)))), "l1_penalty should return a float"


@question("7b", points=0)
def test_l2_penalty_is_a_number(submission):
    assert _is_float(submission.call("l2_penalty", np.ones((2, 2)))), "l2_penalty should return a float"


@question("7c", points=0)
def test_elastic_net_is_a_number(submission):
    assert _is_float(submission.call("elastic_net_penalty", np.ones((2, 2)), 0.5)), "elastic_net_penalty should return a float"
