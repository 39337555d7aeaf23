"""torch models, optimizers and schedulers across the bridge, as data.

The kernel side is ``shim_torch.py`` (sent as text with ``shim.py``, never imported here);
this module builds typed, frozen records from its replies, checking every field: a reply of
the wrong shape raises :class:`BridgeDecodeError`, whatever the student did to the kernel.
Nothing here imports torch: weights and outputs come back as numpy arrays.

Graders reach it through :class:`gradekit.bridge.host.Submission`::

    net = submission.model("net")                    # a ModelView
    s = net.structure(example=x[:2])                 # layers, counts, the order forward ran them in
    logits = predict(net, x, num_classes=10)         # checked outputs, in batches
    top1 = accuracy(logits, y)                       # labels never leave this side
    opt = submission.optimizer("optimizer", model="net")
    lrs = submission.scheduler("scheduler", epochs=30).lrs
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .codec import FORGED
from .protocol import SHIM_LIMITS, BridgeDecodeError, StudentError
from .values import Handle, Unsupported, as_torch

MODES = ("eval", "train")


# ---- names -------------------------------------------------------------------------------
def ref_of(x: str | Handle) -> str:
    """How the kernel finds an object: a global's (dotted) name, or "@" and a handle's ref."""
    if isinstance(x, Handle):
        return "@" + x.ref
    if isinstance(x, str) and x and not x.startswith("@"):
        return x
    raise TypeError(f"expected a name in the notebook or a Handle, not {x!r}")


def shown(x: str | Handle) -> str:
    """How messages name it: "`net`", or "the grader's Linear" for a handle."""
    return f"the grader's {x.cls}" if isinstance(x, Handle) else f"`{x}`"


# ---- strict readers: anything unexpected is a BridgeDecodeError ---------------------------
def _checked(build):
    """Whatever reading a forged reply raises is the student's doing: a BridgeDecodeError."""
    @functools.wraps(build)
    def run(*args, **kwargs):
        try:
            return build(*args, **kwargs)
        except StudentError:
            raise
        except FORGED as exc:
            raise BridgeDecodeError(f"a reply about a torch object could not be read as data ({type(exc).__name__})") from None
    return run


def _bad(what: str):
    raise BridgeDecodeError(f"the reply is malformed: {what}")


def _record(value, keys: tuple[str, ...], what: str) -> dict:
    if not (isinstance(value, dict) and set(value) == set(keys)):
        _bad(f"{what} is not a record with the fields {', '.join(keys)}")
    return value


def _int(v, what: str) -> int:
    if type(v) is not int or v < 0:
        _bad(f"{what} is not a count")
    return v


def _bool(v, what: str) -> bool:
    if type(v) is not bool:
        _bad(f"{what} is not true or false")
    return v


def _str(v, what: str, limit: int = 1000) -> str:
    if type(v) is not str or len(v) > limit:
        _bad(f"{what} is not a name")
    return v


def _float(v, what: str) -> float:
    if type(v) not in (int, float):
        _bad(f"{what} is not a number")
    return float(v)


def _names(v, what: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        _bad(f"{what} is not a list of names")
    return tuple(_str(n, what) for n in v)


def _shape(v, what: str) -> tuple[int, ...] | None:
    if v is None:
        return None
    if not (isinstance(v, list) and len(v) <= 64):
        _bad(f"{what} is not a shape")
    return tuple(_int(d, what) for d in v)


def _plain(v, what: str, depth: int = 0):
    """A hyper-parameter or setting: None, bool, int, float, str, or a tuple of those."""
    if v is None or type(v) in (bool, int, float):
        return v
    if type(v) is str and len(v) <= 1000:
        return v
    if isinstance(v, (list, tuple)) and depth < 3 and len(v) <= 10000:
        return tuple(_plain(x, what, depth + 1) for x in v)
    _bad(f"{what} is not a plain value")


def _settings(v, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        _bad(f"{what} is not a record")
    return {_str(k, what, 200): _plain(x, f"{what} {k!r}") for k, x in v.items()}


def _array(v) -> np.ndarray:
    return np.asarray(v)  # a TorchArray's data, as a plain ndarray


def _kind(v) -> str:
    if isinstance(v, Unsupported):
        return str(v)
    if isinstance(v, np.ndarray):
        return f"an array of shape {tuple(v.shape)}"
    return "None" if v is None else f"a {type(v).__name__}"


# ---- records ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a model: a module without sub-modules (or one with parameters of its own).

    ``type`` is the class name for torch's own classes ("Conv2d") and ``module.QualName`` for
    any other ("__main__.Block"), so a student's class named "Conv2d" is not torch's.
    ``hyper`` holds the hyper-parameters the layer has, as torch stores them (``kernel_size``
    is ``(3, 3)`` for a Conv2d and ``3`` for a MaxPool2d; ``bias`` says whether it has one).
    ``parameters`` counts its own parameters' elements, ``trainable`` those that require grad.
    """
    name: str
    type: str
    hyper: dict[str, Any]
    parameters: int
    trainable: int


@dataclasses.dataclass(frozen=True)
class ModelStructure:
    """A model as data: its layers (in declaration order), the layer calls its forward made on
    the example input (``executed``, in order, with each call's ``output_shapes`` entry; ``()``
    without an example; a layer used twice appears twice), its parameter counts (shared
    parameters once) and whether it was in training mode."""
    cls: str
    layers: tuple[Layer, ...]
    executed: tuple[str, ...]
    output_shapes: tuple[tuple[int, ...] | None, ...]
    parameters: int
    trainable: int
    training: bool

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (a StudentError if the model has none)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise StudentError(f"your model has no layer named `{name}`")

    def ordered(self) -> tuple[Layer, ...]:
        """The layers in the order forward ran them (repeats included), else as declared."""
        if not self.executed:
            return self.layers
        by_name = {layer.name: layer for layer in self.layers}
        return tuple(by_name[n] for n in self.executed)

    def of_type(self, *types: str) -> tuple[Layer, ...]:
        """The layers of these types (``of_type("Conv2d", "Linear")``), as :meth:`ordered`."""
        return tuple(layer for layer in self.ordered() if layer.type in types)


@dataclasses.dataclass(frozen=True)
class Captured:
    """What a layer received (its first positional input) and returned, in its first call."""
    input: Any
    output: Any


@dataclasses.dataclass(frozen=True)
class SampledWeight:
    """One entry of a model's ``state_dict()``: its shape and its elements at
    ``sample_positions(size, fractions)`` of the flattened entry."""
    shape: tuple[int, ...]
    values: np.ndarray


def sample_positions(size: int, fractions: np.ndarray) -> np.ndarray:
    """The flat positions a sample of ``fractions`` (floats in [0, 1)) reads in an entry of
    ``size`` elements: ``floor(fraction * size)``, in float64 as the kernel computes them."""
    at = (np.asarray(fractions, dtype=np.float64) * size).astype(np.int64)
    return np.minimum(at, max(size - 1, 0)) if size else at[:0]


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """One parameter group: its plain hyper-parameters (``lr``, ``betas``, ``weight_decay``, ...),
    how many parameters and elements it holds, and which of the model's parameters (by name,
    when a model was given; parameters that are not the model's have no name here)."""
    hyper: dict[str, Any]
    parameters: int
    elements: int
    names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """An optimizer: its type ("Adam", or ``module.QualName`` for a class not torch's), its
    groups, and the model's trainable parameters that no group holds (with a model only)."""
    type: str
    groups: tuple[ParamGroup, ...]
    unassigned: tuple[str, ...]

    def group_of(self, name: str) -> ParamGroup | None:
        """The group holding the model's parameter ``name``, or None."""
        return next((g for g in self.groups if name in g.names), None)


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    """A scheduler: its type, its plain settings (``milestones``, ``gamma``, ``T_max``,
    ``last_epoch``, ``base_lrs``, ...), and ``lrs[e]``: each group's learning rate ``e``
    epochs from now (``lrs[0]`` the current ones; empty for ReduceLROnPlateau, which needs
    the metric)."""
    type: str
    settings: dict[str, Any]
    lrs: tuple[tuple[float, ...], ...]


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One call of a training function: what it returned, and each parameter's change
    (after - before, float64) by name."""
    result: Any
    delta: dict[str, np.ndarray]


# ---- building records from replies -------------------------------------------------------
@_checked
def model_structure(value) -> ModelStructure:
    r = _record(value, ("class", "training", "parameters", "trainable", "layers", "executed"), "the structure")
    if not isinstance(r["layers"], list) or len(r["layers"]) > SHIM_LIMITS["max_layers"]:
        _bad("the layers are not a list")
    layers = []
    for item in r["layers"]:
        if not (isinstance(item, list) and len(item) == 5):
            _bad("a layer is not [name, type, hyper, parameters, trainable]")
        name, typ, hyper, n, t = item
        layers.append(Layer(_str(name, "a layer's name"), _str(typ, "a layer's type"),
                            _settings(hyper, "a layer's hyper-parameters"),
                            _int(n, "a layer's parameters"), _int(t, "a layer's trainable parameters")))
    names = {layer.name for layer in layers}
    if len(names) != len(layers):
        _bad("two layers have the same name")
    executed, shapes = [], []
    if r["executed"] is not None:
        if not isinstance(r["executed"], list) or len(r["executed"]) > SHIM_LIMITS["max_layers"]:
            _bad("the executed layers are not a list")
        for item in r["executed"]:
            if not (isinstance(item, list) and len(item) == 2 and item[0] in names):
                _bad("an executed layer is not [name of a layer, shape]")
            executed.append(item[0])
            shapes.append(_shape(item[1], "an output shape"))
    return ModelStructure(_str(r["class"], "the class"), tuple(layers), tuple(executed), tuple(shapes),
                          _int(r["parameters"], "the parameters"), _int(r["trainable"], "the trainable parameters"),
                          _bool(r["training"], "the training flag"))


@_checked
def optimizer_config(value) -> OptimizerConfig:
    r = _record(value, ("type", "groups", "unassigned"), "the optimizer")
    if not isinstance(r["groups"], list):
        _bad("the groups are not a list")
    groups = []
    for g in r["groups"]:
        g = _record(g, ("hyper", "parameters", "elements", "names"), "a group")
        groups.append(ParamGroup(_settings(g["hyper"], "a group's hyper-parameters"), _int(g["parameters"], "a count"),
                                 _int(g["elements"], "a count"), _names(g["names"], "a group's names")))
    return OptimizerConfig(_str(r["type"], "the type"), tuple(groups), _names(r["unassigned"], "the unassigned names"))


@_checked
def scheduler_config(value, epochs: int) -> SchedulerConfig:
    r = _record(value, ("type", "settings", "lrs"), "the scheduler")
    lrs = r["lrs"]
    if not (isinstance(lrs, list) and len(lrs) in (0, epochs)):
        _bad("the learning rates are not one list per epoch")
    rows = []
    for row in lrs:
        if not (isinstance(row, list) and len(row) == len(lrs[0])):
            _bad("the learning rates are not one number per group")
        rows.append(tuple(_float(v, "a learning rate") for v in row))
    return SchedulerConfig(_str(r["type"], "the type"), _settings(r["settings"], "the settings"), tuple(rows))


def _arrays(value, what: str) -> dict[str, np.ndarray]:
    if not isinstance(value, dict):
        _bad(f"{what} is not a dict")
    out = {}
    for k, v in value.items():
        _str(k, f"a name in {what}")
        if isinstance(v, Unsupported):
            raise StudentError(f"the entry `{k}` of {what} is {v}; expected a tensor")
        if not isinstance(v, np.ndarray):
            _bad(f"the entry {k!r} of {what} is not an array")
        out[k] = v
    return out


@_checked
def step_result(value) -> StepResult:
    r = _record(value, ("result", "delta"), "the step")
    delta = _arrays(r["delta"], "the parameter changes")
    if any(not np.issubdtype(d.dtype, np.floating) for d in delta.values()):
        _bad("a parameter change is not a float array")
    return StepResult(r["result"], {k: _array(v) for k, v in delta.items()})


# ---- a model in the kernel ---------------------------------------------------------------
class ModelView:
    """An ``nn.Module`` in the student's kernel (a global's name or a :class:`Handle`), read
    and run as data. Inputs are numpy arrays (floating ones arrive in the model's dtype, on its
    device); outputs come back as numpy arrays. Each request is bounded by the submission's
    call timeout; larger inputs go in batches of ``batch_size`` (at most ``max_batch``)."""

    def __init__(self, submission, model: str | Handle):
        self.submission, self.ref, self.shown = submission, ref_of(model), shown(model)

    def __repr__(self) -> str:
        return f"ModelView({self.shown})"

    def _request(self, op: str, args: tuple, what: str):
        return self.submission._request(op, self.ref, args, what=what)

    def structure(self, example=None) -> ModelStructure:
        """Layers, hyper-parameters and parameter counts; with ``example`` (an input batch),
        also the layer calls forward made on it, in order, with their output shapes (run in
        eval mode under no_grad; the model is left as it was)."""
        if example is None:
            return model_structure(self._request("torch.structure", (None,), f"reading the layers of {self.shown}"))
        x = np.asarray(example)
        if x.ndim and len(x) > SHIM_LIMITS["max_batch"]:
            raise ValueError(f"an example of at most {SHIM_LIMITS['max_batch']} inputs, please")
        x = as_torch(x)
        return model_structure(self._request("torch.structure", (x,), f"running {self.shown} on the example input"))

    def _batches(self, x, mode: str, batch_size: int, layers=None) -> Iterator[tuple[int, Any]]:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if not 1 <= int(batch_size) <= SHIM_LIMITS["max_batch"]:
            raise ValueError(f"batch_size must be between 1 and {SHIM_LIMITS['max_batch']}")
        x = np.asarray(x)
        if x.ndim == 0 or len(x) == 0:
            raise ValueError("the input needs a batch dimension and at least one row")
        for start in range(0, len(x), int(batch_size)):
            part = x[start:start + int(batch_size)]
            what = f"running {self.shown} on a batch of {len(part)} inputs" + (f" ({mode} mode)" if mode != "eval" else "")
            yield len(part), self._request("torch.forward", (as_torch(part), mode, layers), what)

    def forward(self, x, *, mode: str = "eval", batch_size: int = 256) -> np.ndarray:
        """``model(x)`` under no_grad in ``mode`` ("eval" or "train"; the model's own modes,
        BatchNorm statistics and random state are restored afterwards), in batches: the
        outputs, joined along the first axis. Each batch must give a tensor with one row per input."""
        outputs = []
        for n, out in self._batches(x, mode, batch_size):
            if not (isinstance(out, np.ndarray) and out.ndim >= 1 and out.shape[0] == n):
                raise StudentError(f"{self.shown} returned {_kind(out)} for a batch of {n} inputs; "
                                   "expected a tensor with one row per input")
            outputs.append(_array(out))
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    def capture(self, x, layers: Sequence[str], *, mode: str = "eval", batch_size: int = 256) -> dict[str, Captured]:
        """Run ``x`` as :meth:`forward` does and return, for each named layer (any module, by
        its name in ``named_modules()``), what it received and returned (its first call per
        batch; copies, so later in-place layers do not change them), joined over batches."""
        names = [str(n) for n in layers]
        parts: dict[str, list[tuple[Any, Any]]] = {n: [] for n in names}
        for n, value in self._batches(x, mode, batch_size, names):
            got = _captures(value, names)
            for name in names:
                parts[name].append(got[name])
        return {name: Captured(_join([p[0] for p in ps], name, self.shown), _join([p[1] for p in ps], name, self.shown))
                for name, ps in parts.items()}

    def gradients(self, x, cotangent, *, mode: str = "eval") -> dict[str, np.ndarray | None]:
        """The gradient of ``sum(cotangent * model(x))`` with respect to each trainable
        parameter (a vector-Jacobian product: the grader picks ``cotangent``, of the output's
        shape), from one forward and backward pass in ``mode``; None for a parameter the
        output does not depend on. The model's ``.grad``, modes, buffers and random state are
        as they were afterwards. One batch (at most ``max_batch`` inputs)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        x, v = np.asarray(x), np.asarray(cotangent, dtype=np.float64)
        if x.ndim == 0 or not 1 <= len(x) <= SHIM_LIMITS["max_batch"]:
            raise ValueError(f"one batch of 1 to {SHIM_LIMITS['max_batch']} inputs, please")
        value = self._request("torch.gradients", (as_torch(x), as_torch(v), mode),
                              f"taking the gradients of {self.shown} on a batch of {len(x)} inputs")

        def read(got):
            if not isinstance(got, dict):
                _bad("the gradients are not a dict")
            out = {}
            for k, g in got.items():
                _str(k, "a parameter name")
                if g is not None and not (isinstance(g, np.ndarray) and np.issubdtype(g.dtype, np.floating)):
                    _bad(f"the gradient of `{k}` is not a float array")
                out[k] = None if g is None else _array(g)
            return out
        return _checked(read)(value)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The model's ``state_dict()`` as arrays (float16/bfloat16 as float32)."""
        value = self._request("torch.state_dict", (), f"reading the weights of {self.shown}")
        return _checked(lambda v: {k: _array(a) for k, a in _arrays(v, "the state_dict").items()})(value)

    def sampled_state_dict(self, fractions) -> dict[str, SampledWeight]:
        """Each ``state_dict()`` entry's shape and its elements at the positions the grader's
        ``fractions`` (floats in [0, 1)) pick: comparing a large model (AlexNet's 61 M weights)
        with another without moving every weight across the bridge."""
        fractions = np.asarray(fractions, dtype=np.float64).reshape(-1)
        if len(fractions) == 0 or len(fractions) > SHIM_LIMITS["max_batch"] * 64 or not (
                np.all(fractions >= 0) and np.all(fractions < 1)):
            raise ValueError(f"between 1 and {SHIM_LIMITS['max_batch'] * 64} fractions in [0, 1), please")
        value = self._request("torch.state_dict", (fractions,), f"reading a sample of the weights of {self.shown}")

        def read(v):
            if not isinstance(v, dict):
                _bad("the sampled state_dict is not a dict")
            out = {}
            for k, entry in v.items():
                r = _record(entry, ("shape", "values"), f"the sample of `{_str(k, 'a weight name')}`")
                shape = _shape(r["shape"], "a weight's shape")
                if shape is None:
                    _bad(f"the sample of `{k}` has no shape")
                values, size = r["values"], int(np.prod(shape))
                if not (isinstance(values, np.ndarray) and values.shape == (len(fractions) if size else 0,)):
                    _bad(f"the sample of `{k}` is not one value per position")
                out[k] = SampledWeight(shape, _array(values))
            return out
        return _checked(read)(value)

    def load_state_dict(self, arrays: dict, strict: bool = True) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``model.load_state_dict(arrays, strict=strict)`` in the kernel (arrays or CPU tensors);
        returns the (missing, unexpected) names. A mismatch under ``strict`` is a StudentError."""
        sent = {}
        for k, v in dict(arrays).items():
            if hasattr(v, "detach"):  # a torch tensor of the grader's
                v = v.detach().cpu().numpy()
            sent[str(k)] = as_torch(np.asarray(v))
        value = self._request("torch.load_state_dict", (sent, bool(strict)), f"loading weights into {self.shown}")

        def read(v):
            r = _record(v, ("missing", "unexpected"), "the load result")
            return _names(r["missing"], "the missing names"), _names(r["unexpected"], "the unexpected names")
        return _checked(read)(value)


def _captures(value, names: list[str]) -> dict[str, tuple[Any, Any]]:
    if not (isinstance(value, dict) and set(value) == set(names)):
        _bad("the captured layers are not the ones asked for")
    out = {}
    for name in names:
        r = _record(value[name], ("input", "output"), "a captured layer")
        out[name] = (r["input"], r["output"])
    return out


def _join(parts: list, name: str, model: str):
    if len(parts) == 1:
        return _array(parts[0]) if isinstance(parts[0], np.ndarray) else parts[0]
    if all(isinstance(p, np.ndarray) and p.ndim >= 1 for p in parts):
        try:
            return np.concatenate([_array(p) for p in parts])
        except ValueError:
            pass
    elif all(isinstance(p, tuple) and len(p) == len(parts[0]) for p in parts):
        return tuple(_join(list(ps), name, model) for ps in zip(*parts))
    raise StudentError(f"the layer `{name}` of {model} gave values of different shapes for different batches")


# ---- held-out evaluation: labels stay on this side ---------------------------------------
def predict(model: ModelView, images, *, batch_size: int = 64, mode: str = "eval",
            num_classes: int | None = None) -> np.ndarray:
    """The model's outputs for ``images``, sent in batches; every batch's reply must be a 2-D
    floating array with one row per image (and ``num_classes`` columns, if given), all finite,
    else a StudentError says what is wrong. Returns the rows of all batches, stacked."""
    rows = []
    for n, out in model._batches(images, mode, batch_size):
        expected = f"({n}, {num_classes if num_classes is not None else 'C'})"
        if not isinstance(out, np.ndarray):
            raise StudentError(f"your model returned {_kind(out)} for a batch of {n} images; "
                               f"expected logits of shape {expected}: one row per image and one column per class")
        if out.ndim != 2 or out.shape[0] != n or (num_classes is not None and out.shape[1] != num_classes):
            raise StudentError(f"your model returned logits of shape {tuple(out.shape)}; expected {expected}: "
                               "one row per image and one column per class")
        if not np.issubdtype(out.dtype, np.floating):
            raise StudentError(f"your model returned an array of {out.dtype}; expected floating-point logits")
        bad = ~np.isfinite(out)
        if bad.any():
            kinds = " and ".join(k for k, f in (("NaN", np.isnan), ("Inf", np.isinf)) if f(out).any())
            raise StudentError(f"your model's outputs contain {kinds} for {int(bad.any(axis=1).sum())} of {n} images")
        rows.append(_array(out))
    return np.concatenate(rows)


def accuracy(logits, labels, topk: int | Sequence[int] = 1) -> float | tuple[float, ...]:
    """The fraction of rows whose label is among the ``k`` highest logits, ties counting
    against the model::

        accuracy@k = (1/N) * sum_i [ #{c != y_i : not (z[i, c] < z[i, y_i])} < k ]

    i.e. a row is right when fewer than ``k`` other classes score at least as high as its label
    (a NaN counts as scoring at least as high; so a constant output is never right for
    ``k`` < the number of classes). ``topk`` an int gives one float; a sequence of ints
    (``(1, 5)``) gives a tuple, one per ``k``.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) == 0:
        raise ValueError("labels must be a non-empty 1-D array of class indices")
    if z.ndim != 2 or z.shape[0] != len(y):
        raise StudentError(f"the logits have shape {z.shape}; expected ({len(y)}, C): one row per image")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must lie in [0, {z.shape[1]})")
    ks = (topk,) if isinstance(topk, (int, np.integer)) else tuple(topk)
    if not ks or any(not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError("topk must be a positive int or a sequence of them")
    true = z[np.arange(len(y)), y][:, None]
    rank = np.sum(~(z < true), axis=1) - 1  # the other classes scoring at least as high (the label itself: 1)
    fractions = tuple(float(np.mean(rank < k)) for k in ks)
    return fractions[0] if isinstance(topk, (int, np.integer)) else fractions
