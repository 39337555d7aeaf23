"""Small synthetic data sets written in exactly the course's on-disk formats.

For tests and dry runs: ``synthesize("tiny-imagenet", root, seed=0)`` writes a set that
``formats.check`` accepts and the loaders read like the real one. Classes are learnable:
each is a shape or a stripe orientation (``SHAPES``) drawn with per-image jitter of
position, size, angle and colour on a noisy background, and ``draw_shape`` draws more of
them with no file at all (a grader's held-out set with known labels). The same seed gives
the same bytes. Nothing is downloaded.
"""
from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .formats import FORMATS, OMNIGLOT_SIZE, TINY_SIZE, known_format

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "star",
          "hstripes", "vstripes", "dstripes")
_STRIPE_ANGLES = {"hstripes": 90.0, "vstripes": 0.0, "dstripes": 45.0}
_JPEG = {"format": "JPEG", "quality": 90}  # fixed settings: same pixels, same bytes


@dataclass(frozen=True)
class Synthesized:
    """What ``synthesize`` wrote."""
    format: str
    root: Path
    seed: int
    counts: dict[str, int] = field(default_factory=dict)


def synthesize(format: str, root: str | os.PathLike, *, seed: int = 0, **size) -> Synthesized:
    """Write a small ``format`` data set into ``root`` (new or empty) and say what it holds.

    Sizes, by format (defaults in brackets):
    tiny-imagenet: classes [5] (at most len(SHAPES)), train [10] a class, val [10], test [5];
    omniglot: alphabets [2], characters [3] an alphabet, drawers [4], in each of splits
    [("background", "evaluation")]; image-folder: classes [3], per_class [12], size [64],
    ext ["jpg"]; torch-weights: archs [("resnet18",)], the smallest of weights.ARCHS;
    oxford5k: landmarks [3] (at most 11, the real names), queries [5] a landmark,
    per_landmark [10] images, distractors [10], size [64]; npy-features: models [("trained",)],
    dim [32], and the oxford5k sizes above (landmarks, queries, per_landmark, distractors),
    whose names its rows take.
    """
    writer = _WRITERS[known_format(format)]
    root = Path(os.path.expanduser(os.fspath(root)))
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} is not an empty folder; synthesize writes only into a new one")
    accepted = list(inspect.signature(writer).parameters)[3:]
    unknown = sorted(set(size) - set(accepted))
    if unknown:
        raise TypeError(f"synthesize({format!r}) has no size {', '.join(unknown)}; "
                        f"it takes {', '.join(accepted)}")
    root.mkdir(parents=True, exist_ok=True)
    counts = writer(root, np.random.default_rng(seed), seed, **size)
    return Synthesized(format, root, seed, counts)


# ---------------------------------------------------------------------------- drawing


def draw_shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) uint8 image of class ``kind`` (one of ``SHAPES``)."""
    return _draw(kind, size, rng)[0]


def _draw(kind: str, size: int, rng: np.random.Generator):
    """The image and the shape's box (x0, y0, x1, y1), as Tiny ImageNet's boxes files hold."""
    if kind not in SHAPES:
        raise ValueError(f"unknown shape {kind!r}; known: {', '.join(SHAPES)}")
    if size < 8:
        raise ValueError(f"size {size} is too small to draw a shape (at least 8)")
    # dark noisy background, bright shape: the class is in the form, not the colour
    bg = rng.uniform(0, 110, 3) + rng.normal(0, 18, (size, size, 3))
    colour = rng.uniform(140, 255, 3)
    if kind in _STRIPE_ANGLES:
        angle = math.radians(_STRIPE_ANGLES[kind] + rng.uniform(-8, 8))
        period = rng.uniform(0.15, 0.25) * size
        width = period * rng.uniform(0.35, 0.55)
        y, x = np.mgrid[0:size, 0:size]
        u = x * math.cos(angle) + y * math.sin(angle) + rng.uniform(0, period)
        mask = (u % period) < width
        img = np.where(mask[..., None], colour, bg)
        return np.clip(img, 0, 255).astype(np.uint8), (0, 0, size - 1, size - 1)

    r = rng.uniform(0.2, 0.32) * size
    cx, cy = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
    rot = rng.uniform(-15, 15)
    image = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    fill = tuple(int(v) for v in colour)
    if kind in ("circle", "ring"):
        points = [(cx - r, cy - r), (cx + r, cy + r)]
        if kind == "circle":
            draw.ellipse(points, fill=fill)
        else:
            draw.ellipse(points, outline=fill, width=max(2, round(0.3 * r)))
    else:
        if kind == "cross":
            w = 0.35 * r
            arms = [[(-r, -w), (r, -w), (r, w), (-r, w)], [(-w, -r), (w, -r), (w, r), (-w, r)]]
        else:
            n, start, radii = {"square": (4, 45, [r]), "diamond": (4, 0, [r]),
                               "triangle": (3, 90, [r]), "star": (10, 90, [r, 0.45 * r])}[kind]
            arms = [[(radii[k % len(radii)] * math.cos(math.radians(start - 360 * k / n)),
                      -radii[k % len(radii)] * math.sin(math.radians(start - 360 * k / n)))
                     for k in range(n)]]
        c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
        arms = [[(cx + c * px - s * py, cy + s * px + c * py) for px, py in arm] for arm in arms]
        for arm in arms:
            draw.polygon(arm, fill=fill)
        points = [p for arm in arms for p in arm]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    box = tuple(int(min(max(round(v), 0), size - 1)) for v in (min(xs), min(ys), max(xs), max(ys)))
    return np.asarray(image), box


def _character(rng: np.random.Generator) -> list[np.ndarray]:
    """A character: 1-4 strokes (polylines or arcs) in unit coordinates."""
    strokes = []
    for _ in range(rng.integers(1, 5)):
        if rng.random() < 0.6:
            strokes.append(rng.uniform(0.2, 0.8, (rng.integers(2, 5), 2)))
        else:
            centre, radius = rng.uniform(0.35, 0.65, 2), rng.uniform(0.1, 0.25)
            t = np.linspace(0, 1, 12) * rng.uniform(1.0, 1.8) * math.pi + rng.uniform(0, 2 * math.pi)
            strokes.append(centre + radius * np.stack([np.cos(t), np.sin(t)], axis=1))
    return strokes


def _drawing(strokes: list[np.ndarray], rng: np.random.Generator) -> Image.Image:
    """One drawer's rendering: the character under a small affine jitter and wobble."""
    a = math.radians(rng.normal(0, 5))
    m = (1 + rng.normal(0, 0.06)) * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    shift = rng.normal(0, 0.03, 2)
    image = Image.new("L", (OMNIGLOT_SIZE, OMNIGLOT_SIZE), 255)
    draw = ImageDraw.Draw(image)
    width = int(rng.integers(2, 4))
    for stroke in strokes:
        pts = (stroke - 0.5) @ m.T + 0.5 + shift + rng.normal(0, 0.012, stroke.shape)
        pts = np.clip(pts, 0.05, 0.95) * (OMNIGLOT_SIZE - 1)
        draw.line([tuple(p) for p in pts.tolist()], fill=0, width=width, joint="curve")
    return image.convert("1", dither=Image.Dither.NONE)  # the real files are 1-bit


# ---------------------------------------------------------------------------- writers


def _tiny_imagenet(root: Path, rng, seed, *, classes=5, train=10, val=10, test=5):
    if not 1 <= classes <= len(SHAPES):
        raise ValueError(f"tiny-imagenet: classes must be 1..{len(SHAPES)} (one shape each)")
    numbers = rng.choice(10 ** 7, size=classes + 2, replace=False)
    wnids = [f"n0{n:07d}" for n in numbers]
    wnids, decoys = wnids[:classes], wnids[classes:]  # words.txt lists more synsets than wnids
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))  # unsorted, as the real one
    words = {w: SHAPES[i].replace("stripes", " stripes") for i, w in enumerate(wnids)}
    words.update({w: "decoy synset" for w in decoys})
    (root / "words.txt").write_text("".join(f"{w}\t{words[w]}\n" for w in sorted(words)))

    def save(folder: Path, name: str, kind: str) -> str:
        img, box = _draw(kind, TINY_SIZE, rng)
        Image.fromarray(img).save(folder / name, **_JPEG)
        return "\t".join([name, *map(str, box)])

    for i, w in enumerate(wnids):
        folder = root / "train" / w / "images"
        folder.mkdir(parents=True)
        lines = [save(folder, f"{w}_{k}.JPEG", SHAPES[i]) for k in range(train)]
        (root / "train" / w / f"{w}_boxes.txt").write_text("".join(f"{line}\n" for line in lines))
    (root / "val" / "images").mkdir(parents=True)
    labels = rng.permutation(np.arange(val) % classes)  # balanced, shuffled like the real one
    lines = []
    for k, label in enumerate(labels.tolist()):
        name, *box = save(root / "val" / "images", f"val_{k}.JPEG", SHAPES[label]).split("\t")
        lines.append("\t".join([name, wnids[label], *box]))
    (root / "val" / "val_annotations.txt").write_text("".join(f"{line}\n" for line in lines))
    (root / "test" / "images").mkdir(parents=True)
    for k in range(test):
        save(root / "test" / "images", f"test_{k}.JPEG", SHAPES[int(rng.integers(classes))])
    return {"classes": classes, "train": classes * train, "val": val, "test": test}


def _omniglot(root: Path, rng, seed, *, alphabets=2, characters=3, drawers=4,
              splits=("background", "evaluation")):
    number, alphabet = 0, 0
    for split in splits:
        if split not in ("background", "evaluation"):
            raise ValueError(f"omniglot: unknown split {split!r}")
        for _ in range(alphabets):
            alphabet += 1  # the real splits have different alphabets, so numbering runs on
            folder = root / f"images_{split}" / f"Synthetic_alphabet_{alphabet:02d}"
            for c in range(1, characters + 1):
                number += 1
                (folder / f"character{c:02d}").mkdir(parents=True)
                strokes = _character(rng)
                for d in range(1, drawers + 1):
                    _drawing(strokes, rng).save(folder / f"character{c:02d}" / f"{number:04d}_{d:02d}.png")
    return {"alphabets": alphabet, "characters": number, "images": number * drawers}


def _image_folder(root: Path, rng, seed, *, classes=3, per_class=12, size=64, ext="jpg"):
    if not 1 <= classes <= len(SHAPES):
        raise ValueError(f"image-folder: classes must be 1..{len(SHAPES)} (one shape each)")
    if ext.lower() not in ("jpg", "jpeg", "png"):
        raise ValueError(f"image-folder: ext must be jpg, jpeg or png, not {ext!r}")
    options = dict(_JPEG) if ext.lower() != "png" else {"format": "PNG"}
    for kind in SHAPES[:classes]:
        (root / kind).mkdir()
        for k in range(per_class):
            Image.fromarray(draw_shape(kind, size, rng)).save(root / kind / f"{k:04d}.{ext}", **options)
    return {"classes": classes, "images": classes * per_class}


def _torch_weights(root: Path, rng, seed, *, archs=("resnet18",)):
    import torch
    from torchvision.models import get_model

    from .weights import file_name

    folder = root / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    for k, arch in enumerate(archs):
        path = folder / file_name(arch)  # checks the name first: fail before the slow part
        with torch.random.fork_rng(devices=[]):  # random init from our seed, not the caller's state
            torch.manual_seed(seed * 1000 + k)
            model = get_model(arch, weights=None)
        torch.save(model.state_dict(), path)
    return {"files": len(archs)}


def _oxford5k(root: Path, rng, seed, *, landmarks=3, queries=5, per_landmark=10, distractors=10, size=64):
    from .oxford5k import write_synthetic_oxford5k
    d = write_synthetic_oxford5k(root, num_landmarks=landmarks, queries_per_landmark=queries,
                                 images_per_landmark=per_landmark, distractors=distractors,
                                 image_size=size, seed=seed)
    return {"landmarks": len(d.landmarks), "queries": len(d.queries), "images": len(d.image_names)}


def _npy_features(root: Path, rng, seed, *, models=("trained",), dim=32, landmarks=3, queries=5, per_landmark=10,
                 distractors=10):
    from .features import write_synthetic_npy_features
    d = write_synthetic_npy_features(root, models=tuple(models), dim=dim, num_landmarks=landmarks,
                                     queries_per_landmark=queries, images_per_landmark=per_landmark,
                                     distractors=distractors, seed=seed)
    return {"models": len(d.models), "images": len(d.database_names), "queries": len(d.query_names)}


_WRITERS = {"tiny-imagenet": _tiny_imagenet, "omniglot": _omniglot, "image-folder": _image_folder,
            "torch-weights": _torch_weights, "oxford5k": _oxford5k, "npy-features": _npy_features}
assert set(_WRITERS) == set(FORMATS)
