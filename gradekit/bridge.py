"""The bridge: graders read the student's values and call their functions, as data only.

Each request is a small piece of code (:file:`_shim.py`) executed in the student's kernel;
the reply comes back as a ``display_data`` message of our own MIME type, on the Jupyter
channel, and is decoded here by :func:`decode` — strictly: JSON, and arrays as ``.npy``
read with ``allow_pickle=False``. Nothing from the kernel is unpickled, imported or
evaluated on this side, and no file the student could link elsewhere is ever read.

Failures of the student's side (a missing name, an exception, a hang, a dead kernel, an
unsupported type) raise :class:`StudentError`, an ``AssertionError`` whose message is
written for the student; the test fails, the grader does not crash.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import math
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

MIME = "application/vnd.gradekit.reply+json"
MAX_REPLY_BYTES = 512 * 1024 * 1024
MAX_DEPTH = 32
_SHIM = (Path(__file__).parent / "_shim.py").read_text()


class StudentError(AssertionError):
    """Something on the student's side stops a check; the message is for the student."""


class BridgeDecodeError(StudentError):
    """The kernel's reply is not well-formed data."""


# -- values crossing the bridge ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Unsupported:
    """A value of a type that cannot cross as data; only its type name and repr come back."""
    type: str
    repr: str

    def __str__(self) -> str:
        if self.type == "ellipsis":
            return "`...` (not answered yet)"
        return f"a {self.type} ({self.repr})"


@dataclasses.dataclass(frozen=True)
class ModuleSummary:
    """A torch.nn.Module described as data: its parameters, buffers and sub-modules."""
    cls: str
    parameters: tuple[tuple[str, tuple[int, ...], bool], ...]
    buffers: tuple[tuple[str, tuple[int, ...]], ...]
    modules: tuple[tuple[str, str], ...]
    training: bool
    repr: str

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(math.prod(shape) for _, shape, grad in self.parameters if grad or not trainable_only)


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """What came with an array that was a torch tensor in the kernel."""
    dtype: str
    requires_grad: bool
    device: str


class TorchArray(np.ndarray):
    """An array that was a torch tensor in the student's kernel (``.torch`` says how)."""
    torch: TensorInfo | None = None


class as_torch:  # noqa: N801 - reads as a conversion in grader code
    """Wrap an array argument so it arrives in the student's kernel as a torch tensor."""

    def __init__(self, array):
        self.array = np.asarray(array)


@dataclasses.dataclass(frozen=True)
class Handle:
    """An object that lives in the student's kernel, made by :meth:`Submission.new`."""
    submission: "Submission"
    ref: str
    cls: str

    def call(self, method: str, *args, **kwargs):
        return self.submission.call(f"@{self.ref}.{method}", *args, **kwargs)

    def get(self, attr: str):
        return self.submission.get(f"@{self.ref}.{attr}")


def _encode(x, depth: int = 0):
    if depth > MAX_DEPTH:
        raise ValueError("argument nested too deeply")
    if isinstance(x, as_torch):
        return {"__ndarray__": _npy(x.array), "torch": True}
    if isinstance(x, Handle):
        return {"__handle__": x.ref}
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
        return {"__tuple__": [_encode(v, depth + 1) for v in x]}
    if isinstance(x, list):
        return [_encode(v, depth + 1) for v in x]
    if isinstance(x, dict):
        return {"__dict__": [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in x.items()]}
    if type(x).__module__.startswith("torch"):
        return {"__ndarray__": _npy(x.detach().cpu().numpy()), "torch": True}
    raise TypeError(f"cannot send a {type(x).__name__} to the student's kernel")


def _npy(a: np.ndarray) -> str:
    if a.dtype.hasobject:
        raise TypeError("object arrays cannot cross the bridge")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
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


# -- the submission proxy ----------------------------------------------------------------
def _describe_call(name: str, args: tuple, kwargs: dict) -> str:
    shown = name.split(".", 1)[1] if name.startswith("@") else name
    return f"`{shown}(...)`" if args or kwargs else f"`{shown}()`"


class Submission:
    """The student's notebook, after it ran: read variables and call functions.

    ``get(name)`` returns the value of a variable (dotted attributes allowed: ``"model.fc"``),
    ``call(name, *args, **kwargs)`` calls a function and returns its result, ``new(name,
    ...)`` constructs an object that stays in the kernel and returns a :class:`Handle`.
    Arrays go both ways as numpy arrays (wrap with :class:`as_torch` to send a tensor);
    torch tensors come back as arrays, ``nn.Module`` objects as :class:`ModuleSummary`.
    """

    def __init__(self, session, *, call_timeout: float = 60.0, seed: int = 0, source: str = ""):
        self._session = session
        self.call_timeout = call_timeout
        self.seed = seed
        self.source = source
        self._installed: dict[int, str] = {}   # kernel client -> name of the installed shim

    # public API
    def get(self, name: str) -> Any:
        return self._request("get", name)

    def has(self, name: str) -> bool:
        return bool(self._request("has", name))

    def call(self, name: str, *args, **kwargs) -> Any:
        return self._request("call", name, args, kwargs)

    def new(self, name: str, *args, **kwargs) -> Handle:
        value = self._request("new", name, args, kwargs)
        return Handle(self, value["__handle__"], value.get("class", ""))

    def files_named(self, names: list[str]) -> list[str]:
        """Paths under the notebook's working folder with one of these file names, as the
        kernel reports them (student-controlled: fit for a note in the report, nothing more)."""
        found = self._request("files", "", (list(names),))
        return [str(f)[:300] for f in found] if isinstance(found, list) else []

    def with_timeout(self, seconds: float) -> "Submission":
        """The same submission with another limit for each call (for slow functions)."""
        view = object.__new__(Submission)
        view.__dict__.update(self.__dict__)
        view.call_timeout = seconds
        return view

    # the channel
    def _request(self, op: str, name: str, args: tuple = (), kwargs: dict | None = None):
        kwargs = kwargs or {}
        what = _describe_call(name, args, kwargs) if op in ("call", "new") else f"`{name}`"
        kc = self._session.blocking_client()
        if kc is None:
            raise StudentError(f"could not evaluate {what}: your kernel is no longer running "
                               f"({self._session.death or 'it stopped'})")
        token = secrets.token_hex(16)
        request = json.dumps(json.dumps({"token": token, "op": op, "name": name,
                                         "args": _encode(tuple(args))["__tuple__"], "kwargs": _encode(dict(kwargs))}))
        for attempt in (1, 2):
            fn = self._install(kc, what)
            code = f"if {fn!r} in globals(): {fn}({request})"
            msg_id = kc.execute(code, silent=False, store_history=False, allow_stdin=False, stop_on_error=False)
            replies, printed, idle = self._collect(kc, msg_id, token, what)
            if replies or not idle or attempt == 2:
                break
            self._installed.pop(id(kc), None)  # the function vanished (deleted by the student?): again
        if not replies:
            if not idle:
                raise StudentError(f"{what} did not answer")
            raise StudentError(f"{what} returned no value the grader could read "
                               "(was the notebook's display machinery replaced?)")
        if len(replies) > 1:
            raise StudentError(f"{what} sent several answers; none is trusted")
        reply = replies[0]
        if "raised" in reply:
            r = reply["raised"] if isinstance(reply["raised"], dict) else {}
            where = "; ".join(str(w) for w in r.get("where", [])[:3] if isinstance(w, str))
            raise StudentError(f"{what} raised {str(r.get('type', 'an error'))[:100]}: {str(r.get('message', ''))[:1000]}"
                               + (f" (at {where})" if where else ""))
        if "missing" in reply:
            detail = f": {str(reply.get('detail'))[:300]}" if reply.get("detail") else ""
            raise StudentError(f"`{name}` is not defined in your notebook{detail}")
        if "value" not in reply:
            raise BridgeDecodeError(f"the reply for {what} is malformed")
        if op == "new":  # a handle, not a value: {"__handle__": token, "class": name}
            value = reply["value"]
            if not (isinstance(value, dict) and value.get("__handle__") == token):
                raise BridgeDecodeError(f"the reply for {what} is malformed")
            return {"__handle__": token, "class": str(value.get("class", ""))[:100]}
        return decode(reply["value"])

    def _install(self, kc, what: str) -> str:
        """Define the kernel-side request function once per kernel, under a random name."""
        name = self._installed.get(id(kc))
        if name is None:
            name = f"_gradekit_bridge_{secrets.token_hex(8)}"
            code = f"{_SHIM}\n{name} = _gradekit_request\ndel _gradekit_request\n"
            msg_id = kc.execute(code, silent=True, store_history=False, allow_stdin=False, stop_on_error=False)
            self._collect(kc, msg_id, "", what)
            self._installed = {id(kc): name}  # one kernel at a time: a restart brings a new client
        return name

    def _collect(self, kc, msg_id: str, token: str, what: str):
        """Read the kernel's messages for one request until it is idle or out of time."""
        deadline = time.monotonic() + self.call_timeout
        replies: list[dict] = []
        printed = 0
        next_liveness = time.monotonic() + 1.0
        while True:
            now = time.monotonic()
            if now > deadline:
                self._stop_runaway(kc, msg_id, what)
                raise StudentError(f"{what} did not finish within {self.call_timeout:g} s and was stopped")
            try:
                msg = kc.get_iopub_msg(timeout=min(0.25, max(0.01, deadline - now)))
            except Exception:  # queue.Empty
                if time.monotonic() > next_liveness:
                    next_liveness = time.monotonic() + 1.0
                    if not self._session.kernel_alive():
                        why = self._session.death_reason()
                        self._session.revive(f"it died during {what}: {why}")
                        raise StudentError(f"your kernel died during {what}: {why}")
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg.get("msg_type"), msg.get("content", {})
            if kind == "status" and content.get("execution_state") == "idle":
                return replies, printed, True
            if kind == "display_data" and MIME in content.get("data", {}):
                payload = content["data"][MIME]
                if not isinstance(payload, str) or len(payload) > MAX_REPLY_BYTES:
                    raise BridgeDecodeError(f"the reply for {what} is too large or malformed")
                try:
                    reply = json.loads(payload)
                except ValueError:
                    raise BridgeDecodeError(f"the reply for {what} is not valid JSON") from None
                if isinstance(reply, dict) and reply.get("token") == token:
                    replies.append(reply)
            elif kind == "stream":
                printed += len(content.get("text", ""))
            elif kind == "error":
                replies.append({"raised": {"type": content.get("ename", "Error"),
                                           "message": content.get("evalue", ""), "where": []}})

    def _stop_runaway(self, kc, msg_id: str, what: str) -> None:
        """Interrupt a call that ran out of time; restart the kernel if that fails."""
        self._session.interrupt()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=0.25)
            except Exception:
                continue
            if (msg.get("parent_header", {}).get("msg_id") == msg_id and msg.get("msg_type") == "status"
                    and msg.get("content", {}).get("execution_state") == "idle"):
                return
        self._session.revive(f"{what} did not stop when interrupted")
