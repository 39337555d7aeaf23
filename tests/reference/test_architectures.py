"""reference.architectures against torch / torchvision modules, hand-derived
counts (arithmetic written out) and the papers' published numbers."""

import numpy as np
import pytest
import torch
import torchvision

from reference import architectures as A


def nparams(m, trainable_only=False):
    return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable_only)


@pytest.mark.parametrize("i,k,s,p,d", [(224, 11, 4, 2, 1), (112, 3, 1, 1, 1), (31, 5, 2, 0, 1),
                                       (64, 3, 2, 1, 2), (13, 3, 2, 0, 1), (227, 11, 4, 0, 1)])
def test_conv_output_size_matches_torch(i, k, s, p, d):
    conv = torch.nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    out = conv(torch.zeros(1, 1, i, i)).shape[-1]
    assert A.conv_output_size(i, k, s, p, d) == out
    assert A.conv_output_size((i, i + 3), k, s, p, d) == tuple(conv(torch.zeros(1, 1, i, i + 3)).shape[-2:])


@pytest.mark.parametrize("i,k,s,p,ceil", [(55, 3, 2, 0, False), (56, 3, 2, 1, True), (7, 2, 2, 0, True),
                                          (10, 3, 3, 1, True)])
def test_pool_output_size_matches_torch(i, k, s, p, ceil):
    pool = torch.nn.MaxPool2d(k, s, p, ceil_mode=ceil)
    assert A.pool_output_size(i, k, s, p, ceil) == pool(torch.zeros(1, 1, i, i)).shape[-1]


@pytest.mark.parametrize("cin,cout,k,g,bias", [(3, 96, 11, 1, True), (96, 256, 5, 2, True), (32, 64, 3, 1, False),
                                                (64, 64, (3, 5), 64, True), (8, 16, 1, 4, False)])
def test_conv_param_count_matches_torch(cin, cout, k, g, bias):
    assert A.conv_param_count(cin, cout, k, g, bias) == nparams(torch.nn.Conv2d(cin, cout, k, groups=g, bias=bias))
    assert A.linear_param_count(cin, cout, bias) == nparams(torch.nn.Linear(cin, cout, bias=bias))


def test_same_padding():
    assert A.same_padding(3) == (2, 1, 1)
    assert A.same_padding(4) == (3, 1, 2)
    conv = torch.nn.Conv2d(1, 1, 4, padding="same")
    assert conv(torch.zeros(1, 1, 9, 9)).shape[-1] == 9


def test_cv1_conv_layer_questions_hand_derived():
    ans = A.conv_layer_questions()
    assert ans["input_l_minus_1"] is None
    assert ans["input_l"] == (112, 112, 32)
    assert ans["padding_l"] == 1  # (112 - 3 + 2P)/1 + 1 = 112  =>  P = 1
    assert ans["output_l_without_padding"] == (110, 110)  # 112 - 3 + 1
    assert ans["bias_changes_spatial_size"] is False
    assert ans["params_l"] == 3 * 3 * 32 * 64 + 64 == 18_496
    conv = torch.nn.Conv2d(32, 64, 3, padding=1)
    assert nparams(conv) == 18_496 and conv(torch.zeros(1, 32, 112, 112)).shape[1:] == (64, 112, 112)


def test_receptive_field_hand_and_torch():
    assert A.stacked_receptive_field(3, 5) == 3 * 5 - 3 + 1 == 13
    assert A.stacked_receptive_field(2, 3) == 5 and A.stacked_receptive_field(3, 3) == 7
    assert A.equivalent_kernel_size(3, 5) == (13, 13)
    # gradient footprint of one output pixel through three 5x5 convs = 13x13
    net = torch.nn.Sequential(*[torch.nn.Conv2d(1, 1, 5, bias=False) for _ in range(3)])
    for m in net:
        torch.nn.init.constant_(m.weight, 1.0)
    x = torch.zeros(1, 1, 25, 25, requires_grad=True)
    y = net(x)
    y[0, 0, y.shape[-1] // 2, y.shape[-1] // 2].backward()
    nz = torch.nonzero(x.grad[0, 0])
    assert (nz[:, 0].max() - nz[:, 0].min() + 1).item() == 13
    # general formula with strides: AlexNet conv1..pool1 = 11 + (3-1)*4 = 19
    assert A.receptive_field([11, 3], [4, 2]) == 19
    assert A.receptive_field([3, 3], dilations=[1, 2]) == 1 + 2 + 4


def test_alexnet_paper_counts_hand_derived():
    rows = {r["layer"]: r for r in A.alexnet_layer_table(grouped=True)}
    assert rows["conv1"]["params"] == 11 * 11 * 3 * 96 + 96 == 34_944
    assert rows["conv2"]["params"] == 5 * 5 * 48 * 256 + 256 == 307_456
    assert rows["conv3"]["params"] == 3 * 3 * 256 * 384 + 384 == 885_120
    assert rows["conv4"]["params"] == 3 * 3 * 192 * 384 + 384 == 663_936
    assert rows["conv5"]["params"] == 3 * 3 * 192 * 256 + 256 == 442_624
    assert rows["fc6"]["params"] == 6 * 6 * 256 * 4096 + 4096 == 37_752_832
    assert rows["fc7"]["params"] == 4096 * 4096 + 4096 == 16_781_312
    assert rows["fc8"]["params"] == 4096 * 1000 + 1000 == 4_097_000
    assert rows["conv1"]["output_shape"] == (55, 55, 96)  # Fig. 2
    assert rows["pool5"]["output_shape"] == (6, 6, 256)
    assert A.alexnet_param_count(grouped=True) == 60_965_224  # "60 million parameters" (Sec. 4)
    assert A.alexnet_param_count(grouped=False) == 62_378_344
    assert abs(A.alexnet_param_count() - 60e6) / 60e6 < 0.02


@pytest.mark.parametrize("grouped", [True, False])
def test_alexnet_paper_model_matches_table(grouped):
    with torch.device("meta"):
        m = A.alexnet_paper_model(grouped)
    assert nparams(m) == A.alexnet_param_count(grouped)
    assert tuple(m(torch.zeros(1, 3, 227, 227, device="meta")).shape) == (1, 1000)


def test_generic_counts_reproduce_torchvision_alexnet():
    # torchvision's AlexNet is the "one weird trick" variant (64-192-384-256-256), not the paper's
    with torch.device("meta"):
        tv = torchvision.models.alexnet(weights=None)
    total = (A.conv_param_count(3, 64, 11) + A.conv_param_count(64, 192, 5) + A.conv_param_count(192, 384, 3)
             + A.conv_param_count(384, 256, 3) + A.conv_param_count(256, 256, 3)
             + A.linear_param_count(9216, 4096) + A.linear_param_count(4096, 4096) + A.linear_param_count(4096, 1000))
    assert total == nparams(tv) == 61_100_840


@pytest.fixture(scope="module")
def vgg19_meta():
    with torch.device("meta"):
        return torchvision.models.vgg19(weights=None)


def test_vgg19_table_against_homework_and_torchvision(vgg19_meta):
    rows = A.vgg19_table()
    convs = [r for r in rows if r["layer"].startswith("CONV")]
    assert rows[0]["activations"] == 224 * 224 * 3 == 150_528
    assert convs[0]["params"] == (3 * 3 * 3) * 64 == 1_728
    assert convs[1]["params"] == (3 * 3 * 64) * 64 == 36_864
    assert convs[1]["activations"] == 224 * 224 * 64
    assert convs[5]["params"] == (3 * 3 * 256) * 256 == 589_824
    assert convs[8]["params"] == (3 * 3 * 256) * 512 == 1_179_648
    assert convs[8]["activations"] == 28 * 28 * 512
    fcs = [r for r in rows if r["layer"] == "FC"]
    assert [f["params"] for f in fcs] == [7 * 7 * 512 * 4096, 4096 * 4096, 4096 * 1000]
    assert fcs[1]["params"] == 16_777_216
    weights_only = sum(p.numel() for n, p in vgg19_meta.named_parameters() if n.endswith("weight"))
    assert A.vgg19_totals()["params"] == weights_only == 143_652_544
    assert A.vgg19_totals(include_bias=True)["params"] == nparams(vgg19_meta) == 143_667_240
    # activations of every layer from a meta forward pass
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(o.shape[1:].numel()))
             for m in vgg19_meta.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.Linear))]
    vgg19_meta(torch.zeros(1, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    assert [r["activations"] for r in rows[1:]] == shapes


def _inception_torch(spec, cin):
    branches = []
    for br in spec:
        mods, c = [], cin
        for op in br:
            if op[0] == "conv":
                mods.append(torch.nn.Conv2d(c, op[2], op[1], padding=op[1] // 2))
                c = op[2]
            else:
                mods.append(torch.nn.MaxPool2d(op[1], 1, op[1] // 2))
        branches.append(torch.nn.Sequential(*mods))
    return torch.nn.ModuleList(branches)


def _macs_by_hooks(mod, x):
    macs = []
    hooks = [m.register_forward_hook(
        lambda m, i, o: macs.append(o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]))
        for m in mod.modules() if isinstance(m, torch.nn.Conv2d)]
    outs = [b(x) for b in mod]
    for h in hooks:
        h.remove()
    return sum(macs), torch.cat(outs, 1).shape


def test_inception_naive_hand_and_torch():
    res = A.inception_naive()
    assert res["output_shape"] == (32, 32, 128 + 192 + 96 + 256) == (32, 32, 672)
    assert [o for o in res["branch_outputs"]] == [(32, 32, 128), (32, 32, 192), (32, 32, 96), (32, 32, 256)]
    macs = [r["multiply_adds"] for r in res["layers"]]
    assert macs == [32 * 32 * 128 * 1 * 1 * 256, 32 * 32 * 192 * 3 * 3 * 256, 32 * 32 * 96 * 5 * 5 * 256, 0]
    assert res["multiply_adds"] == 1_115_684_864
    spec = [[("conv", 1, 128)], [("conv", 3, 192)], [("conv", 5, 96)], [("pool", 3)]]
    with torch.device("meta"):
        mod = _inception_torch(spec, 256)
    m, shape = _macs_by_hooks(mod, torch.zeros(1, 256, 32, 32, device="meta"))
    assert m == res["multiply_adds"] and tuple(shape) == (1, 672, 32, 32)
    assert res["params"] == nparams(mod)


def test_inception_reduction_hand_and_torch():
    res = A.inception_dimension_reduction()
    assert res["output_shape"] == (32, 32, 128 + 192 + 96 + 64) == (32, 32, 480)
    expected = (32 * 32 * 128 * 256                               # 1x1 128
                + 32 * 32 * 128 * 256 + 32 * 32 * 192 * 9 * 128   # 1x1 reduce 128, 3x3 192
                + 32 * 32 * 32 * 256 + 32 * 32 * 96 * 25 * 32     # 1x1 reduce 32, 5x5 96
                + 32 * 32 * 64 * 256)                             # pool, 1x1 64
    assert res["multiply_adds"] == expected == 397_410_304
    assert A.inception_naive()["multiply_adds"] / expected == pytest.approx(2.807, abs=1e-3)
    spec = [[("conv", 1, 128)], [("conv", 1, 128), ("conv", 3, 192)], [("conv", 1, 32), ("conv", 5, 96)],
            [("pool", 3), ("conv", 1, 64)]]
    with torch.device("meta"):
        mod = _inception_torch(spec, 256)
    m, shape = _macs_by_hooks(mod, torch.zeros(1, 256, 32, 32, device="meta"))
    assert m == expected and tuple(shape) == (1, 480, 32, 32)
    assert res["params"] == nparams(mod)


@pytest.mark.parametrize("padding,code5", [("same", 7 * 7 * 256), ("valid", 2 * 2 * 256)])
def test_babenko_convnet_table_matches_module(padding, code5):
    rows = {r["layer"]: r for r in A.babenko_layer_table(padding=padding)}
    assert rows["layer1"]["kernel"] == (4, 4) and rows["layer1"]["stride"] == 1
    assert rows["layer1"]["params"] == 4 * 4 * 3 * 96 + 96
    assert rows["layer6"]["output_shape"] == (2048,) and rows["layer7"]["output_shape"] == (2048,)
    assert rows["layer6"]["input_shape"] == (code5,)
    model = A.babenko_convnet(padding=padding)
    assert nparams(model) == sum(r["params"] for r in rows.values())
    model.eval()
    x = torch.zeros(2, 3, 64, 64)
    feats = {}
    for name in ("layer5", "layer6", "layer7", "layer8"):
        model.get_submodule(name).register_forward_hook(lambda m, i, o, n=name: feats.__setitem__(n, o.shape))
    model(x)
    assert feats["layer5"] == (2, code5) and feats["layer6"] == (2, 2048) and feats["layer8"] == (2, 190)
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.5, 0.5]
    pools = [(m.kernel_size, m.stride) for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert pools == [(3, 2)] * 3


@pytest.mark.parametrize("padding,code5", [("same", 7 * 7 * 256), ("valid", 2 * 2 * 256)])
def test_babenko_convnet_counted_by_hand(padding, code5):
    """Babenko et al.'s widths (Fig. 1: 96, 192, 288, 288, 256 filters), counted by hand,
    against the table and torch's own count of the module."""
    by_hand = ((4 * 4 * 3 + 1) * 96 + (5 * 5 * 96 + 1) * 192 + (3 * 3 * 192 + 1) * 288
               + (3 * 3 * 288 + 1) * 288 + (3 * 3 * 288 + 1) * 256
               + (code5 + 1) * 2048 + (2048 + 1) * 2048 + (2048 + 1) * 190)
    assert sum(r["params"] for r in A.babenko_layer_table(padding=padding)) == by_hand
    assert nparams(A.babenko_convnet(padding=padding)) == by_hand
    convs = [m for m in A.babenko_convnet(padding=padding).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 192, 288, 288, 256]


@pytest.fixture(scope="module")
def resnet_models():
    return {mode: A.resnet50_transfer_model(10, mode) for mode in ("finetune", "feature_extractor")}


def test_resnet50_counts_against_torchvision(resnet_models):
    with torch.device("meta"):
        assert nparams(torchvision.models.resnet50(weights=None)) == A.RESNET50_NUM_PARAMS == 25_557_032
    ft, fx = resnet_models["finetune"], resnet_models["feature_extractor"]
    c = A.resnet50_parameter_counts(10, "finetune")
    assert c["total"] == 25_557_032 - (2048 * 1000 + 1000) + (2048 * 10 + 10) == nparams(ft)
    assert c["trainable"] == nparams(ft, trainable_only=True)
    e = A.resnet50_parameter_counts(10, "feature_extractor")
    assert e["trainable"] == 2048 * 10 + 10 == nparams(fx, trainable_only=True)
    assert e["frozen"] == nparams(fx) - nparams(fx, trainable_only=True)
    assert [n for n, p in fx.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]


def test_multistep_lr_matches_torch_scheduler():
    milestones = A.evenly_spaced_milestones(60)
    assert milestones == [15, 30, 45]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.001, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
    lrs = []
    for _ in range(60):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = A.multistep_lr_schedule(0.001, milestones, 0.1, 60)
    assert np.allclose(ours, lrs, rtol=1e-12)
    assert sorted(set(np.round(ours, 12))) == [1e-6, 1e-5, 1e-4, 1e-3]  # three drops


@pytest.mark.parametrize("include_bias", [True, False])
def test_layer_tables_account_for_biases_consistently(include_bias):
    """Every row: weights + biases == params, and no biases at all when they are excluded."""
    tables = {
        "alexnet": A.alexnet_layer_table(include_bias=include_bias),
        "vgg19": A.vgg19_table(include_bias=include_bias),
        "babenko": A.babenko_layer_table(include_bias=include_bias),
    }
    for name, rows in tables.items():
        for r in rows:
            assert r["weights"] + r["biases"] == r["params"], (name, r["layer"])
            if not include_bias:
                assert r["biases"] == 0, (name, r["layer"])
        if include_bias:
            assert any(r["biases"] > 0 for r in rows), name
