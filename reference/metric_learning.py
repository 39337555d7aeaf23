"""Triplet selection, N-way one-shot evaluation and verification thresholds.

Sources
-------
* 2IMM10 Assignment 2, Question 2 (seed 003): random and hard triplet
  selection (Task 2.3), 20-way one-shot evaluation with k = 250 tasks
  (Task 2.4; the Omniglot set-up of Koch, Zemel, Salakhutdinov, "Siamese
  Neural Networks for One-shot Image Recognition", ICML DL Workshop 2015,
  Sec. 4.3).
* Homework 4, Problem 4.2 (seed 004): a threshold on the Siamese network's
  dissimilarity score that outputs 0 for "same person" and 1 otherwise.

Randomness only through an explicit ``rng`` (``numpy.random.Generator``) or
``seed``. Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._utils import check_rng, to_labels, to_numpy

__all__ = [
    "pairwise_distances",
    "random_triplets",
    "hard_triplets",
    "hardest_negatives",
    "make_one_shot_tasks",
    "one_shot_accuracy",
    "select_threshold",
    "verification_predictions",
]


def pairwise_distances(x: Any, y: Any = None, squared: bool = False) -> np.ndarray:
    r"""Euclidean distances :math:`\|x_i - y_j\|_2` (or squared) between rows, (n, m).

    Computed as :math:`\|x\|^2 + \|y\|^2 - 2 x\cdot y` clipped at 0.
    """
    a = to_numpy(x)
    b = a if y is None else to_numpy(y)
    d2 = np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2.0 * (a @ b.T)
    d2 = np.maximum(d2, 0.0)
    if y is None:
        np.fill_diagonal(d2, 0.0)
    return d2 if squared else np.sqrt(d2)


def _class_index(labels: np.ndarray) -> tuple:
    classes = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in classes]
    return classes, members


def _triplet_classes(y: np.ndarray) -> tuple:
    """Classes, their members, and the classes that can give an anchor and a positive."""
    classes, members = _class_index(y)
    if len(classes) < 2:
        raise ValueError("need at least two classes")
    anchor_ok = np.flatnonzero([m.size >= 2 for m in members])
    if anchor_ok.size == 0:
        raise ValueError("no class has two images")
    return classes, members, anchor_ok


def _anchor_positive(g: np.random.Generator, members: list, anchor_ok: np.ndarray) -> tuple:
    """A random anchor class, then two different pictures of it (anchor, positive)."""
    ca = anchor_ok[g.integers(anchor_ok.size)]
    a, p = g.choice(members[ca], size=2, replace=False)
    return ca, a, p


def random_triplets(labels: Any, num_triplets: int, rng: np.random.Generator | None = None,
                    seed: int | None = None) -> np.ndarray:
    """Random triplet selection, 2IMM10 Assignment 2, Task 2.3(a).

    For each triplet: pick one random class for the anchor (uniformly among
    classes with at least two images); pick two different random pictures of
    it as anchor and positive; pick another class (uniformly among the other
    classes) for the negative; pick one random picture of it.

    Returns an int64 array (num_triplets, 3) of indices ``(anchor, positive,
    negative)`` into ``labels``.
    """
    y = to_labels(labels)
    g = check_rng(rng, seed)
    classes, members, anchor_ok = _triplet_classes(y)
    out = np.empty((num_triplets, 3), dtype=np.int64)
    for t in range(num_triplets):
        ca, a, p = _anchor_positive(g, members, anchor_ok)
        cn = g.integers(len(classes) - 1)
        cn = cn + (cn >= ca)
        n = members[cn][g.integers(members[cn].size)]
        out[t] = (a, p, n)
    return out


def hard_triplets(embeddings: Any, labels: Any, num_triplets: int,
                  rng: np.random.Generator | None = None, seed: int | None = None,
                  negative_class: str = "random") -> np.ndarray:
    """Hard triplet selection, 2IMM10 Assignment 2, Task 2.3(b).

    As :func:`random_triplets`, except that the negative is the *hardest*
    picture: the one nearest (Euclidean distance of ``embeddings``) to the
    anchor.

    * ``negative_class='random'`` (the seed's step list): pick another class
      at random, then its picture nearest to the anchor.
    * ``negative_class='any'``: the nearest picture of *any* other class
      (the seed's prose: "the negative image which is nearest from anchor
      image from a negative class").

    Ties in distance go to the lower index. Returns (num_triplets, 3) int64.
    """
    e = to_numpy(embeddings)
    y = to_labels(labels)
    g = check_rng(rng, seed)
    classes, members, anchor_ok = _triplet_classes(y)
    out = np.empty((num_triplets, 3), dtype=np.int64)
    for t in range(num_triplets):
        ca, a, p = _anchor_positive(g, members, anchor_ok)
        if negative_class == "random":
            cn = g.integers(len(classes) - 1)
            cn = cn + (cn >= ca)
            cand = members[cn]
        elif negative_class == "any":
            cand = np.flatnonzero(y != classes[ca])
        else:
            raise ValueError("negative_class must be 'random' or 'any'")
        d = np.sum((e[cand] - e[a]) ** 2, axis=1)
        out[t] = (a, p, cand[np.argmin(d)])
    return out


def hardest_negatives(embeddings: Any, labels: Any, anchors: Any = None,
                      squared: bool = True) -> np.ndarray:
    r"""Vectorised hardest-negative mining for a batch.

    For every anchor ``i``: :math:`n(i) = \arg\min_{k:\,y_k \ne y_i} \|e_i - e_k\|`
    (ties to the lower index). One (B, N) distance matrix, masked and
    reduced with ``argmin``; no Python loop. Used to form hard triplets for a
    whole batch at once (2IMM10 Task 2.3(b), ``negative_class='any'``).

    Returns (B,) int64 indices (``-1`` if an anchor has no negative).
    """
    e = to_numpy(embeddings)
    y = to_labels(labels)
    a = np.arange(e.shape[0]) if anchors is None else np.asarray(to_numpy(anchors, None), np.int64)
    d = pairwise_distances(e[a], e, squared=True)
    d[y[a][:, None] == y[None, :]] = np.inf
    idx = np.argmin(d, axis=1)
    idx[~np.isfinite(d[np.arange(a.size), idx])] = -1
    return idx


def make_one_shot_tasks(labels: Any, n_way: int = 20, num_tasks: int = 250,
                        rng: np.random.Generator | None = None, seed: int | None = None) -> dict:
    """Draw ``num_tasks`` N-way one-shot tasks (2IMM10 Task 2.4: 20-way, k = 250).

    Each task (Koch et al. 2015, Sec. 4.3): pick ``n_way`` distinct classes;
    the first is the true class, from which two different images are drawn
    (the test image and its support image); one image is drawn from each of
    the other ``n_way - 1`` classes; the support set is shuffled.

    Returns ``{"query": (k,), "support": (k, n_way), "target": (k,)}``
    (indices into ``labels``; ``support[t, target[t]]`` is the same-class
    image).
    """
    y = to_labels(labels)
    g = check_rng(rng, seed)
    classes, members = _class_index(y)
    ok = np.flatnonzero([m.size >= 2 for m in members])
    if len(classes) < n_way or ok.size == 0:
        raise ValueError("not enough classes for an n_way task")
    query = np.empty(num_tasks, np.int64)
    support = np.empty((num_tasks, n_way), np.int64)
    target = np.empty(num_tasks, np.int64)
    for t in range(num_tasks):
        c0 = ok[g.integers(ok.size)]
        others = np.delete(np.arange(len(classes)), c0)
        cs = np.concatenate([[c0], g.choice(others, size=n_way - 1, replace=False)])
        q, s0 = g.choice(members[c0], size=2, replace=False)
        sup = np.array([s0] + [members[c][g.integers(members[c].size)] for c in cs[1:]])
        perm = g.permutation(n_way)
        query[t] = q
        support[t] = sup[perm]
        target[t] = int(np.flatnonzero(perm == 0)[0])
    return {"query": query, "support": support, "target": target}


def one_shot_accuracy(embeddings: Any, tasks: dict, metric: str = "euclidean") -> float:
    """Fraction of one-shot tasks whose nearest support image is the same-class one.

    ``metric='euclidean'`` predicts the support with the smallest distance;
    ``'inner_product'`` the one with the largest inner product. Ties go to
    the first support position. 2IMM10 Task 2.4.
    """
    e = to_numpy(embeddings)
    q = e[tasks["query"]][:, None, :]
    s = e[tasks["support"]]
    if metric == "euclidean":
        pred = np.argmin(np.sum((s - q) ** 2, axis=2), axis=1)
    elif metric == "inner_product":
        pred = np.argmax(np.sum(s * q, axis=2), axis=1)
    else:
        raise ValueError("metric must be 'euclidean' or 'inner_product'")
    return float(np.mean(pred == np.asarray(tasks["target"])))


def select_threshold(distances: Any, different: Any) -> tuple:
    """Threshold on a dissimilarity score that maximises same/different accuracy.

    Decision rule (Homework 4, Problem 4.2): output 0 ("same person") if
    ``d <= threshold`` else 1 ("different"). ``different`` holds the true
    labels in the same convention (0 same, 1 different). All distinct cut
    points are tried: below the smallest distance, every midpoint between
    consecutive distinct distances, and the largest distance; the lowest
    threshold among the best is returned.

    Returns ``(threshold, accuracy)``.
    """
    d = to_numpy(distances).reshape(-1)
    lab = to_labels(different)
    if d.size == 0:
        raise ValueError("no pairs")
    u = np.unique(d)
    cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2.0, [u[-1]]])
    order = np.argsort(d, kind="stable")
    ds, ls = d[order], lab[order]
    # accuracy(t) = (#same with d <= t + #different with d > t) / n
    same_le = np.cumsum(ls == 0)
    diff_le = np.cumsum(ls == 1)
    cnt = np.searchsorted(ds, cands, side="right")
    same_c = np.where(cnt > 0, same_le[np.maximum(cnt - 1, 0)], 0)
    diff_c = np.where(cnt > 0, diff_le[np.maximum(cnt - 1, 0)], 0)
    acc = (same_c + (diff_le[-1] - diff_c)) / d.size
    best = int(np.argmax(acc))
    return float(cands[best]), float(acc[best])


def verification_predictions(distances: Any, threshold: float) -> np.ndarray:
    """0 ("same person") where ``d <= threshold``, else 1 ("different"); int64 (Homework 4, P4.2)."""
    return (to_numpy(distances) > threshold).astype(np.int64)
