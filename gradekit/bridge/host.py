"""The host side of the bridge: graders read the student's values and call their functions.

Each request is one call of a small function (:file:`shim.py`) installed in the student's
kernel; the reply comes back as a ``display_data`` message of our own MIME type, on the
Jupyter channel, and is decoded by :func:`gradekit.bridge.codec.decode` — strictly: JSON,
and arrays as ``.npy`` read with ``allow_pickle=False``. Nothing from the kernel is
unpickled, imported or evaluated on this side, and no file the student could link
elsewhere is ever read.

Failures of the student's side (a missing name, an exception, a hang, a dead kernel, an
unsupported type) raise :class:`StudentError`, an ``AssertionError`` whose message is
written for the student; the test fails, the grader does not crash.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from .codec import FORGED, decode, encode
from .models import (ModelView, OptimizerConfig, SchedulerConfig, StepResult, optimizer_config, ref_of,
                     scheduler_config, shown, step_result)
from .figures import FigureData, figure_data
from .protocol import MAX_REPLY_BYTES, MIME, REFUSED, SHIM_LIMITS, BridgeDecodeError, StudentError
from .values import Handle, ParamsOf

# The kernel side, sent as text: shim.py's request function, with shim_torch.py's torch ops.
_SHIM = (Path(__file__).parent / "shim.py").read_text()
_SHIM_TORCH = (Path(__file__).parent / "shim_torch.py").read_text()


def _describe_call(name: str, args: tuple, kwargs: dict) -> str:
    if name.startswith("@"):  # a handle's method ("@ref.eval"), or the object itself called
        shown = name.split(".", 1)[1] if "." in name else "your object"
    else:
        shown = name
    return f"`{shown}(...)`" if args or kwargs else f"`{shown}()`"


class Submission:
    """The student's notebook, after it ran: read variables and call functions.

    ``get(name)`` returns the value of a variable (dotted attributes allowed: ``"model.fc"``),
    ``call(name, *args, **kwargs)`` calls a function and returns its result, ``new(name,
    ...)`` constructs an object that stays in the kernel and returns a :class:`Handle`.
    Arrays go both ways as numpy arrays (wrap with :class:`as_torch` to send a tensor);
    torch tensors come back as arrays, ``nn.Module`` objects as :class:`ModuleSummary`.

    torch models, optimizers and schedulers are read and run through :meth:`model`,
    :meth:`optimizer`, :meth:`scheduler` and :meth:`step`; :meth:`torch_new` builds torch
    objects the grader controls (see :mod:`gradekit.bridge.models`).
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

    def call_watching(self, name: str, *args, **kwargs) -> tuple[Any, tuple[str, ...]]:
        """``call``, and which arguments the student's function changed in place: ``(value,
        changed)``, ``changed`` naming each one ("argument 1", "keyword `eps`"); empty when
        none did. The kernel compares each argument's bytes before and after the call, so a
        grader can check "do not modify the arguments" (the values sent here are copies)."""
        what = _describe_call(name, args, kwargs)
        value = self._request("call.watch", name, args, kwargs, what=what)
        allowed = {f"argument {i + 1}" for i in range(len(args))} | {f"keyword `{k}`" for k in kwargs}
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], list)
                and all(isinstance(c, str) and c in allowed for c in value[1])):
            raise BridgeDecodeError(f"the reply for {what} is malformed")
        return value[0], tuple(value[1])

    def new(self, name: str, *args, **kwargs) -> Handle:
        value = self._request("new", name, args, kwargs)
        return Handle(self, value["__handle__"], value.get("class", ""))

    def defined(self, names: list[str]) -> dict[str, bool]:
        """Which of these top-level names the notebook defines, in one request."""
        found = self._request("defined", "", (list(names),))
        if not (isinstance(found, list) and len(found) == len(names)):
            raise BridgeDecodeError("the reply listing the defined names is malformed")
        return {n: bool(f) for n, f in zip(names, found)}

    def platform(self) -> dict[str, str]:
        """What the kernel says it runs on: Python, torch and its CUDA, the device, the NVIDIA
        driver, TF32 settings (the student's to fake: for the report, never for a score)."""
        seen = self._request("platform", "")
        if not isinstance(seen, dict):
            raise BridgeDecodeError("the reply describing the kernel's platform is malformed")
        return {str(k)[:40]: str(v)[:200] for k, v in list(seen.items())[:20]}

    def figure(self, name: str) -> FigureData:
        """The matplotlib figure the notebook keeps in ``name`` (``fig = plt.figure()`` lives on
        after ``plt.show()`` closed it): each panel's title and each scatter's points and colours."""
        return figure_data(self._request("figure", name), f"`{name}`")

    def files_named(self, names: list[str]) -> list[str]:
        """Paths under the notebook's working folder with one of these file names, as the
        kernel reports them (student-controlled: fit for a note in the report, nothing more)."""
        found = self._request("files", "", (list(names),))
        return [str(f)[:300] for f in found] if isinstance(found, list) else []

    # torch models across the bridge (gradekit.bridge.models builds and checks the replies)
    def model(self, name: str | Handle) -> ModelView:
        """The ``nn.Module`` named ``name`` (a global, ``"net.encoder"``, or a handle)."""
        return ModelView(self, name)

    def optimizer(self, name: str | Handle, model: str | Handle | None = None) -> OptimizerConfig:
        """An optimizer's type and parameter groups; with ``model``, which of the model's
        parameters each group holds, and which trainable ones no group holds."""
        ref = None if model is None else ref_of(model)
        return optimizer_config(self._request("torch.optimizer", ref_of(name), (ref,), what=shown(name)))

    def scheduler(self, name: str | Handle, epochs: int) -> SchedulerConfig:
        """A learning-rate scheduler's type and settings, and each group's learning rate for the
        next ``epochs`` epochs (``lrs[0]`` the current ones), followed on a copy: the student's
        scheduler and optimizer are left as they were."""
        epochs = int(epochs)
        if not 0 <= epochs <= SHIM_LIMITS["max_epochs"]:
            raise ValueError(f"epochs must be between 0 and {SHIM_LIMITS['max_epochs']}")
        return scheduler_config(self._request("torch.scheduler", ref_of(name), (epochs,), what=shown(name)), epochs)

    def step(self, fn_name: str, *args, model: str | Handle, stale_grad: float | None = None, **kwargs) -> StepResult:
        """Call the training function ``fn_name(*args, **kwargs)`` once (handles and
        :meth:`params_of` allowed) and return its result and each parameter of ``model``'s
        change (after - before, float64). With ``stale_grad``, every trainable parameter's
        ``.grad`` holds that constant before the call (a step that never calls ``zero_grad``
        then moves differently)."""
        stale = None if stale_grad is None else float(stale_grad)
        value = self._request("torch.step", fn_name, (ref_of(model), stale, tuple(args), dict(kwargs)),
                              what=_describe_call(fn_name, args, kwargs))
        return step_result(value)

    def torch_new(self, dotted_name: str, *args, **kwargs) -> Handle:
        """Build ``torch.<...>(*args, **kwargs)`` in the kernel from torch itself (never from the
        notebook's names) and keep it there: ``torch_new("torch.nn.Linear", 4, 3)``,
        ``torch_new("torch.optim.SGD", sub.params_of(h), lr=0.1)``."""
        parts = str(dotted_name).split(".")
        if parts[0] != "torch" or len(parts) < 2 or not all(p.isidentifier() and not p.startswith("_") for p in parts[1:]):
            raise ValueError(f"torch_new needs a public dotted name under torch., not {dotted_name!r}")
        value = self._request("torch.new", dotted_name, args, kwargs, what=f"building `{dotted_name}(...)` in your kernel")
        return Handle(self, value["__handle__"], value.get("class", ""))

    def params_of(self, model: str | Handle) -> ParamsOf:
        """An argument that arrives as ``list(model.parameters())`` of this handle or global."""
        return ParamsOf(ref_of(model))

    def with_timeout(self, seconds: float) -> "Submission":
        """The same submission with another limit for each call (for slow functions)."""
        view = object.__new__(Submission)
        view.__dict__.update(self.__dict__)
        view.call_timeout = seconds
        return view

    # the channel
    def _request(self, op: str, name: str, args: tuple = (), kwargs: dict | None = None, *, what: str | None = None):
        kwargs = kwargs or {}
        if what is None:
            what = _describe_call(name, args, kwargs) if op in ("call", "new") else f"`{name}`"
        kc = self._session.blocking_client()
        if kc is None:
            raise StudentError(f"could not evaluate {what}: your kernel is no longer running "
                               f"({self._session.death or 'it stopped'})")
        token = secrets.token_hex(16)
        request = json.dumps(json.dumps({"token": token, "op": op, "name": name,
                                         "args": encode(tuple(args))["__tuple__"], "kwargs": encode(dict(kwargs))}))
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
        try:
            return self._value_of(replies[0], op, name, what, token)
        except StudentError:
            raise
        except FORGED as exc:  # a forged reply: the student's doing, never the grader's failure
            raise BridgeDecodeError(f"the reply for {what} could not be read as data ({type(exc).__name__})") from None

    @staticmethod
    def _value_of(reply: dict, op: str, name: str, what: str, token: str):
        """The value a reply carries, or the StudentError it stands for."""
        if "raised" in reply:
            r = reply["raised"] if isinstance(reply["raised"], dict) else {}
            if r.get("type") == REFUSED:  # shim_torch.py refused the request; its words stand
                raise StudentError(str(r.get("message", ""))[:1000])
            where = "; ".join(str(w) for w in list(r.get("where") or [])[:3] if isinstance(w, str))
            raise StudentError(f"{what} raised {str(r.get('type', 'an error'))[:100]}: {str(r.get('message', ''))[:1000]}"
                               + (f" (at {where})" if where else ""))
        if "missing" in reply:
            detail = f": {str(reply.get('detail'))[:300]}" if reply.get("detail") else ""
            raise StudentError(f"`{name}` is not defined in your notebook{detail}")
        if "value" not in reply:
            raise BridgeDecodeError(f"the reply for {what} is malformed")
        if op in ("new", "torch.new"):  # a handle, not a value: {"__handle__": token, "class": name}
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
            code = (f"{_SHIM}\n{_SHIM_TORCH}\n{name} = _gradekit_bind({json.dumps(SHIM_LIMITS)!r}, _gradekit_torch_op)\n"
                    "del _gradekit_request, _gradekit_bind, _gradekit_torch_op\n")
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
                except FORGED:
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
