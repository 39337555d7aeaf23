"""A matplotlib figure read through the bridge (Submission.figure): panels, points, classes,
also after plt.show()/plt.close(); what is not a figure, or only looks like one, is the
student's error, never the grader's."""
from __future__ import annotations

import numpy as np
import pytest

from support import kernel_submission
from gradekit.bridge.protocol import BridgeDecodeError, StudentError

STUDENT = '''
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, (a, b, empty) = plt.subplots(1, 3)
a.scatter([0, 1, 2], [0, 1, 2], c="lightgrey")
a.scatter([0, 1, 2, 3], [3, 2, 1, 0], c=[0, 5, 5, 2], cmap="tab20")
a.set_title("alexnet (mAP 0.5)")
b.scatter([1, 2], [1, 2], c=["red", "blue"])
b.scatter([3], [3], c="red")
b.set_title("resnet18")
a.plot([0, 1], [0, 1])          # a line: not a scatter, not counted
kept = fig
plt.show()
plt.close("all")                # closed figures keep their artists while a name holds them
not_a_figure = [1, 2]

class Collection:
    def __init__(self, offsets): self.offsets = offsets
    def get_offsets(self): return self.offsets
    def get_array(self): return None
    def get_facecolors(self): return np.zeros((1, 4))
class Axes:
    def __init__(self, offsets): self.collections = [Collection(offsets)]
    def get_title(self): return "forged"
class Forged:
    def __init__(self, offsets): self.offsets = offsets
    def get_axes(self): return [Axes(self.offsets)]
three_columns = Forged(np.zeros((5, 3)))
def _boom(): raise RuntimeError("no axes today")
raising = Forged(np.zeros((5, 2)))
raising.get_axes = _boom
many = Forged(np.zeros((2, 2)))
many.get_axes = lambda: [Axes(np.zeros((1, 2)))] * 5000
'''


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    yield from kernel_submission(tmp_path_factory, "figures", STUDENT, call_timeout=10)


def test_panels_points_and_classes_of_a_closed_figure(submission):
    fig = submission.figure("kept")
    assert [p.title for p in fig.panels] == ["alexnet (mAP 0.5)", "resnet18", ""]
    a, b, empty = fig.panels
    assert fig.panel("alexnet") is a and fig.panel("vgg") is None
    assert [len(s) for s in a.scatters] == [3, 4] and a.points() == 7
    np.testing.assert_array_equal(a.scatters[1].offsets, [[0, 3], [1, 2], [2, 1], [3, 0]])
    np.testing.assert_array_equal(a.scatters[1].values, [0, 5, 5, 2])
    assert a.scatters[0].values is None and a.scatters[0].classes() == 1   # one colour for all
    assert a.scatters[1].classes() == 3                                     # three mapped values
    assert b.points() == 3 and b.scatters[0].classes() == 2                 # colours given as names
    assert empty.scatters == () and empty.points() == 0


def test_what_is_not_a_figure_is_the_students_error(submission):
    with pytest.raises(StudentError, match="not a matplotlib figure.*list"):
        submission.figure("not_a_figure")
    with pytest.raises(StudentError, match="not defined"):
        submission.figure("no_such_figure")
    with pytest.raises(StudentError, match="RuntimeError: no axes today"):
        submission.figure("raising")


def test_forged_figures_are_refused_or_capped(submission):
    with pytest.raises(BridgeDecodeError, match="malformed"):
        submission.figure("three_columns")
    assert len(submission.figure("many").panels) == 1000     # SHIM_LIMITS["max_layers"]
    assert len(submission.figure("kept").panels) == 3         # and the kernel serves on


def test_a_reply_past_the_shims_caps_is_forged():
    """The shim never sends more than max_layers panels or scatters: more is a forged reply."""
    from gradekit.bridge.figures import figure_data
    from gradekit.bridge.protocol import SHIM_LIMITS
    n = SHIM_LIMITS["max_layers"]
    panel = {"title": "t", "scatters": []}
    assert len(figure_data([panel] * n, "`f`").panels) == n
    with pytest.raises(BridgeDecodeError):
        figure_data([panel] * (n + 1), "`f`")
    with pytest.raises(BridgeDecodeError):
        figure_data([{"title": "t", "scatters": [{}] * (n + 1)}], "`f`")
