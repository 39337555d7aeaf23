"""Public tests of CV1 Assignment 5: students run these with `gradekit check`.
Worth no points: they catch naming, shape and type mistakes early, not wrong answers."""
import numpy as np

from gradekit.grading import expect_array, question


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8))
    init = np.stack([x[:4, j * 4:(j + 1) * 4] for j in range(2)])  # M = 2 sub-spaces, K = 4
    return x, init


@question("1.3a", points=0)
def test_pq_train_shape(submission):
    x, init = _data()
    expect_array(submission.call("pq_train", x, init, 2), "pq_train(x, init_codebooks, 2)", shape=(2, 4, 4))


@question("1.3b", points=0)
def test_pq_encode_shape(submission):
    x, init = _data()
    codes = expect_array(submission.call("pq_encode", x, init), "pq_encode(x, codebooks)", shape=(40, 2))
    assert np.all((codes >= 0) & (codes < 4) & (codes == np.round(codes))), "codes should be indices 0..K-1"


@question("1.3c", points=0)
def test_pq_search_shape(submission):
    x, init = _data()
    codes = np.zeros((40, 2), dtype=np.int64)
    expect_array(submission.call("pq_search", x[:3], codes, init, k=5), "pq_search(queries, codes, codebooks, k=5)",
                 shape=(3, 5))


@question("2.1a", points=0)
def test_cross_entropy_grad_shape(submission):
    z, q = np.zeros((2, 3)), np.eye(3)[[0, 2]]
    g = expect_array(submission.call("cross_entropy_grad", z, q), "cross_entropy_grad(z, q)", shape=(2, 3))
    assert np.allclose(g.sum(axis=1), 0), "each row of p - q sums to 0 (both p and q sum to 1)"


@question("2.1b", points=0)
def test_gradient_bounds_types(submission):
    for name in ("grad_min", "grad_max"):
        v = submission.get(name)
        assert isinstance(v, (int, float)) and not isinstance(v, bool), f"{name} should be a number, not {v!r}"
    v = submission.get("grad_bounds_attained")
    assert isinstance(v, bool), f"grad_bounds_attained should be True or False, not {v!r}"


@question("2.2a", points=0)
def test_cross_entropy_shape(submission):
    q, p = np.eye(3)[[0, 1]], np.full((2, 3), 1 / 3)
    expect_array(submission.call("cross_entropy", q, p), "cross_entropy(q, p)", shape=(2,))


@question("2.2b", points=0)
def test_nll_loss_is_a_number(submission):
    v = submission.call("nll_loss", np.full((2, 3), 1 / 3), np.array([0, 2]))
    assert isinstance(v, float), f"nll_loss should return a float, not {v!r}"


@question("2.3a", points=0)
def test_smooth_labels_shape(submission):
    q = expect_array(submission.call("smooth_labels", np.array([0, 2]), 4, 0.1), "smooth_labels(labels, 4, 0.1)",
                     shape=(2, 4))
    assert np.allclose(q.sum(axis=1), 1.0), "smoothed targets are probability vectors: each row sums to 1"


@question("2.3b", points=0)
def test_decomposition_returns_three_arrays(submission):
    got = submission.call("label_smoothing_decomposition", np.full((2, 3), 1 / 3), np.array([0, 2]), 0.1)
    assert isinstance(got, (tuple, list)) and len(got) == 3, "return a tuple (total, data_term, prior_term)"
    for value, name in zip(got, ("total", "data_term", "prior_term")):
        expect_array(value, name, shape=(2,))


@question("3.1", points=0)
def test_volume_format_3_1(submission):
    v = submission.get("input_volume_l_minus_1")
    assert v is None or (isinstance(v, tuple) and len(v) == 3 and all(isinstance(d, int) for d in v)), \
        f"input_volume_l_minus_1 should be None or a tuple (height, width, depth) of ints, not {v!r}"


@question("3.2", points=0)
def test_volume_format_3_2(submission):
    v = submission.get("input_volume_l")
    assert v is None or (isinstance(v, tuple) and len(v) == 3 and all(isinstance(d, int) for d in v)), \
        f"input_volume_l should be None or a tuple (height, width, depth) of ints, not {v!r}"


@question("3.3", points=0)
def test_padding_types(submission):
    assert isinstance(submission.get("layer_l_uses_padding"), bool), "layer_l_uses_padding should be True or False"
    v = submission.get("layer_l_padding")
    assert isinstance(v, int) and not isinstance(v, bool), f"layer_l_padding should be an integer, not {v!r}"


@question("3.4", points=0)
def test_bias_answer_type(submission):
    assert isinstance(submission.get("bias_changes_output_size"), bool), "bias_changes_output_size should be True or False"


@question("3.5", points=0)
def test_parameter_count_type(submission):
    v = submission.get("n_params_layer_l")
    assert isinstance(v, int) and not isinstance(v, bool), f"n_params_layer_l should be an integer, not {v!r}"
