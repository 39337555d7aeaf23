"""Public tests of dlip-a2: students run these with `gradekit check`. Worth no points; they
catch naming, shape and type mistakes early. The hidden tests check the values."""
import numpy as np

from gradekit.grading import StudentError, as_torch, expect_array, question


@question("ranking", points=0)
def test_rank_returns_indices(submission):
    q, d = np.eye(2, 3), np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    got = np.asarray(submission.call("rank", q, d, k=2)).tolist()
    assert got == [[1, 2], [0, 2]], f"rank(queries, database, k=2) on 2 unit queries and 3 database rows gave {got}, not [[1, 2], [0, 2]]"


@question("oxford-ap", points=0)
def test_oxford_ap_of_a_perfect_ranking(submission):
    got = float(expect_array(submission.call("oxford_ap", ["a", "b", "c"], ["a"], ["b"], []), "oxford_ap(...)", shape=()))
    assert abs(got - 1.0) < 1e-12, f"both positives first: AP should be 1.0, not {got}"


@question("gem", points=0)
def test_gem_gives_one_value_per_channel(submission):
    gem = submission.model(submission.new("GeM"))
    out = gem.forward(np.ones((2, 5, 3, 3), dtype=np.float32))
    assert out.shape == (2, 5), f"GeM() should map (2, 5, 3, 3) to (2, 5), not {out.shape}"
    assert np.allclose(out, 1.0, atol=1e-5), "GeM of a map of ones should be ones"


@question("triplet-loss", points=0)
def test_triplet_loss_is_one_number(submission):
    a = np.ones((4, 3), dtype=np.float32)
    got = expect_array(submission.call("triplet_loss", as_torch(a), as_torch(a), as_torch(a), margin=0.3), "triplet_loss(...)")
    if got.size != 1:
        raise StudentError(f"triplet_loss(...) should return one number (the batch mean), not shape {got.shape}")
    assert abs(float(got.reshape(-1)[0]) - 0.3) < 1e-6, f"triplet_loss(a, a, a, margin=0.3) should be 0.3, not {got}"
