"""Public tests of the example assignment: students run these with `gradekit check`.
They are worth no points; they catch the shape and naming mistakes early."""
import numpy as np

from gradekit.grading import expect_array, question


@question("q1", points=0)
def test_softmax_shape_and_rows_sum_to_one(submission):
    z = np.array([[3.2, 5.1, -1.7], [0.0, 0.0, 0.0]])
    p = expect_array(submission.call("softmax", z), "softmax(z)", shape=(2, 3))
    assert np.allclose(p.sum(axis=1), 1.0), f"each row of softmax(z) should sum to 1, got {p.sum(axis=1)}"


@question("q2", points=0)
def test_cross_entropy_grad_shape(submission):
    z, q = np.zeros((2, 3)), np.eye(3)[[0, 2]]
    expect_array(submission.call("cross_entropy_grad", z, q), "cross_entropy_grad(z, q)", shape=(2, 3))


@question("q3", points=0)
def test_n_params_conv_is_a_number(submission):
    value = submission.get("n_params_conv")
    assert isinstance(value, int), f"n_params_conv should be an integer, not {value!r}"
