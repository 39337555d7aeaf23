"""Public tests of dl-example: students run these with `gradekit check`. Worth no points;
they catch naming and shape mistakes early."""
import numpy as np

from gradekit.grading import question


@question("q1-layers", points=0)
def test_tiny_convnet_gives_one_logit_per_class(submission):
    net = submission.model(submission.new("TinyConvNet", num_classes=3))
    out = net.forward(np.zeros((2, 3, 32, 32), dtype=np.float32))
    assert out.shape == (2, 3), f"TinyConvNet(num_classes=3) should map 2 images to logits of shape (2, 3), not {out.shape}"


@question("q2-count", points=0)
def test_count_parameters_is_an_integer(submission):
    n = submission.call("count_parameters", submission.new("TinyConvNet", num_classes=3))
    assert isinstance(n, int) and n > 0, f"count_parameters(model) should be a positive integer, not {n!r}"
