"""Shapes, parameter counts and multiply-adds of CNN layers and architectures.

Everything here is plain integer arithmetic (no torch) except the
``*_model`` builders, which import torch / torchvision when called and never
download weights (``weights=None``).

Sources
-------
* CV1 Assignment 5, Task 3 (seed 000): the layer ``l`` / ``l-1`` questions.
* Homework 4, Problem 1 (seed 004): AlexNet per-layer parameter counts
  (Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep
  Convolutional Neural Networks", NIPS 2012, Sec. 3.5 and Fig. 2); the VGG19
  table (Simonyan & Zisserman, ICLR 2015, Table 1, column E); receptive
  field of stacked convolutions; Inception modules (Szegedy et al., "Going
  deeper with convolutions", CVPR 2015, Fig. 2, with the filter counts of the
  homework's Figure 1).
* Homework 4, Problem 2 (seed 004): ResNet-50 (He et al., CVPR 2016)
  fine-tuning vs fixed feature extractor, multi-step learning-rate schedule.
* 2IMM10 Assignment 2, Task 1.1 (seed 003): the modified ConvNet of Babenko
  et al., "Neural Codes for Image Retrieval", ECCV 2014, for 64x64 inputs.

Shapes of image volumes are written ``(H, W, C)`` as in the course material.
"""

from __future__ import annotations

import bisect
from typing import Any, Sequence

__all__ = [
    "conv_output_size",
    "pool_output_size",
    "same_padding",
    "conv_param_count",
    "linear_param_count",
    "conv_multiply_adds",
    "conv_layer_questions",
    "receptive_field",
    "stacked_receptive_field",
    "equivalent_kernel_size",
    "alexnet_layer_table",
    "alexnet_param_count",
    "alexnet_paper_model",
    "vgg19_table",
    "vgg19_totals",
    "inception_module",
    "inception_naive",
    "inception_dimension_reduction",
    "babenko_layer_table",
    "babenko_convnet",
    "BABENKO_FILTERS",
    "BABENKO_KERNELS",
    "resnet50_transfer_model",
    "resnet50_parameter_counts",
    "multistep_lr",
    "multistep_lr_schedule",
    "evenly_spaced_milestones",
    "RESNET50_NUM_PARAMS",
]

#: Parameters of torchvision's ``resnet50`` (1000 classes), He et al. 2016.
RESNET50_NUM_PARAMS = 25_557_032
_RESNET50_FC_IN = 2048


def _pair(v: Any) -> tuple:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError("expected an int or a pair")
        return int(v[0]), int(v[1])
    return int(v), int(v)


# --------------------------------------------------------------------------
# single layers
# --------------------------------------------------------------------------
def conv_output_size(
    input_size: Any,
    kernel_size: Any,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
) -> Any:
    r"""Spatial output size of a convolution (or pooling) layer.

    .. math:: O = \left\lfloor \frac{I + 2P - D(K-1) - 1}{S} \right\rfloor + 1

    (``ceil`` instead of ``floor`` with ``ceil_mode``; the torch
    ``Conv2d`` / ``MaxPool2d`` formula; with ``D = 1`` this is the lecture's
    ``(I - K + 2P)/S + 1``). ``padding='same'`` keeps the size (stride 1);
    ``'valid'`` means 0. Ints or (h, w) pairs; returns the same kind.
    """
    pair = isinstance(input_size, (tuple, list))
    i, k, s, d = _pair(input_size), _pair(kernel_size), _pair(stride), _pair(dilation)
    if padding == "same":
        if s != (1, 1):
            raise ValueError("padding='same' needs stride 1")
        return tuple(i) if pair else i[0]
    p = (0, 0) if padding == "valid" else _pair(padding)
    out = []
    for ii, kk, ss, pp, dd in zip(i, k, s, p, d):
        num = ii + 2 * pp - dd * (kk - 1) - 1
        if num < 0:
            raise ValueError("kernel larger than padded input")
        o = -(-num // ss) + 1 if ceil_mode else num // ss + 1
        if ceil_mode and (o - 1) * ss >= ii + pp:  # torch: last window must start inside
            o -= 1
        out.append(o)
    return tuple(out) if pair else out[0]


def pool_output_size(input_size: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
                     ceil_mode: bool = False) -> Any:
    """Output size of max/avg pooling; ``stride`` defaults to ``kernel_size`` (as in torch)."""
    return conv_output_size(input_size, kernel_size, kernel_size if stride is None else stride,
                            padding, 1, ceil_mode)


def same_padding(kernel_size: int, dilation: int = 1) -> tuple:
    """Total, before and after padding that keeps the size at stride 1.

    ``total = D (K - 1)``; ``before = total // 2``, ``after = total - before``
    (TensorFlow/Keras ``'same'`` and torch ``padding='same'`` agree). For odd
    ``K`` this is the symmetric ``P = (K - 1)/2``.
    """
    total = int(dilation) * (int(kernel_size) - 1)
    return total, total // 2, total - total // 2


def conv_param_count(
    in_channels: int, out_channels: int, kernel_size: Any, groups: int = 1, bias: bool = True
) -> int:
    r"""Learnable parameters of a 2-D convolution.

    .. math:: \#\theta = C_{out}\cdot\frac{C_{in}}{G}\cdot K_h K_w + [\text{bias}]\,C_{out}

    Padding, stride and dilation do not change the count (CV1 Assignment 5,
    Task 3.4-3.5: removing the bias does not change the output size either).
    """
    kh, kw = _pair(kernel_size)
    if in_channels % groups or out_channels % groups:
        raise ValueError("channels must be divisible by groups")
    return out_channels * (in_channels // groups) * kh * kw + (out_channels if bias else 0)


def linear_param_count(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameters of a fully connected layer: ``in * out + [bias] * out``."""
    return in_features * out_features + (out_features if bias else 0)


def conv_multiply_adds(
    in_channels: int, out_channels: int, kernel_size: Any, output_size: Any, groups: int = 1
) -> int:
    r"""Multiply-accumulate operations of a convolution (bias additions not counted).

    .. math:: \text{MACs} = H_{out} W_{out} \cdot C_{out} \cdot K_h K_w \cdot C_{in}/G

    This is the "number of convolutional operations" of Homework 4,
    Problem 1.4(c) (one multiply-add per weight per output position).
    """
    kh, kw = _pair(kernel_size)
    ho, wo = _pair(output_size)
    return ho * wo * out_channels * kh * kw * (in_channels // groups)


def conv_layer_questions(
    filters_prev: int = 32,
    filters: int = 64,
    kernel_size: int = 3,
    output_size: int = 112,
    bias: bool = True,
) -> dict:
    """Answers to CV1 Assignment 5, Task 3 (layers ``l - 1`` and ``l``).

    The table gives layer ``l-1``: 32 filters 3x3, bias, ReLU, output
    112x112; layer ``l``: 64 filters 3x3, bias, ReLU, output 112x112.

    1. Input of ``l-1``: **not inferable** -- its depth (the channels of
       whatever precedes it) is not in the table and the spatial size depends
       on the unknown padding/stride (``None``).
    2. Input of ``l`` = output of ``l-1``: ``(112, 112, 32)``: a conv layer's
       output depth is its number of filters.
    3. Padding of ``l``: yes, ``P = 1`` assuming stride 1:
       ``(112 - 3 + 2P)/1 + 1 = 112`` gives ``P = 1``; without padding the
       output would be 110x110.
    4. Removing the bias does not change the spatial size (bias is added
       per output channel, it does not touch the sliding-window geometry).
    5. Parameters of ``l``: ``(3 * 3 * 32) * 64 + 64 = 18,496``
       (18,432 weights + 64 biases).
    """
    padding = (kernel_size - 1) // 2
    weights = kernel_size * kernel_size * filters_prev * filters
    biases = filters if bias else 0
    return {
        "input_l_minus_1": None,
        "input_l": (output_size, output_size, filters_prev),
        "padding_l": padding,
        "output_l_without_padding": (
            conv_output_size(output_size, kernel_size, 1, 0),
            conv_output_size(output_size, kernel_size, 1, 0),
        ),
        "bias_changes_spatial_size": False,
        "weights_l": weights,
        "biases_l": biases,
        "params_l": weights + biases,
        "params_l_formula": f"({kernel_size}*{kernel_size}*{filters_prev})*{filters} + {biases}",
    }


def receptive_field(
    kernel_sizes: Sequence[int],
    strides: Sequence[int] | None = None,
    dilations: Sequence[int] | None = None,
) -> int:
    r"""Receptive field (in input pixels, one side) of a stack of conv/pool layers.

    .. math:: r = 1 + \sum_{l=1}^{L} D_l (K_l - 1) \prod_{i<l} S_i
    """
    n = len(kernel_sizes)
    strides = [1] * n if strides is None else list(strides)
    dilations = [1] * n if dilations is None else list(dilations)
    r, jump = 1, 1
    for k, s, d in zip(kernel_sizes, strides, dilations):
        r += d * (k - 1) * jump
        jump *= s
    return r


def stacked_receptive_field(num_layers: int, filter_size: int) -> int:
    r"""Receptive field of ``N`` stacked ``F x F`` stride-1 convolutions (Homework 4, Problem 1.3).

    .. math:: R = NF - N + 1 = N(F - 1) + 1

    Each extra layer adds ``F - 1`` pixels. Three 5x5 layers: ``3*5 - 3 + 1 = 13``.
    """
    return num_layers * filter_size - num_layers + 1


def equivalent_kernel_size(num_layers: int, filter_size: int) -> tuple:
    """``(NF - N + 1, NF - N + 1)``: the single-conv kernel with the same receptive field."""
    r = stacked_receptive_field(num_layers, filter_size)
    return r, r


# --------------------------------------------------------------------------
# generic sequential table
# --------------------------------------------------------------------------
def _conv_row(name, shape, out_ch, k, s, p, groups, include_bias):
    h, w, c = shape
    ho, wo = conv_output_size((h, w), k, s, p)
    weights = conv_param_count(c, out_ch, k, groups, bias=False)
    biases = out_ch if include_bias else 0
    return {
        "layer": name,
        "type": "conv",
        "input_shape": (h, w, c),
        "output_shape": (ho, wo, out_ch),
        "kernel": _pair(k),
        "stride": s,
        "padding": p,
        "groups": groups,
        "weights": weights,
        "biases": biases,
        "params": weights + biases,
        "activations": ho * wo * out_ch,
        "multiply_adds": conv_multiply_adds(c, out_ch, k, (ho, wo), groups),
    }


def _pool_row(name, shape, k, s, p=0):
    h, w, c = shape
    ho, wo = pool_output_size((h, w), k, s, p)
    return {
        "layer": name,
        "type": "pool",
        "input_shape": (h, w, c),
        "output_shape": (ho, wo, c),
        "kernel": _pair(k),
        "stride": s,
        "padding": p,
        "groups": 1,
        "weights": 0,
        "biases": 0,
        "params": 0,
        "activations": ho * wo * c,
        "multiply_adds": 0,
    }


def _fc_row(name, in_features, out_features, include_bias):
    weights = in_features * out_features
    biases = out_features if include_bias else 0
    return {
        "layer": name,
        "type": "fc",
        "input_shape": (in_features,),
        "output_shape": (out_features,),
        "kernel": None,
        "stride": None,
        "padding": None,
        "groups": 1,
        "weights": weights,
        "biases": biases,
        "params": weights + biases,
        "activations": out_features,
        "multiply_adds": weights,
    }


# --------------------------------------------------------------------------
# AlexNet (Krizhevsky et al. 2012)
# --------------------------------------------------------------------------
def alexnet_layer_table(
    grouped: bool = True, include_bias: bool = True, num_classes: int = 1000, input_size: int = 227
) -> list:
    """Per-layer shapes and parameter counts of AlexNet as in the paper.

    Krizhevsky et al. 2012, Sec. 3.5 ("Overall Architecture") and Fig. 2:
    conv1 96 kernels 11x11x3 stride 4; (response norm, 3x3/2 max pool);
    conv2 256 kernels 5x5x48; (norm, pool); conv3 384 kernels 3x3x256;
    conv4 384 kernels 3x3x192; conv5 256 kernels 3x3x192; (pool);
    fc6 4096, fc7 4096, fc8 1000 (all fully connected to the previous layer).

    ``grouped=True`` reproduces the two-GPU split: conv2, conv4 and conv5
    only see the 48 / 192 / 192 channels on their own GPU (``groups = 2``);
    conv3 and the FC layers connect across GPUs. ``grouped=False`` is the
    single-tower variant (conv2 5x5x96, conv4 3x3x384, conv5 3x3x384).

    The paper says 224x224 inputs, but the stated layer sizes (55x55 after
    conv1) need 227x227 without padding; ``input_size=227`` is used.
    Parameter counts do not depend on the input size. Response
    normalisation has no parameters.

    Totals: 60,965,224 parameters grouped (the paper's "60 million");
    62,378,344 ungrouped.

    Each row is a dict with ``layer, type, input_shape, output_shape,
    kernel, stride, padding, groups, weights, biases, params, activations,
    multiply_adds``.
    """
    g = 2 if grouped else 1
    rows = []
    shape = (input_size, input_size, 3)
    spec = [
        ("conv1", 96, 11, 4, 0, 1, True),
        ("conv2", 256, 5, 1, 2, g, True),
        ("conv3", 384, 3, 1, 1, 1, False),
        ("conv4", 384, 3, 1, 1, g, False),
        ("conv5", 256, 3, 1, 1, g, True),
    ]
    for name, out, k, s, p, groups, pool in spec:
        row = _conv_row(name, shape, out, k, s, p, groups, include_bias)
        rows.append(row)
        shape = row["output_shape"]
        if pool:
            row = _pool_row("pool" + name[-1], shape, 3, 2)
            rows.append(row)
            shape = row["output_shape"]
    feat = shape[0] * shape[1] * shape[2]
    for name, out in (("fc6", 4096), ("fc7", 4096), ("fc8", num_classes)):
        rows.append(_fc_row(name, feat, out, include_bias))
        feat = out
    return rows


def alexnet_param_count(grouped: bool = True, include_bias: bool = True, num_classes: int = 1000) -> int:
    """Total parameters of the paper's AlexNet (60,965,224 grouped; 62,378,344 ungrouped)."""
    return sum(r["params"] for r in alexnet_layer_table(grouped, include_bias, num_classes))


def alexnet_paper_model(grouped: bool = True, num_classes: int = 1000) -> Any:
    """A ``torch.nn.Sequential`` AlexNet with the paper's layer sizes (227x227 input).

    Built to check :func:`alexnet_layer_table` against real tensors; includes
    ReLU, local response normalisation (size 5, alpha 1e-4, beta 0.75, k 2,
    Sec. 3.3), overlapping max pooling and dropout 0.5 before fc6 and fc7.
    Randomly initialised (no weights are downloaded). Imports torch.
    """
    import torch.nn as nn

    g = 2 if grouped else 1
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=g), nn.ReLU(inplace=True),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1, groups=g), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=g), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


# --------------------------------------------------------------------------
# VGG19 (Simonyan & Zisserman 2015, Table 1 column E)
# --------------------------------------------------------------------------
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def vgg19_table(include_bias: bool = False, input_size: int = 224, num_classes: int = 1000) -> list:
    """The VGG19 memory/parameter table of Homework 4, Problem 1.2.

    VGG19 = configuration E of Simonyan & Zisserman (ICLR 2015, Table 1):
    3x3 convolutions, stride 1, pad 1; 2x2 max pooling, stride 2; FC 4096,
    4096, 1000. One row per layer (``Input``, ``CONV3-64``, ``POOL2``, ...,
    ``FC``) with ``activations`` (number of values in the layer's output,
    "memory") and ``params``; as in the homework's table, biases are
    **excluded** by default (``include_bias=True`` adds them).

    Examples from the homework: first CONV3-64 has ``(3*3*3)*64 = 1,728``
    weights; CONV3-256 ``(3*3*256)*256 = 589,824``; the first CONV3-512
    ``(3*3*256)*512 = 1,179,648``; FC 4096->4096 ``16,777,216``.
    Totals: 143,652,544 weights; 143,667,240 with biases (torchvision's
    ``vgg19``).
    """
    rows = [{
        "layer": "Input", "type": "input", "output_shape": (input_size, input_size, 3),
        "activations": input_size * input_size * 3, "weights": 0, "biases": 0, "params": 0,
    }]
    shape = (input_size, input_size, 3)
    for v in _VGG19_CFG:
        if v == "M":
            r = _pool_row("POOL2", shape, 2, 2)
        else:
            r = _conv_row(f"CONV3-{v}", shape, v, 3, 1, 1, 1, include_bias)
        shape = r["output_shape"]
        rows.append(r)
    feat = shape[0] * shape[1] * shape[2]
    for out in (4096, 4096, num_classes):
        r = _fc_row("FC", feat, out, include_bias)
        rows.append(r)
        feat = out
    return rows


def vgg19_totals(include_bias: bool = False, input_size: int = 224) -> dict:
    """Totals of :func:`vgg19_table`: ``{"activations": ..., "params": ...}``.

    ``activations`` sums every row including the input (16,542,184 values at
    224x224, about 66 MB per image in float32, forward pass only); ``params`` is
    143,652,544 without biases and 143,667,240 with.
    """
    rows = vgg19_table(include_bias, input_size)
    return {"activations": sum(r["activations"] for r in rows),
            "params": sum(r["params"] for r in rows)}


# --------------------------------------------------------------------------
# Inception modules (Szegedy et al. 2015, Fig. 2)
# --------------------------------------------------------------------------
def inception_module(input_shape: tuple, branches: Sequence[Sequence[tuple]],
                     include_bias: bool = True) -> dict:
    """Output sizes, multiply-adds and parameters of an Inception module.

    ``branches`` is a list of branches; each branch is a list of ops
    ``("conv", K, C_out)`` or ``("pool", K)`` (max pooling, stride 1). All
    ops use stride 1 and "same" padding (``(K - 1)/2``), so every branch
    keeps the ``H x W`` of the input and the branch outputs are concatenated
    along the channels ("filter concatenation", Szegedy et al. 2015, Fig. 2).

    Returns ``{"layers": [...], "branch_outputs": [...], "output_shape":
    (H, W, sum C), "multiply_adds": total, "params": total}``; each layer row
    has ``branch, op, kernel, input_shape, output_shape, multiply_adds,
    params``. Multiply-adds use :func:`conv_multiply_adds`; pooling counts 0.
    """
    h, w, c = input_shape
    layers, outs = [], []
    for bi, branch in enumerate(branches):
        shape = (h, w, c)
        for op in branch:
            if op[0] == "conv":
                k, co = int(op[1]), int(op[2])
                out = (h, w, co)
                macs = conv_multiply_adds(shape[2], co, k, (h, w))
                params = conv_param_count(shape[2], co, k, bias=include_bias)
                name = f"{k}x{k} conv {co}"
            elif op[0] == "pool":
                k = int(op[1])
                out, macs, params, name = shape, 0, 0, f"{k}x{k} max pool"
            else:
                raise ValueError(f"unknown op {op!r}")
            layers.append({"branch": bi, "op": name, "kernel": k, "input_shape": shape,
                           "output_shape": out, "multiply_adds": macs, "params": params})
            shape = out
        outs.append(shape)
    return {
        "layers": layers,
        "branch_outputs": outs,
        "output_shape": (h, w, sum(o[2] for o in outs)),
        "multiply_adds": sum(r["multiply_adds"] for r in layers),
        "params": sum(r["params"] for r in layers),
    }


def inception_naive(input_shape: tuple = (32, 32, 256), n1x1: int = 128, n3x3: int = 192,
                    n5x5: int = 96, include_bias: bool = True) -> dict:
    """Naive Inception module (Szegedy et al. 2015, Fig. 2a) with Homework 4's Figure 1 filters.

    Branches: 1x1 conv 128; 3x3 conv 192; 5x5 conv 96; 3x3 max pool, on a
    32x32x256 input. Output 32x32x(128+192+96+256) = 32x32x672.
    Multiply-adds: 1x1 ``32*32*128*1*1*256 = 33,554,432``; 3x3
    ``32*32*192*3*3*256 = 452,984,832``; 5x5 ``32*32*96*5*5*256 =
    629,145,600``; total 1,115,684,864 (about 1.12 G).
    """
    return inception_module(input_shape, [[("conv", 1, n1x1)], [("conv", 3, n3x3)],
                                          [("conv", 5, n5x5)], [("pool", 3)]], include_bias)


def inception_dimension_reduction(
    input_shape: tuple = (32, 32, 256), n1x1: int = 128, n3x3_reduce: int = 128, n3x3: int = 192,
    n5x5_reduce: int = 32, n5x5: int = 96, pool_proj: int = 64, include_bias: bool = True,
) -> dict:
    """Inception module with dimension reductions (Szegedy et al. 2015, Fig. 2b), Homework 4 Figure 1.

    Branches: 1x1 conv 128; 1x1 reduce 128 then 3x3 conv 192; 1x1 reduce 32
    then 5x5 conv 96; 3x3 max pool then 1x1 conv 64. Output
    32x32x(128+192+96+64) = 32x32x480. Multiply-adds:
    ``33,554,432 + (33,554,432 + 226,492,416) + (8,388,608 + 78,643,200)
    + 16,777,216 = 397,410,304``, about 2.8x fewer than the naive module.
    """
    return inception_module(input_shape, [
        [("conv", 1, n1x1)],
        [("conv", 1, n3x3_reduce), ("conv", 3, n3x3)],
        [("conv", 1, n5x5_reduce), ("conv", 5, n5x5)],
        [("pool", 3), ("conv", 1, pool_proj)],
    ], include_bias)


# --------------------------------------------------------------------------
# Babenko et al. 2014, modified for 64x64 Tiny ImageNet (2IMM10)
# --------------------------------------------------------------------------
#: Filters of Layers 1-5 of Babenko et al.'s network (Fig. 1 of the ECCV 2014 paper): 96, 192,
#: 288, 288, 256 -- narrower than Krizhevsky et al.'s 96, 256, 384, 384, 256 in Layers 2-4.
#: Provenance (issue 13): the figure itself (an image in the PDF) could not be opened from the
#: machine this was written on; these widths are those of an independent PyTorch port of the
#: same 2IMM10 assignment, and they give the 1024-value valid-padding Layer-5 code that port
#: reports. A person should confirm them against Fig. 1.
BABENKO_FILTERS = (96, 192, 288, 288, 256)
#: Kernels of Layers 1-5: the assignment's 4x4 for Layer 1 (the paper's is 11x11, stride 4),
#: then 5x5, 3x3, 3x3, 3x3 as in the paper.
BABENKO_KERNELS = (4, 5, 3, 3, 3)


def babenko_layer_table(num_classes: int = 190, input_size: int = 64, padding: str = "same",
                        fc_units: int = 2048, include_bias: bool = True) -> list:
    """Layer table of the modified Babenko et al. ConvNet (2IMM10 Assignment 2, Task 1.1).

    Babenko et al. (ECCV 2014, Fig. 1): five convolutional layers with
    :data:`BABENKO_FILTERS` = 96, 192, 288, 288, 256 filters (11x11/4, 5x5,
    3x3, 3x3, 3x3), max pooling after Layers 1, 2 and 5, two 4096-unit fully
    connected Layers 6 and 7 and a softmax Layer 8. The neural codes are the
    outputs of Layer 5 (after pooling), 6 and 7. The seed modifies it:

    * Layer 1: 4x4 kernel, stride 1 (instead of 11x11, stride 4);
    * Layers 6 and 7: 2048 units (instead of 4096);
    * every pooling layer: 3x3 window, stride 2;
    * dropout 0.5 before Layers 6 and 7;
    * Layer 8: ``num_classes`` = 190 (the in-domain classes).

    The seed does not fix the conv padding. Default ``padding='same'``
    (stride 1 keeps the size): 64 -> Layer 1 64x64x96 -> pool 31x31x96 ->
    Layer 2 31x31x192 -> pool 15x15x192 -> Layers 3-5 15x15 -> pool
    7x7x256, so the Layer-5 code has 12,544 values (the paper's 224x224
    network gives 6x6x256 = 9216). ``padding='valid'`` (no padding) gives
    61 -> 30 -> 26 -> 12 -> 10 -> 8 -> 6 -> 2, i.e. a 2x2x256 = 1024-value
    Layer-5 code. Layer 6/7 codes are ``fc_units`` = 2048 long either way.
    Local response normalisation is not used (the seed does not ask for it).
    """
    p1 = "same" if padding == "same" else 0
    rows, shape = [], (input_size, input_size, 3)

    def conv(name, out, k):
        nonlocal shape
        if p1 == "same":
            r = _conv_row(name, shape, out, k, 1, 0, 1, include_bias)
            r["output_shape"] = (shape[0], shape[1], out)
            r["padding"] = "same"
            r["activations"] = shape[0] * shape[1] * out
            r["multiply_adds"] = conv_multiply_adds(shape[2], out, k, shape[:2])
        else:
            r = _conv_row(name, shape, out, k, 1, 0, 1, include_bias)
        rows.append(r)
        shape = r["output_shape"]

    def pool(name):
        nonlocal shape
        r = _pool_row(name, shape, 3, 2)
        rows.append(r)
        shape = r["output_shape"]

    for i, (out, k) in enumerate(zip(BABENKO_FILTERS, BABENKO_KERNELS), 1):
        conv(f"layer{i}", out, k)
        if i in (1, 2, 5):
            pool(f"pool{i}")
    feat = shape[0] * shape[1] * shape[2]
    for name, out in (("layer6", fc_units), ("layer7", fc_units), ("layer8", num_classes)):
        rows.append(_fc_row(name, feat, out, include_bias))
        feat = out
    return rows


def babenko_convnet(num_classes: int = 190, input_size: int = 64, padding: str = "same",
                    fc_units: int = 2048, dropout: float = 0.5) -> Any:
    """Torch module for :func:`babenko_layer_table` with named blocks for neural codes.

    Children (an ``nn.Sequential`` with named modules): ``layer1`` ...
    ``layer8``; ``layer1``/``layer2``/``layer5`` end with their 3x3/2 max
    pooling; ``layer5`` also flattens, so its output is the layer-5 neural
    code (12,544-d for 64x64 inputs with "same" padding); ``layer6`` and
    ``layer7`` are dropout -> linear -> ReLU (2048-d codes); ``layer8`` is
    the linear classifier (logits; softmax is in the loss). Imports torch.
    """
    from collections import OrderedDict

    import torch.nn as nn

    pad = "same" if padding == "same" else 0
    rows = babenko_layer_table(num_classes, input_size, padding, fc_units)
    flat = rows[-3]["input_shape"][0]
    c1, c2, c3, c4, c5 = BABENKO_FILTERS
    k1, k2, k3, k4, k5 = BABENKO_KERNELS
    return nn.Sequential(OrderedDict([
        ("layer1", nn.Sequential(nn.Conv2d(3, c1, k1, padding=pad), nn.ReLU(), nn.MaxPool2d(3, 2))),
        ("layer2", nn.Sequential(nn.Conv2d(c1, c2, k2, padding=pad), nn.ReLU(), nn.MaxPool2d(3, 2))),
        ("layer3", nn.Sequential(nn.Conv2d(c2, c3, k3, padding=pad), nn.ReLU())),
        ("layer4", nn.Sequential(nn.Conv2d(c3, c4, k4, padding=pad), nn.ReLU())),
        ("layer5", nn.Sequential(nn.Conv2d(c4, c5, k5, padding=pad), nn.ReLU(), nn.MaxPool2d(3, 2),
                                 nn.Flatten())),
        ("layer6", nn.Sequential(nn.Dropout(dropout), nn.Linear(flat, fc_units), nn.ReLU())),
        ("layer7", nn.Sequential(nn.Dropout(dropout), nn.Linear(fc_units, fc_units), nn.ReLU())),
        ("layer8", nn.Linear(fc_units, num_classes)),
    ]))


# --------------------------------------------------------------------------
# ResNet-50 transfer learning (Homework 4, Problem 2)
# --------------------------------------------------------------------------
def resnet50_parameter_counts(num_classes: int, mode: str = "finetune") -> dict:
    r"""Total / trainable / frozen parameters of ResNet-50 with a new ``num_classes`` head.

    The final FC layer (2048 -> 1000) is replaced by 2048 -> ``num_classes``:
    ``total = 25,557,032 - (2048*1000 + 1000) + (2048*C + C)``.

    * ``mode='finetune'``: every parameter is trainable.
    * ``mode='feature_extractor'``: everything except the new FC is frozen,
      trainable = ``2048*C + C`` (Homework 4, Problem 2.2).

    (BatchNorm running statistics are buffers, not parameters; they are not
    counted.)
    """
    head = linear_param_count(_RESNET50_FC_IN, num_classes)
    total = RESNET50_NUM_PARAMS - linear_param_count(_RESNET50_FC_IN, 1000) + head
    if mode == "finetune":
        trainable = total
    elif mode == "feature_extractor":
        trainable = head
    else:
        raise ValueError("mode must be 'finetune' or 'feature_extractor'")
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


def resnet50_transfer_model(num_classes: int, mode: str = "finetune") -> Any:
    """torchvision ResNet-50 (``weights=None``) with a new head, set up for transfer learning.

    ``mode='finetune'``: all parameters ``requires_grad=True``.
    ``mode='feature_extractor'``: all parameters frozen except the new
    ``fc`` (Homework 4, Problem 2; PyTorch transfer-learning tutorial). In a
    real run the pretrained ImageNet weights would be loaded first; here
    nothing is downloaded. Imports torch / torchvision.
    """
    import torch.nn as nn
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    if mode == "feature_extractor":
        for p in model.parameters():
            p.requires_grad = False
    elif mode != "finetune":
        raise ValueError("mode must be 'finetune' or 'feature_extractor'")
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def multistep_lr(base_lr: float, milestones: Sequence[int], gamma: float, epoch: int) -> float:
    r"""Learning rate at ``epoch`` of a multi-step schedule (torch ``MultiStepLR``).

    .. math:: \eta_e = \eta_0\,\gamma^{\,|\{m \in M : m \le e\}|}

    Homework 4, Problem 2.1(b): ``base_lr = 0.001``, ``gamma = 0.1``, three
    drops (e.g. milestones 15, 30, 45 for 60 epochs) give 1e-3, 1e-4, 1e-5,
    1e-6. Epochs count from 0 and the scheduler steps once per epoch.
    """
    return float(base_lr) * float(gamma) ** bisect.bisect_right(sorted(milestones), int(epoch))


def multistep_lr_schedule(base_lr: float, milestones: Sequence[int], gamma: float,
                          num_epochs: int) -> list:
    """The learning rate of every epoch ``0 .. num_epochs-1`` (see :func:`multistep_lr`)."""
    return [multistep_lr(base_lr, milestones, gamma, e) for e in range(num_epochs)]


def evenly_spaced_milestones(num_epochs: int, num_drops: int = 3) -> list:
    """Milestones ``k * num_epochs // (num_drops + 1)``, k = 1..num_drops (60 epochs -> [15, 30, 45])."""
    return [k * num_epochs // (num_drops + 1) for k in range(1, num_drops + 1)]
