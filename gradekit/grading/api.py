"""What grader authors import. Graders are ordinary pytest files::

    import pytest
    from gradekit.grading import question, assert_close
    from reference import losses

    @question("q1", points=2)
    def test_softmax_matches_reference(submission, rng):
        z = rng.normal(size=(4, 7))
        assert_close(submission.call("softmax", z), losses.softmax(z), rtol=1e-6, name="softmax(z)")

Markers (usable directly too): ``@pytest.mark.question("q1")``, ``@pytest.mark.points(2)``,
``@pytest.mark.visibility("hidden")`` with Gradescope's names ``visible``, ``hidden``,
``after_due_date``, ``after_published``. A test without ``points`` shares what its question's
points leave over equally with its question's other unmarked tests.

Fixtures: ``submission`` (:class:`gradekit.bridge.host.Submission`), ``rng`` (a
``numpy.random.Generator`` seeded from the submission's hash and the test's name, fresh per
submission, recorded in the report), ``credit`` (partial credit: set ``credit.fraction``),
``assignment`` (the spec) and ``tolerance`` (the question's ``rtol``/``atol`` from the spec).
"""
from __future__ import annotations

import numpy as np
import pytest

from ..bridge.models import (  # noqa: F401 - re-exported by gradekit.grading
    ModelStructure, ModelView, OptimizerConfig, SchedulerConfig, StepResult, accuracy, predict)
from ..bridge.protocol import StudentError
from ..bridge.values import Handle, ModuleSummary, TorchArray, Unsupported, as_torch
from ..spec import VISIBILITIES  # noqa: F401 - one list, the spec's


def question(qid: str, points: float | None = None, visibility: str | None = None):
    """Decorator: this test belongs to question ``qid`` and is worth ``points``."""
    if visibility is not None and visibility not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {VISIBILITIES}")

    def mark(fn):
        fn = pytest.mark.question(qid)(fn)
        if points is not None:
            fn = pytest.mark.points(points)(fn)
        if visibility is not None:
            fn = pytest.mark.visibility(visibility)(fn)
        return fn
    return mark


class Credit:
    """Partial credit for the running test: ``credit.fraction = 0.5`` keeps half its points
    whether or not the test later fails; unset, a pass earns all and a failure nothing."""

    def __init__(self):
        self.fraction: float | None = None
        self.notes: list[str] = []

    def award(self, fraction: float, note: str = "") -> None:
        self.fraction = max(0.0, min(1.0, float(fraction)))
        if note:
            self.notes.append(note)


def _short(a) -> str:
    with np.printoptions(precision=6, threshold=20, edgeitems=3, linewidth=100):
        return np.array2string(np.asarray(a)) if np.ndim(a) else repr(np.asarray(a).item())


def expect_array(value, name: str = "value", *, shape: tuple | None = None, ndim: int | None = None,
                 finite: bool = True) -> np.ndarray:
    """``value`` as a float64 array, or a failure that says what is wrong with it."""
    if isinstance(value, Unsupported):
        raise StudentError(f"{name} is {value}; expected a number or an array")
    if isinstance(value, (ModuleSummary, Handle)) or isinstance(value, (str, bytes, dict)) or value is None:
        raise StudentError(f"{name} is {_kind(value)}; expected a number or an array")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise StudentError(f"{name} is {_kind(value)}, which is not numeric") from None
    if ndim is not None and arr.ndim != ndim:
        raise StudentError(f"{name} has {arr.ndim} dimension(s) (shape {arr.shape}); expected {ndim}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise StudentError(f"{name} has shape {arr.shape}; expected {tuple(shape)}")
    if finite and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        kinds = [k for k, f in (("NaN", np.isnan), ("Inf", np.isinf)) if np.any(f(arr))]
        raise StudentError(f"{name} contains {' and '.join(kinds)} ({bad} of {arr.size} entries)")
    return arr


def _kind(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, Unsupported):
        return str(value)
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


def assert_close(actual, expected, *, rtol: float = 1e-7, atol: float = 0.0, name: str = "value") -> None:
    """Fail unless ``|actual - expected| <= atol + rtol * |expected|`` everywhere.

    The message names the shape, NaN/Inf, the largest absolute and relative errors, and
    (for visible tests only) the expected value next to the one that came back.
    """
    exp = np.asarray(expected, dtype=np.float64)
    got = expect_array(actual, name, shape=exp.shape if exp.ndim else None)
    if exp.ndim == 0 and got.size != 1:
        raise StudentError(f"{name} has shape {got.shape}; expected a single number")
    got = got.reshape(exp.shape)
    err = np.abs(got - exp)
    if np.all(err <= atol + rtol * np.abs(exp)):
        return
    worst = float(np.max(err))
    rel = float(np.max(err / np.maximum(np.abs(exp), np.finfo(float).tiny)))
    bad = int(np.count_nonzero(err > atol + rtol * np.abs(exp)))
    msg = (f"{name} is not close enough to the reference: {bad} of {exp.size} entries differ; "
           f"largest absolute error {worst:.3g}, largest relative error {rel:.3g} (rtol={rtol:g}, atol={atol:g})")
    raise StudentError(msg, expected=f"\n  expected: {_short(exp)}\n  got:      {_short(got)}")


def assert_equal(actual, expected, *, name: str = "value") -> None:
    """Exact comparison for counts, shapes, labels and yes/no answers (types are normalised:
    ``np.int64(3) == 3``, tuples equal lists, ``True`` is not ``1``)."""
    def norm(v):
        if isinstance(v, Unsupported):
            raise StudentError(f"{name} is {v}")
        if isinstance(v, np.ndarray):
            return ("array", v.shape, v.tolist())
        if isinstance(v, (list, tuple)):
            return ("seq", tuple(norm(x) for x in v))
        if isinstance(v, (bool, np.bool_)):
            return ("bool", bool(v))
        if isinstance(v, (int, np.integer)):
            return ("num", int(v))
        if isinstance(v, float) and v.is_integer():
            return ("num", int(v))
        return (type(v).__name__, v)
    if norm(actual) != norm(expected):
        msg = f"{name} is {_kind(actual) if not isinstance(actual, (int, float, str, bool)) else repr(actual)}"
        raise StudentError(msg, expected=f"; expected {expected!r}", withheld=", which is not the right answer")


__all__ = ["question", "assert_close", "assert_equal", "expect_array", "Credit", "StudentError",
           "as_torch", "TorchArray", "ModuleSummary", "Unsupported", "Handle", "VISIBILITIES"]
