"""torch models, optimizers and schedulers across the bridge (bridge.models, shim_torch.py),
against a real sandboxed kernel: structure, forward, weights, optimizer and scheduler
settings, one training step, objects built from torch itself, held-out evaluation, and
forged replies refused as data."""
from __future__ import annotations

from bisect import bisect_right

import numpy as np
import pytest
import torch

from support import kernel_submission
from gradekit.bridge.models import accuracy, predict, sample_positions
from gradekit.bridge.protocol import BridgeDecodeError, StudentError
from gradekit.bridge.values import Handle, as_torch

STUDENT = '''
import numpy as np, torch, types
import torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
answer = 42

class Net(nn.Module):                       # declared in another order than it runs
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)
        self.drop = nn.Dropout(0.5)
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
    def forward(self, x):
        return self.fc(self.drop(self.flat(self.pool(self.relu(self.bn1(self.conv1(x)))))))

class FNet(nn.Module):                      # F.relu, F.dropout and torch.flatten in forward
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(64, 3)
    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.dropout(torch.flatten(x, 1), 0.5, self.training))

net, fnet = Net(), FNet()
net.conv1.requires_grad_(False)
seq = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 3))
with torch.no_grad():                       # running statistics that are not the defaults
    seq(torch.randn(32, 1, 8, 8) * 3 + 1)
# seq stays in training mode, net.fc is in eval mode while net is in training mode
net.fc.eval()

def hooks_of(name):
    return sum(len(x._forward_hooks) + len(x._forward_pre_hooks) for x in globals()[name].modules())

class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
    def forward(self, x):
        return self.a(x).reshape(7, -1)

class NaNNet(nn.Module):
    def forward(self, x):
        out = torch.zeros(x.shape[0], 3)
        out[::3] = float("nan")
        return out

class ListNet(nn.Module):
    def forward(self, x):
        return [1, 2]

class Twice(nn.Module):                     # one ReLU used twice
    def __init__(self):
        super().__init__()
        self.act, self.a, self.b = nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2)
    def forward(self, x):
        return self.b(self.act(self.a(self.act(x))))

broken, nan_net, list_net, twice = Broken(), NaNNet(), ListNet(), Twice()
five = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
lin = nn.Linear(4, 3)

adam = torch.optim.Adam(seq.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=1e-4, amsgrad=True)
sgd = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
two = torch.optim.SGD([{"params": seq[0].parameters(), "lr": 0.01},
                       {"params": [p for n, p in seq.named_parameters() if not n.startswith("0.")]}], lr=0.1)
partial = torch.optim.SGD(seq[6].parameters(), lr=0.1)

sched_model = nn.Linear(2, 2)
sched_opt = torch.optim.SGD(sched_model.parameters(), lr=0.1, momentum=0.9)
sched = torch.optim.lr_scheduler.MultiStepLR(sched_opt, milestones=[3, 7], gamma=0.5)
for _ in range(2):
    sched_model(torch.ones(1, 2)).sum().backward()
    sched_opt.step()
    sched.step()

def sched_state():
    s = sched_opt.state[sched_model.weight]["momentum_buffer"]
    return (sched.last_epoch, sched._step_count, list(sched.get_last_lr()),
            [g["lr"] for g in sched_opt.param_groups], s.clone().numpy())

def grads_of(name):
    return [None if p.grad is None else p.grad.clone() for p in globals()[name].parameters()]

def train_step(model, opt, x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()

def lazy_step(model, opt, x, y):            # never clears the gradients
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()

def shadow_torch():
    fake = types.SimpleNamespace(nn=types.SimpleNamespace(Linear=lambda *a, **k: "fake"))
    globals()["_real_torch"], globals()["torch"] = globals()["torch"], fake

def unshadow_torch():
    globals()["torch"] = globals().pop("_real_torch")

def forge_torch_op(value):                  # the next torch request's op returns `value`, once
    fn = next(v for k, v in globals().items() if k.startswith("_gradekit_bridge_"))
    cell = dict(zip(fn.__code__.co_freevars, fn.__closure__))["torch_op"]
    real = cell.cell_contents
    def fake(op, target, args, kwargs, ctx):
        cell.cell_contents = real
        return value
    cell.cell_contents = fake

def forge_reply(raw):                       # the next request is answered with this raw JSON, once
    import json
    name = next(k for k in globals() if k.startswith("_gradekit_bridge_"))
    real = globals()[name]
    def fake(request_json):
        globals()[name] = real
        token = json.loads(request_json)["token"]
        get_ipython().display_pub.publish(
            data={"application/vnd.gradekit.reply+json": '{"token": "' + token + '", "value": ' + raw + '}'}, metadata={})
    globals()[name] = fake
'''


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    yield from kernel_submission(tmp_path_factory, "models", STUDENT, call_timeout=10)


@pytest.fixture
def images():
    return np.random.default_rng(0).normal(size=(10, 1, 8, 8)).astype(np.float32)


def host_seq() -> torch.nn.Sequential:
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 3))


# ---- structure ---------------------------------------------------------------------------
def test_the_same_architecture_reads_the_same_as_a_class_a_sequential_and_with_functionals(submission, images):
    net, seq, fnet = (submission.model(n).structure(example=images[:2]) for n in ("net", "seq", "fnet"))
    sig = lambda s, skip=(): [(l.type, l.hyper) for l in s.ordered() if l.type not in skip]
    assert sig(net) == sig(seq)
    assert [l.type for l in seq.ordered()] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten", "Dropout", "Linear"]
    assert [l.type for l in net.layers][:2] == ["Linear", "Dropout"]  # declared first, ran last
    assert sig(fnet) == sig(seq, skip=("ReLU", "Flatten", "Dropout"))
    conv, = seq.of_type("Conv2d")
    assert conv.hyper["in_channels"] == 1 and conv.hyper["out_channels"] == 4 and conv.hyper["kernel_size"] == (3, 3)
    assert conv.hyper["padding"] == (1, 1) and conv.hyper["stride"] == (1, 1) and conv.hyper["bias"] is True
    assert seq.layer("5").hyper == {"p": 0.5, "inplace": False}
    assert seq.layer("2").hyper == {"inplace": True}
    assert seq.layer("3").hyper["kernel_size"] == 2 and seq.layer("3").hyper["ceil_mode"] is False
    assert seq.layer("1").hyper["num_features"] == 4 and seq.layer("1").hyper["momentum"] == 0.1
    assert seq.layer("4").hyper == {"start_dim": 1, "end_dim": -1}
    assert seq.output_shapes == ((2, 4, 8, 8), (2, 4, 8, 8), (2, 4, 8, 8), (2, 4, 4, 4), (2, 64), (2, 64), (2, 3))
    assert seq.executed == ("0", "1", "2", "3", "4", "5", "6") and seq.cls == "Sequential"
    assert net.cls == "__main__.Net" and fnet.executed == ("conv1", "bn1", "pool", "fc")


def test_parameter_counts_and_frozen_layers(submission):
    expected = sum(p.numel() for p in host_seq().parameters())
    seq, net = submission.model("seq").structure(), submission.model("net").structure()
    assert seq.parameters == seq.trainable == expected == sum(l.parameters for l in seq.layers)
    conv = net.layer("conv1")
    assert conv.parameters == 4 * 9 + 4 and conv.trainable == 0
    assert net.parameters == expected and net.trainable == expected - conv.parameters
    assert net.executed == () and net.output_shapes == ()
    with pytest.raises(StudentError, match="no layer named `conv9`"):
        net.layer("conv9")


def test_not_a_model_and_a_failing_forward_are_the_students(submission, images):
    with pytest.raises(StudentError, match=r"`answer` is not a torch.nn.Module \(its type is int\)"):
        submission.model("answer").structure()
    with pytest.raises(StudentError, match="`nothing_here` is not defined"):
        submission.model("nothing_here").forward(images)
    with pytest.raises(StudentError, match=r"running `broken` on the example input raised RuntimeError.*in forward"):
        submission.model("broken").structure(example=np.ones((3, 4)))
    with pytest.raises(StudentError, match="raised RuntimeError"):
        submission.model("broken").capture(np.ones((3, 4)), ["a"])
    assert submission.call("hooks_of", "broken") == 0  # removed although forward raised


# ---- forward -----------------------------------------------------------------------------
def test_forward_matches_the_same_weights_on_this_side(submission, images):
    view = submission.model("seq")
    weights = view.state_dict()
    ours = host_seq()
    ours.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    ours.eval()
    with torch.no_grad():
        expected = ours(torch.from_numpy(images)).numpy()
    got = view.forward(images)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(view.forward(images.astype(np.float64), batch_size=3), got, atol=1e-6, rtol=0)
    assert type(got) is np.ndarray and got.dtype == np.float32


def test_train_mode_differs_and_the_model_is_left_as_it_was(submission, images):
    view = submission.model("seq")
    before = view.state_dict()
    train, evaled = view.forward(images, mode="train"), view.forward(images, mode="eval")
    assert not np.allclose(train, evaled)
    np.testing.assert_array_equal(view.forward(images, mode="train"), train)  # the random state is restored too
    after = view.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # BatchNorm statistics unchanged
    assert view.structure().training is True
    net = submission.model("net")
    net.forward(images)
    assert submission.get("net.training") is True and submission.get("net.fc.training") is False


def test_layer_capture(submission, images):
    view = submission.model("seq")
    got = view.capture(images, ["1", "4"])
    ours = host_seq()
    ours.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in view.state_dict().items()})
    ours.eval()
    with torch.no_grad():
        bn = ours[1](ours[0](torch.from_numpy(images))).numpy()
    np.testing.assert_allclose(got["1"].output, bn, atol=1e-6)  # before the in-place ReLU ran on it
    assert got["1"].output.min() < 0 and got["4"].input.shape == (10, 4, 4, 4) and got["4"].output.shape == (10, 64)
    batched = view.capture(images, ["1", "4"], batch_size=4)
    np.testing.assert_allclose(batched["4"].output, got["4"].output, atol=1e-6)
    with pytest.raises(StudentError, match="no layer named `fc9`"):
        view.capture(images, ["fc9"])
    assert submission.call("hooks_of", "seq") == 0


def test_a_layer_used_twice(submission):
    x = np.array([[-1.0, 2.0, -3.0, 4.0]], dtype=np.float32)
    view = submission.model("twice")
    s = view.structure(example=x)
    assert s.executed == ("act", "a", "act", "b") and [l.name for l in s.ordered()] == ["act", "a", "act", "b"]
    assert s.output_shapes == ((1, 4), (1, 4), (1, 4), (1, 2))
    got = view.capture(x, ["act"])["act"]  # its first call
    np.testing.assert_array_equal(got.input, x)
    np.testing.assert_array_equal(got.output, np.maximum(x, 0))


# ---- weights -----------------------------------------------------------------------------
def test_state_dict_round_trip_and_wrong_shapes(submission):
    view = submission.model("lin")
    sd = view.state_dict()
    assert set(sd) == {"weight", "bias"} and sd["weight"].shape == (3, 4)
    new = {"weight": np.arange(12.0).reshape(3, 4), "bias": torch.tensor([1.0, 2.0, 3.0])}
    assert view.load_state_dict(new) == ((), ())
    back = view.state_dict()
    np.testing.assert_array_equal(back["weight"], new["weight"])
    np.testing.assert_array_equal(back["bias"], [1, 2, 3])
    with pytest.raises(StudentError, match="(?s)loading weights into `lin` raised RuntimeError.*size mismatch for weight"):
        view.load_state_dict({"weight": np.zeros((4, 4)), "bias": np.zeros(3)})
    with pytest.raises(StudentError, match="Missing key"):
        view.load_state_dict({"weight": np.zeros((3, 4))})
    assert view.load_state_dict({"weight": np.zeros((3, 4)), "extra": np.zeros(1)}, strict=False) == (("bias",), ("extra",))


def test_a_sample_of_the_weights_reads_the_positions_the_grader_computes(submission):
    view = submission.model("net")
    full = view.state_dict()
    fractions = np.random.default_rng(3).random(50)
    sample = view.sampled_state_dict(fractions)
    assert list(sample) == list(full)   # every entry, BatchNorm's counter (a 0-d tensor) included
    assert full["bn1.num_batches_tracked"].shape == ()   # 0-d stays 0-d across the bridge
    for name, weight in full.items():
        assert sample[name].shape == weight.shape, name
        np.testing.assert_array_equal(sample[name].values, weight.reshape(-1)[sample_positions(weight.size, fractions)])
    assert sample_positions(10, np.array([0.0, 0.0999, 0.1, 0.99999999])).tolist() == [0, 0, 1, 9]
    assert sample_positions(1, np.array([0.5])).tolist() == [0]
    for bad in ([], [1.0], [-0.1]):
        with pytest.raises(ValueError):
            view.sampled_state_dict(bad)


def test_gradients_are_a_vector_jacobian_product_and_leave_the_model_as_it_was(submission):
    rng = np.random.default_rng(4)
    view = submission.model("sched_model")          # a Linear(2, 2) whose .grad holds its last backward
    before = submission.call("grads_of", "sched_model")
    weights = view.state_dict()
    x, v = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(3, 2))
    got = view.gradients(x, v)
    np.testing.assert_allclose(got["weight"], v.T @ x, rtol=1e-5, atol=1e-6)   # d sum(v * (x W^T + b)) / dW
    np.testing.assert_allclose(got["bias"], v.sum(axis=0), rtol=1e-5, atol=1e-6)
    after = submission.call("grads_of", "sched_model")
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "the model's own .grad changed"
    assert all(np.array_equal(weights[k], w) for k, w in view.state_dict().items())

    net = submission.model("net")                    # conv1 frozen; BatchNorm statistics in train mode
    state = net.state_dict()
    x = rng.normal(size=(4, 1, 8, 8)).astype(np.float32)
    grads = net.gradients(x, rng.normal(size=(4, 3)), mode="train")
    assert not any(k.startswith("conv1.") for k in grads) and grads["fc.weight"].shape == (3, 64), sorted(grads)
    assert all(np.array_equal(state[k], w) for k, w in net.state_dict().items()), "buffers changed in train mode"
    with pytest.raises(StudentError, match=r"expected a tensor of shape \(4, 5\)"):
        net.gradients(x, np.ones((4, 5)))
    with pytest.raises(ValueError):
        net.gradients(x, np.ones((4, 3)), mode="test")


# ---- optimizers and schedulers -----------------------------------------------------------
def test_optimizer_settings(submission):
    adam = submission.optimizer("adam")
    assert adam.type == "Adam" and len(adam.groups) == 1 and adam.unassigned == ()
    g = adam.groups[0].hyper
    assert g["lr"] == 1e-3 and g["betas"] == (0.9, 0.99) and g["weight_decay"] == 1e-4 and g["amsgrad"] is True
    assert adam.groups[0].parameters == 6 and adam.groups[0].elements == sum(p.numel() for p in host_seq().parameters())
    sgd = submission.optimizer("sgd", model="net")
    h = sgd.groups[0].hyper
    assert sgd.type == "SGD" and h["momentum"] == 0.9 and h["nesterov"] is True and h["dampening"] == 0
    assert "conv1.weight" in sgd.groups[0].names and sgd.unassigned == ()
    with pytest.raises(StudentError, match=r"`answer` is not a torch.optim optimizer"):
        submission.optimizer("answer")


def test_parameter_groups_and_unassigned_parameters(submission):
    two = submission.optimizer("two", model="seq")
    assert [g.hyper["lr"] for g in two.groups] == [0.01, 0.1]
    assert two.groups[0].names == ("0.weight", "0.bias") and two.unassigned == ()
    assert sorted(two.groups[0].names + two.groups[1].names) == sorted(n for n, _ in host_seq().named_parameters())
    assert two.group_of("6.weight") is two.groups[1]
    partial = submission.optimizer("partial", model="seq")
    assert partial.unassigned == ("0.weight", "0.bias", "1.weight", "1.bias")
    assert submission.optimizer("partial").groups[0].names == ()  # no model: no names


def test_scheduler_learning_rates_and_the_students_objects_untouched(submission):
    before = submission.call("sched_state")
    config = submission.scheduler("sched", epochs=10)
    after = submission.call("sched_state")
    assert before[:4] == after[:4] and np.array_equal(before[4], after[4])
    assert config.type == "MultiStepLR" and config.settings["milestones"] == (3, 7)
    assert config.settings["gamma"] == 0.5 and config.settings["last_epoch"] == 2
    expected = [(0.1 * 0.5 ** bisect_right([3, 7], e),) for e in range(2, 12)]
    np.testing.assert_allclose(config.lrs, expected, rtol=1e-12)
    with pytest.raises(StudentError, match="not a torch.optim.lr_scheduler scheduler"):
        submission.scheduler("adam", 3)


# ---- one training step on a controlled batch ---------------------------------------------
def test_step_with_stale_gradients(submission):
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    x, y = rng.normal(size=(5, 4)).astype(np.float32), np.array([0, 2, 1, 2, 0])
    ours = torch.nn.Linear(4, 3)
    ours.load_state_dict({"weight": torch.from_numpy(w), "bias": torch.from_numpy(b)})
    loss = torch.nn.functional.cross_entropy(ours(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    grads = {"weight": ours.weight.grad.numpy().astype(np.float64), "bias": ours.bias.grad.numpy().astype(np.float64)}

    results = {}
    for fn in ("train_step", "lazy_step"):
        model = submission.torch_new("torch.nn.Linear", 4, 3)
        opt = submission.torch_new("torch.optim.SGD", submission.params_of(model), lr=0.1)
        assert isinstance(model, Handle) and model.cls == "Linear" and opt.cls == "SGD"
        submission.model(model).load_state_dict({"weight": w, "bias": b})
        results[fn] = submission.step(fn, model, opt, as_torch(x), as_torch(y), model=model, stale_grad=5.0)
    good, lazy = results["train_step"], results["lazy_step"]
    assert good.result == pytest.approx(loss.item(), rel=1e-6)
    for name in ("weight", "bias"):
        np.testing.assert_allclose(good.delta[name], -0.1 * grads[name], atol=1e-6)
        np.testing.assert_allclose(lazy.delta[name], -0.1 * (grads[name] + 5.0), atol=1e-6)
        assert good.delta[name].dtype == np.float64


# ---- objects built from torch itself -----------------------------------------------------
def test_torch_new_ignores_the_notebooks_torch(submission):
    submission.call("shadow_torch")
    try:
        assert submission.get("torch.nn.Linear") is not None  # the notebook's `torch` is a fake now
        layer = submission.torch_new("torch.nn.Linear", 4, 3)
        s = submission.model(layer).structure()
        assert s.cls == "Linear" and s.parameters == 15 and s.layers[0].hyper["in_features"] == 4
        opt = submission.torch_new("torch.optim.SGD", submission.params_of(layer), lr=0.1)
        assert submission.optimizer(opt, model=layer).groups[0].names == ("weight", "bias")
    finally:
        submission.call("unshadow_torch")
    with pytest.raises(ValueError):
        submission.torch_new("os.system", "true")
    with pytest.raises(ValueError):
        submission.torch_new("torch._C._something")
    with pytest.raises(StudentError, match="has no `torch.nn.Lineer`"):
        submission.torch_new("torch.nn.Lineer", 4, 3)


def test_the_torch_op_does_not_linger_in_the_notebook(submission):
    submission.model("lin").structure()
    assert submission.defined(["_gradekit_torch_op", "_gradekit_request", "_gradekit_bind"]) == {
        "_gradekit_torch_op": False, "_gradekit_request": False, "_gradekit_bind": False}


# ---- held-out evaluation -----------------------------------------------------------------
def test_predict_checks_every_batch(submission, images):
    logits = predict(submission.model("seq"), images, batch_size=3, num_classes=3)
    np.testing.assert_allclose(logits, submission.model("seq").forward(images), atol=1e-6)
    with pytest.raises(StudentError, match=r"^your model returned logits of shape \(8, 5\); expected \(8, 3\): "
                                           "one row per image and one column per class$"):
        predict(submission.model("five"), images[:8], batch_size=8, num_classes=3)
    with pytest.raises(StudentError, match=r"^your model's outputs contain NaN for 3 of 8 images$"):
        predict(submission.model("nan_net"), images[:8], batch_size=8)
    with pytest.raises(StudentError, match=r"^your model returned a list for a batch of 8 images; expected logits"):
        predict(submission.model("list_net"), images[:8], batch_size=8)


def test_accuracy_with_ties_counting_against_the_model():
    logits = np.array([[2.0, 1.0, 0.0],    # right
                       [0.0, 0.0, 0.0],    # a constant output: right only at k = 3
                       [1.0, 3.0, 2.0],    # label 2 is second
                       [0.5, 0.5, 0.1],    # label 0 ties with class 1: second, not first
                       [np.nan, 1.0, 0.0]])  # NaN for the label: last
    labels = np.array([0, 1, 2, 0, 0])
    assert accuracy(logits, labels) == pytest.approx(1 / 5)
    assert accuracy(logits, labels, topk=(1, 2, 3)) == pytest.approx((1 / 5, 3 / 5, 5 / 5))
    with pytest.raises(StudentError, match=r"expected \(5, C\)"):
        accuracy(logits[:4], labels)
    with pytest.raises(ValueError):
        accuracy(logits, np.array([0, 1, 2, 0, 3]))


# ---- forged replies are refused as data --------------------------------------------------
GARBAGE = [5, "x", None, [], {}, {"class": 5}, [[1, 2]], {"type": "Adam", "groups": 5, "unassigned": []}]
OPS = {
    "structure": lambda s: s.model("seq").structure(),
    "structure-example": lambda s: s.model("seq").structure(example=np.zeros((1, 1, 8, 8))),
    "capture": lambda s: s.model("seq").capture(np.zeros((1, 1, 8, 8)), ["1"]),
    "state_dict": lambda s: s.model("seq").state_dict(),
    "load_state_dict": lambda s: s.model("lin").load_state_dict({}, strict=False),
    "optimizer": lambda s: s.optimizer("two", model="seq"),
    "scheduler": lambda s: s.scheduler("sched", 4),
    "step": lambda s: s.step("train_step", model="lin"),
}
NEAR_MISSES = {  # shaped almost right
    "structure": {"class": "X", "training": True, "parameters": 1, "trainable": -1, "layers": [], "executed": None},
    "structure-example": {"class": "X", "training": True, "parameters": 1, "trainable": 1,
                          "layers": [["a", "Linear", {}, 1, 1]], "executed": [["b", [1]]]},
    "capture": {"1": {"input": 1}},
    "state_dict": {"weight": [1.0, 2.0]},
    "load_state_dict": {"missing": [1], "unexpected": []},
    "optimizer": {"type": "SGD", "groups": [{"hyper": {"lr": [1, {"a": 1}]}, "parameters": 1, "elements": 1,
                                             "names": []}], "unassigned": []},
    "scheduler": {"type": "StepLR", "settings": {}, "lrs": [[0.1], [0.1]]},
    "step": {"result": 1.0, "delta": {"weight": "x"}},
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_a_forged_op_result_is_a_decode_error(submission, op):
    for value in GARBAGE + [NEAR_MISSES[op]]:
        if op == "state_dict" and value == {}:
            continue  # a model without weights: a state_dict that is right
        submission.call("forge_torch_op", value)
        with pytest.raises(BridgeDecodeError):
            OPS[op](submission)
    assert submission.get("answer") == 42


@pytest.mark.parametrize("raw", ['{"__dict__": [[1, 2]]}', '{"__dict__": [["class", {"__tuple__": 5}]]}',
                                 '[' * 200 + ']' * 200, '{"__module__": {"class": "Net"}}'])
def test_a_forged_reply_is_a_decode_error(submission, raw):
    for op in ("structure", "optimizer", "scheduler", "step"):
        submission.call("forge_reply", raw)
        with pytest.raises(BridgeDecodeError):
            OPS[op](submission)


def test_a_forged_forward_is_the_students_error(submission, images):
    for value in GARBAGE:
        submission.call("forge_torch_op", value)
        with pytest.raises(StudentError, match="returned"):
            predict(submission.model("seq"), images[:2], num_classes=3)
        submission.call("forge_torch_op", value)
        with pytest.raises(StudentError, match="returned"):
            submission.model("seq").forward(images[:2])
