"""Classification metrics and early stopping.

Sources: 2IMM10 Assignment 2, Task 1.2 (seed 003): classification accuracy,
top-5 accuracy, early stopping "by monitoring the loss on the validation set,
and terminating training as soon as it starts to increase"; Lecture 6
(seed 002), "Early Stopping": stop when validation accuracy decreases, or
train long and keep the best snapshot on validation.

Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._utils import to_labels, to_numpy

__all__ = ["accuracy", "top_k_accuracy", "early_stopping", "EarlyStopping"]


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of correct predictions.

    ``y_pred`` is either predicted labels (n,) or scores / logits /
    probabilities (n, K), in which case the arg-max (first on ties) is the
    prediction.
    """
    t = to_labels(y_true)
    p = to_numpy(y_pred, None)
    if p.ndim == 2:
        p = np.argmax(p, axis=1)
    p = to_labels(p)
    if p.shape != t.shape:
        raise ValueError("y_true and y_pred disagree in length")
    return float(np.mean(p == t))


def top_k_accuracy(y_true: Any, scores: Any, k: int = 5) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores (2IMM10 Task 1.2: top-5).

    A sample counts as correct when fewer than ``k`` classes score strictly
    higher than the true class (so a tie at the k-th place counts in its
    favour). ``scores`` (n, K); ``labels`` (n,).
    """
    t = to_labels(y_true)
    s = to_numpy(scores)
    true_score = s[np.arange(s.shape[0]), t]
    higher = np.sum(s > true_score[:, None], axis=1)
    return float(np.mean(higher < k))


def early_stopping(val_losses: Sequence[float], patience: int = 0, min_delta: float = 0.0,
                   rule: str = "increase") -> dict:
    """When training stops, given the validation loss of every epoch (in order).

    * ``rule='increase'`` (2IMM10 Task 1.2, default): stop at the first
      epoch whose validation loss is larger than the previous epoch's by more
      than ``min_delta`` -- "as soon as it starts to increase" -- after
      ``patience`` further such epochs (``patience=0``: immediately).
    * ``rule='no_improvement'`` (Keras/Lightning ``EarlyStopping``): stop when
      the loss has not improved on the best so far by more than
      ``min_delta`` for ``patience + 1`` consecutive epochs.

    Epochs are numbered from 0. Returns ``{"stop_epoch": e or None (never
    stopped), "best_epoch": argmin over epochs 0..stop (first on ties),
    "best_loss": ...}``; the model to keep is the snapshot of ``best_epoch``
    (Lecture 6: "always keep track of the model snapshot that worked best on
    val").
    """
    v = [float(x) for x in val_losses]
    stop = None
    bad = 0
    best = np.inf
    for e, loss in enumerate(v):
        if rule == "increase":
            worse = e > 0 and loss > v[e - 1] + min_delta
        elif rule == "no_improvement":
            worse = not loss < best - min_delta
        else:
            raise ValueError("rule must be 'increase' or 'no_improvement'")
        best = min(best, loss)
        bad = bad + 1 if worse else 0
        if bad > patience:
            stop = e
            break
    end = len(v) if stop is None else stop + 1
    if end == 0:
        return {"stop_epoch": None, "best_epoch": None, "best_loss": None}
    best_epoch = int(np.argmin(v[:end]))
    return {"stop_epoch": stop, "best_epoch": best_epoch, "best_loss": v[best_epoch]}


class EarlyStopping:
    """Stateful form of :func:`early_stopping` for a training loop.

    ``step(val_loss)`` returns True when training should stop; attributes
    ``best_epoch`` / ``best_loss`` track the best snapshot. Same rules and
    arguments as :func:`early_stopping`.
    """

    def __init__(self, patience: int = 0, min_delta: float = 0.0, rule: str = "increase") -> None:
        self.patience, self.min_delta, self.rule = patience, min_delta, rule
        self.history: list = []
        self.stopped_epoch: int | None = None

    def step(self, val_loss: float) -> bool:
        self.history.append(float(val_loss))
        res = early_stopping(self.history, self.patience, self.min_delta, self.rule)
        self.stopped_epoch = res["stop_epoch"]
        return self.stopped_epoch is not None

    @property
    def best_epoch(self) -> int | None:
        return early_stopping(self.history, self.patience, self.min_delta, self.rule)["best_epoch"]

    @property
    def best_loss(self) -> float | None:
        return early_stopping(self.history, self.patience, self.min_delta, self.rule)["best_loss"]
