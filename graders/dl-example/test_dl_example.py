"""Hidden graders of dl-example: a torch model read, run and trained through the bridge.

Every expected value is computed here, on the trusted side, from the spec's numbers and
``reference/``; the student's model only ever receives inputs and returns arrays. Class
counts and learning rates are drawn fresh per submission (never the defaults), and the
held-out images are drawn here with their labels, which never enter the kernel.
"""
import numpy as np

from gradekit.data.formats import ImageFolder
from gradekit.data.synth import draw_shape
from gradekit.grading import StudentError, accuracy, as_torch, assert_close, assert_equal, predict, question
from reference import architectures, losses

IMAGE = (3, 32, 32)
P_DROPOUT = 0.5
PADDINGS = {(0, 0): "valid", (1, 1): "same", "valid": "valid", "same": "same"}


def images(rng, n):
    return rng.random((n, *IMAGE), dtype=np.float32)


def fresh_net(submission, num_classes):
    """A new TinyConvNet in the kernel (a handle) and its view."""
    handle = submission.new("TinyConvNet", num_classes=num_classes)
    return handle, submission.model(handle)


def layers_of(net, rng):
    """(convolutions, linear layers) in the order forward ran them."""
    s = net.structure(example=images(rng, 2))
    return s, s.of_type("Conv2d"), s.of_type("Linear")


def expected_parameters(convs, linears) -> int:
    """Parameters of the spec's layers, with the first linear layer's input size as the
    student's padding makes it."""
    total = sum(architectures.conv_param_count(c.hyper["in_channels"], c.hyper["out_channels"],
                                               tuple(c.hyper["kernel_size"]), bias=c.hyper["bias"]) for c in convs)
    return total + sum(architectures.linear_param_count(fc.hyper["in_features"], fc.hyper["out_features"],
                                                        bias=fc.hyper["bias"]) for fc in linears)


@question("q1-layers")
def test_convolutions_pooling_and_widths(submission, rng):
    k = int(rng.integers(4, 9))
    _, net = fresh_net(submission, k)
    _, convs, linears = layers_of(net, rng)
    got = [(c.hyper["in_channels"], c.hyper["out_channels"], tuple(c.hyper["kernel_size"]), tuple(c.hyper["stride"]))
           for c in convs]
    assert_equal(got, [(3, 16, (3, 3), (1, 1)), (16, 32, (3, 3), (1, 1))],
                 name="the convolutions (in, out, kernel, stride), in the order forward runs them")
    paddings = {PADDINGS.get(tuple(c.hyper["padding"]) if isinstance(c.hyper["padding"], (list, tuple))
                             else c.hyper["padding"]) for c in convs}
    assert len(paddings) == 1 and None not in paddings, (
        f"the convolutions' padding should be 'same' (1) or 'valid' (0), both alike; got "
        f"{[c.hyper['padding'] for c in convs]}")
    side = {"same": 32 // 2 // 2, "valid": ((32 - 2) // 2 - 2) // 2}[paddings.pop()]
    assert_equal([(fc.hyper["in_features"], fc.hyper["out_features"]) for fc in linears],
                 [(32 * side * side, 64), (64, k)],
                 name=f"the fully connected layers (in, out) for TinyConvNet(num_classes={k}), after two 2x2 poolings")
    x = images(rng, 3)
    out = net.forward(x)
    assert_equal(out.shape, (3, k), name=f"the output shape of TinyConvNet(num_classes={k}) for 3 images")
    assert_close(net.forward(x), out, rtol=1e-5, atol=1e-6, name="the same images' logits at test time, again")


@question("q1-dropout")
def test_dropout_before_the_first_fully_connected_layer(submission, rng):
    _, net = fresh_net(submission, 3)
    _, _, linears = layers_of(net, rng)
    first = linears[0].name
    x = images(rng, 4)
    at_test = net.capture(x, [first], mode="eval")[first].input
    in_training = net.capture(x, [first], mode="train")[first].input
    active = at_test != 0
    kept = active & (in_training != 0)
    dropped = 1 - kept.sum() / max(1, active.sum())
    assert abs(dropped - P_DROPOUT) < 0.1, (
        f"in training, the input of the first fully connected layer should lose about {P_DROPOUT:.0%} of its "
        f"values to dropout; it lost {dropped:.0%} (is the dropout right before that layer, with p = {P_DROPOUT}?)")
    assert_close(in_training[kept], at_test[kept] / (1 - P_DROPOUT), rtol=1e-4, atol=1e-6,
                 name="the kept values, scaled by 1/(1-p) in training")


@question("q2-count")
def test_count_parameters(submission, rng):
    handle, net = fresh_net(submission, int(rng.integers(4, 9)))
    _, convs, linears = layers_of(net, rng)
    total = expected_parameters(convs, linears)
    assert_equal(submission.call("count_parameters", handle), total, name="count_parameters(model)")
    assert_equal(submission.call("count_parameters", handle, trainable_only=True), total,
                 name="count_parameters(model, trainable_only=True) before freezing")
    submission.call("freeze_features", handle)
    trainable = net.structure().trainable
    assert_equal(submission.call("count_parameters", handle, trainable_only=True), trainable,
                 name="count_parameters(model, trainable_only=True) after freeze_features(model)")
    assert_equal(submission.call("count_parameters", handle), total, name="count_parameters(model) after freezing")


@question("q2-freeze")
def test_freeze_features(submission, rng):
    handle, net = fresh_net(submission, 3)
    assert submission.call("freeze_features", handle) is None, "freeze_features(model) should return nothing"
    _, convs, linears = layers_of(net, rng)
    assert_equal([(c.trainable, c.parameters) for c in convs], [(0, c.parameters) for c in convs],
                 name="(trainable, all) parameters of the two convolutions after freeze_features")
    assert_equal([layer.trainable for layer in linears], [layer.parameters for layer in linears],
                 name="trainable parameters of the fully connected layers after freeze_features")


@question("q3-optimizer")
def test_optimizer(submission, rng):
    handle, _ = fresh_net(submission, 3)
    lr = float(rng.uniform(1e-4, 1e-2))
    opt = submission.new("make_optimizer", handle, lr)
    cfg = submission.optimizer(opt, model=handle)
    assert cfg.type == "Adam", f"make_optimizer should return torch.optim.Adam, not {cfg.type}"
    assert cfg.unassigned == (), f"parameters the optimizer does not train: {', '.join(cfg.unassigned)}"
    for i, group in enumerate(cfg.groups):
        assert_close(group.hyper["lr"], lr, rtol=1e-9, name=f"the learning rate of parameter group {i} (make_optimizer(model, lr={lr:.5f}))")
        assert group.hyper.get("amsgrad") is True, f"parameter group {i} does not use AMSGrad (amsgrad=True)"
        assert_close(group.hyper["weight_decay"], 1e-4, rtol=1e-9, name=f"the weight decay of parameter group {i}")


@question("q3-schedule")
def test_scheduler_halves_every_four_epochs(submission, rng):
    handle, _ = fresh_net(submission, 3)
    lr = float(rng.uniform(1e-3, 1e-1))
    opt = submission.torch_new("torch.optim.SGD", submission.params_of(handle), lr=lr)
    schedule = submission.new("make_scheduler", opt)
    lrs = [row[0] for row in submission.scheduler(schedule, epochs=12).lrs]
    assert_close(lrs, [lr * 0.5 ** (e // 4) for e in range(12)], rtol=1e-9,
                 name="the learning rate over 12 epochs (one scheduler step each)")


@question("q4")
def test_train_step(submission, rng):
    n, d, k, lr = 8, 6, 3, 0.1
    linear = submission.torch_new("torch.nn.Linear", d, k)
    w = rng.normal(size=(k, d)).astype(np.float32)
    b = rng.normal(size=k).astype(np.float32)
    submission.model(linear).load_state_dict({"weight": w, "bias": b})
    sgd = submission.torch_new("torch.optim.SGD", submission.params_of(linear), lr=lr)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, k, size=n)
    # stale gradients in every .grad: only a step that zeroes them first moves as expected
    result = submission.step("train_step", linear, sgd, as_torch(x), as_torch(y), model=linear, stale_grad=1.0)
    z = x.astype(np.float64) @ w.T + b
    p = losses.softmax(z)
    loss = float(np.mean(-np.log(p[np.arange(n), y])))
    g = (p - np.eye(k)[y]) / n  # d mean-CE / d logits
    assert isinstance(result.result, float), f"train_step should return the loss as a Python float, not {type(result.result).__name__}"
    assert_close(result.result, loss, rtol=1e-4, name="the loss train_step returns (before the update)")
    assert_close(result.delta["weight"], -lr * g.T @ x, rtol=1e-3, atol=1e-6, name="the change of the weights (SGD, lr 0.1)")
    assert_close(result.delta["bias"], -lr * g.sum(0), rtol=1e-3, atol=1e-6, name="the change of the bias")


@question("q5-predict")
def test_predict_is_at_test_time(submission, rng):
    handle, net = fresh_net(submission, 3)   # a new module is in training mode
    x = images(rng, 6)
    expected = net.forward(x, mode="eval")
    got = submission.call("predict", handle, as_torch(x))
    assert_close(got, expected, rtol=1e-4, atol=1e-5, name="predict(model, x): the logits with dropout off")
    if getattr(got, "torch", None) is not None and got.torch.requires_grad:
        raise StudentError("predict(model, x) returned a tensor that requires grad: compute it under torch.no_grad()")


@question("q5-accuracy")
def test_trained_model_on_held_out_images(submission, rng, assignment):
    classes = ImageFolder(assignment.data_set("shapes").path).classes   # the trusted copy's classes
    labels = rng.integers(0, len(classes), size=150)
    x = np.stack([draw_shape(classes[y], 32, rng) for y in labels]).astype(np.float32).transpose(0, 3, 1, 2) / 255
    logits = predict(submission.model("model"), x, num_classes=len(classes))
    acc = accuracy(logits, labels)
    assert acc >= 0.5, (f"the trained model's accuracy on {len(labels)} new images is {acc:.0%}; at least 50% is "
                        f"needed (chance: {1 / len(classes):.0%})")
