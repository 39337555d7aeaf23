"""gradekit.data.synth: same seed, same bytes; shapes that differ and can be learned."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from gradekit.data import SHAPES, Synthesized, draw_shape, synthesize


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("format", ["tiny-imagenet", "omniglot", "image-folder"])
def test_same_seed_same_bytes_other_seed_other_bytes(format, tmp_path):
    start = time.perf_counter()
    a = synthesize(format, tmp_path / "a", seed=7)
    assert time.perf_counter() - start < 2.0  # a default set is quick to make
    b = synthesize(format, tmp_path / "b", seed=7)
    c = synthesize(format, tmp_path / "c", seed=8)
    assert isinstance(a, Synthesized) and a.format == format and a.seed == 7
    assert a.root == tmp_path / "a" and a.counts == b.counts == c.counts
    ta, tb, tc = _tree(a.root), _tree(b.root), _tree(c.root)
    assert ta == tb and len(ta) > 10
    assert ta != tc


def test_torch_weights_are_deterministic_too(tmp_path):
    a = synthesize("torch-weights", tmp_path / "a", seed=1)  # default: resnet18 only
    b = synthesize("torch-weights", tmp_path / "b", seed=1)
    c = synthesize("torch-weights", tmp_path / "c", seed=2)
    ta, tb, tc = _tree(a.root), _tree(b.root), _tree(c.root)
    assert list(ta) == ["hub/checkpoints/resnet18-f37072fd.pth"] and a.counts == {"files": 1}
    assert ta == tb and ta != tc


def test_synthesize_refuses_a_used_folder_and_unknown_sizes(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("an instructor's file")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        synthesize("image-folder", tmp_path / "used")
    with pytest.raises(TypeError, match="has no size shapes; it takes classes, per_class, size, ext"):
        synthesize("image-folder", tmp_path / "new", shapes=3)
    with pytest.raises(ValueError, match="classes must be 1..10"):
        synthesize("tiny-imagenet", tmp_path / "new", classes=11)


def test_draw_shape_output_and_determinism():
    for kind in SHAPES:
        img = draw_shape(kind, 48, np.random.default_rng(0))
        assert img.shape == (48, 48, 3) and img.dtype == np.uint8
        assert np.array_equal(img, draw_shape(kind, 48, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="unknown shape 'blob'"):
        draw_shape("blob", 48, np.random.default_rng(0))


def test_shapes_of_different_classes_differ():
    # the same random draws, a different class: the pictures differ
    images = [draw_shape(kind, 32, np.random.default_rng(5)) for kind in SHAPES]
    for i in range(len(SHAPES)):
        for j in range(i + 1, len(SHAPES)):
            assert np.abs(images[i].astype(int) - images[j].astype(int)).mean() > 2, (SHAPES[i], SHAPES[j])


def test_classes_are_learnable():
    """1-nearest-neighbour on a translation-invariant feature (the spectrum's magnitude) tells
    held-out draws apart far above chance, so a model has something to learn."""
    rng = np.random.default_rng(0)

    def features(n):
        x, y = [], []
        for label, kind in enumerate(SHAPES):
            for _ in range(n):
                grey = draw_shape(kind, 32, rng).mean(axis=-1)
                grey = (grey - grey.mean()) / (grey.std() + 1e-6)
                x.append(np.log1p(np.abs(np.fft.fft2(grey))[:16, :16]).ravel())
                y.append(label)
        return np.array(x), np.array(y)

    x_train, y_train = features(30)
    x_test, y_test = features(15)
    distances = ((x_test[:, None, :] - x_train[None, :, :]) ** 2).sum(-1)
    accuracy = (y_train[distances.argmin(1)] == y_test).mean()
    assert accuracy > 0.85, accuracy  # chance is 0.1
