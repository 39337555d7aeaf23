"""reference.losses against torch.nn.functional, autograd, finite differences,
scipy and the worked examples of the seeds; hypothesis for the identities."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import rel_entr

from reference import losses as L


def test_import_does_not_import_torch():
    code = "import sys, reference.losses, reference.retrieval, reference.knn; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_softmax_lecture_worked_example():
    # Lecture 6: cat 3.2, car 5.1, frog -1.7 -> exp 24.5, 164.0, 0.18 -> 0.13, 0.87, 0.00
    p = L.softmax([3.2, 5.1, -1.7])
    assert np.allclose(np.round(p, 2), [0.13, 0.87, 0.00])
    assert np.allclose(np.exp([3.2, 5.1, -1.7]), [24.5, 164.0, 0.18], atol=0.05)
    assert p.dtype == np.float64 and abs(p.sum() - 1) < 1e-15


def test_softmax_matches_torch_with_temperature(rng):
    z = rng.standard_normal((7, 5)) * 10
    for beta in (0.3, 1.0, 4.0):
        ref = torch.softmax(torch.tensor(z) * beta, dim=-1).numpy()
        assert np.allclose(L.softmax(z, beta=beta), ref, atol=1e-14)
    assert np.allclose(L.log_softmax(z), F.log_softmax(torch.tensor(z), -1).numpy(), atol=1e-12)


def test_softmax_limits():
    z = np.array([1.0, 3.0, 2.0])
    assert np.allclose(L.softmax(z, beta=1e4), [0, 1, 0])  # beta -> inf: argmax
    for x in (-3.0, 0.0, 2.5):  # K = 2: sigmoid
        assert np.isclose(L.softmax([x, 0.0])[0], 1 / (1 + np.exp(-x)))
    assert np.all(np.isfinite(L.softmax([1000.0, -1000.0, 0.0])))


def test_softmax_cross_entropy_matches_torch(rng):
    z = rng.standard_normal((9, 6))
    y = rng.integers(0, 6, 9)
    ref = F.cross_entropy(torch.tensor(z), torch.tensor(y)).item()
    assert np.isclose(L.softmax_cross_entropy(z, y), ref, rtol=1e-12)
    ref_sum = F.cross_entropy(torch.tensor(z), torch.tensor(y), reduction="sum").item()
    assert np.isclose(L.softmax_cross_entropy(z, y, reduction="sum"), ref_sum, rtol=1e-12)
    q = L.softmax(rng.standard_normal((9, 6)))
    ref_soft = F.cross_entropy(torch.tensor(z), torch.tensor(q)).item()
    assert np.isclose(L.softmax_cross_entropy(z, q), ref_soft, rtol=1e-12)
    # cross_entropy on probabilities == softmax_cross_entropy on logits
    assert np.isclose(L.cross_entropy(L.one_hot(y, 6), L.softmax(z)), ref, rtol=1e-12)


def test_nll_is_cross_entropy_with_one_hot_and_matches_torch(rng):
    p = L.softmax(rng.standard_normal((5, 4)))
    y = np.array([0, 3, 1, 1, 2])
    nll = L.negative_log_likelihood(p, y)
    assert np.isclose(nll, F.nll_loss(torch.log(torch.tensor(p)), torch.tensor(y)).item())
    assert np.isclose(nll, L.cross_entropy(L.one_hot(y, 4), p))
    assert np.isclose(L.negative_log_likelihood(p[0], 0), -np.log(p[0, 0]))


def test_cross_entropy_grad_matches_autograd(rng):
    z = rng.standard_normal((4, 7))
    y = rng.integers(0, 7, 4)
    for beta in (1.0, 2.5):
        zt = torch.tensor(z, requires_grad=True)
        F.cross_entropy(zt * beta, torch.tensor(y), reduction="sum").backward()
        assert np.allclose(L.cross_entropy_grad(z, y, beta=beta), zt.grad.numpy(), atol=1e-12)
    # p - q for beta = 1
    assert np.allclose(L.cross_entropy_grad(z, y), L.softmax(z) - L.one_hot(y, 7))


def test_cross_entropy_grad_matches_finite_differences(rng):
    z = rng.standard_normal(5)
    q = L.softmax(rng.standard_normal(5))
    g = L.cross_entropy_grad(z, q)
    h = 1e-6
    num = np.array([(L.softmax_cross_entropy(z + h * e, q) - L.softmax_cross_entropy(z - h * e, q)) / (2 * h)
                    for e in np.eye(5)])
    assert np.allclose(g, num, atol=1e-8)


def test_gradient_bounds_statement():
    b = L.cross_entropy_grad_bounds()
    assert (b["min"], b["max"], b["attained"]) == (-1.0, 1.0, False)
    assert b["true_class"] == (-1.0, 0.0) and b["other_classes"] == (0.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(2, 8), elements=st.floats(-30, 30)), st.data())
def test_property_gradient_bounds(z, data):
    h = data.draw(st.integers(0, z.size - 1))
    g = L.cross_entropy_grad(z, h)
    assert np.all(g >= -1) and np.all(g <= 1)
    assert g[h] <= 0 and np.all(np.delete(g, h) >= 0)
    assert abs(g.sum()) < 1e-9  # sum_i (p_i - q_i) = 0


def test_label_smoothing_targets_match_torch(rng):
    z = rng.standard_normal((6, 5))
    y = rng.integers(0, 5, 6)
    eps = 0.1
    qs = L.label_smoothing_targets(y, 5, eps)
    assert np.allclose(qs.sum(1), 1)
    assert np.allclose(qs[np.arange(6), y], 1 - eps + eps / 5)
    ref = F.cross_entropy(torch.tensor(z), torch.tensor(y), label_smoothing=eps).item()
    assert np.isclose(L.softmax_cross_entropy(z, qs), ref, rtol=1e-12)
    assert np.isclose(L.label_smoothed_cross_entropy(L.softmax(z), y, eps), ref, rtol=1e-12)


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 10), st.floats(0.0, 1.0), st.data())
def test_property_label_smoothing_decomposition(m, eps, data):
    z = data.draw(arrays(np.float64, m, elements=st.floats(-20, 20)))
    h = data.draw(st.integers(0, m - 1))
    p = L.softmax(z)
    total, dterm, pterm = L.label_smoothing_decomposition(p, [h], eps)
    direct = L.cross_entropy(L.label_smoothing_targets([h], m, eps)[0], p)
    assert np.isclose(total, direct, rtol=1e-10, atol=1e-10)
    lq = L.cross_entropy(L.one_hot([h], m)[0], p)
    lu = L.cross_entropy(np.full(m, 1 / m), p)
    assert np.isclose(total, (1 - eps) * lq + eps * lu, rtol=1e-10, atol=1e-10)
    assert np.isclose(total, dterm + pterm, rtol=1e-10, atol=1e-10)


def test_multiclass_svm_loss_against_torch_and_hand_example(rng):
    # CS231n-style hand example: scores cat 3.2 car 5.1 frog -1.7, true cat:
    # max(0, 5.1-3.2+1) + max(0, -1.7-3.2+1) = 2.9 + 0
    assert np.isclose(L.multiclass_svm_loss(np.array([3.2, 5.1, -1.7]), [0]), 2.9)
    s = rng.standard_normal((8, 5))
    y = rng.integers(0, 5, 8)
    ref = F.multi_margin_loss(torch.tensor(s), torch.tensor(y), margin=1.0, reduction="none").numpy()
    assert np.allclose(L.multiclass_svm_loss(s, y, reduction="none"), ref * 5)  # torch divides by K


def test_multiclass_svm_grad_matches_autograd(rng):
    s = rng.standard_normal((6, 4)) * 2
    y = rng.integers(0, 4, 6)
    st_ = torch.tensor(s, requires_grad=True)
    (F.multi_margin_loss(st_, torch.tensor(y), reduction="sum") * 4).backward()
    assert np.allclose(L.multiclass_svm_loss_grad(s, y), st_.grad.numpy())


def test_kl_divergence_against_scipy_and_torch(rng):
    p = L.softmax(rng.standard_normal(6))
    q = L.softmax(rng.standard_normal(6))
    kl = L.kl_divergence(p, q)
    assert np.isclose(kl, rel_entr(p, q).sum())
    assert np.isclose(kl, F.kl_div(torch.log(torch.tensor(q)), torch.tensor(p), reduction="sum").item())
    assert kl > 0 and L.kl_divergence(p, p) == 0
    assert not np.isclose(kl, L.kl_divergence(q, p))  # not symmetric
    # D_KL = H(P, Q) - H(P)
    assert np.isclose(kl, L.cross_entropy(p, q) - L.entropy(p))
    assert L.kl_divergence([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]) == pytest.approx(np.log(2))
    assert L.kl_divergence([0.5, 0.5], [1.0, 0.0]) == np.inf


def test_penalties_and_their_gradients(rng):
    w = rng.standard_normal((3, 4))
    assert np.isclose(L.l1_penalty(w), np.abs(w).sum())
    assert np.isclose(L.l2_penalty([w, w]), 2 * (w ** 2).sum())
    assert np.isclose(L.elastic_net_penalty(w, 0.3), 0.3 * (w ** 2).sum() + np.abs(w).sum())
    wt = torch.tensor(w, requires_grad=True)
    (0.3 * (wt ** 2).sum() + wt.abs().sum()).backward()
    assert np.allclose(L.elastic_net_penalty_grad(w, 0.3), wt.grad.numpy())
    h = 1e-6
    e = np.zeros_like(w)
    e[1, 2] = 1
    num = (L.l2_penalty(w + h * e) - L.l2_penalty(w - h * e)) / (2 * h)
    assert np.isclose(L.l2_penalty_grad(w)[1, 2], num, atol=1e-6)
    assert L.regularized_loss(1.5, 2.0, 0.1) == pytest.approx(1.7)


def test_triplet_loss_against_torch_and_formula(rng):
    a, p, n = (rng.standard_normal((10, 8)) for _ in range(3))
    ref = F.triplet_margin_loss(torch.tensor(a), torch.tensor(p), torch.tensor(n), margin=0.7).item()
    assert np.isclose(L.triplet_loss(a, p, n, margin=0.7, squared=False, eps=1e-6), ref, rtol=1e-10)
    # FaceNet squared form, one triplet written out
    a1, p1, n1 = np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.5])
    assert np.isclose(L.triplet_loss(a1, p1, n1, margin=0.5), max(0, 1 - 2.25 + 0.5))
    assert np.isclose(L.triplet_loss(a1, p1, n1, margin=2.0), 1 - 2.25 + 2.0)


def test_contrastive_loss_hadsell(rng):
    x1, x2 = rng.standard_normal((2, 12, 3))
    y = rng.integers(0, 2, 12)
    d = np.linalg.norm(x1 - x2, axis=1)
    expected = np.mean(0.5 * (1 - y) * d ** 2 + 0.5 * y * np.maximum(0, 2.0 - d) ** 2)
    assert np.isclose(L.contrastive_loss(x1, x2, y, margin=2.0), expected)
    assert np.isclose(L.contrastive_loss(d, None, y, margin=2.0), expected)
    # similar pair (y=0) at distance 3: 0.5*9 ; dissimilar (y=1) beyond the margin: 0
    assert L.contrastive_loss(3.0, None, 0) == pytest.approx(4.5)
    assert L.contrastive_loss(3.0, None, 1, margin=2.0) == 0.0
    assert L.contrastive_loss(0.5, None, 1, margin=2.0, half=False) == pytest.approx(2.25)


def test_mining_contrastive_loss_hand_example():
    # 1-D embeddings: class 0 at 0 and 3, class 1 at 1 and 10
    e = np.array([[0.0], [3.0], [1.0], [10.0]])
    y = np.array([0, 0, 1, 1])
    loss, hp, hn = L.mining_contrastive_loss(e, y, margin=2.0, return_pairs=True)
    # anchor 0: positives {1:3}, negatives {2:1, 3:10}: min neg 1 -> (0,1) hard positive; max pos 3 -> (0,2) hard negative
    # anchor 1: positive {0:3}, negatives {2:2, 3:7}: min neg 2 -> (1,0) hard; max pos 3 -> (1,2) hard
    # anchor 2: positive {3:9}, negatives {0:1, 1:2}: min neg 1 -> (2,3) hard; max pos 9 -> (2,0), (2,1) hard
    # anchor 3: positive {2:9}, negatives {0:10, 1:7}: min neg 7 -> (3,2) hard; max pos 9 -> (3,1) hard
    assert {tuple(p) for p in hp} == {(0, 1), (1, 0), (2, 3), (3, 2)}
    assert {tuple(p) for p in hn} == {(0, 2), (1, 2), (2, 0), (2, 1), (3, 1)}
    pos_term = (9 + 9 + 81 + 81) / 4
    neg_term = ((2 - 1) ** 2 + 0 + (2 - 1) ** 2 + 0 + 0) / 5
    assert np.isclose(loss, pos_term + neg_term)


def test_accepts_torch_tensors():
    z = torch.tensor([[3.2, 5.1, -1.7]])
    assert np.allclose(L.softmax(z), L.softmax(z.numpy()))
    assert isinstance(L.softmax_cross_entropy(z, torch.tensor([1])), float)
