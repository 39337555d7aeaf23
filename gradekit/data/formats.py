"""The course's on-disk data formats: loaders, and ``check`` before grading starts.

Each format is a name an assignment spec uses (``format = "tiny-imagenet"``):

``tiny-imagenet``
    The layout of ``tiny-imagenet-200.zip`` as the CS231n release and its README describe
    it: ``wnids.txt`` (one WordNet id a line), ``words.txt`` (optional here: ``wnid TAB
    words``), ``train/<wnid>/images/<wnid>_<k>.JPEG`` with ``train/<wnid>/<wnid>_boxes.txt``,
    ``val/images/val_<k>.JPEG`` labelled by ``val/val_annotations.txt`` (``file TAB wnid TAB
    x0 TAB y0 TAB x1 TAB y1``), and ``test/images/test_<k>.JPEG`` without labels. Images are
    64x64 JPEGs (a few of the real ones are greyscale). ``test/`` is optional here.
``omniglot``
    The layout of ``images_background.zip`` / ``images_evaluation.zip`` from the Omniglot
    repository (github.com/brendenlake/omniglot, ``python/``):
    ``images_<split>/<alphabet>/characterNN/<NNNN>_<DD>.png``, 105x105, black strokes on
    white (mode "1"); NNNN numbers the character, DD the drawer. Either split may be absent.
``image-folder``
    ``<root>/<class>/**/<image>.<ext>`` exactly as torchvision's ``ImageFolder`` reads it
    (torchvision.datasets.ImageFolder docs): every sub-folder of root is a class (hidden
    ones too), classes sorted, files found recursively, following links, by extension.
``torch-weights``
    A ``TORCH_HOME``: ``<root>/hub/checkpoints/<file>.pth``, where torchvision looks for
    downloaded weights (file names in :mod:`gradekit.data.weights`).
``oxford5k``
    Oxford Buildings as its two archives unpack: ``jpg/`` and ``gt_files/`` (reader and
    layout: :mod:`gradekit.data.oxford5k`).
``npy-features``
    Precomputed descriptors: ``database.txt``, ``queries.txt`` (row names) and
    ``<model>/{database,queries}.npy`` (reader and layout: :mod:`gradekit.data.features`).

Loaders return paths as ``str`` (as torchvision does) and images as numpy arrays.
"""
from __future__ import annotations

import importlib
import os
import re
import zipfile
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

FORMATS = ("tiny-imagenet", "omniglot", "image-folder", "torch-weights", "oxford5k", "npy-features")

# torchvision.datasets.folder.IMG_EXTENSIONS, copied so that reading needs no torch
# (a test keeps the two equal).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

WNID = re.compile(r"n\d{8}")
OMNIGLOT_SPLITS = ("background", "evaluation")
TINY_SIZE = 64
OMNIGLOT_SIZE = 105


def known_format(name: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"unknown data format {name!r}; known formats: {', '.join(FORMATS)}")
    return name


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """One image as an (H, W, 3) uint8 array (greyscale and palette images converted)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _root(root: str | os.PathLike) -> str:
    path = os.path.expanduser(os.fspath(root))
    if not os.path.isdir(path):
        what = "is not a folder" if os.path.exists(path) else "does not exist"
        raise FileNotFoundError(f"data folder {path} {what}")
    return path


def _images(folder: str) -> list[str]:
    """Image files directly in folder, sorted; [] if it is not a folder."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [os.path.join(folder, n) for n in sorted(names)
            if is_image_file(n) and os.path.isfile(os.path.join(folder, n))]


def _subfolders(folder: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


# ---------------------------------------------------------------------------- loaders


class TinyImageNet:
    """Tiny ImageNet as released for CS231n (layout in the module docstring).

    Class indices follow the order of ``wnids.txt``, as the CS231n loader does (the
    file is not sorted, so they differ from ImageFolder's on ``train/``).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = _root(root)
        wnids_txt = os.path.join(self.root, "wnids.txt")
        if not os.path.isfile(wnids_txt):
            raise FileNotFoundError(f"tiny-imagenet at {self.root}: wnids.txt is missing")
        with open(wnids_txt, encoding="utf-8") as f:
            self.wnids: list[str] = [line.strip() for line in f if line.strip()]
        self.class_to_idx = {w: i for i, w in enumerate(self.wnids)}
        self.words: dict[str, str] = {}
        words_txt = os.path.join(self.root, "words.txt")
        if os.path.isfile(words_txt):
            with open(words_txt, encoding="utf-8") as f:
                for line in f:
                    wnid, _, words = line.rstrip("\n").partition("\t")
                    if wnid in self.class_to_idx:  # the real file lists all 82k synsets
                        self.words[wnid] = words

    def train(self) -> list[tuple[str, int]]:
        return [(p, i) for w, i in self.class_to_idx.items()
                for p in _images(os.path.join(self.root, "train", w, "images"))]

    def val_annotations(self) -> list[tuple[str, str, tuple[int, int, int, int]]]:
        """``val/val_annotations.txt`` as (file name, wnid, box) rows, in file order."""
        rows = []
        with open(os.path.join(self.root, "val", "val_annotations.txt"), encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                fields = line.rstrip("\n").split("\t")
                if len(fields) != 6:
                    raise ValueError(f"val_annotations.txt line {n}: expected 6 TAB-separated "
                                     f"fields, found {len(fields)}")
                rows.append((fields[0], fields[1], tuple(int(v) for v in fields[2:])))
        return rows

    def val(self) -> list[tuple[str, int]]:
        out = []
        for name, wnid, _ in self.val_annotations():
            if wnid not in self.class_to_idx:
                raise ValueError(f"val_annotations.txt: {name} is labelled {wnid}, "
                                 "which is not in wnids.txt")
            out.append((os.path.join(self.root, "val", "images", name), self.class_to_idx[wnid]))
        return out

    def test(self) -> list[str]:
        return _images(os.path.join(self.root, "test", "images"))

    @staticmethod
    def load_images(items: Sequence[tuple[str, int]] | Sequence[str]):
        """(N, 64, 64, 3) uint8 images and (N,) int64 labels (None for bare paths)."""
        items = list(items)
        labelled = bool(items) and isinstance(items[0], tuple)
        paths = [it[0] for it in items] if labelled else items
        images = np.zeros((len(paths), TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)
        for k, p in enumerate(paths):
            img = read_rgb(p)
            if img.shape != images.shape[1:]:
                raise ValueError(f"{p}: {img.shape[1]}x{img.shape[0]}, expected 64x64")
            images[k] = img
        labels = np.array([it[1] for it in items], dtype=np.int64) if labelled else None
        return images, labels


class Omniglot:
    """Omniglot in the Python release's layout (brendenlake/omniglot, ``python/*.zip``)."""

    def __init__(self, root: str | os.PathLike):
        self.root = _root(root)

    def folder(self, split: str) -> str:
        if split not in OMNIGLOT_SPLITS:
            raise ValueError(f"unknown omniglot split {split!r}; use one of {OMNIGLOT_SPLITS}")
        return os.path.join(self.root, f"images_{split}")

    def alphabets(self, split: str) -> list[str]:
        return _subfolders(self.folder(split))

    def characters(self, split: str) -> list[tuple[str, str, list[str]]]:
        """(alphabet, character, sorted image paths) for every character, sorted."""
        base = self.folder(split)
        return [(a, c, _images(os.path.join(base, a, c)))
                for a in _subfolders(base) for c in _subfolders(os.path.join(base, a))]

    @staticmethod
    def load(path: str | os.PathLike) -> np.ndarray:
        """(105, 105) float32 as stored: 1.0 is the white page, 0.0 a black stroke."""
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


class ImageFolder:
    """torchvision's ImageFolder without torch: same classes, indices, samples, order."""

    def __init__(self, root: str | os.PathLike):
        self.root = _root(root)
        self.classes = _subfolders(self.root)  # hidden folders too, as torchvision
        if not self.classes:
            raise FileNotFoundError(f"image-folder at {self.root}: no class folders")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        for c, i in self.class_to_idx.items():
            # sorted(os.walk(...)) and sorted names: torchvision's make_dataset order
            for folder, _, names in sorted(os.walk(os.path.join(self.root, c), followlinks=True)):
                self.samples += [(os.path.join(folder, n), i) for n in sorted(names)
                                 if is_image_file(n)]
        empty = sorted(set(self.classes) - {self.classes[i] for _, i in self.samples})
        if empty:
            raise FileNotFoundError(f"image-folder at {self.root}: no images in class "
                                    f"folder(s) {', '.join(empty)}")
        self.targets = [i for _, i in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    @staticmethod
    def load(path: str | os.PathLike) -> np.ndarray:
        return read_rgb(path)


# ---------------------------------------------------------------------------- check


def check(format: str, root: str | os.PathLike, *, decode: int | None = 3) -> list[str]:
    """Every problem found in ``root`` for ``format``, in plain words; [] if it looks right.

    Cheap by design (it runs before grading): names, structure and counts are checked, and
    only a few images are opened: of the first image of every class (or character) folder,
    ``decode`` spread evenly per part (train, val, test, a split); ``decode=None`` opens
    every image instead. Symbolic links that lead outside root are problems (the data set
    must be self-contained), as is anything that cannot be read.
    """
    known_format(format)
    path = os.path.expanduser(os.fspath(root))
    say = _Problems(f"{format} at {path}")
    if not os.path.exists(path):
        say("the folder does not exist")
    elif not os.path.isdir(path):
        say("this is a file, not a folder")
    else:
        _escaping_links(path, say)
        checks = {"tiny-imagenet": _check_tiny, "omniglot": _check_omniglot,
                  "image-folder": _check_folder, "torch-weights": _check_weights,
                  "oxford5k": _check_by_reader(".oxford5k", "read_oxford5k"),
                  "npy-features": _check_by_reader(".features", "read_npy_features")}
        try:
            checks[format](path, say, decode)
        except OSError as e:  # e.g. a folder without read permission: a finding, not a crash
            say(f"cannot read {e.filename or path}: {e.strerror or e}")
    return say.problems


class _Problems:
    def __init__(self, prefix: str):
        self.prefix, self.problems = prefix, []

    def __call__(self, what: str) -> None:
        self.problems.append(f"{self.prefix}: {what}")


def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root)


def _escaping_links(root: str, say: _Problems) -> None:
    """Walk without following links; report links that resolve outside root (or nowhere)."""
    real_root = os.path.realpath(root)
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError as e:
            say(f"cannot read {_rel(folder, root)!r}: {e.strerror}")
            continue
        for e in entries:
            if e.is_symlink():
                target = os.path.realpath(e.path)
                if not os.path.exists(target):
                    say(f"{_rel(e.path, root)!r} is a broken link (to {os.readlink(e.path)!r})")
                elif os.path.commonpath([real_root, target]) != real_root:
                    say(f"{_rel(e.path, root)!r} is a link to {target}, outside the data set; "
                        "copy the file in instead")
            elif e.is_dir(follow_symlinks=False):
                stack.append(e.path)


def _pool(images: list[str], decode: int | None) -> list[str]:
    """What one folder offers for decoding: its first image, or all when decoding all."""
    return images if decode is None else images[:1]


def _sample(paths: list[str], decode: int | None) -> list[str]:
    if decode is None or len(paths) <= decode:
        return paths
    picks = np.linspace(0, len(paths) - 1, num=decode).round().astype(int)
    return [paths[k] for k in sorted(set(picks.tolist()))]


def _decode(paths: Iterable[str], root: str, say: _Problems, size: int | None,
            modes: tuple[str, ...] | None = None) -> None:
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
                shape, mode = im.size, im.mode
        except Exception as e:  # noqa: BLE001 (PIL raises many kinds; all mean "unreadable")
            say(f"{_rel(p, root)!r} is not a readable image ({type(e).__name__}: {e})")
            continue
        if size is not None and shape != (size, size):
            say(f"{_rel(p, root)!r} is {shape[0]}x{shape[1]}, expected {size}x{size}")
        if modes is not None and mode not in modes:
            say(f"{_rel(p, root)!r} has mode {mode!r}, expected one of {', '.join(modes)}")


def _read_lines(path: str, say: _Problems, root: str) -> list[str] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError:
        say(f"{_rel(path, root)} is not UTF-8 text")
    except OSError as e:
        say(f"cannot read {_rel(path, root)}: {e.strerror}")
    return None


def _check_tiny(root: str, say: _Problems, decode: int | None) -> None:
    wnids: list[str] = []
    wnids_txt = os.path.join(root, "wnids.txt")
    if not os.path.isfile(wnids_txt):
        say("wnids.txt is missing (one WordNet id a line, e.g. n01443537)")
    elif (lines := _read_lines(wnids_txt, say, root)) is not None:
        wnids = [w.strip() for w in lines if w.strip()]
        bad = [w for w in wnids if not WNID.fullmatch(w)]
        if bad:
            say(f"wnids.txt has {len(bad)} line(s) that are not WordNet ids, e.g. {bad[0]!r}")
        dup = sorted({w for w in wnids if wnids.count(w) > 1})
        if dup:
            say(f"wnids.txt lists {', '.join(dup[:3])} more than once")
        if not wnids:
            say("wnids.txt is empty")
    known = set(wnids)
    words_txt = os.path.join(root, "words.txt")
    if known and os.path.isfile(words_txt) and (lines := _read_lines(words_txt, say, root)):
        missing = known - {line.split("\t", 1)[0] for line in lines}
        if missing:
            say(f"words.txt has no entry for {len(missing)} wnid(s), e.g. {min(missing)}")

    train = os.path.join(root, "train")
    if not os.path.isdir(train):
        say("train/ is missing")
    else:
        for extra in (sorted(set(_subfolders(train)) - known) if known else []):
            say(f"train/{extra} is not listed in wnids.txt")
        pool = []
        for w in wnids:
            images = _images(os.path.join(train, w, "images"))
            if not os.path.isdir(os.path.join(train, w)):
                say(f"class folder 'train/{w}' is missing")
            elif not images:
                say(f"class folder 'train/{w}' has no images (expected train/{w}/images/{w}_0.JPEG ...)")
            pool += _pool(images, decode)
        _decode(_sample(pool, decode), root, say, TINY_SIZE)

    val = os.path.join(root, "val")
    ann = os.path.join(val, "val_annotations.txt")
    val_images = _images(os.path.join(val, "images"))
    if not os.path.isdir(val):
        say("val/ is missing")
    elif not os.path.isfile(ann):
        say("val/val_annotations.txt is missing")
    elif (lines := _read_lines(ann, say, root)) is not None:
        named = set()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            f = line.split("\t")
            if len(f) != 6 or not all(re.fullmatch(r"-?\d+", v) for v in f[2:]):
                say(f"val/val_annotations.txt line {n} is not 'file TAB wnid TAB x0 TAB y0 TAB x1 TAB y1'")
                continue
            named.add(f[0])
            if known and f[1] not in known:
                say(f"val/val_annotations.txt line {n} labels {f[0]} as {f[1]}, "
                    "which is not in wnids.txt")
        on_disk = {os.path.basename(p) for p in val_images}
        if named - on_disk:
            say(f"val/val_annotations.txt names {len(named - on_disk)} file(s) not in val/images, "
                f"e.g. {min(named - on_disk)}")
        if on_disk - named:
            say(f"{len(on_disk - named)} file(s) in val/images have no line in "
                f"val_annotations.txt, e.g. {min(on_disk - named)}")
        if not named:
            say("val/val_annotations.txt has no entries")
    _decode(_sample(val_images, decode), root, say, TINY_SIZE)

    test = os.path.join(root, "test")
    if os.path.isdir(test):  # optional: courses often ship without it
        test_images = _images(os.path.join(test, "images"))
        if not test_images:
            say("test/ is there but test/images has no images")
        _decode(_sample(test_images, decode), root, say, TINY_SIZE)


def _check_omniglot(root: str, say: _Problems, decode: int | None) -> None:
    splits = [s for s in OMNIGLOT_SPLITS if os.path.isdir(os.path.join(root, f"images_{s}"))]
    if not splits:
        say("neither images_background nor images_evaluation exists")
    for split in splits:
        base = os.path.join(root, f"images_{split}")
        alphabets = _subfolders(base)
        if not alphabets:
            say(f"images_{split} has no alphabet folders")
        pool = []
        for a in alphabets:
            characters = _subfolders(os.path.join(base, a))
            if not characters:
                say(f"alphabet folder 'images_{split}/{a}' has no character folders")
            for c in characters:
                images = _images(os.path.join(base, a, c))
                if not images:
                    say(f"character folder 'images_{split}/{a}/{c}' has no images")
                pool += _pool(images, decode)
        _decode(_sample(pool, decode), root, say, OMNIGLOT_SIZE, ("1", "L"))


def _check_folder(root: str, say: _Problems, decode: int | None) -> None:
    classes = _subfolders(root)
    loose = _images(root)
    if not classes:
        say("no class folders (expected <root>/<class>/<image>.jpg ...)"
            + (f"; {len(loose)} image(s) lie directly in it" if loose else ""))
        return
    if loose:
        say(f"{len(loose)} image(s) lie directly in the folder, outside any class folder; "
            "ImageFolder ignores them")
    for c in classes:
        if c.startswith("."):
            say(f"hidden folder {c!r} counts as a class for ImageFolder; delete it")
    if {"train", "val", "test"} & set(classes) and len(classes) <= 3:
        say(f"the class folders are {', '.join(classes)}: this looks like a folder of splits; "
            "name the split folder (e.g. root/train) as the data set instead")
    pool = []
    for c in classes:
        images = [os.path.join(folder, n)
                  for folder, _, names in sorted(os.walk(os.path.join(root, c), followlinks=True))
                  for n in sorted(names) if is_image_file(n)]
        if not images:
            say(f"class folder {c!r} has no images (extensions: {', '.join(IMG_EXTENSIONS)})")
        pool += _pool(images, decode)
    _decode(_sample(pool, decode), root, say, None)


def _check_weights(root: str, say: _Problems, decode: int | None) -> None:
    folder = os.path.join(root, "hub", "checkpoints")
    if not os.path.isdir(folder):
        say("hub/checkpoints/ is missing (root must be a TORCH_HOME: <root>/hub/checkpoints/<file>.pth)")
        return
    files = sorted(n for n in os.listdir(folder) if n.endswith((".pth", ".pt")))
    if not files:
        say("hub/checkpoints/ has no .pth files")
    for name in files:
        path = os.path.join(folder, name)
        if not _looks_like_torch_save(path):
            say(f"hub/checkpoints/{name} is not a file written by torch.save (empty, "
                "truncated or another format)")


def _check_by_reader(module: str, reader: str):
    """A format whose own reader validates it (Oxford 5k, npy-features): its problems, one a
    line ("- ..." after a first line). Imported when used: those modules import this one."""
    def check(root: str, say: _Problems, decode: int | None) -> None:
        read = getattr(importlib.import_module(module, __package__), reader)
        try:
            read(root)
        except FileNotFoundError as e:
            say(str(e).split(": ", 1)[-1])
        except ValueError as e:
            for line in str(e).splitlines()[1:]:
                say(line.strip().removeprefix("- "))
    return check


def _looks_like_torch_save(path: str) -> bool:
    """torch.save writes a zip archive with a data.pkl, or (before torch 1.6) a pickle."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return any(n.endswith("/data.pkl") or n == "data.pkl" for n in z.namelist())
        with open(path, "rb") as f:
            return f.read(2) == b"\x80\x02"  # the legacy format starts with a protocol-2 pickle
    except (OSError, zipfile.BadZipFile):
        return False
