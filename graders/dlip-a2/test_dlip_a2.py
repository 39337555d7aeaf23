"""Hidden graders of dlip-a2: landmark retrieval on Oxford 5k with CNN descriptors (issue 14).

Every expected value is computed here, on the trusted side, with ``reference/``: the student's
functions only receive inputs the grader drew (other sizes, class counts, margins, p and eps
than the notebook's), and the student's models only images. What the notebook reports (the
top-15 lists, the mAPs and their differences) is recomputed from the descriptors it holds and
from the Oxford ground truth read here, from the trusted copy. Models are read through the
bridge: shapes, which parameters equal the loaded ones, what each layer received and returned.
"""
import numpy as np
from PIL import Image

from gradekit.data.features import read_npy_features
from gradekit.data.oxford5k import read_oxford5k
from gradekit.grading import StudentError, as_torch, assert_close, assert_equal, expect_array, question
from reference import losses, retrieval

FC7 = 4096
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
MODELS = ("alexnet", "finetuned", "alexnet_gem", "resnet18_gem", "whitened", "triplet", "augmented", "resnet50_gem")
DIFFERENCES = {"Q6": ("finetuned", "alexnet"), "Q14": ("resnet18_gem", "alexnet_gem"),
               "Q15": ("resnet18_gem", "finetuned"), "Q20": ("augmented", "triplet"),
               "Q24": ("resnet50_gem", "resnet18_gem")}


def present(feats):
    """The models the notebook described Oxford with, in MODELS order (a model whose training
    failed is left out by the notebook; its own question is lost there, not here)."""
    if not isinstance(feats, dict) or "alexnet" not in feats:
        raise StudentError("FEATURES should be a dict holding at least the AlexNet descriptors (key 'alexnet')")
    return [m for m in MODELS if m in feats]


def batch(rng, n, size):
    return rng.normal(size=(n, 3, size, size)).astype(np.float32)


def pretrained(submission, arch):
    """A fresh ImageNet model in the kernel (the notebook's given loader), and its view."""
    handle = submission.new("load_pretrained", arch)
    return handle, submission.model(handle)


# ---------------------------------------------------------------------------- Q1-Q2: fc7
@question("fc7-features")
def test_fc7_features_after_the_relu(submission, rng):
    handle, view = pretrained(submission, "alexnet")   # as torchvision builds it: in training mode
    for n, size in ((3, 224), (2, 96)):
        x = batch(rng, n, size)
        fc7 = view.capture(x, ["classifier.4"], mode="eval")["classifier.4"].output
        got = submission.call("fc7_features", handle, as_torch(x))
        got = expect_array(got, f"fc7_features(model, images of shape {x.shape})", shape=(n, FC7))
        assert_close(got, np.maximum(fc7, 0.0), rtol=1e-4, atol=1e-5,
                     name=f"fc7_features for {n} images of {size}x{size}: fc7 (classifier[4]) after its ReLU, "
                          "at test time (dropout off)")


@question("fc7-dimension")
def test_fc7_dimension(submission):
    got = submission.get("FC7_DIM")
    if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
        raise StudentError(f"FC7_DIM should be an int, not {type(got).__name__}")
    assert_equal(got, FC7, name="FC7_DIM, the dimension of an fc7 feature")


# ---------------------------------------------------------------------------- Q3: ranking and AP
def scaled_rows(rng, n, d):
    return rng.normal(size=(n, d)) * rng.uniform(0.2, 5.0, size=(n, 1))


def ranked_scores_agree(order, q, d, k, what):
    """A ranking is right when, row by row, its scores (float64, unit vectors) are the k best in
    decreasing order (float32 descriptors may swap near-ties: those are tolerated)."""
    s = retrieval.l2_normalize(q) @ retrieval.l2_normalize(d).T
    order = expect_array(order, what, shape=(len(q), k)).astype(np.int64)
    if np.any((order < 0) | (order >= d.shape[0])):
        raise StudentError(f"{what} holds indices outside 0..{d.shape[0] - 1}")
    for i in range(len(q)):
        if len(set(order[i].tolist())) != k:
            raise StudentError(f"{what}: row {i} lists a database image twice")
        best = -np.sort(-s[i])[:k]
        assert_close(s[i, order[i]], best, rtol=0, atol=1e-5,
                     name=f"{what}: the scores of row {i}'s images, in the order given")


@question("ranking")
def test_rank_by_inner_product_of_unit_vectors(submission, rng):
    # rows of different lengths (the normalisation decides the order), and scaled copies of the
    # axes: a query's score with c * e_j is exactly its j-th unit coordinate in any arithmetic,
    # so those rows tie exactly (the lower index first)
    axes = np.eye(3)[[0, 1, 0, 2, 1, 0, 2]] * np.array([2.0, 3.0, 0.5, 1.0, 5.0, 7.0, 0.25])[:, None]
    cases = [(scaled_rows(rng, 4, 6), scaled_rows(rng, 20, 6), "4 queries and 20 database rows of different lengths"),
             (scaled_rows(rng, 3, 3), axes, "3 queries and 7 scaled copies of the 3 axes (ties)")]
    for q, d, what in cases:
        for k in (None, 5, 15):
            k = None if k is None else min(k, len(d) - 1)
            got = submission.call("rank", q, d) if k is None else submission.call("rank", q, d, k=k)
            want = retrieval.rank_by_inner_product(retrieval.l2_normalize(q), retrieval.l2_normalize(d), k=k)
            assert_equal(np.asarray(got).tolist(), want.tolist(),
                         name=f"rank(queries, database{'' if k is None else f', k={k}'}) on {what}")
    top, feats, qfeats = submission.get("TOP15"), submission.get("FEATURES"), submission.get("QUERY_FEATURES")
    for m in present(feats):
        try:
            f, qf, t = feats[m], qfeats[m], top[m]
        except (KeyError, TypeError):
            raise StudentError(f"TOP15, FEATURES and QUERY_FEATURES should each have the key {m!r}") from None
        f = expect_array(f, f"FEATURES[{m!r}]", ndim=2)
        qf = expect_array(qf, f"QUERY_FEATURES[{m!r}]", ndim=2)
        ranked_scores_agree(t, qf, f, min(15, len(f)), f"TOP15[{m!r}], recomputed from the descriptors")


def names(k):
    return [f"img_{i:03d}" for i in range(k)]


def ap_cases(rng):
    """(ranked, good, ok, junk, why): each rule of the protocol hit by a case built for it."""
    n = names(40)
    cases = [
        ([n[0], n[1], n[2]], [n[0], n[2]], [], [], "a negative between two positives (trapezoid, not steps)"),
        ([n[3], n[0], n[4], n[1]], [n[0], n[1]], [], [], "a negative first"),
        ([n[5], n[0], n[6], n[7], n[1], n[8], n[2], n[9]], [n[0], n[2]], [n[1]], [n[5], n[7]],
         "junk before and between the positives, an ok image among them"),
        ([n[0], n[9], n[8]], [n[0], n[1]], [n[2]], [], "positives never retrieved (a top-k list)"),
        ([n[4], n[5], n[0]], [], [n[0]], [n[4]], "only ok positives, junk first"),
    ]
    for _ in range(3):   # longer random rankings with every kind of image
        order = rng.permutation(40)
        labels = rng.choice(4, size=40, p=[0.2, 0.15, 0.15, 0.5])   # good, ok, junk, negative
        labels[order[int(rng.integers(0, 10))]] = 0
        ranked = [n[i] for i in order[: int(rng.integers(25, 41))]]
        cases.append((ranked, [x for x, c in zip(n, labels) if c == 0], [x for x, c in zip(n, labels) if c == 1],
                      [x for x, c in zip(n, labels) if c == 2], "a random ranking of 40 images"))
    return cases


@question("oxford-ap")
def test_oxford_average_precision(submission, rng):
    for ranked, good, ok, junk, why in ap_cases(rng):
        got = submission.call("oxford_ap", list(ranked), list(good), list(ok), list(junk))
        got = float(expect_array(got, "oxford_ap(...)", shape=()))
        assert_close(got, retrieval.oxford_average_precision(ranked, good, ok, junk), rtol=0, atol=1e-9,
                     name=f"oxford_ap for {why}")


def expected_map(qf, f, db_names, gt, dtype=np.float64):
    """The Oxford mAP with each query's own image left out of its ranking and of its lists.
    ``dtype=np.float32`` ranks as a float32 pipeline does (near-ties of float32 descriptors
    may swap two images; both orders are right)."""
    if dtype == np.float64:
        order = retrieval.rank_by_inner_product(retrieval.l2_normalize(qf), retrieval.l2_normalize(f))
    else:
        q32, f32 = np.asarray(qf, dtype), np.asarray(f, dtype)
        q32 = q32 / np.maximum(np.linalg.norm(q32, axis=1, keepdims=True), dtype(1e-12))
        f32 = f32 / np.maximum(np.linalg.norm(f32, axis=1, keepdims=True), dtype(1e-12))
        order = np.argsort(-(q32 @ f32.T), axis=1, kind="stable")
    aps = []
    for row, g in zip(order, gt):
        own = g["image"]
        ranked = [db_names[i] for i in row if db_names[i] != own]
        aps.append(retrieval.oxford_average_precision(
            ranked, [x for x in g["good"] if x != own], [x for x in g["ok"] if x != own], list(g["junk"])))
    return float(np.mean(aps)), np.array(aps)


def controlled_queries(rng):
    db_names = names(18)
    f = scaled_rows(rng, 18, 5)
    gt, qf = [], []
    for q, own in enumerate((2, 7, 13)):
        qf.append(f[own] * rng.uniform(0.5, 3.0) + 0.05 * rng.normal(size=5))   # its own image ranks first
        pool = [i for i in rng.permutation(18).tolist() if i != own]
        good = [db_names[own]] + [db_names[i] for i in pool[:3]]
        gt.append({"image": db_names[own], "good": good, "ok": [db_names[pool[3]]],
                   "junk": [db_names[i] for i in pool[4:6]]})
    return np.array(qf), f, db_names, gt


@question("oxford-map")
def test_oxford_map_and_the_reported_numbers(submission, rng, assignment):
    qf, f, db_names, gt = controlled_queries(rng)
    got = submission.call("oxford_map", qf, f, db_names, gt)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise StudentError("oxford_map should return (mAP, aps)")
    want_map, want_aps = expected_map(qf, f, db_names, gt)
    assert_close(expect_array(got[1], "the aps of oxford_map", shape=(3,)), want_aps, rtol=0, atol=1e-9,
                 name="oxford_map's APs of 3 queries whose own images are in the database and in their good lists")
    assert_close(float(expect_array(got[0], "the mAP of oxford_map", shape=())), want_map, rtol=0, atol=1e-9,
                 name="oxford_map's mAP")

    data = read_oxford5k(assignment.data_set("oxford5k").path)
    assert_equal(list(submission.get("DB_NAMES")), list(data.image_names), name="DB_NAMES (the database, sorted)")
    assert_equal(list(submission.get("QUERY_NAMES")), sorted(data.queries), name="QUERY_NAMES (the queries, sorted)")
    truth = [{"image": q.image, "good": q.good, "ok": q.ok, "junk": q.junk}
             for _, q in sorted(data.queries.items())]
    feats, qfeats, reported = submission.get("FEATURES"), submission.get("QUERY_FEATURES"), submission.get("MAP")
    trusted, models = {}, present(feats)
    if not isinstance(reported, dict) or sorted(reported) != sorted(models):
        raise StudentError(f"MAP should have one entry for each model of FEATURES ({', '.join(models)})")
    for m in models:
        try:
            f, qf, said = feats[m], qfeats[m], reported[m]
        except (KeyError, TypeError):
            raise StudentError(f"MAP, FEATURES and QUERY_FEATURES should each have the key {m!r}") from None
        f = expect_array(f, f"FEATURES[{m!r}]", ndim=2)
        qf = expect_array(qf, f"QUERY_FEATURES[{m!r}]", ndim=2)
        assert_equal((f.shape[0], qf.shape[0]), (len(data.image_names), len(truth)),
                     name=f"the rows of FEATURES[{m!r}] and QUERY_FEATURES[{m!r}] (database images, queries)")
        trusted[m] = reported_map_agrees(said, qf, f, list(data.image_names), truth,
                                         f"MAP[{m!r}], recomputed over the {len(truth)} queries from FEATURES[{m!r}]")
    diffs = submission.get("DIFFERENCES")
    due = {key: pair for key, pair in DIFFERENCES.items() if pair[0] in trusted and pair[1] in trusted}
    if not isinstance(diffs, dict) or sorted(diffs) != sorted(due):
        raise StudentError(f"DIFFERENCES should have the keys {', '.join(due)} (the models compared are in MAP)")
    for key, (a, b) in due.items():
        assert_close(float(expect_array(diffs[key], f"DIFFERENCES[{key!r}]", shape=())), trusted[a] - trusted[b],
                     rtol=0, atol=2e-6, name=f"DIFFERENCES[{key!r}] = mAP of {a} - mAP of {b}, recomputed")

    # the course's trained models: their descriptors read here from the trusted copy, rows put in
    # the order of the trusted names, never taken from the notebook
    given, said = read_npy_features(assignment.data_set("features").path), submission.get("GIVEN_MAP")
    if not isinstance(said, dict) or sorted(said) != sorted(given.models):
        raise StudentError(f"GIVEN_MAP should have one entry for each given model ({', '.join(given.models)})")
    db_row = {n: i for i, n in enumerate(given.database_names)}
    query_row = {n: i for i, n in enumerate(given.query_names)}
    for m, feats in given.models.items():
        f = feats.database[[db_row[n] for n in data.image_names]]
        qf = feats.queries[[query_row[n] for n in sorted(data.queries)]]
        reported_map_agrees(said[m], qf, f, list(data.image_names), truth,
                            f"GIVEN_MAP[{m!r}], recomputed from the given descriptors of {m}")


def reported_map_agrees(said, qf, f, db_names, truth, what) -> float:
    """The mAP a notebook reported against the one recomputed here (ranked in float64, or in
    float32 where the notebook's float32 descriptors order near-ties that way); returns it."""
    said = float(expect_array(said, what.split(",")[0], shape=()))
    trusted = expected_map(qf, f, db_names, truth)[0]
    in32 = expected_map(qf, f, db_names, truth, np.float32)[0]
    if abs(said - in32) <= 1e-6:
        trusted = in32
    assert_close(said, trusted, rtol=0, atol=1e-6, name=what)
    return trusted


# ---------------------------------------------------------------------------- Q5-Q6: fine-tuning
def adapted(submission, rng, fractions=None):
    """AlexNet adapted for k classes, a k drawn here; with ``fractions``, also a sample of the
    loaded weights at those positions, read before adapt_alexnet runs (it may work in place)."""
    k = int(rng.integers(5, 40))
    handle, view = pretrained(submission, "alexnet")
    loaded = view.sampled_state_dict(fractions) if fractions is not None else None
    new = submission.new("adapt_alexnet", handle, k)
    return k, loaded, submission.model(new)


@question("finetune-last-layer")
def test_last_layer_for_the_new_classes(submission, rng):
    k, _, view = adapted(submission, rng)
    linears = [(layer.name, layer.hyper.get("in_features"), layer.hyper.get("out_features"))
               for layer in view.structure().of_type("Linear")]
    assert_equal(linears, [("classifier.1", 9216, 4096), ("classifier.4", 4096, FC7), ("classifier.6", FC7, k)],
                 name=f"AlexNet's fully connected layers (name, in, out) after adapt_alexnet(model, {k})")
    out = view.forward(batch(rng, 2, 64))
    assert_equal(out.shape, (2, k), name=f"the output of the adapted AlexNet ({k} classes) for 2 images")


@question("finetune-init")
def test_imagenet_weights_kept_and_the_new_layer_fresh(submission, rng):
    # 20,000 positions drawn here in every weight, not all 61 M weights (they take seconds to
    # cross the bridge): a layer that is not the loaded one differs at almost every position.
    fractions = rng.random(20_000)
    k, loaded, view = adapted(submission, rng, fractions)
    now = view.sampled_state_dict(fractions)
    for name, value in loaded.items():
        if name.startswith("classifier.6."):
            continue
        if name not in now:
            raise StudentError(f"the adapted AlexNet has no parameter `{name}`: keep every layer but the last")
        if now[name].shape != value.shape or not np.array_equal(now[name].values, value.values):
            raise StudentError(f"`{name}` is not the loaded ImageNet weight any more: only the last layer is new")
    w, b = now.get("classifier.6.weight"), now.get("classifier.6.bias")
    if w is None or b is None:
        raise StudentError("the adapted AlexNet's last layer (classifier[6]) should be a Linear layer with a bias")
    old = loaded["classifier.6.weight"]
    if w.shape == old.shape and np.array_equal(w.values, old.values):
        raise StudentError("the last layer still holds the loaded ImageNet weights: it should be a new layer")
    if len(w.shape) != 2:
        raise StudentError(f"the new layer's weight has shape {w.shape}; a Linear layer's is (out, in)")
    fan_in = w.shape[1]
    w, b, bound = w.values, b.values, 1.0 / np.sqrt(fan_in)
    # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the bias alike (checked on the sample)
    assert np.abs(w).max() <= bound * (1 + 1e-5) and np.abs(b).max() <= bound * (1 + 1e-5), (
        f"the new layer's weights reach {np.abs(w).max():.4f}: PyTorch's default initialisation keeps them within "
        f"+-1/sqrt({fan_in}) = {bound:.4f}")
    assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.05 and abs(w.mean()) < 5 * bound / np.sqrt(3 * w.size), (
        f"the new layer's weights have mean {w.mean():.2e} and standard deviation {w.std():.2e}; PyTorch's default "
        f"initialisation gives 0 and {bound / np.sqrt(3):.2e}")


# ---------------------------------------------------------------------------- Q7: the input
def smooth_image(rng, h, w):
    small = Image.fromarray(rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8))
    big = np.asarray(small.resize((w, h), Image.BICUBIC), dtype=np.float64)
    return np.clip(big + rng.normal(scale=4.0, size=big.shape), 0, 255).astype(np.uint8)


def expected_input(image, size):
    x = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.float64) / 255.0
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


@question("input-size")
def test_resize_and_normalise(submission, rng):
    for h, w, size in ((37, 53, None), (90, 64, 48), (60, 150, 96)):
        image = smooth_image(rng, h, w)
        got = submission.call("preprocess", image) if size is None else submission.call("preprocess", image, size=size)
        side = 224 if size is None else size
        what = f"preprocess(a {h}x{w} image{'' if size is None else f', size={size}'})"
        got = expect_array(got, what, shape=(3, side, side))
        err = float(np.mean(np.abs(got - expected_input(image, side))))
        assert err < 0.01, (f"{what} differs from the whole image resized to {side}x{side} and normalised with "
                            f"ImageNet's mean and std by {err:.3f} on average")


# ---------------------------------------------------------------------------- Q8-Q13: GeM
def gem_input(rng, lo=-1.0):
    x = rng.uniform(lo, 2.0, size=(2, 5, 4, 3)).astype(np.float32)
    x[0, 1] = 0.0                                   # a channel of post-ReLU zeros
    x[1, 2] = -np.abs(x[1, 2]) - 0.1                 # a channel of negative activations only
    return x


@question("gem")
def test_generalized_mean_pooling(submission, rng):
    cases = [({}, 3.0, 1e-6), ({"p": 2.5, "eps": 1e-3}, 2.5, 1e-3), ({"p": 1.0}, 1.0, 1e-6), ({"p": 4.0, "eps": 0.05}, 4.0, 0.05)]
    for kwargs, p, eps in cases:
        gem = submission.model(submission.new("GeM", **kwargs))
        x = gem_input(rng)
        shown = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        assert_close(gem.forward(x), retrieval.gem_pool(x, p, eps), rtol=1e-4, atol=1e-6,
                     name=f"GeM({shown}) on a (2, 5, 4, 3) map with zeros and negative activations")
        assert_equal(gem.structure().parameters, 0, name=f"the parameters of GeM({shown}) (p is fixed)")
    x = rng.uniform(0.5, 3.0, size=(3, 4, 5, 5)).astype(np.float32)
    gem = submission.model(submission.new("GeM", p=30.0))
    got = gem.forward(x)
    assert_close(got, retrieval.gem_pool(x, 30.0, 1e-6), rtol=1e-4, atol=1e-6, name="GeM(p=30.0)")
    assert np.all(got <= x.max(axis=(2, 3)) * (1 + 1e-5)), "GeM should never exceed the channel's maximum"


@question("gem-learnable")
def test_learnable_p(submission, rng):
    handle = submission.new("GeM", p=2.0, learnable=True)
    gem = submission.model(handle)
    s = gem.structure()
    assert_equal((s.parameters, s.trainable), (1, 1),
                 name="the parameters of GeM(p=2.0, learnable=True) (all of them, trainable): p, one number")
    state = gem.state_dict()
    assert len(state) == 1, f"GeM(learnable=True) should hold p only; its state has {sorted(state)}"
    (key, value), = state.items()
    assert_close(value.reshape(-1)[0], 2.0, rtol=1e-6, name=f"`{key}`, the learnable p, after GeM(p=2.0, learnable=True)")
    x = rng.uniform(0.1, 2.0, size=(2, 6, 3, 4)).astype(np.float32)   # positive: no clamp involved
    gem.load_state_dict({key: np.full(value.shape, 4.5, dtype=np.float32)})
    after = gem.forward(x)
    fixed = submission.model(submission.new("GeM", p=4.5)).forward(x)
    assert_close(after, fixed, rtol=1e-4, atol=1e-6,
                 name="GeM(learnable=True) with its p set to 4.5, against your GeM(p=4.5)")
    # p learns only if the output's gradient reaches it: d sum(c * GeM(x)) / dp against central
    # differences of the student's own GeM(p = 4.5 -+ h) (its formula is graded by `gem`, not
    # here: a wrong formula with a consistent gradient costs `gem` only); x > eps, no clamp
    c = rng.normal(size=after.shape)
    (grad,) = gem.gradients(x, c).values() or (None,)
    if grad is None:
        raise StudentError("the output of GeM(learnable=True) has no gradient with respect to p: use the "
                           "parameter itself in forward (not a copy of its value), or p never learns")
    h = 0.01
    ends = [np.sum(c * submission.model(submission.new("GeM", p=4.5 + d)).forward(x).astype(np.float64)) for d in (h, -h)]
    assert_close(float(np.asarray(grad).reshape(-1)[0]), (ends[0] - ends[1]) / (2 * h), rtol=2e-3, atol=1e-4,
                 name="d sum(c * GeM(x)) / dp at p = 4.5 (a random c), against central differences of your GeM(p=4.5 -+ 0.01)")


def gem_surgery(submission, rng, build, arch, pool_name, dim, size):
    handle, _ = pretrained(submission, arch)
    view = submission.model(submission.new(build, handle, p=2.0))
    x = batch(rng, 2, size)
    s = view.structure(example=x)
    layer = next((layer for layer in s.layers if layer.name == pool_name), None)
    if layer is None or not layer.type.endswith("GeM"):
        raise StudentError(f"after {build}, `{pool_name}` should be your GeM module, not "
                           f"{'missing' if layer is None else layer.type}")
    out = view.forward(x)
    assert_equal(out.shape, (2, dim), name=f"the descriptor of {build}({arch}) for 2 images of {size}x{size}")
    seen = view.capture(x, [pool_name])[pool_name]
    assert_close(out, np.asarray(seen.output).reshape(2, -1), rtol=1e-5, atol=1e-6,
                 name=f"{build}'s output against what its GeM (`{pool_name}`) returned: nothing after the pooling")
    own = submission.model(submission.new("GeM", p=2.0)).forward(np.asarray(seen.input, dtype=np.float32))
    assert_close(np.asarray(seen.output).reshape(2, -1), own, rtol=1e-4, atol=1e-6,
                 name=f"the GeM of {build}(model, p=2.0), against your GeM(p=2.0) on the same input")
    return s


@question("alexnet-gem")
def test_alexnet_with_gem(submission, rng):
    s = gem_surgery(submission, rng, "alexnet_gem", "alexnet", "features.12", 256, 96)
    ran = [layer.type for layer in s.ordered()]
    assert ran.count("MaxPool2d") == 2, f"{ran.count('MaxPool2d')} max poolings ran: the last one (features[12]) is GeM now"
    assert "Linear" not in ran, "a Linear layer still runs after GeM: the classifier should be gone"


@question("resnet-gem")
def test_resnet18_with_gem(submission, rng):
    s = gem_surgery(submission, rng, "resnet_gem", "resnet18", "avgpool", 512, 64)
    assert "Linear" not in [layer.type for layer in s.ordered()], "ResNet18's fc still runs after GeM"


@question("resnet50")
def test_resnet50_with_gem(submission, rng):
    view = submission.model("model_50")
    x = batch(rng, 1, 64)
    s = view.structure(example=x)
    convs = len(s.of_type("Conv2d"))
    assert_equal(convs, 53, name="the convolutions model_50 runs (ResNet50 has 53, with its 4 projection shortcuts)")
    layer = next((layer for layer in s.layers if layer.name == "avgpool"), None)
    if layer is None or not layer.type.endswith("GeM"):
        raise StudentError("model_50.avgpool should be your GeM module")
    assert_equal(view.forward(x).shape, (1, 2048), name="model_50's descriptor of one image")


# ---------------------------------------------------------------------------- Q16-Q18: whitening
def correlated(rng, n, d):
    mixing = rng.normal(size=(d, d)) * np.geomspace(3.0, 0.1, d)[:, None]
    return rng.normal(size=(n, d)) @ mixing + rng.normal(size=d)


@question("whitening-learn")
def test_whitening_learned_on_the_training_descriptors(submission, rng):
    for n, d, eps in ((60, 6, None), (45, 4, 0.05)):
        x = correlated(rng, n, d)
        got = submission.call("fit_whitening", x) if eps is None else submission.call("fit_whitening", x, eps=eps)
        what = f"fit_whitening(x of shape {x.shape}{'' if eps is None else f', eps={eps}'})"
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise StudentError(f"{what} should return (mean, P)")
        mean, P = expect_array(got[0], f"the mean of {what}", shape=(d,)), expect_array(got[1], f"P of {what}", shape=(d, d))
        ref = retrieval.pca_whitening_fit(x, eps=1e-8 if eps is None else eps, ddof=1)
        assert_close(mean, ref.mean, rtol=1e-8, atol=1e-10, name=f"the mean of {what}")
        signs = np.sign(np.sum(P * ref.projection, axis=1))
        signs[signs == 0] = 1.0
        assert_close(P * signs[:, None], ref.projection, rtol=1e-5, atol=1e-7,
                     name=f"P of {what} (rows compared up to sign, by decreasing eigenvalue)")
    whitening, train = submission.get("WHITENING"), submission.get("TRAIN_FEATURES")
    if not isinstance(whitening, (tuple, list)) or len(whitening) != 2:
        raise StudentError("WHITENING should be the (mean, P) fit_whitening returned")
    train = expect_array(train, "TRAIN_FEATURES", ndim=2)
    assert_equal(train.shape[0], len(submission.get("TRAIN_LABELS")), name="the rows of TRAIN_FEATURES (Landmarks images)")
    assert_close(expect_array(whitening[0], "WHITENING's mean"), train.mean(axis=0), rtol=1e-5, atol=1e-6,
                 name="WHITENING's mean against TRAIN_FEATURES' mean: learn the whitening on the training images, "
                      "never on the test set")


@question("whitening-apply")
def test_whitening_applied_and_renormalised(submission, rng):
    for n, d, dim in ((5, 6, 3), (7, 4, 4)):
        x, mean, P = rng.normal(size=(n, d)) * 3, rng.normal(size=d), rng.normal(size=(dim, d))
        x[2] = mean                                     # whitens to zeros, which stay zeros
        got, changed = submission.call_watching("apply_whitening", x, mean, P)
        want = retrieval.l2_normalize((x - mean) @ P.T)
        assert_close(expect_array(got, "apply_whitening(...)", shape=(n, dim)), want, rtol=1e-8, atol=1e-10,
                     name=f"apply_whitening(x {x.shape}, mean, P {P.shape}), re-normalised (row 2 whitens to zero)")
        assert not changed, f"apply_whitening changed its {', '.join(changed)}: return a new array"


# ---------------------------------------------------------------------------- Q19: the ranking loss
@question("triplet-loss")
def test_triplet_loss_on_unit_descriptors(submission, rng):
    for b, d, margin in ((7, 5, None), (12, 3, 0.5), (4, 8, 0.02)):
        a, p, n = (rng.normal(size=(b, d)) * rng.uniform(0.3, 4.0, size=(b, 1)) for _ in range(3))
        p[: b // 2] = a[: b // 2] * 1.7 + 0.02      # some triplets already satisfied (hinge at 0)
        a, p, n = (v.astype(np.float32) for v in (a, p, n))
        args = (as_torch(a), as_torch(p), as_torch(n))
        got = submission.call("triplet_loss", *args) if margin is None else submission.call("triplet_loss", *args, margin=margin)
        got = expect_array(got, f"triplet_loss(...) for a batch of {b}")
        if got.size != 1:
            raise StudentError(f"triplet_loss(...) has shape {got.shape}; expected one number (the batch mean)")
        m = 0.1 if margin is None else margin
        want = losses.triplet_loss(retrieval.l2_normalize(a), retrieval.l2_normalize(p), retrieval.l2_normalize(n),
                                   margin=m, squared=True)
        assert_close(float(got.reshape(-1)[0]), want, rtol=1e-5, atol=1e-6,
                     name=f"triplet_loss for {b} triplets in {d} dimensions, margin {m}")


def expected_triplets(f, y):
    u = retrieval.l2_normalize(f)
    sim = u @ u.T
    out = []
    for i in range(len(y)):
        same = np.flatnonzero((y == y[i]) & (np.arange(len(y)) != i))
        other = np.flatnonzero(y != y[i])
        if len(same) and len(other):
            out.append((i, same[np.argmin(sim[i, same])], other[np.argmax(sim[i, other])]))
    return np.array(out, dtype=np.int64).reshape(-1, 3)


@question("triplet-choice")
def test_hardest_positive_and_negative(submission, rng):
    y = rng.permutation(np.repeat(np.arange(4), (1, 3, 4, 6)))   # one class has a single image: no anchor
    f = scaled_rows(rng, len(y), 4)
    f[9] = 3.0 * f[4]                                            # equal similarities: the lower index
    f[12] = 0.4 * f[4]
    got = submission.call("choose_triplets", f, y)
    want = expected_triplets(f, y)
    got = expect_array(got, "choose_triplets(features, labels)", shape=want.shape)
    assert_equal(got.astype(np.int64).tolist(), want.tolist(),
                 name="choose_triplets on 14 descriptors of 4 classes (sizes 1, 3, 4, 6; rows 4, 9, 12 point the "
                      "same way): (anchor, least similar positive, most similar negative)")


# ---------------------------------------------------------------------------- Q20-Q22: augmentation
@question("augmentation")
def test_augmentation_keeps_labels_and_size(submission, rng):
    images = [smooth_image(rng, h, w) for h, w in ((50, 70), (64, 64), (90, 40))]
    labels = np.array([2, 0, 5])
    for size in (48, 32):
        seed = int(rng.integers(2**31))
        runs = []
        for s in (seed, seed, seed + 1):
            got = submission.call("augment_batch", images, labels, size=size, seed=s)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise StudentError("augment_batch should return (x, labels)")
            x = expect_array(got[0], f"the images of augment_batch(..., size={size})", shape=(3, 3, size, size))
            assert_equal(np.asarray(got[1]).tolist(), labels.tolist(), name="the labels augment_batch returned")
            runs.append(x)
        assert np.allclose(runs[0], runs[1], atol=1e-6), "augment_batch with the same seed gave two different batches"
        assert not np.allclose(runs[0], runs[2], atol=1e-3), "augment_batch gave the same batch for two seeds: is it random?"
        plain = np.stack([expected_input(im, size) for im in images])
        assert np.mean(np.abs(runs[0] - plain)) > 0.05, "augment_batch returns the images merely resized: no augmentation"
        ratio = float(runs[0].std() / plain.std())
        assert 0.5 < ratio < 2.0, (
            f"augment_batch's images spread {ratio:.2f} times as much as the ImageNet-normalised ones: normalise "
            "them as preprocess does")


# ---------------------------------------------------------------------------- the t-SNE figure
@question("tsne-points")
def test_tsne_figure_shows_every_database_image_by_landmark(submission, assignment):
    """The figure (given code) is what staff read Q3, Q6b, Q10 and Q16 against: each model's
    panel must hold every database image once, those of a landmark (good or ok for one of its
    queries, <landmark>_<n> in Oxford's naming) coloured by it, the others in one grey."""
    data = read_oxford5k(assignment.data_set("oxford5k").path)
    landmark_of = {img: name.rsplit("_", 1)[0] for name, q in data.queries.items() for img in q.good + q.ok}
    landmarks = len(set(landmark_of.values()))
    fig = submission.figure("TSNE_FIGURE")
    for m in present(submission.get("FEATURES")):
        panel = next((p for p in fig.panels if p.title.split(" (")[0] == m), None)
        if panel is None:
            raise StudentError(f"TSNE_FIGURE has no panel titled {m!r} (titles: {', '.join(p.title for p in fig.panels)})")
        coloured = [s for s in panel.scatters if s.values is not None]
        grey = [s for s in panel.scatters if s.values is None]
        assert_equal(panel.points(), len(data.image_names),
                     name=f"the points of the t-SNE panel of {m}: one for each database image")
        assert_equal(sum(len(s) for s in coloured), len(landmark_of),
                     name=f"the points of the t-SNE panel of {m} coloured by landmark (database images good or ok for a query)")
        shown = np.unique(np.concatenate([s.values for s in coloured])) if coloured else []
        assert_equal(len(shown), landmarks, name=f"the landmarks told apart by colour in the t-SNE panel of {m}")
        assert_equal(sum(s.classes() for s in grey), 1 if len(landmark_of) < len(data.image_names) else 0,
                     name=f"the colours of the unlabelled images in the t-SNE panel of {m} (one grey)")
