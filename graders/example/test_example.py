"""Hidden graders of the example assignment: one test per question, fresh inputs each run.

Every sentence of the instructions that states a rule has a check here:

* ``beta`` is called with its default and with values below and above 1; every function is
  called on several shapes (more than one N and K, a batch of one), so code written for one
  shape fails;
* "finite for large logits, for any beta > 0": rows built on purpose (all near +1000, all near
  -1000, +-1000 side by side, an ordinary row beside them), also with beta > 1, where
  subtracting max(z) instead of max(beta * z) overflows; the same rows for the gradient;
* "do not modify the arguments in place": every call goes through ``call_watching``;
* the dtype policy (float64 or float32 pass; float16 and integers do not): tolerances sit
  well above float32's resolution and far below float16's. A float32 answer errs by about
  1e-6 relative on ordinary logits and by at most ~4e-4 relative (~3e-5 absolute for the
  gradient) on the logits near 1000 with beta = 2.5; float16 errs by ~1e-3 on ordinary
  logits and by 10% or more near 1000 (its spacing there is 0.5; FLOAT16_ROW makes that
  certain whatever the draw).
"""
import numpy as np

from gradekit.grading import StudentError, assert_close, assert_equal, question
from reference import architectures, losses

# ordinary logits: float32 answers err by ~1e-6 relative. Measured over 500 draws, float32 answers
# used at most 7% of any tolerance below, float16 ones at least 3x it (12x for softmax)
RTOL, ATOL = 1e-4, 1e-9
GRAD_ATOL = 1e-5            # the gradient p - q: entries near 0 where p is near 1
# logits near +-1000 (beta up to 2.5): float32 errs by <= ~4e-4 relative, float16 by >= 10%
BIG_RTOL, BIG_ATOL, BIG_GRAD_ATOL = 5e-3, 1e-12, 1e-3

SOFTMAX_SHAPES = ((6, 5), (3, 8), (1, 4))   # two N and K each, and a batch of one
GRAD_SHAPES = ((7, 4), (2, 9), (1, 3))
BETAS = (0.5, 2.5)                          # below and above the default 1
# near 1000, float16 rounds these to 1000, 1000.5, 999.5, 1001, 1000: probabilities off by 10-20%
FLOAT16_ROW = (1000.2, 1000.7, 999.4, 1001.1, 1000.0)


def one_hot(labels, k):
    return np.eye(k)[labels]


def call_unchanged(submission, name, *args, **kwargs):
    """``submission.call``, failing when the function changed an argument in place."""
    value, changed = submission.call_watching(name, *args, **kwargs)
    if changed:
        raise StudentError(f"{name} changed its {', '.join(changed)} in place; the instructions say not to "
                           "modify the arguments (work on a copy: `z - m` makes a new array, `z -= m` does not)")
    return value


def large_logits(rng, k=5):
    """Rows where only a softmax stabilised per row, by max(beta * z), stays finite and exact."""
    rows = [
        1000 + rng.normal(size=k),                    # all large and close: moderate probabilities
        -1000 + rng.normal(size=k),                   # all very negative: exp underflows to 0 without the max
        np.concatenate([[1000.0, -1000.0], rng.normal(size=k - 2) * 3 + 1000]),  # +-1000 in one row
        rng.normal(size=k) * 3,                       # ordinary, beside the others: a global max underflows it
        np.array(FLOAT16_ROW),
    ]
    return np.stack(rows)


@question("q1", points=2)
def test_softmax(submission, rng):
    z = rng.normal(size=SOFTMAX_SHAPES[0]) * 3
    for x in (z, *(rng.normal(size=shape) * 3 for shape in SOFTMAX_SHAPES[1:])):
        shape = x.shape
        assert_close(call_unchanged(submission, "softmax", x), losses.softmax(x), rtol=RTOL, atol=ATOL,
                     name=f"softmax(z) for z of shape {shape}")
        for beta in (*BETAS, float(rng.uniform(0.2, 3.0))):
            assert_close(call_unchanged(submission, "softmax", x, beta=beta), losses.softmax(x, beta=beta),
                         rtol=RTOL, atol=ATOL, name=f"softmax(z, beta={beta:.3f}) for z of shape {shape}")
    big = large_logits(rng)
    for kwargs in ({}, {"beta": 2.5}, {"beta": 0.5}):
        assert_close(call_unchanged(submission, "softmax", big, **kwargs), losses.softmax(big, **kwargs),
                     rtol=BIG_RTOL, atol=BIG_ATOL,
                     name="softmax of logits near +-1000" + (f" with beta={kwargs['beta']}" if kwargs else ""))


@question("q2", points=2)
def test_cross_entropy_grad(submission, rng):
    for n, k in GRAD_SHAPES:
        z = rng.normal(size=(n, k)) * 2
        labels = rng.integers(0, k, size=n)
        labels[0] = (z[0].argmax() + 1) % k   # a target that is not the largest logit, whatever the draw
        assert_close(call_unchanged(submission, "cross_entropy_grad", z, one_hot(labels, k)),
                     losses.cross_entropy_grad(z, labels), rtol=RTOL, atol=GRAD_ATOL,
                     name=f"cross_entropy_grad(z, q) for z of shape {(n, k)}")
    big = large_logits(rng)
    labels = rng.integers(0, big.shape[1], size=len(big))
    assert_close(call_unchanged(submission, "cross_entropy_grad", big, one_hot(labels, big.shape[1])),
                 losses.cross_entropy_grad(big, labels), rtol=BIG_RTOL, atol=BIG_GRAD_ATOL,
                 name="cross_entropy_grad(z, q) for logits near +-1000")


@question("q3", points=1)
def test_conv_parameter_count(submission):
    expected = architectures.conv_param_count(32, 64, 3, bias=True)
    assert_equal(submission.get("n_params_conv"), expected, name="n_params_conv")
