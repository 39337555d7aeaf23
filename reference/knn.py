"""Distances and the k-nearest-neighbour classifier (Lecture 6, seed 002).

Lecture 6 "Deep Learning III", "Distance Metric" and "K-Nearest Neighbors":
L1 (Manhattan) and L2 (Euclidean) pixel distances and the majority vote of
the K closest training points. Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._utils import to_labels, to_numpy

__all__ = [
    "l1_distance",
    "l2_distance",
    "pairwise_l1_distances",
    "pairwise_l2_distances",
    "knn_predict",
]


def l1_distance(i1: Any, i2: Any) -> float:
    r"""L1 (Manhattan) distance :math:`d_1(I_1, I_2) = \sum_p |I_1^p - I_2^p|` over all pixels.

    Lecture 6's worked 4x4 example (test image minus training image) gives
    456.
    """
    return float(np.sum(np.abs(to_numpy(i1) - to_numpy(i2))))


def l2_distance(i1: Any, i2: Any) -> float:
    r"""L2 (Euclidean) distance :math:`d_2(I_1, I_2) = \sqrt{\sum_p (I_1^p - I_2^p)^2}`."""
    d = to_numpy(i1) - to_numpy(i2)
    return float(np.sqrt(np.sum(d * d)))


def _flat(x: Any) -> np.ndarray:
    a = to_numpy(x)
    return a.reshape(a.shape[0], -1)


def pairwise_l1_distances(x: Any, y: Any, chunk_size: int = 256) -> np.ndarray:
    """L1 distances between every row (image, flattened) of ``x`` (n, ...) and ``y`` (m, ...): (n, m)."""
    a, b = _flat(x), _flat(y)
    out = np.empty((a.shape[0], b.shape[0]))
    for s in range(0, a.shape[0], chunk_size):
        out[s:s + chunk_size] = np.abs(a[s:s + chunk_size, None, :] - b[None, :, :]).sum(axis=2)
    return out


def pairwise_l2_distances(x: Any, y: Any) -> np.ndarray:
    """L2 distances between the flattened rows of ``x`` and ``y``: (n, m).

    Uses ``|a|^2 + |b|^2 - 2 a.b`` (clipped at 0).
    """
    a, b = _flat(x), _flat(y)
    d2 = np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0))


def knn_predict(train_x: Any, train_y: Any, test_x: Any, k: int = 1, metric: str = "l2",
                tie_break: str = "nearest") -> np.ndarray:
    """k-nearest-neighbour classification by majority vote (Lecture 6, "K-Nearest Neighbors").

    1. Distances (``metric`` ``'l1'`` or ``'l2'``) from each test point to
       every training point; the ``k`` closest are taken, equal distances
       resolved in favour of the lower training index (stable sort).
    2. Each of them votes for its label; the label with most votes wins.
    3. Tie rule for the vote (documented, deterministic):

       * ``tie_break='nearest'`` (default): among the tied labels, the one
         whose closest member among the k neighbours is nearest (i.e. the
         first tied label met in order of distance). With k = 1 this is the
         nearest-neighbour rule.
       * ``tie_break='smallest_label'``: the smallest tied label (what
         ``sklearn.neighbors.KNeighborsClassifier`` does with uniform
         weights).

    Shapes: ``train_x`` (n, ...), ``train_y`` (n,), ``test_x`` (m, ...) ->
    predicted labels (m,) int64.
    """
    if metric == "l2":
        d = pairwise_l2_distances(test_x, train_x)
    elif metric == "l1":
        d = pairwise_l1_distances(test_x, train_x)
    else:
        raise ValueError("metric must be 'l1' or 'l2'")
    y = to_labels(train_y)
    if not 1 <= k <= y.size:
        raise ValueError("k must be between 1 and the number of training points")
    nn = np.argsort(d, axis=1, kind="stable")[:, :k]
    votes = y[nn]  # (m, k), ordered by distance
    classes, inv = np.unique(votes, return_inverse=True)
    inv = inv.reshape(votes.shape)
    m = votes.shape[0]
    counts = np.zeros((m, classes.size), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(m), k), inv.ravel()), 1)
    best = counts.max(axis=1)
    if tie_break == "smallest_label":
        return classes[np.argmax(counts == best[:, None], axis=1)]
    if tie_break != "nearest":
        raise ValueError("tie_break must be 'nearest' or 'smallest_label'")
    winner_vote = counts[np.arange(m)[:, None], inv] == best[:, None]  # (m, k)
    first = np.argmax(winner_vote, axis=1)
    return votes[np.arange(m), first]
