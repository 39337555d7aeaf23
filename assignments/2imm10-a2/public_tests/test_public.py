"""Public tests of 2imm10-a2: students run these with `gradekit check`. Worth no points; they
catch naming, shape and type mistakes early. The hidden tests check the values."""
import numpy as np

from gradekit.grading import StudentError, as_torch, expect_array, question


@question("1.1-pools-fc", points=0)
def test_make_convnet_gives_one_logit_per_class(submission):
    net = submission.model(submission.new("make_convnet", num_classes=10))
    out = net.forward(np.zeros((2, 3, 64, 64), dtype=np.float32))
    assert out.shape == (2, 10), f"make_convnet(num_classes=10) should map 2 images to logits (2, 10), not {out.shape}"


@question("1.2-stopping", points=0)
def test_should_stop_answers_true_or_false(submission):
    got = submission.call("should_stop", [3.0, 2.0])
    assert isinstance(got, (bool, np.bool_)), f"should_stop(...) should return True or False, not {got!r}"


@question("2.2-loss", points=0)
def test_triplet_loss_is_one_number(submission):
    a = np.zeros((4, 3), dtype=np.float32)
    got = expect_array(submission.call("triplet_loss", as_torch(a), as_torch(a), as_torch(a), 0.5), "triplet_loss(...)")
    if got.size != 1:
        raise StudentError(f"triplet_loss(...) should return one number (the batch mean), not shape {got.shape}")
    # all three embeddings equal: both distances are 0, so every triplet costs the margin
    assert abs(float(got.reshape(-1)[0]) - 0.5) < 1e-6, f"triplet_loss(a, a, a, margin=0.5) should be 0.5, not {got}"


@question("2.3-random", points=0)
def test_random_triplets_shape(submission):
    labels = np.repeat(np.arange(4), 3)
    t = expect_array(submission.call("random_triplets", labels, 5, seed=0), "random_triplets(labels, 5, seed=0)")
    assert t.shape == (5, 3), f"random_triplets(labels, 5, seed=0) should have shape (5, 3), not {t.shape}"


@question("2.4-evaluation", points=0)
def test_one_shot_tasks_shapes(submission):
    labels = np.repeat(np.arange(6), 2)
    got = submission.call("make_one_shot_tasks", labels, n_way=4, num_tasks=3, seed=0)
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise StudentError("make_one_shot_tasks should return (query, support, target)")
    shapes = [np.asarray(v).shape for v in got]
    assert shapes == [(3,), (3, 4), (3,)], f"(query, support, target) for 3 4-way tasks have shapes {shapes}"
