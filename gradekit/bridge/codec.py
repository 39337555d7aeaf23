"""Values to and from the kernel as data: JSON with tagged objects, arrays as ``.npy``.

:func:`encode` turns a grader's arguments into JSON data (refusing anything that is not
data); :func:`decode` turns a reply back into values strictly: a closed set of shapes,
arrays read with ``allow_pickle=False``, anything else refused as the student's error.
"""
from __future__ import annotations

import base64
import binascii
import io
import math

import numpy as np

from .protocol import MAX_DEPTH, BridgeDecodeError
from .values import Handle, ModuleSummary, ParamsOf, TensorInfo, TorchArray, Unsupported, as_torch

#: What reading a forged reply can raise (deep nesting, huge or odd numbers, missing fields):
#: all of it is the student's doing, reported as such, never as the grader's failure.
FORGED = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, MemoryError, OverflowError)


def encode(x, depth: int = 0):
    if depth > MAX_DEPTH:
        raise ValueError("argument nested too deeply")
    if isinstance(x, as_torch):
        return {"__ndarray__": _npy(x.array), "torch": True}
    if isinstance(x, Handle):
        return {"__handle__": x.ref}
    if isinstance(x, ParamsOf):
        return {"__params_of__": x.ref}
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else {"__float__": repr(v)}
    if isinstance(x, np.ndarray):
        return {"__ndarray__": _npy(x)}
    if isinstance(x, tuple):
        return {"__tuple__": [encode(v, depth + 1) for v in x]}
    if isinstance(x, list):
        return [encode(v, depth + 1) for v in x]
    if isinstance(x, dict):
        return {"__dict__": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    if type(x).__module__.startswith("torch"):
        return {"__ndarray__": _npy(x.detach().cpu().numpy()), "torch": True}
    raise TypeError(f"cannot send a {type(x).__name__} to the student's kernel")


def _npy(a: np.ndarray) -> str:
    if a.dtype.hasobject:
        raise TypeError("object arrays cannot cross the bridge")
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, order="C"), allow_pickle=False)  # ascontiguousarray makes a 0-d array 1-d
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode(x, depth: int = 0):
    """Strictly turn a reply's JSON into Python data; anything unexpected is refused."""
    if depth > MAX_DEPTH + 2:
        raise BridgeDecodeError("the value is nested too deeply")
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, list):
        return [decode(v, depth + 1) for v in x]
    if not isinstance(x, dict) or len(x) == 0:
        raise BridgeDecodeError(f"malformed value in the reply ({type(x).__name__})")
    if "__ndarray__" in x:
        if not set(x) <= {"__ndarray__", "torch", "torch_dtype", "requires_grad", "device"}:
            raise BridgeDecodeError("malformed array in the reply")
        try:
            raw = base64.b64decode(x["__ndarray__"], validate=True)
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        except (binascii.Error, ValueError, OSError, TypeError, EOFError) as exc:
            raise BridgeDecodeError(f"an array in the reply could not be read safely: {exc}") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.hasobject:
            raise BridgeDecodeError("an array in the reply is not a plain numeric array")
        if x.get("torch"):
            arr = arr.view(TorchArray)
            arr.torch = TensorInfo(str(x.get("torch_dtype", "")), bool(x.get("requires_grad")), str(x.get("device", "")))
        return arr
    (key, value), = x.items() if len(x) == 1 else [(None, None)]
    if key == "__tuple__" and isinstance(value, list):
        return tuple(decode(v, depth + 1) for v in value)
    if key == "__dict__" and isinstance(value, list):
        out = {}
        for pair in value:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))):
                raise BridgeDecodeError("malformed dict in the reply")
            out[pair[0]] = decode(pair[1], depth + 1)
        return out
    if key == "__float__" and value in ("nan", "inf", "-inf"):
        return float(value)
    if key == "__bigint__" and isinstance(value, str) and value.lstrip("-").isdigit() and len(value) < 5000:
        return int(value)
    if key == "__module__" and isinstance(value, dict):
        try:
            return ModuleSummary(
                cls=str(value["class"]),
                parameters=tuple((str(n), tuple(int(d) for d in s), bool(g)) for n, s, g in value["parameters"]),
                buffers=tuple((str(n), tuple(int(d) for d in s)) for n, s in value["buffers"]),
                modules=tuple((str(n), str(c)) for n, c in value["modules"]),
                training=bool(value["training"]), repr=str(value["repr"])[:4000])
        except (KeyError, TypeError, ValueError):
            raise BridgeDecodeError("malformed module description in the reply") from None
    if set(x) <= {"__unsupported__", "repr"} and isinstance(x.get("__unsupported__"), str):
        return Unsupported(x["__unsupported__"][:200], str(x.get("repr", ""))[:200])
    raise BridgeDecodeError("malformed value in the reply")
