"""Public tests of Homework 4, Problem 1 (0 points): the names exist with the right types.
They say nothing about correctness: the hidden tests check every value."""
import numbers

from gradekit.grading import StudentError, question


def _is_table(value):
    return isinstance(value, (list, tuple)) and all(isinstance(r, dict) for r in value)


@question("1.1", points=0, visibility="visible")
def test_alexnet_names(submission):
    if submission.get("ALEXNET_READING") not in ("grouped", "ungrouped"):
        raise StudentError('ALEXNET_READING must be "grouped" or "ungrouped"')
    if not _is_table(submission.get("ALEXNET_TABLE")):
        raise StudentError("ALEXNET_TABLE must be a list of dicts (or a pandas DataFrame)")


@question("1.2a", points=0, visibility="visible")
def test_vgg19_names(submission):
    table = submission.get("VGG19_TABLE")
    if not _is_table(table) or len(table) != 25:
        raise StudentError("VGG19_TABLE must be the homework's 25 rows, as a list of dicts (or a DataFrame)")
    if any(r.get("activations") is None or r.get("params") is None for r in table):
        raise StudentError("VGG19_TABLE still has empty (None) cells")


@question("1.3a", points=0, visibility="visible")
def test_receptive_field_of_one_layer(submission):
    got = submission.call("receptive_field", 1, 3)  # one 3x3 layer sees 3x3 pixels
    if not isinstance(got, numbers.Integral) or got != 3:
        raise StudentError(f"receptive_field(1, 3) is {got!r}; one 3x3 layer sees 3 pixels")
