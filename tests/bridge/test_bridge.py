"""The bridge against a real sandboxed kernel: failures of the student's side become
messages for the student, and the kernel keeps serving the next test."""
from __future__ import annotations

import numpy as np
import pytest

from support import kernel_submission
from gradekit.bridge.protocol import StudentError
from gradekit.bridge.values import ModuleSummary, TorchArray, Unsupported, as_torch
from gradekit.grading import assert_close, expect_array

STUDENT = '''
import numpy as np, time, os
x = np.arange(6).reshape(2, 3)
answer = 42
nothing = ...
bad = np.array([1.0, np.nan, np.inf])
def double(a, scale=2): return np.asarray(a) * scale
def boom(): raise ValueError("student bug")
def forever():
    while True: time.sleep(0.05)
def stubborn():
    while True:
        try:
            time.sleep(0.05)
        except KeyboardInterrupt:
            pass
def die(): os._exit(1)
def wipe_bridge():
    for k in [k for k in globals() if k.startswith("_gradekit")]:
        del globals()[k]
def scale_in_place(a, k=2):
    a *= k
    return a
def scale(a, k=2): return a * k
def append_to(items, x): items.append(x)
def fill(a): a[...] = 1
def noisy():
    print("x" * 100000)
    return 1
class Counter:
    def __init__(self, start): self.n = start
    def add(self, k): self.n += k; return self.n
    def __call__(self, k): raise ValueError("not callable today")
import torch
def tensor(): return torch.ones(2, 2, requires_grad=True) * 3
def as_tensor_type(t): return type(t).__name__
net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
net[0].weight.requires_grad_(False)
'''


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    yield from kernel_submission(tmp_path_factory, "bridge", STUDENT, call_timeout=3)


def test_values_and_calls_cross_as_data(submission):
    np.testing.assert_array_equal(submission.get("x"), np.arange(6).reshape(2, 3))
    assert submission.get("answer") == 42 and submission.has("answer") and not submission.has("nope")
    np.testing.assert_array_equal(submission.call("double", np.ones(3), scale=3), 3 * np.ones(3))


def test_missing_name_is_a_student_error(submission):
    with pytest.raises(StudentError, match="`nope` is not defined in your notebook"):
        submission.get("nope")


def test_student_exception_is_reported_with_its_type(submission):
    with pytest.raises(StudentError, match=r"`boom\(\)` raised ValueError: student bug") as info:
        submission.call("boom")
    assert "in boom: def boom(): raise" in str(info.value)  # where, in the student's code
    assert "_gradekit_request" not in str(info.value)      # and nothing of the bridge's own


def test_unanswered_and_non_finite_values_get_plain_messages(submission):
    assert isinstance(submission.get("nothing"), Unsupported)
    with pytest.raises(StudentError, match="not answered yet"):
        expect_array(submission.get("nothing"), "nothing")
    with pytest.raises(StudentError, match="contains NaN and Inf"):
        expect_array(submission.get("bad"), "bad")
    with pytest.raises(StudentError, match=r"has shape \(2, 3\); expected \(3, 2\)"):
        assert_close(submission.get("x"), np.zeros((3, 2)), name="x")


def test_hanging_call_is_interrupted_and_the_kernel_serves_on(submission):
    with pytest.raises(StudentError, match="did not finish within 3 s"):
        submission.call("forever")
    assert submission.get("answer") == 42


def test_call_that_ignores_interrupts_gets_a_fresh_kernel(submission):
    with pytest.raises(StudentError, match="did not finish"):
        submission.call("stubborn")
    assert submission.get("answer") == 42  # replayed into the new kernel


def test_kernel_death_during_a_call_is_survived(submission):
    with pytest.raises(StudentError, match="died"):
        submission.call("die")
    assert submission.get("answer") == 42


def test_deleting_the_bridge_function_in_the_kernel_is_survived(submission):
    submission.call("wipe_bridge")
    assert submission.get("answer") == 42


def test_printing_does_not_disturb_the_reply(submission):
    assert submission.call("noisy") == 1


def test_in_place_changes_of_arguments_are_seen(submission):
    """The kernel keeps each argument's bytes across the call: the grader learns which ones
    the student's function changed (its own copies here are never touched)."""
    x = np.ones(3)
    value, changed = submission.call_watching("scale_in_place", x, k=3)
    np.testing.assert_array_equal(value, 3 * np.ones(3))
    assert changed == ("argument 1",) and np.array_equal(x, np.ones(3))
    value, changed = submission.call_watching("scale", np.ones((2, 2)), k=3)
    assert changed == () and value.shape == (2, 2)
    assert submission.call_watching("append_to", [1, 2], 3) == (None, ("argument 1",))
    assert submission.call_watching("fill", a=np.zeros(4, dtype=np.float32))[1] == ("keyword `a`",)
    assert submission.call_watching("fill", a=np.ones(4))[1] == ()  # the same bytes: nothing changed
    with pytest.raises(StudentError, match="`nope` is not defined"):
        submission.call_watching("nope", x)


def test_objects_stay_in_the_kernel_behind_handles(submission):
    counter = submission.new("Counter", 10)
    assert counter.call("add", 5) == 15 and counter.get("n") == 15
    # the object itself called ("@ref", no method): the message names it without the ref
    with pytest.raises(StudentError, match=r"`your object\(\.\.\.\)` raised ValueError: not callable today"):
        submission.call(f"@{counter.ref}", 1)


def test_torch_values(submission):
    t = submission.call("tensor")
    assert isinstance(t, TorchArray) and t.torch.requires_grad and t.torch.dtype == "torch.float32"
    np.testing.assert_array_equal(t, 3 * np.ones((2, 2)))
    assert submission.call("as_tensor_type", as_torch(np.zeros(2))) == "Tensor"
    net = submission.get("net")
    assert isinstance(net, ModuleSummary)
    assert net.num_parameters() == 3 * 4 + 4 + 4 + 1 and net.num_parameters(trainable_only=True) == 4 + 4 + 1
