"""A pandas DataFrame crosses the bridge as its rows (a list of dicts): hw4-cnn's tables may be
lists of dicts or DataFrames, and the trusted side only ever sees plain data."""
from __future__ import annotations

import pytest

from support import kernel_submission
from gradekit.bridge.values import Unsupported

STUDENT = '''
import numpy as np, pandas as pd
table = pd.DataFrame([{"layer": "conv1", "params": 34944}, {"layer": "fc8", "params": 4097000}])
mixed = pd.DataFrame({"layer": ["a", "b"], "params": [1.0, None]})
odd_columns = pd.DataFrame([[1, 2]], columns=[("a", 1), ("b", 2)])
def rows(): return table
'''


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    pytest.importorskip("pandas")
    yield from kernel_submission(tmp_path_factory, "tables", STUDENT, call_timeout=10)


def test_a_dataframe_arrives_as_its_rows(submission):
    got = submission.get("table")
    assert got == [{"layer": "conv1", "params": 34944}, {"layer": "fc8", "params": 4097000}]
    assert all(type(r["params"]) is int for r in got)  # numpy integers arrive as ints
    assert submission.call("rows") == got


def test_missing_cells_and_odd_columns_stay_data(submission):
    mixed = submission.get("mixed")
    assert mixed[0] == {"layer": "a", "params": 1.0} and mixed[1]["params"] != mixed[1]["params"]  # NaN
    odd = submission.get("odd_columns")  # tuple column names are no dict keys the bridge sends: the row says so
    assert len(odd) == 1 and isinstance(odd[0], Unsupported) and "tuple" in odd[0].type, odd
