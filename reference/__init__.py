"""Reference implementations of every task in the gradekit course material.

``reference`` is the single source of truth shared by master notebooks and
hidden graders. Every function is pure (no hidden state, randomness only
through an explicit ``rng``/``seed`` argument), takes numpy arrays (torch
tensors are accepted where natural) and returns float64 numpy arrays or Python
floats. Docstrings state the formula, the shapes and the source (paper
section/figure or course seed).

Modules
-------
reference.losses
    softmax (temperature beta), cross-entropy and its gradient p - q with the
    bounds, negative log-likelihood, label smoothing and its decomposition,
    multiclass SVM (hinge) loss, KL divergence, L1 / L2 / elastic-net
    penalties, triplet loss, contrastive loss (Hadsell et al. 2006),
    Mining-Contrastive loss (Guo et al. 2018).
reference.layers
    batch norm (train / eval, running statistics, torch momentum or the
    lecture's rho), layer / instance / group norm, dropout (vanilla and
    inverted), batch-norm folding.
reference.architectures
    conv / pool output shapes, parameter and multiply-add counts, the CV1
    layer l / l-1 questions, AlexNet per-layer counts (with and without the
    two-GPU grouping), the VGG19 table, stacked receptive fields, Inception
    modules, the modified Babenko et al. (2014) ConvNet, ResNet-50 transfer
    set-ups and the multi-step learning-rate schedule.
reference.retrieval
    L2 normalisation, GeM pooling, AlexNet fc7 / neural-code extraction,
    inner-product ranking, average precision and mAP (each item queries all
    others), top-k retrieval, product quantisation (train, encode, ADC
    search, recall@R).
reference.metric_learning
    random and hard triplet selection (2IMM10), N-way one-shot tasks and
    accuracy, same/different threshold selection.
reference.knn
    L1 / L2 distances, k-nearest-neighbour majority vote with a documented
    tie rule.
reference.classification
    accuracy, top-k accuracy, early stopping on validation loss.

Importing ``reference`` or any of its modules never imports torch; functions
that need torch import it when called. Nothing downloads weights or data.
"""

__all__ = [
    "losses",
    "layers",
    "architectures",
    "retrieval",
    "metric_learning",
    "knn",
    "classification",
]
