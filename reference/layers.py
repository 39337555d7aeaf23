"""Normalisation and dropout layers as pure functions.

Sources: Lecture 6 "Deep Learning III" (seed 002): batch normalisation in
train and eval mode, Layer / Instance / Group norm, dropout ("drop in train
time, scale at test time"). Ioffe & Szegedy, "Batch Normalization", ICML
2015, Alg. 1-2; Ba et al., "Layer Normalization", 2016; Ulyanov et al.,
"Instance Normalization", 2016; Wu & He, "Group Normalization", ECCV 2018,
Eq. 1-7; Srivastava et al., "Dropout", JMLR 2014.

Layouts: a 2-D input is (N, D) with features on axis 1; a 3-D / 4-D / 5-D
input is (N, C, ...) (torch's channels-first layout) with channels on axis 1.

Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._utils import check_rng, to_numpy

__all__ = [
    "batch_norm",
    "layer_norm",
    "instance_norm",
    "group_norm",
    "dropout",
    "dropout_mask",
    "fold_batch_norm",
]


def _bcast(v: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a per-channel vector (C,) to broadcast against (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm(
    x: Any,
    gamma: Any,
    beta: Any,
    running_mean: Any,
    running_var: Any,
    training: bool,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    rho: float | None = None,
) -> tuple:
    r"""Batch normalisation, train or eval mode, with running statistics.

    Train mode (Lecture 6, "Batch Normalization: Train Mode"; Ioffe &
    Szegedy 2015, Alg. 1), per channel ``j`` over the batch (and spatial)
    axes:

    .. math::
        \mu_j = \frac1N\sum_i x_{ij},\quad
        \sigma_j^2 = \frac1N\sum_i (x_{ij}-\mu_j)^2,\quad
        y_{ij} = \gamma_j\frac{x_{ij}-\mu_j}{\sqrt{\sigma_j^2+\varepsilon}} + \beta_j

    (the *biased* variance normalises). The running statistics are then
    updated. Two equivalent conventions are offered:

    * torch's ``momentum`` (default 0.1):
      ``running = (1 - momentum) * running + momentum * batch_stat``;
    * the lecture's ``rho`` ("Batch Normalization: Eval Mode"):
      :math:`\mu_{rms} \leftarrow \rho\,\mu_{rms} + (1-\rho)\,\mu_{batch}`,
      i.e. ``rho = 1 - momentum`` (the lecture's rho weighs the *old*
      value; rho = 0.9 equals torch's momentum = 0.1). Give ``rho`` to use
      it (``momentum`` is then ignored).

    As in ``torch.nn.BatchNorm*d``, the running *variance* is updated with
    the **unbiased** batch variance (divide by ``n - 1``, ``n`` = number of
    values per channel), while normalisation uses the biased one.
    torch's ``momentum=None`` (cumulative moving average) is not supported.

    Eval mode (Lecture 6, "Eval Mode (Test-Time)"): normalise with the
    running statistics, which are returned unchanged:
    :math:`y = \gamma (x - \mu_{rms})/\sqrt{\sigma^2_{rms}+\epsilon} + \beta`.

    Shapes: ``x`` (N, D) or (N, C, H, W) (any (N, C, ...)); ``gamma``,
    ``beta``, ``running_mean``, ``running_var`` (C,).

    Returns ``(y, new_running_mean, new_running_var)``, all float64.
    """
    x = to_numpy(x)
    g, b = to_numpy(gamma), to_numpy(beta)
    rm, rv = to_numpy(running_mean).copy(), to_numpy(running_var).copy()
    if rho is not None:
        mom = 1.0 - float(rho)
    elif momentum is None:
        raise ValueError("momentum=None (cumulative average) is not supported; give a number")
    else:
        mom = float(momentum)
    axes = (0,) + tuple(range(2, x.ndim))
    if training:
        n = x.size // x.shape[1]
        if n < 2:
            raise ValueError("batch norm in training mode needs more than 1 value per channel")
        mu = x.mean(axis=axes)
        var = x.var(axis=axes)
        y = (x - _bcast(mu, x.ndim)) / np.sqrt(_bcast(var, x.ndim) + eps)
        new_rm = (1.0 - mom) * rm + mom * mu
        new_rv = (1.0 - mom) * rv + mom * var * n / (n - 1)
    else:
        y = (x - _bcast(rm, x.ndim)) / np.sqrt(_bcast(rv, x.ndim) + eps)
        new_rm, new_rv = rm, rv
    y = _bcast(g, x.ndim) * y + _bcast(b, x.ndim)
    return y, new_rm, new_rv


def layer_norm(
    x: Any, gamma: Any = None, beta: Any = None, eps: float = 1e-5, num_axes: int | None = None
) -> np.ndarray:
    r"""Layer normalisation (Ba et al. 2016): statistics per sample over all non-batch axes.

    .. math:: y = \gamma \frac{x - \mu_n}{\sqrt{\sigma_n^2 + \epsilon}} + \beta,
              \quad \mu_n, \sigma_n^2 \text{ over axes } 1..\text{ndim}-1

    (biased variance). ``num_axes`` normalises over only the last
    ``num_axes`` axes (torch's ``normalized_shape = x.shape[-num_axes:]``);
    ``gamma`` / ``beta`` then have that trailing shape (default: all
    non-batch axes). Same in train and eval mode. Lecture 6,
    "Normalization Techniques".
    """
    x = to_numpy(x)
    k = x.ndim - 1 if num_axes is None else int(num_axes)
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if gamma is not None:
        y = y * to_numpy(gamma)
    if beta is not None:
        y = y + to_numpy(beta)
    return y


def group_norm(
    x: Any, num_groups: int, gamma: Any = None, beta: Any = None, eps: float = 1e-5
) -> np.ndarray:
    r"""Group normalisation (Wu & He, ECCV 2018, Eq. 1-7).

    Channels are split into ``num_groups`` groups of ``C / G`` consecutive
    channels; mean and (biased) variance are computed per sample and group
    over (C/G, H, W); ``gamma`` / ``beta`` are per channel (C,).
    ``G = 1`` is Layer norm over (C, H, W); ``G = C`` is Instance norm.

    Shapes: ``x`` (N, C, ...) -> same.
    """
    x = to_numpy(x)
    n, c = x.shape[:2]
    if c % num_groups:
        raise ValueError("num_channels must be divisible by num_groups")
    xg = x.reshape(n, num_groups, -1)
    mu = xg.mean(axis=2, keepdims=True)
    var = xg.var(axis=2, keepdims=True)
    y = ((xg - mu) / np.sqrt(var + eps)).reshape(x.shape)
    if gamma is not None:
        y = y * _bcast(to_numpy(gamma), x.ndim)
    if beta is not None:
        y = y + _bcast(to_numpy(beta), x.ndim)
    return y


def instance_norm(x: Any, gamma: Any = None, beta: Any = None, eps: float = 1e-5) -> np.ndarray:
    r"""Instance normalisation (Ulyanov et al. 2016): per sample and channel over (H, W).

    .. math:: y_{nc} = \gamma_c \frac{x_{nc} - \mu_{nc}}{\sqrt{\sigma_{nc}^2+\epsilon}} + \beta_c

    Equals :func:`group_norm` with ``num_groups = C``. No running statistics
    (torch's ``InstanceNorm2d`` default ``track_running_stats=False``).
    """
    x = to_numpy(x)
    return group_norm(x, x.shape[1], gamma, beta, eps)


def dropout_mask(shape: tuple, keep_prob: float, rng: np.random.Generator | None = None,
                 seed: int | None = None) -> np.ndarray:
    """Bernoulli keep-mask ``U = rng.random(shape) < keep_prob`` (Lecture 6, "Dropout").

    ``keep_prob`` is the lecture's ``p``: probability of keeping a unit
    (torch's ``p`` is the *drop* probability, ``1 - keep_prob``).
    Randomness only through the explicit ``rng`` or ``seed``.
    Returns a boolean array.
    """
    r = check_rng(rng, seed)
    return r.random(shape) < keep_prob


def dropout(
    x: Any,
    keep_prob: float,
    training: bool,
    mask: Any = None,
    rng: np.random.Generator | None = None,
    inverted: bool = True,
) -> tuple:
    r"""Dropout in both conventions (Srivastava et al. 2014; Lecture 6).

    ``keep_prob`` = probability of keeping a unit (the lecture's ``p``).
    ``U`` is the keep-mask (given as ``mask`` or drawn from ``rng``).

    * ``inverted=False`` ("vanilla", Lecture 6 "Dropout: Test Time"): drop in
      train time, scale at test time: train ``y = x * U``; test
      ``y = x * keep_prob`` so that test output = expected train output.
    * ``inverted=True`` (torch's ``nn.Dropout(p=1-keep_prob)``): scale in
      train time: train ``y = x * U / keep_prob``; test ``y = x``.

    Returns ``(y, mask)`` (``mask`` is None in eval mode).
    """
    x = to_numpy(x)
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError("keep_prob must be in (0, 1]")
    if not training:
        return (x.copy() if inverted else x * keep_prob), None
    if mask is None:
        if rng is None:
            raise ValueError("training-mode dropout needs a mask or an rng")
        mask = dropout_mask(x.shape, keep_prob, rng=rng)
    u = to_numpy(mask, dtype=None).astype(bool)
    y = x * u
    if inverted:
        y = y / keep_prob
    return y, u


def fold_batch_norm(
    weight: Any,
    bias: Any,
    gamma: Any,
    beta: Any,
    running_mean: Any,
    running_var: Any,
    eps: float = 1e-5,
) -> tuple:
    r"""Fuse an eval-mode BatchNorm into the preceding conv / linear layer.

    Lecture 6: "During testing batchnorm becomes a linear operator! Can be
    fused with the previous fully-connected or conv layer."
    With :math:`s = \gamma/\sqrt{\sigma^2_{rms}+\epsilon}`:

    .. math:: W' = s \cdot W \ (\text{per output channel}),\quad
              b' = s\,(b - \mu_{rms}) + \beta

    Shapes: ``weight`` (C_out, ...), ``bias`` (C_out,) or None.
    Returns ``(W', b')``.
    """
    w = to_numpy(weight)
    b = np.zeros(w.shape[0]) if bias is None else to_numpy(bias)
    s = to_numpy(gamma) / np.sqrt(to_numpy(running_var) + eps)
    w2 = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
    b2 = s * (b - to_numpy(running_mean)) + to_numpy(beta)
    return w2, b2
