"""reference.layers against torch.nn layers (train and eval), autograd-free identities."""

import numpy as np
import pytest
import torch

from reference import layers as Ly


def _bn_torch(cls, c, momentum):
    m = cls(c, momentum=momentum, eps=1e-5).double()
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-1, 1)
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
    return m


@pytest.mark.parametrize("shape,cls", [((16, 5), torch.nn.BatchNorm1d), ((4, 3, 5, 6), torch.nn.BatchNorm2d)])
def test_batch_norm_train_and_eval_match_torch(rng, shape, cls):
    torch.manual_seed(0)
    c = shape[1]
    m = _bn_torch(cls, c, momentum=0.1)
    g, b = m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()
    rm, rv = m.running_mean.numpy().copy(), m.running_var.numpy().copy()
    x = rng.standard_normal(shape) * 2 + 1
    m.train()
    ref = m(torch.tensor(x)).detach().numpy()
    y, rm2, rv2 = Ly.batch_norm(x, g, b, rm, rv, training=True, momentum=0.1)
    assert np.allclose(y, ref, atol=1e-12)
    assert np.allclose(rm2, m.running_mean.numpy()) and np.allclose(rv2, m.running_var.numpy())
    # the lecture's rho convention: rho = 1 - momentum
    _, rm3, rv3 = Ly.batch_norm(x, g, b, rm, rv, training=True, rho=0.9)
    assert np.allclose(rm3, rm2) and np.allclose(rv3, rv2)
    m.eval()
    x2 = rng.standard_normal(shape)
    ref2 = m(torch.tensor(x2)).detach().numpy()
    y2, rm4, rv4 = Ly.batch_norm(x2, g, b, rm2, rv2, training=False)
    assert np.allclose(y2, ref2, atol=1e-12)
    assert np.array_equal(rm4, rm2) and np.array_equal(rv4, rv2)


def test_batch_norm_running_var_is_unbiased_and_lecture_formula():
    x = np.array([[1.0], [2.0], [6.0]])
    _, rm, rv = Ly.batch_norm(x, [1.0], [0.0], [0.0], [1.0], training=True, rho=0.8)
    # mu = 3, unbiased var = (4 + 1 + 9) / 2 = 7
    assert np.isclose(rm[0], 0.8 * 0 + 0.2 * 3)
    assert np.isclose(rv[0], 0.8 * 1 + 0.2 * 7)


def test_batch_norm_train_output_normalised(rng):
    x = rng.standard_normal((50, 4)) * 3 + 2
    y, _, _ = Ly.batch_norm(x, np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), True, eps=0.0)
    assert np.allclose(y.mean(0), 0) and np.allclose(y.var(0), 1)


def test_layer_instance_group_norm_match_torch(rng):
    x = rng.standard_normal((3, 6, 4, 5))
    g = rng.uniform(0.5, 1.5, 6)
    b = rng.uniform(-1, 1, 6)
    xt = torch.tensor(x)
    ref = torch.nn.functional.group_norm(xt, 3, torch.tensor(g), torch.tensor(b)).numpy()
    assert np.allclose(Ly.group_norm(x, 3, g, b), ref, atol=1e-12)
    ref = torch.nn.functional.instance_norm(xt, weight=torch.tensor(g), bias=torch.tensor(b)).numpy()
    assert np.allclose(Ly.instance_norm(x, g, b), ref, atol=1e-12)
    gl = rng.uniform(0.5, 1.5, (6, 4, 5))
    bl = rng.uniform(-1, 1, (6, 4, 5))
    ref = torch.nn.functional.layer_norm(xt, (6, 4, 5), torch.tensor(gl), torch.tensor(bl)).numpy()
    assert np.allclose(Ly.layer_norm(x, gl, bl), ref, atol=1e-12)
    ref = torch.nn.functional.layer_norm(xt, (5,)).numpy()
    assert np.allclose(Ly.layer_norm(x, num_axes=1), ref, atol=1e-12)
    # G = 1 is layer norm over (C, H, W)
    assert np.allclose(Ly.group_norm(x, 1), Ly.layer_norm(x), atol=1e-12)


def test_dropout_inverted_matches_torch(rng):
    torch.manual_seed(3)
    x = rng.standard_normal((20, 30))
    drop = torch.nn.Dropout(p=0.3)
    drop.train()
    ref = drop(torch.tensor(x)).numpy()
    mask = ref != 0
    y, u = Ly.dropout(x, keep_prob=0.7, training=True, mask=mask, inverted=True)
    assert np.allclose(y, ref)
    drop.eval()
    y_eval, u_eval = Ly.dropout(x, 0.7, training=False, inverted=True)
    assert np.allclose(y_eval, drop(torch.tensor(x)).numpy()) and u_eval is None


def test_dropout_vanilla_lecture_convention(rng):
    x = rng.standard_normal((4, 5))
    y, u = Ly.dropout(x, 0.5, training=True, rng=np.random.default_rng(0), inverted=False)
    # the lecture's mask: U = rand(shape) < p
    u_ref = np.random.default_rng(0).random(x.shape) < 0.5
    assert np.array_equal(u, u_ref) and np.allclose(y, x * u_ref)
    y_test, _ = Ly.dropout(x, 0.5, training=False, inverted=False)
    assert np.allclose(y_test, 0.5 * x)  # scale at test time


def test_dropout_expectation_equals_test_output():
    x = np.full((200, 500), 2.0)
    r = np.random.default_rng(1)
    for inverted in (False, True):
        ytr, _ = Ly.dropout(x, 0.8, True, rng=r, inverted=inverted)
        yte, _ = Ly.dropout(x, 0.8, False, inverted=inverted)
        assert abs(ytr.mean() - yte.mean()) < 0.01


def test_dropout_needs_explicit_randomness():
    with pytest.raises(ValueError):
        Ly.dropout(np.ones(3), 0.5, training=True)


def test_fold_batch_norm_matches_conv_then_bn(rng):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3).double()
    bn = _bn_torch(torch.nn.BatchNorm2d, 4, 0.1).eval()
    x = torch.tensor(rng.standard_normal((2, 3, 6, 6)))
    ref = bn(conv(x)).detach().numpy()
    w, b = Ly.fold_batch_norm(conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
    out = torch.nn.functional.conv2d(x, torch.tensor(w), torch.tensor(b)).numpy()
    assert np.allclose(out, ref, atol=1e-12)
