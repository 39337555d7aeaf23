"""Hidden graders of the example assignment: one test per question, fresh inputs each run."""
import numpy as np

from gradekit.grading import assert_close, assert_equal, question
from reference import architectures, losses


def one_hot(labels, k):
    return np.eye(k)[labels]


@question("q1", points=2)
def test_softmax(submission, rng):
    z = rng.normal(size=(6, 5)) * 3
    assert_close(submission.call("softmax", z), losses.softmax(z), rtol=1e-6, name="softmax(z)")
    beta = float(rng.uniform(0.2, 3.0))
    assert_close(submission.call("softmax", z, beta=beta), losses.softmax(z, beta=beta),
                 rtol=1e-6, name=f"softmax(z, beta={beta:.3f})")
    big = z * 400  # exp(1000) overflows: only a stable softmax survives
    assert_close(submission.call("softmax", big), losses.softmax(big), rtol=1e-6, atol=1e-12,
                 name="softmax of large logits")


@question("q2", points=2)
def test_cross_entropy_grad(submission, rng):
    n, k = 7, 4
    z = rng.normal(size=(n, k)) * 2
    labels = rng.integers(0, k, size=n)
    q = one_hot(labels, k)
    assert_close(submission.call("cross_entropy_grad", z, q), losses.cross_entropy_grad(z, labels),
                 rtol=1e-6, atol=1e-12, name="cross_entropy_grad(z, q)")


@question("q3", points=1)
def test_conv_parameter_count(submission):
    expected = architectures.conv_param_count(32, 64, 3, bias=True)
    assert_equal(submission.get("n_params_conv"), expected, name="n_params_conv")
