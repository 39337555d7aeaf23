"""The bridge decoder takes data only: crafted replies are refused, never executed."""
from __future__ import annotations

import base64
import io
import pickle

import numpy as np
import pytest

from gradekit.bridge.codec import decode
from gradekit.bridge.codec import encode as _encode
from gradekit.bridge.protocol import BridgeDecodeError
from gradekit.bridge.values import ModuleSummary, Unsupported


def _npy(a, allow_pickle=False) -> str:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=allow_pickle)
    return base64.b64encode(buf.getvalue()).decode()


def test_round_trip_of_plain_values():
    value = {"a": [1, 2.5, None, True, "s"], "t": (1, 2), "arr": np.arange(6.0).reshape(2, 3)}
    back = decode(_encode(value))
    assert back["a"] == [1, 2.5, None, True, "s"] and back["t"] == (1, 2)
    np.testing.assert_array_equal(back["arr"], value["arr"])


def test_nan_inf_and_big_ints_cross_as_tagged_values():
    assert np.isnan(decode({"__float__": "nan"})) and decode({"__float__": "-inf"}) == -np.inf
    assert decode({"__bigint__": str(2**100)}) == 2**100


def test_pickled_object_array_is_refused():
    crafted = {"__ndarray__": _npy(np.array([object()], dtype=object), allow_pickle=True)}
    with pytest.raises(BridgeDecodeError, match="could not be read safely"):
        decode(crafted)


def test_raw_pickle_payload_is_refused():
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))
    with pytest.raises(BridgeDecodeError):
        decode({"__ndarray__": base64.b64encode(pickle.dumps(Boom())).decode()})


@pytest.mark.parametrize("crafted", [
    {"__ndarray__": "!!!not base64"},
    {"__ndarray__": _npy(np.arange(3)), "extra": 1},
    {"__tuple__": "nope"},
    {"__dict__": [[{"k": 1}, 2]]},
    {"__float__": "1e400; import os"},
    {"__bigint__": "12; rm"},
    {"__unknown__": 1},
    {},
    {"__module__": {"class": "X"}},
])
def test_malformed_replies_are_refused(crafted):
    with pytest.raises(BridgeDecodeError):
        decode(crafted)


def test_deep_nesting_is_refused():
    value = 1
    for _ in range(100):
        value = [value]
    with pytest.raises(BridgeDecodeError, match="deep"):
        decode(value)


def test_unsupported_and_module_summaries_are_inert_data():
    u = decode({"__unsupported__": "builtins.function", "repr": "<function f>"})
    assert isinstance(u, Unsupported) and "function" in str(u)
    m = decode({"__module__": {"class": "Net", "parameters": [["fc.weight", [2, 3], True], ["fc.bias", [2], False]],
                               "buffers": [], "modules": [["fc", "Linear"]], "training": True, "repr": "Net()"}})
    assert isinstance(m, ModuleSummary) and m.num_parameters() == 8 and m.num_parameters(trainable_only=True) == 6


def test_sending_objects_is_refused_on_the_trusted_side():
    with pytest.raises(TypeError):
        _encode(object())
    with pytest.raises(TypeError):
        _encode(np.array([object()], dtype=object))
