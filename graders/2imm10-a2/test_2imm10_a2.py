"""Hidden graders of 2imm10-a2: neural codes (Babenko et al., ECCV 2014) and triplet networks.

Every expected value is computed here, on the trusted side, with ``reference/``: the student's
functions only receive inputs the grader drew (other class counts, sizes, margins than the
notebook's), and their models only images. What the notebook reports (metrics, retrieval
results, mAPs, one-shot accuracies) is recomputed from what it saved, never trusted. The
Omniglot images the trained network is measured on are read here, from the trusted copy.
"""
import numpy as np
from PIL import Image

from gradekit.data.formats import Omniglot
from gradekit.grading import StudentError, as_torch, assert_close, assert_equal, expect_array, question
from reference import architectures, classification, losses, metric_learning, retrieval

IMAGE = (3, 64, 64)
P_DROPOUT = 0.5
# Babenko et al. 2014, Fig. 1, with the assignment's changes to Layer 1 (4x4, stride 1):
# (in channels, filters, kernel) of Layers 1-5, all stride 1.
CONVS = [(3, 96, 4), (96, 192, 5), (192, 288, 3), (288, 288, 3), (288, 256, 3)]
FC_UNITS = 2048
POOLS_AFTER = "CPCPCCCP"   # convolutions (C) and 3x3/2 max poolings (P), in the order forward runs them


def images(rng, n):
    return rng.random((n, *IMAGE), dtype=np.float32)


def fresh_convnet(submission, num_classes):
    handle = submission.new("make_convnet", num_classes=num_classes)
    return handle, submission.model(handle)


def walk(structure, n_images):
    """(layer, input shape, output shape) for every layer call, in the order forward made them."""
    shape, calls = (n_images, *IMAGE), []
    for layer, out in zip(structure.ordered(), structure.output_shapes):
        calls.append((layer, shape, out))
        shape = out if out is not None else shape
    return calls


def convention(kind, side_in, side_out, k):
    """Which legal padding gave this output side, or None."""
    if kind == "Conv2d":
        return {side_in: "same", side_in - k + 1: "valid"}.get(side_out)
    return {(side_in - 3) // 2 + 1: "no padding", (side_in - 1) // 2 + 1: "padding 1"}.get(side_out)


def architecture(submission, rng, num_classes):
    """The student's network read through the bridge: the structure, its layer calls, and the
    padding convention recognised for each convolution and pooling (a StudentError where one
    is neither)."""
    handle, net = fresh_convnet(submission, num_classes)
    s = net.structure(example=images(rng, 2))
    calls = [c for c in walk(s, 2) if c[0].type in ("Conv2d", "MaxPool2d")]
    kinds = "".join("C" if c[0].type == "Conv2d" else "P" for c in calls)
    found = []
    for layer, shape_in, shape_out in calls:
        k = layer.hyper.get("kernel_size")
        k = k[0] if isinstance(k, (list, tuple)) else k
        found.append(convention(layer.type, shape_in[-1], (shape_out or (0,))[-1], k or 0))
    return handle, net, s, calls, kinds, found


def padding_recognised(calls, found, kind):
    """The conventions of the layers of this kind, or a StudentError naming one that is neither."""
    for (layer, shape_in, shape_out), name in zip(calls, found):
        if layer.type == kind and name is None:
            side_out = shape_out[-1] if shape_out else "?"
            raise StudentError(f"`{layer.name}` ({kind}) turns a {shape_in[-1]}x{shape_in[-1]} input into "
                               f"{side_out}x{side_out}: that is neither of the paddings the notebook allows")
    return [name for (layer, _, _), name in zip(calls, found) if layer.type == kind]


@question("1.1-convs")
def test_the_five_convolutions(submission, rng):
    _, _, s, calls, kinds, found = architecture(submission, rng, int(rng.integers(5, 30)))
    convs = [c for c in calls if c[0].type == "Conv2d"]
    got = [(c.hyper["in_channels"], c.hyper["out_channels"], tuple(c.hyper["kernel_size"])[0], tuple(c.hyper["stride"]))
           for c, _, _ in convs]
    assert_equal(got, [(i, o, k, (1, 1)) for i, o, k in CONVS],
                 name="the convolutions (in channels, filters, kernel, stride), in the order forward runs them "
                      "(Babenko et al., Fig. 1, with Layer 1 at 4x4 and stride 1)")
    assert all(tuple(c.hyper["kernel_size"]) == (k, k) for (c, _, _), (_, _, k) in zip(convs, CONVS)), \
        "every convolution's kernel should be square"
    padding_recognised(calls, found, "Conv2d")


@question("1.1-pools-fc")
def test_pooling_and_the_fully_connected_layers(submission, rng, credit):
    k = int(rng.integers(5, 30))
    handle, net, s, calls, kinds, found = architecture(submission, rng, k)
    assert kinds == POOLS_AFTER, (
        f"convolutions (C) and max poolings (P) ran in the order {kinds}; Babenko et al. pool after Layers 1, 2 "
        f"and 5 ({POOLS_AFTER})")
    for layer, _, _ in calls:
        if layer.type == "MaxPool2d":
            size, stride = layer.hyper.get("kernel_size"), layer.hyper.get("stride")
            assert size in (3, [3, 3], (3, 3)) and stride in (2, [2, 2], (2, 2)), (
                f"`{layer.name}` pools {size} with stride {stride}; every pooling is 3x3 with stride 2")
    pools = padding_recognised(calls, found, "MaxPool2d")
    side = calls[-1][2][-1]   # Layer 5's output side after its pooling, as the student's paddings make it
    convs = [c for c in calls if c[0].type == "Conv2d"]
    linears = s.of_type("Linear")
    assert_equal([(fc.hyper["in_features"], fc.hyper["out_features"]) for fc in linears],
                 [(256 * side * side, FC_UNITS), (FC_UNITS, FC_UNITS), (FC_UNITS, k)],
                 name=f"Layers 6, 7 and 8 (in, out) for make_convnet(num_classes={k}), after Layer 5's "
                      f"{side}x{side}x256 output")
    expected = sum(architectures.conv_param_count(c.hyper["in_channels"], c.hyper["out_channels"],
                                                  tuple(c.hyper["kernel_size"]), bias=c.hyper["bias"]) for c, _, _ in convs)
    expected += sum(architectures.linear_param_count(fc.hyper["in_features"], fc.hyper["out_features"],
                                                     bias=fc.hyper["bias"]) for fc in linears)
    assert_equal(s.parameters, expected, name="the number of parameters (the layers above and nothing else)")
    out = net.forward(images(rng, 3))
    assert_equal(out.shape, (3, k), name=f"the output of make_convnet(num_classes={k}) for 3 images")
    convs_seen = ", ".join(str(found[i]) for i, c in enumerate(kinds) if c == "C")
    credit.award(1.0, f"Recognised padding: convolutions {convs_seen}; poolings {', '.join(pools)}.")


def dropped_fraction(before, after):
    """Of the entries active before a dropout, the share it zeroed; and whether the kept ones
    were scaled by 1/(1-p)."""
    active = before != 0
    kept = active & (after != 0)
    share = 1 - kept.sum() / max(1, active.sum())
    scaled = np.allclose(after[kept], before[kept] / (1 - P_DROPOUT), rtol=1e-4, atol=1e-6) if kept.any() else False
    return share, scaled


@question("1.1-dropout")
def test_dropout_before_layers_6_and_7(submission, rng):
    _, net = fresh_convnet(submission, 7)
    fc6, fc7, fc8 = [fc.name for fc in net.structure(example=images(rng, 1)).of_type("Linear")][:3]
    x = images(rng, 4)
    at_test = net.capture(x, [fc6], mode="eval")[fc6].input
    train = net.capture(x, [fc6, fc7, fc8], mode="train")
    checks = [("Layer 6", at_test, train[fc6].input),
              ("Layer 7", np.maximum(train[fc6].output, 0), train[fc7].input)]
    for where, before, after in checks:
        share, scaled = dropped_fraction(before, after)
        assert abs(share - P_DROPOUT) < 0.06 and scaled, (
            f"in training, the input of {where} should lose about {P_DROPOUT:.0%} of its values to dropout (the "
            f"rest scaled by 1/(1-p)); it lost {share:.0%}. Is there a dropout with p = {P_DROPOUT} right before {where}?")
    share, _ = dropped_fraction(np.maximum(train[fc7].output, 0), train[fc8].input)
    assert share < 0.01, f"the input of Layer 8 loses {share:.0%} of its values in training: no dropout belongs there"


@question("1.2-optimizer")
def test_adam_with_amsgrad(submission, rng):
    handle, _ = fresh_convnet(submission, int(rng.integers(5, 30)))
    cfg = submission.optimizer(submission.new("make_optimizer", handle), model=handle)
    assert cfg.type == "Adam", f"make_optimizer should return torch.optim.Adam, not {cfg.type}"
    assert cfg.unassigned == (), f"parameters the optimizer does not train: {', '.join(cfg.unassigned)}"
    for i, group in enumerate(cfg.groups):
        assert_close(group.hyper["lr"], 1e-4, rtol=1e-9, name=f"the learning rate of parameter group {i}")
        assert group.hyper.get("amsgrad") is True, f"parameter group {i} does not use AMSGrad (amsgrad=True)"


@question("1.2-stopping")
def test_stops_as_soon_as_the_validation_loss_increases(submission, rng):
    cases = [[], [2.0], [3.0, 2.5], [3.0, 3.1], [3.0, 2.0, 2.0], [3.0, 2.0, 2.4], [1.0, 2.0, 1.5],
             [5.0, 4.0, 3.0, 2.0, 1.0]]
    for _ in range(6):  # longer decreasing runs, half of them ending in a small rise
        run = list(np.cumsum(-rng.uniform(0.01, 0.5, size=int(rng.integers(3, 12)))) + 10.0)
        cases.append(run + [run[-1] + float(rng.uniform(1e-6, 0.2))] if rng.random() < 0.5 else run)
    for losses_so_far in cases:
        got = submission.call("should_stop", [float(v) for v in losses_so_far])
        if not isinstance(got, (bool, np.bool_)):
            raise StudentError(f"should_stop({losses_so_far}) returned {type(got).__name__}; expected True or False")
        expected = classification.early_stopping(losses_so_far)["stop_epoch"] == len(losses_so_far) - 1
        assert_equal(bool(got), expected, name=f"should_stop({[round(v, 4) for v in losses_so_far]})")


def expected_metrics(logits, labels):
    return {"cross_entropy": losses.softmax_cross_entropy(logits, labels),
            "accuracy": classification.accuracy(labels, logits),
            "top5": classification.top_k_accuracy(labels, logits, k=5)}


def metrics_of(value, what):
    if not isinstance(value, dict) or set(value) != {"cross_entropy", "accuracy", "top5"}:
        raise StudentError(f"{what} should be a dict with the keys cross_entropy, accuracy and top5")
    return {k: float(expect_array(v, f"{what}[{k!r}]", shape=())) for k, v in value.items()}


@question("1.2-metrics")
def test_metrics_and_the_reported_numbers(submission, rng):
    for n, k in ((40, 12), (25, 7)):
        logits = rng.normal(scale=3.0, size=(n, k))
        labels = rng.integers(0, k, size=n)
        got = metrics_of(submission.call("evaluate", logits, labels), f"evaluate(logits {n}x{k}, labels)")
        for key, value in expected_metrics(logits, labels).items():
            assert_close(got[key], value, rtol=1e-6, atol=1e-9, name=f"evaluate(...)[{key!r}] for {n} samples, {k} classes")
    logits, labels, reported = submission.get("LOGITS"), submission.get("Y"), submission.get("RESULTS")
    for split in ("train", "val", "test"):
        try:
            z, y = expect_array(logits[split], f"LOGITS[{split!r}]", ndim=2), np.asarray(labels[split])
            said = metrics_of(reported[split], f"RESULTS[{split!r}]")
        except (KeyError, TypeError):
            raise StudentError(f"LOGITS, Y and RESULTS should each have the key {split!r}") from None
        for key, value in expected_metrics(z, y).items():
            assert_close(said[key], value, rtol=1e-4, atol=1e-6,
                         name=f"RESULTS[{split!r}][{key!r}], recomputed from LOGITS[{split!r}] and Y[{split!r}]")


@question("1.3-codes")
def test_neural_codes_of_layers_5_6_7(submission, rng):
    handle, net = fresh_convnet(submission, 6)   # a new module is in training mode
    fc6, fc7, fc8 = [fc.name for fc in net.structure(example=images(rng, 1)).of_type("Linear")][:3]
    x = images(rng, 3)
    seen = net.capture(x, [fc6, fc7], mode="eval")
    expected = {5: seen[fc6].input, 6: np.maximum(seen[fc6].output, 0), 7: np.maximum(seen[fc7].output, 0)}
    got = submission.call("neural_codes", handle, as_torch(x))
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise StudentError("neural_codes(model, x) should return three codes: (code5, code6, code7)")
    for (layer, want), code in zip(expected.items(), got):
        code = expect_array(code, f"the Layer {layer} code", ndim=2)
        assert_close(code, want.reshape(len(x), -1), rtol=1e-4, atol=1e-5,
                     name=f"the Layer {layer} code of 3 images (at test time: dropout off)")


@question("1.3-normalize")
def test_codes_scaled_to_unit_length(submission, rng):
    codes = rng.normal(size=(6, int(rng.integers(5, 12)))) * rng.uniform(0.1, 10, size=(6, 1))
    codes[2] = 0.0
    got, changed = submission.call_watching("normalize_codes", codes)
    got = expect_array(got, "normalize_codes(codes)")
    assert_close(got, retrieval.l2_normalize(codes), rtol=1e-6, atol=1e-12,
                 name="normalize_codes(codes) (row 2 is all zeros and should stay so)")
    assert not changed, "normalize_codes changed the codes it was given: return a new array and leave its argument as it was"


@question("1.3-retrieve")
def test_retrieval_of_the_k_most_similar_others(submission, rng):
    codes = retrieval.l2_normalize(rng.normal(size=(25, 6)))
    queries = sorted(rng.choice(25, size=5, replace=False).tolist())
    for k in (3, 7, None):
        got = submission.call("retrieve", codes, queries) if k is None else submission.call("retrieve", codes, queries, k=k)
        want, _ = retrieval.top_k_retrieval(codes, 5 if k is None else k, queries)
        assert_equal(np.asarray(got).tolist(), want.tolist(),
                     name=f"retrieve(codes, {queries}{'' if k is None else f', k={k}'}) on 25 unit codes")
    ood, found = submission.get("OOD_CODES"), submission.get("RETRIEVED")
    for layer in (5, 6, 7):
        try:
            c, r = expect_array(ood[layer], f"OOD_CODES[{layer}]", ndim=2), found[layer]
        except (KeyError, TypeError):
            raise StudentError(f"OOD_CODES and RETRIEVED should each have the key {layer}") from None
        want, _ = retrieval.top_k_retrieval(c, 5, list(range(10)))
        assert_equal(np.asarray(r).tolist(), want.tolist(),
                     name=f"RETRIEVED[{layer}]: the 5 results of the first 10 ood images, from OOD_CODES[{layer}]")


@question("1.3-map")
def test_mean_average_precision(submission, rng):
    for sizes in ((9, 9, 9, 9), (3, 5, 12, 16)):
        labels = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
        codes = retrieval.l2_normalize(rng.normal(size=(labels.size, 5)) + 1.5 * np.eye(5)[labels])
        got = float(expect_array(submission.call("mean_average_precision", codes, labels), "the mAP", shape=()))
        assert_close(got, retrieval.mean_average_precision(codes, labels), rtol=1e-6,
                     name=f"mean_average_precision on {labels.size} codes of classes of sizes {sizes}")
    ood, y, reported = submission.get("OOD_CODES"), submission.get("Y_OOD"), submission.get("MAP")
    for layer in (5, 6, 7):
        try:
            said = float(expect_array(reported[layer], f"MAP[{layer}]", shape=()))
            c = expect_array(ood[layer], f"OOD_CODES[{layer}]", ndim=2)
        except (KeyError, TypeError):
            raise StudentError(f"MAP and OOD_CODES should each have the key {layer}") from None
        assert_close(said, retrieval.mean_average_precision(c, np.asarray(y)), rtol=1e-4, atol=1e-6,
                     name=f"MAP[{layer}], recomputed over all {len(c)} ood images from OOD_CODES[{layer}]")


@question("2.1-network")
def test_embedding_net_and_one_shared_network(submission, rng):
    # two sizes that three halvings take to different sides (3, 4, 5, 6): a network that fits
    # one size only (say the notebook's IMAGE_SIZE) fails one of them, whatever the draw
    for size in rng.choice([24, 32, 40, 48], size=2, replace=False).tolist():
        dim = int(rng.integers(8, 33))
        emb = submission.new("make_embedding_net", image_size=size, embedding_dim=dim)
        x = rng.random((3, 3, 1, size, size), dtype=np.float32)
        out = submission.model(emb).forward(x[0])
        assert_equal(out.shape, (3, dim), name=f"make_embedding_net(image_size={size}, embedding_dim={dim}) for 3 images")
    net = submission.new("TripletNet", emb)
    own, shared = submission.model(net).structure(), submission.model(emb).structure()
    assert_equal(own.parameters, shared.parameters,
                 name="the parameters of TripletNet(embedding_net) (one shared network: no copies)")
    submission.call(f"@{net.ref}.eval")
    submission.call(f"@{emb.ref}.eval")
    got = submission.call(f"@{net.ref}", *(as_torch(v) for v in x))
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise StudentError("TripletNet's forward(anchor, positive, negative) should return three embeddings")
    for name, image, e in zip(("anchor", "positive", "negative"), x, got):
        assert_close(expect_array(e, f"the {name} embedding"), submission.model(emb).forward(image),
                     rtol=1e-4, atol=1e-5, name=f"the {name} embedding: embedding_net({name})")


def omniglot_background(assignment, size):
    """The training characters' images as the notebook loads them, read from the trusted copy."""
    chars = Omniglot(assignment.data_set("omniglot").path).characters("background")
    x, y = [], []
    for label, (_, _, paths) in enumerate(chars):
        for path in paths:
            with Image.open(path) as im:
                small = im.convert("L").resize((size, size), Image.BILINEAR)
            x.append(1.0 - np.asarray(small, dtype=np.float32) / 255.0)
            y.append(label)
    return np.stack(x)[:, None], np.array(y)


@question("2.1-trained")
def test_trained_loss_below_the_margin(submission, rng, assignment):
    size, margin = submission.get("IMAGE_SIZE"), submission.get("MARGIN")
    if not (isinstance(size, int) and 8 <= size <= 128):
        raise StudentError(f"IMAGE_SIZE should be a whole number of pixels between 8 and 128, not {size!r}")
    if not (isinstance(margin, (int, float)) and 0.01 <= margin <= 10):
        raise StudentError(f"MARGIN should be a number between 0.01 and 10, not {margin!r}")
    x, y = omniglot_background(assignment, size)
    e = submission.model("model_random.embedding_net").forward(x)
    t = metric_learning.random_triplets(y, 600, rng)
    loss = losses.triplet_loss(e[t[:, 0]], e[t[:, 1]], e[t[:, 2]], margin=margin)
    # an untrained network's loss is the margin, give or take a little (d(a, p) and d(a, n) alike):
    # half the margin is what only training reaches
    assert loss < margin / 2, (f"model_random's mean triplet loss on 600 random triplets of the training characters "
                               f"is {loss:.4f}, not below half the margin ({margin / 2:g}): is it trained?")
    spread = float(np.mean(np.sum((e[t[:, 0]] - e[t[:, 2]]) ** 2, axis=1)))
    assert spread > 1e-3 * margin, (f"the embeddings have collapsed: anchors and negatives are {spread:.2e} apart "
                                    "(squared) on average")


@question("2.2-loss")
def test_triplet_loss(submission, rng):
    for batch, dim, margin in ((7, 5, 0.3), (12, 3, 2.0), (1, 4, 1.0)):
        a, p, n = (rng.normal(size=(batch, dim)).astype(np.float32) for _ in range(3))
        p[: batch // 2] = a[: batch // 2] + 0.05   # some triplets already satisfied (hinge at 0)
        got = submission.call("triplet_loss", as_torch(a), as_torch(p), as_torch(n), margin)
        got = expect_array(got, f"triplet_loss(...) for a batch of {batch}")
        if got.size != 1:
            raise StudentError(f"triplet_loss(...) for a batch of {batch} has shape {got.shape}; expected one number "
                               "(the mean over the batch)")
        got = float(got.reshape(-1)[0])
        assert_close(got, losses.triplet_loss(a, p, n, margin=margin, squared=True), rtol=1e-5, atol=1e-6,
                     name=f"triplet_loss for a batch of {batch} triplets in {dim} dimensions, margin {margin}")


def labels_with_unequal_classes(rng):
    sizes = (2, 3, 5, 8, 13, 20)
    return rng.permutation(np.repeat(np.arange(len(sizes)), sizes)), len(sizes)


def triplets_of(value, n, labels, what):
    t = expect_array(value, what, shape=(n, 3))
    if not np.all((t == np.round(t)) & (t >= 0) & (t < labels.size)):
        raise StudentError(f"{what} should hold image indices between 0 and {labels.size - 1}")
    t = t.astype(np.int64)
    a, p, neg = t.T
    assert np.all(labels[a] == labels[p]), f"{what}: some positives are not of the anchor's class"
    assert np.all(a != p), f"{what}: some anchors are their own positive (two different images are needed)"
    assert np.all(labels[neg] != labels[a]), f"{what}: some negatives are of the anchor's class"
    return t


@question("2.3-random")
def test_random_triplets(submission, rng):
    labels, classes = labels_with_unequal_classes(rng)
    n = 3000
    t = triplets_of(submission.call("random_triplets", labels, n, seed=int(rng.integers(2**31))), n, labels,
                    f"random_triplets(labels, {n}, seed)")
    # every class equally likely for the anchor, and for the negative (1/6 each; 6 sigma is about 0.04)
    for role, column in (("anchor", 0), ("negative", 2)):
        share = np.bincount(labels[t[:, column]], minlength=classes) / n
        assert np.all(np.abs(share - 1 / classes) < 0.05), (
            f"the {role}s' classes should be equally likely (1/{classes} each, whatever their sizes); they came "
            f"out as {np.round(share, 3).tolist()}")
    assert len({tuple(r) for r in t.tolist()}) > n // 10, "random_triplets keeps drawing the same triplets"


@question("2.3-hard")
def test_hard_triplets(submission, rng):
    labels, _ = labels_with_unequal_classes(rng)
    emb = rng.normal(size=(labels.size, 4))
    n = 400
    t = triplets_of(submission.call("hard_triplets", emb, labels, n, seed=int(rng.integers(2**31))), n, labels,
                    f"hard_triplets(embeddings, labels, {n}, seed)")
    for a, _, neg in t:
        same = np.flatnonzero(labels == labels[neg])
        d = np.sum((emb[same] - emb[a]) ** 2, axis=1)
        if neg != same[np.argmin(d)]:
            raise StudentError(
                f"for anchor {a}, the negative {neg} is not the image of its class nearest to the anchor (that is "
                f"{same[np.argmin(d)]}: squared distance {d.min():.4f} against {np.sum((emb[neg] - emb[a]) ** 2):.4f})")


@question("2.4-evaluation")
def test_one_shot_tasks_and_accuracy(submission, rng):
    labels = rng.permutation(np.repeat(np.arange(24), 4))
    for n_way, k in ((5, 40), (20, 30)):
        got = submission.call("make_one_shot_tasks", labels, n_way=n_way, num_tasks=k, seed=int(rng.integers(2**31)))
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise StudentError("make_one_shot_tasks should return (query, support, target)")
        q = expect_array(got[0], "query", shape=(k,)).astype(np.int64)
        s = expect_array(got[1], "support", shape=(k, n_way)).astype(np.int64)
        tg = expect_array(got[2], "target", shape=(k,)).astype(np.int64)
        what = f"make_one_shot_tasks(labels, n_way={n_way}, num_tasks={k})"
        assert all(len(set(labels[row])) == n_way for row in s), f"{what}: a support set repeats a class"
        assert np.all(labels[s[np.arange(k), tg]] == labels[q]), f"{what}: support[t, target[t]] is not of the query's class"
        assert np.all(s[np.arange(k), tg] != q), f"{what}: a query is its own support image"
    tasks = metric_learning.make_one_shot_tasks(labels, n_way=20, num_tasks=60, rng=rng)
    emb = rng.normal(size=(labels.size, 6)) + 0.8 * rng.normal(size=(24, 6))[labels]
    got = float(expect_array(submission.call("one_shot_accuracy", emb, tasks["query"], tasks["support"], tasks["target"]),
                             "one_shot_accuracy(...)", shape=()))
    assert_close(got, metric_learning.one_shot_accuracy(emb, tasks), rtol=1e-9, atol=1e-12,
                 name="one_shot_accuracy on 60 20-way tasks")


@question("2.4-reported")
def test_reported_one_shot_accuracies(submission):
    tasks, reported = submission.get("TASKS"), submission.get("ONE_SHOT")
    if not isinstance(tasks, (tuple, list)) or len(tasks) != 3:
        raise StudentError("TASKS should be the (query, support, target) of the evaluation tasks")
    q, s, tg = (np.asarray(v).astype(np.int64) for v in tasks)
    assert_equal(s.shape, (250, 20), name="the tasks' support sets (k = 250 tasks, 20-way)")
    x = expect_array(submission.get("X_EVAL"), "X_EVAL", ndim=4).astype(np.float32)
    weights = {}
    for kind in ("random", "hard"):
        net = submission.model(f"model_{kind}.embedding_net")
        acc = metric_learning.one_shot_accuracy(net.forward(x), {"query": q, "support": s, "target": tg})
        try:
            said = float(expect_array(reported[kind], f"ONE_SHOT[{kind!r}]", shape=()))
        except (KeyError, TypeError):
            raise StudentError("ONE_SHOT should have the keys 'random' and 'hard'") from None
        assert_close(said, acc, rtol=0, atol=1.01 / 250,
                     name=f"ONE_SHOT[{kind!r}], recomputed with model_{kind} on TASKS")
        weights[kind] = net.state_dict()
    same = all(np.array_equal(weights["random"][k], weights["hard"].get(k)) for k in weights["random"])
    assert not same, "model_hard has exactly model_random's weights: re-build the network before the second training"
