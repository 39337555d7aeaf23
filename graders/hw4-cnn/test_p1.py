"""Hidden graders of Homework 4, Problem 1 (seed 004): CNN architectures.

One test per auto-graded question, carrying all its points. Expected values come from
``reference.architectures`` (AlexNet: Krizhevsky et al. 2012, Sec. 3.5 and Fig. 2; VGG19:
Simonyan & Zisserman, Table 1 column E; Inception: Szegedy et al. 2015, Fig. 2 with the
homework's Figure 1 filter counts). Questions 1.1-calc, 1.3-proof, 1.4a, 1.4d-explain and
1.5a-d are graded by staff (``manual = true``) and have no test here.

What the tests check, following the notebook's contract:

* **Tables** (1.1, 1.2a, 1.2b) arrive as a list of dicts, or as a pandas DataFrame, which the
  bridge sends as its rows (a list of dicts). Every cell is checked, and every wrong cell is
  listed in the message. Numbers must be exact integers (an integral float from a DataFrame
  column passes; ``3.2M``-style strings and rounded values do not).
* **AlexNet's two readings** (1.1): the notebook declares ``ALEXNET_READING``, ``"grouped"``
  (the paper's two-GPU split: conv2, conv4 and conv5 see half the channels) or
  ``"ungrouped"``; the table is checked against the declared reading, and a table of the other
  reading fails. Rows for layers without weights (pools, norms) are allowed with 0 parameters.
* **VGG19** (1.2): activations (1.2a) and parameters without biases (1.2b) are separate
  questions, each with its column's total; the homework's pre-filled cells must stay as given.
* **receptive_field** (1.3a) is called on fixed cases (N = 1, F = 1, the homework's three 5x5)
  and on 12 (N, F) pairs drawn from the grading secret, N in 1..30 and F in 1..15.
* **Inception** (1.4b-d): each module's sizes and multiply-adds (the notebook defines the
  convention: one multiply-add per weight per output position, every convolution of the
  module counted, pooling and biases not) are separate questions; the ratio is compared with
  ``rtol`` from the spec (three significant digits).
"""
from __future__ import annotations

import numbers

from gradekit.grading import StudentError, assert_close, assert_equal, question
from reference import architectures

ALEXNET_WEIGHT_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
INPUT = (32, 32, 256)


def exact_int(value) -> int | None:
    """``value`` as an int when it is an integer number (an integral float passes), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    return int(value) if float(value).is_integer() else None


def rows_of(value, name: str, keys: tuple[str, ...]) -> list[dict]:
    """The student's table as a list of dicts with at least ``keys``, or a StudentError."""
    if not isinstance(value, (list, tuple)):
        raise StudentError(f"{name} must be a list of dicts (one per row) or a pandas DataFrame, "
                           f"not {type(value).__name__}: {str(value)[:100]}")
    rows = []
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            raise StudentError(f"{name}: row {i} is a {type(row).__name__}, not a dict")
        missing = [k for k in keys if k not in row]
        if missing:
            raise StudentError(f"{name}: row {i} ({row.get('layer', '?')!s}) lacks the key(s) "
                               f"{', '.join(repr(k) for k in missing)}; each row has {', '.join(repr(k) for k in keys)}")
        rows.append(row)
    return rows


def cell_problem(actual, expected: int, where: str) -> str | None:
    got = exact_int(actual)
    if got is None:
        return f"{where} is {actual!r}, not an integer number"
    return None if got == expected else f"{where} is {got:,}"


def fail_cells(name: str, problems: list[str], hint: str) -> None:
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise StudentError(f"{name}: {len(problems)} wrong cell(s): {shown}. {hint}")


# -- 1.1 AlexNet --------------------------------------------------------------------------------
@question("1.1", points=4)
def test_alexnet_parameters(submission):
    reading = submission.get("ALEXNET_READING")
    if reading not in ("grouped", "ungrouped"):
        raise StudentError(f'ALEXNET_READING must be "grouped" or "ungrouped" (the reading your table follows), '
                           f"not {reading!r}")
    grouped = reading == "grouped"
    expected = {r["layer"]: r for r in architectures.alexnet_layer_table(grouped=grouped, include_bias=True)}
    rows = rows_of(submission.get("ALEXNET_TABLE"), "ALEXNET_TABLE", ("layer", "weights", "biases", "params"))
    by_name: dict[str, dict] = {}
    problems = []
    for row in rows:
        layer = row["layer"]
        if not isinstance(layer, str):
            raise StudentError(f"ALEXNET_TABLE: a row's layer is {layer!r}, not a name such as 'conv1'")
        if layer in by_name:
            raise StudentError(f"ALEXNET_TABLE has two rows named {layer!r}")
        by_name[layer] = row
    missing = [n for n in ALEXNET_WEIGHT_LAYERS if n not in by_name]
    if missing:
        raise StudentError(f"ALEXNET_TABLE has no row for {', '.join(missing)} (rows: {', '.join(map(str, by_name))})")
    for name in ALEXNET_WEIGHT_LAYERS:
        for key in ("weights", "biases", "params"):
            p = cell_problem(by_name[name][key], expected[name][key], f"{name} {key}")
            if p:
                problems.append(p)
    for name, row in by_name.items():  # pooling / normalisation rows: no parameters
        if name not in ALEXNET_WEIGHT_LAYERS:
            for key in ("weights", "biases", "params"):
                p = cell_problem(row[key], 0, f"{name} {key}")
                if p:
                    problems.append(p + " (a layer without weights has 0 parameters)")
    fail_cells("ALEXNET_TABLE", problems,
               f"Your table declares the {reading} reading: "
               + ("conv2, conv4 and conv5 see only the 48, 192 and 192 channels on their own GPU"
                  if grouped else "every kernel sees all the channels of the previous layer")
               + "; count the biases, one per filter or output unit")
    total = exact_int(submission.get("ALEXNET_TOTAL_PARAMS"))
    want = architectures.alexnet_param_count(grouped=grouped, include_bias=True)
    if total != want:
        raise StudentError(f"ALEXNET_TOTAL_PARAMS is {submission.get('ALEXNET_TOTAL_PARAMS')!r}: not the sum of the "
                           f"parameters of every layer in the {reading} reading", expected=f"; expected {want:,}")


# -- 1.2 VGG19 ------------------------------------------------------------------------------------
def vgg_rows(submission):
    expected = architectures.vgg19_table(include_bias=False)
    rows = rows_of(submission.get("VGG19_TABLE"), "VGG19_TABLE", ("layer", "activations", "params"))
    if len(rows) != len(expected):
        raise StudentError(f"VGG19_TABLE has {len(rows)} rows; the homework's table has {len(expected)} "
                           "(Input, the 16 CONV3 and 5 POOL2 layers, the 3 FC layers), in that order")
    names = [r["layer"] for r in rows]
    if names != [r["layer"] for r in expected]:
        bad = next(i for i, (a, b) in enumerate(zip(names, [r["layer"] for r in expected])) if a != b)
        raise StudentError(f"VGG19_TABLE's rows are not the homework's, in its order: row {bad} is "
                           f"{names[bad]!r}, where the homework's table has {expected[bad]['layer']!r}")
    total = submission.get("VGG19_TOTAL")
    if not isinstance(total, dict) or not {"activations", "params"} <= set(total):
        raise StudentError(f'VGG19_TOTAL must be a dict {{"activations": ..., "params": ...}}, not {str(total)[:100]}')
    return rows, expected, total


def check_vgg_column(submission, key: str, hint: str) -> None:
    rows, expected, total = vgg_rows(submission)
    problems = [p for i, (row, want) in enumerate(zip(rows, expected))
                if (p := cell_problem(row[key], want[key], f"row {i} ({row['layer']}) {key}"))]
    fail_cells("VGG19_TABLE", problems, hint)
    want_total = architectures.vgg19_totals(include_bias=False)[key]
    got = exact_int(total[key])
    if got != want_total:
        raise StudentError(f'VGG19_TOTAL["{key}"] is {total[key]!r}: not the sum of the column',
                           expected=f"; expected {want_total:,}")


@question("1.2a", points=3)
def test_vgg19_activations(submission):
    check_vgg_column(submission, "activations",
                     "Activations are the values in the layer's output: height * width * depth (3x3 convolutions "
                     "with pad 1 keep the size, 2x2 pooling with stride 2 halves it; FC layers: their outputs)")


@question("1.2b", points=3)
def test_vgg19_parameters(submission):
    check_vgg_column(submission, "params",
                     "Parameters without biases: (3 * 3 * depth in) * filters for a convolution, inputs * outputs "
                     "for a fully connected layer (the first one sees 7 * 7 * 512), 0 for pooling and the input")


# -- 1.3 receptive field --------------------------------------------------------------------------
FIXED_RF_CASES = ((1, 1), (1, 7), (5, 1), (2, 3), (3, 3), (3, 5), (4, 2), (10, 11))


@question("1.3a", points=1)
def test_receptive_field(submission, rng):
    drawn = [(int(n), int(f)) for n, f in zip(rng.integers(1, 31, 12), rng.integers(1, 16, 12))]
    wrong = []
    for n, f in FIXED_RF_CASES + tuple(drawn):
        got = submission.call("receptive_field", n, f)
        want = architectures.stacked_receptive_field(n, f)
        if exact_int(got) != want:
            wrong.append(f"receptive_field({n}, {f}) = {got!r}, expected {want}")
    if wrong:
        raise StudentError(f"{len(wrong)} of {len(FIXED_RF_CASES) + len(drawn)} calls are wrong: "
                           + "; ".join(wrong[:5]) + " (each extra layer adds F - 1 pixels)")


@question("1.3b", points=1)
def test_receptive_field_of_three_5x5(submission):
    got = submission.get("RF_THREE_5X5")
    want = architectures.stacked_receptive_field(3, 5)
    if exact_int(got) != want:
        raise StudentError(f"RF_THREE_5X5 is {got!r}: not the receptive field of three stacked 5x5 convolutions",
                           expected=f"; expected {want}")


# -- 1.4 Inception ----------------------------------------------------------------------------------
def check_shapes(submission, name: str, expected: dict) -> None:
    got = submission.get(name)
    if not isinstance(got, dict):
        raise StudentError(f"{name} must be a dict of (height, width, depth) tuples, not {type(got).__name__}")
    missing = [k for k in expected if k not in got]
    if missing:
        raise StudentError(f"{name} lacks the key(s) {', '.join(repr(k) for k in missing)}")
    problems = []
    for key, want in expected.items():
        value = got[key]
        if not isinstance(value, (tuple, list)) or len(value) != 3 or any(exact_int(v) is None for v in value):
            problems.append(f"{key!r} is {value!r}, not a (height, width, depth) tuple of ints")
        elif tuple(exact_int(v) for v in value) != tuple(want):
            problems.append(f"{key!r} is {tuple(value)}")
    if problems:
        raise StudentError(f"{name}: {len(problems)} wrong size(s): {'; '.join(problems)}",
                           expected="; expected " + ", ".join(f"{k}: {v}" for k, v in expected.items()))


def module_shapes(module: dict, keys: tuple[str, ...]) -> dict:
    """The reference module's layer outputs under the notebook's keys (layers in branch order), and the concat."""
    shapes = dict(zip(keys, (layer["output_shape"] for layer in module["layers"])))
    shapes["concat"] = module["output_shape"]
    return shapes


@question("1.4b-naive", points=2)
def test_inception_naive_shapes(submission):
    ref = architectures.inception_naive(INPUT)
    check_shapes(submission, "INCEPTION_NAIVE_SHAPES", module_shapes(ref, ("1x1", "3x3", "5x5", "pool")))


@question("1.4b-reduction", points=2)
def test_inception_reduction_shapes(submission):
    ref = architectures.inception_dimension_reduction(INPUT)
    keys = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool", "pool_proj")
    check_shapes(submission, "INCEPTION_REDUCTION_SHAPES", module_shapes(ref, keys))


def check_macs(submission, name: str, want: int, hint: str) -> None:
    got = submission.get(name)
    if exact_int(got) != want:
        raise StudentError(f"{name} is {got!r}. {hint}", expected=f"; expected {want:,}")


MACS_HINT = ("Count H_out * W_out * C_out * K * K * C_in multiply-adds for every convolution of the module "
             "(pooling and biases not counted, one multiply-add counted once)")


@question("1.4c-naive", points=2)
def test_inception_naive_multiply_adds(submission):
    check_macs(submission, "INCEPTION_NAIVE_MULTIPLY_ADDS", architectures.inception_naive(INPUT)["multiply_adds"],
               MACS_HINT)


@question("1.4c-reduction", points=2)
def test_inception_reduction_multiply_adds(submission):
    check_macs(submission, "INCEPTION_REDUCTION_MULTIPLY_ADDS",
               architectures.inception_dimension_reduction(INPUT)["multiply_adds"],
               MACS_HINT + "; the 1x1 reductions and the pool projection are convolutions too")


@question("1.4d-ratio", points=2)
def test_inception_saving(submission, tolerance):
    want = (architectures.inception_naive(INPUT)["multiply_adds"]
            / architectures.inception_dimension_reduction(INPUT)["multiply_adds"])
    got = submission.get("INCEPTION_SAVING")
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        raise StudentError(f"INCEPTION_SAVING must be a number (the naive module's multiply-adds divided by the "
                           f"dimension-reduction module's), not {got!r}")
    assert_close(float(got), want, **tolerance, name="INCEPTION_SAVING (naive / dimension reduction)")
