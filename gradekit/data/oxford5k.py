"""Oxford 5k (the Oxford Buildings dataset) on disk: a reader that validates, and a synthetic writer.

The layout is that of the two archives on the dataset's page
(www.robots.ox.ac.uk/~vgg/data/oxbuildings/, Philbin, Arandjelovic, Zisserman), each
unpacked into its own folder under ``root`` (the archives have no top folder):

``<root>/jpg/<image>.jpg``
    ``oxbuild_images.tgz``: the 5,062 database images, e.g. ``all_souls_000013.jpg``.
``<root>/gt_files/<query>_{good,ok,junk,query}.txt``
    ``gt_files_170407.tgz``: for each of the 55 queries (11 landmarks x 5, named
    ``all_souls_1`` .. ``all_souls_5``, ``ashmolean_1`` .., up to ``radcliffe_camera_5``)
    the lists ``<query>_good.txt``, ``<query>_ok.txt``, ``<query>_junk.txt`` (one image
    name a line, without ``.jpg``) and ``<query>_query.txt``, one line
    ``oxc1_<image> x1 y1 x2 y2``: the query image with the prefix ``oxc1_`` and its
    region of interest as floats (e.g. ``oxc1_all_souls_000013 136.5 34.1 648.5 955.7``).

Sources read for this layout: ``compute_ap.cpp`` (faithful copy:
github.com/oddconcepts/oxford-benchmark), whose ``main`` reads ``<gt query>_good.txt``,
``_ok.txt`` and ``_junk.txt`` (positives = good + ok, junk ignored);
github.com/vedaldi/visualindex ``setupOxford5k.m``, which lists ``*_query.txt``, reads
``%s %f %f %f %f``, strips ``_query.txt`` for the query name and the first five
characters (``oxc1_``) for the image name, and looks the lists' names up among the
``.jpg`` stems; several public readers quote the line ``oxc1_all_souls_000013 136.5 34.1
648.5 955.7``. (Paris 6k's query lines have no ``oxc1_`` prefix; this reader is for
Oxford 5k only.) The page labels each image of a landmark Good (a nice, clear picture),
OK (more than 25% of the object visible), Junk (less than 25% visible, or heavy
occlusion or distortion) or Bad (absent: in no list).

``read_oxford5k(root)`` checks the layout and says every problem in plain words;
``write_synthetic_oxford5k(root, ...)`` writes a small set in the same format (JPEGs and
gt files) for tests and dry runs: the same seed gives the same bytes, nothing is
downloaded. Average precision on it: ``reference.retrieval.oxford_map``.
"""
from __future__ import annotations

import bisect
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw

from .formats import read_rgb

LANDMARKS = ("all_souls", "ashmolean", "balliol", "bodleian", "christ_church", "cornmarket",
             "hertford", "keble", "magdalen", "pitt_rivers", "radcliffe_camera")
LISTS = ("good", "ok", "junk")
QUERY_PREFIX = "oxc1_"
IMAGES_DIR, GT_DIR = "jpg", "gt_files"  # the names the issue and course use; read_oxford5k takes others
_QUERY_FILE = re.compile(r"(.+)_query\.txt")
_LIST_FILE = re.compile(r"(.+)_(good|ok|junk)\.txt")
_JPEG = {"format": "JPEG", "quality": 90}  # fixed settings: same pixels, same bytes


@dataclass(frozen=True)
class OxfordQuery:
    """One query: its name (``all_souls_1``), image (``all_souls_000013``, without
    ``oxc1_`` and ``.jpg``), box ``(x1, y1, x2, y2)`` in pixels, and its lists in file
    order."""
    name: str
    image: str
    box: tuple[float, float, float, float]
    good: tuple[str, ...]
    ok: tuple[str, ...]
    junk: tuple[str, ...]

    @property
    def landmark(self) -> str:
        """The query name without its number: ``all_souls_1`` -> ``all_souls``."""
        return self.name.rsplit("_", 1)[0]

    @property
    def positives(self) -> frozenset[str]:
        """good + ok, the images that count as relevant (junk is neither)."""
        return frozenset(self.good) | frozenset(self.ok)


@dataclass(frozen=True)
class Oxford5k:
    """What ``read_oxford5k`` found: the database image names (sorted ``.jpg`` stems) and
    the queries by name (sorted)."""
    root: Path
    images_dir: Path
    gt_dir: Path
    image_names: tuple[str, ...]
    queries: Mapping[str, OxfordQuery]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Oxford5k):
            return NotImplemented
        return (self.root, self.images_dir, self.gt_dir, self.image_names, dict(self.queries)) == \
            (other.root, other.images_dir, other.gt_dir, other.image_names, dict(other.queries))

    __hash__ = None  # type: ignore[assignment]  # holds a mapping

    @property
    def landmarks(self) -> tuple[str, ...]:
        return tuple(sorted({q.landmark for q in self.queries.values()}))

    def index(self, image: str) -> int:
        """Position of ``image`` in ``image_names`` (the database order)."""
        i = _bisect(self.image_names, image)
        if i is None:
            raise KeyError(f"{image!r} is not an image of this data set")
        return i

    def image_path(self, image: str) -> Path:
        return self.images_dir / f"{image}.jpg"

    def load_image(self, image: str) -> np.ndarray:
        """(H, W, 3) uint8."""
        return read_rgb(self.image_path(image))

    def load_query(self, query: str, crop: bool = True) -> np.ndarray:
        """The query's image, cropped to its box (default) with PIL's ``Image.crop``, which
        rounds the float box to whole pixels. (H, W, 3) uint8."""
        q = self.queries[query]
        with Image.open(self.image_path(q.image)) as im:
            im = im.convert("RGB")
            return np.asarray(im.crop(q.box) if crop else im, dtype=np.uint8)


def _bisect(names: tuple[str, ...], name: str) -> int | None:
    i = bisect.bisect_left(names, name)
    return i if i < len(names) and names[i] == name else None


# ---------------------------------------------------------------------------- reading


def read_oxford5k(root: str | os.PathLike, *, images: str = IMAGES_DIR, gt: str = GT_DIR) -> Oxford5k:
    """Read and validate an Oxford 5k folder (layout in the module docstring).

    ``images`` and ``gt`` name the two sub-folders. A missing folder raises
    ``FileNotFoundError``; every problem in the files is collected and raised together as
    one ``ValueError``, a line each: a ``_query.txt`` that is not ``oxc1_<image> x1 y1 x2
    y2`` (or a box with x2 <= x1 or y2 <= y1), a query without its good, ok or junk file,
    a list without a query file, a query with no good images, a name (in a list, or a
    query image) with no ``<name>.jpg``, a folder with no queries or no images.
    """
    base = Path(os.path.expanduser(os.fspath(root)))
    if not base.is_dir():
        what = "is not a folder" if base.exists() else "does not exist"
        raise FileNotFoundError(f"oxford5k at {base}: the data folder {what}")
    images_dir, gt_dir = base / images, base / gt
    for folder, what, archive in ((gt_dir, "ground-truth", "gt_files_170407.tgz"),
                                  (images_dir, "images", "oxbuild_images.tgz")):
        if not folder.is_dir():
            raise FileNotFoundError(f"oxford5k at {base}: the {what} folder {folder.name}/ is missing "
                                    f"(unpack {archive} into {folder})")
    problems: list[str] = []
    image_names = tuple(sorted(p.stem for p in images_dir.iterdir()
                               if p.suffix == ".jpg" and p.is_file()))
    if not image_names:
        problems.append(f"{images}/ has no .jpg images")
    known = set(image_names)
    files = sorted(p.name for p in gt_dir.iterdir() if p.is_file())
    names = [m.group(1) for f in files if (m := _QUERY_FILE.fullmatch(f))]
    if not names:
        problems.append(f"{gt}/ has no <query>_query.txt files (expected e.g. all_souls_1_query.txt)")
    for f in files:
        m = _LIST_FILE.fullmatch(f)
        if m and m.group(1) not in names:
            problems.append(f"{gt}/{f} has no {m.group(1)}_query.txt beside it")

    queries = {}
    for name in names:
        q = _read_query(gt_dir, gt, name, known, problems)
        if q is not None:
            queries[name] = q
    if problems:
        raise ValueError(f"oxford5k at {base}: {len(problems)} problem(s):\n"
                         + "\n".join(f"  - {p}" for p in problems))
    return Oxford5k(base, images_dir, gt_dir, image_names, MappingProxyType(queries))


def _lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def _read_query(gt_dir: Path, gt: str, name: str, known: set[str], problems: list[str]) -> OxfordQuery | None:
    start = len(problems)
    line = (_lines(gt_dir / f"{name}_query.txt") or [""])[0]
    fields = line.split()
    box: tuple[float, ...] = ()
    image = ""
    if len(fields) == 5 and fields[0].startswith(QUERY_PREFIX) and len(fields[0]) > len(QUERY_PREFIX):
        image = fields[0][len(QUERY_PREFIX):]
        try:
            box = tuple(float(v) for v in fields[1:])
        except ValueError:
            box = ()
    if not box:
        problems.append(f"{gt}/{name}_query.txt should be one line 'oxc1_<image> x1 y1 x2 y2', "
                        f"found {line!r}")
    elif not (box[2] > box[0] and box[3] > box[1]):
        problems.append(f"{gt}/{name}_query.txt: the box {fields[1:]} is empty (needs x2 > x1, y2 > y1)")
    elif image not in known:
        problems.append(f"query {name}: its image {image}.jpg is not in the images folder")
    lists = {}
    for kind in LISTS:
        path = gt_dir / f"{name}_{kind}.txt"
        if not path.is_file():
            problems.append(f"query {name}: {gt}/{name}_{kind}.txt is missing")
            continue
        lists[kind] = tuple(_lines(path))
        absent = [x for x in lists[kind] if x not in known]
        if absent:
            problems.append(f"query {name}: {name}_{kind}.txt names {len(absent)} image(s) with no .jpg "
                            f"in the images folder, e.g. {absent[0]}")
    if "good" in lists and not lists["good"]:
        problems.append(f"query {name}: {name}_good.txt lists no images (every query needs a good one)")
    if len(problems) > start:
        return None
    return OxfordQuery(name, image, box, lists["good"], lists["ok"], lists["junk"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- writing


def write_synthetic_oxford5k(root: str | os.PathLike, *, num_landmarks: int = 3,
                             queries_per_landmark: int = 5, images_per_landmark: int = 10,
                             distractors: int = 10, image_size: int = 64, seed: int = 0) -> Oxford5k:
    """Write a small synthetic Oxford 5k into ``root`` (new or empty) and return what it holds.

    Each landmark (the real names, in ``LANDMARKS`` order, so at most 11) is a fixed random
    "facade" of coloured blocks; each of its ``images_per_landmark`` photos shows it
    shifted, scaled and brightened at random on a noisy background: half are good (a clear
    view), a third ok (a third of it covered), the rest junk (mostly covered). The
    ``distractors`` (``oxford_<k>.jpg``) show other facades that belong to no landmark.
    Images are named ``<landmark>_<6 digits>.jpg`` as the real ones. Every query of a
    landmark shares its lists (the dataset page gives one label per image and landmark)
    and its image is a different good one, with the facade's box; so
    ``queries_per_landmark`` must not exceed the good images. ``read_oxford5k(root)`` reads it back; 55 queries is
    ``num_landmarks=11, queries_per_landmark=5``. The same arguments give the same bytes.
    """
    if not 1 <= num_landmarks <= len(LANDMARKS):
        raise ValueError(f"num_landmarks must be 1..{len(LANDMARKS)} (the real landmark names)")
    if image_size < 16:
        raise ValueError(f"image_size {image_size} is too small to draw a facade (at least 16)")
    if distractors < 0:
        raise ValueError("distractors must be >= 0")
    n_good, n_ok = _split(images_per_landmark)
    if not 1 <= queries_per_landmark <= n_good:
        raise ValueError(f"queries_per_landmark must be 1..{n_good}: each query is a different good "
                         f"image, and {images_per_landmark} images a landmark make {n_good} good ones")
    base = Path(os.path.expanduser(os.fspath(root)))
    if base.exists() and (not base.is_dir() or any(base.iterdir())):
        raise FileExistsError(f"{base} is not an empty folder; write_synthetic_oxford5k writes only into a new one")
    images_dir, gt_dir = base / IMAGES_DIR, base / GT_DIR
    images_dir.mkdir(parents=True)
    gt_dir.mkdir()
    rng = np.random.default_rng(seed)
    numbers = iter(rng.permutation(10 ** 6)[: num_landmarks * images_per_landmark + distractors].tolist())

    def save(name: str, facade: list, cover: float) -> tuple[float, float, float, float]:
        img, box = _photo(facade, image_size, cover, rng)
        img.save(images_dir / f"{name}.jpg", **_JPEG)
        return box

    queries = {}
    for landmark in LANDMARKS[:num_landmarks]:
        facade = _facade(rng)
        names, boxes = [], []
        for k in range(images_per_landmark):
            names.append(f"{landmark}_{next(numbers):06d}")
            cover = 0.0 if k < n_good else (0.35 if k < n_good + n_ok else 0.85)
            boxes.append(save(names[-1], facade, cover))
        good, ok, junk = names[:n_good], names[n_good:n_good + n_ok], names[n_good + n_ok:]
        for q in range(queries_per_landmark):
            name = f"{landmark}_{q + 1}"
            box = boxes[q]
            (gt_dir / f"{name}_query.txt").write_text(
                f"{QUERY_PREFIX}{good[q]} {' '.join(f'{v:.1f}' for v in box)}\n")
            for kind, items in zip(LISTS, (good, ok, junk)):
                (gt_dir / f"{name}_{kind}.txt").write_text("".join(f"{x}\n" for x in items))
            queries[name] = OxfordQuery(name, good[q], box, tuple(good), tuple(ok), tuple(junk))
    for _ in range(distractors):
        save(f"oxford_{next(numbers):06d}", _facade(rng), 0.0)
    image_names = tuple(sorted(p.stem for p in images_dir.iterdir()))
    return Oxford5k(base, images_dir, gt_dir, image_names, MappingProxyType(dict(sorted(queries.items()))))


def _split(n: int) -> tuple[int, int]:
    """(good, ok) counts of a landmark's n images: half good, a third ok, the rest junk."""
    if n < 1:
        raise ValueError("images_per_landmark must be >= 1")
    good = max(1, math.ceil(n / 2))
    ok = min(n - good, round(n / 3))
    return good, ok


def _facade(rng: np.random.Generator) -> list:
    """A landmark: 4-7 blocks (x0, y0, x1, y1 in unit coordinates, colour, shape)."""
    blocks = []
    for _ in range(int(rng.integers(4, 8))):
        x0, y0 = rng.uniform(0.0, 0.7, 2)
        w, h = rng.uniform(0.15, 0.45, 2)
        blocks.append((x0, y0, min(1.0, x0 + w), min(1.0, y0 + h),
                       tuple(int(v) for v in rng.integers(40, 256, 3)), bool(rng.random() < 0.3)))
    return blocks


def _photo(facade: list, size: int, cover: float, rng: np.random.Generator):
    """One view of a facade and its box (x1, y1, x2, y2) in pixels, rounded to 0.1.
    ``cover``: the fraction of the facade's width hidden behind a grey occluder."""
    bg = rng.uniform(0, 90, 3) + rng.normal(0, 12, (size, size, 3))
    image = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(0.55, 0.8) * size
    ox, oy = rng.uniform(0.05 * size, size - scale - 0.05 * size, 2)
    gain = rng.uniform(0.8, 1.15)
    for x0, y0, x1, y1, colour, round_ in facade:
        xy = [ox + x0 * scale, oy + y0 * scale, ox + x1 * scale, oy + y1 * scale]
        fill = tuple(int(min(255, c * gain)) for c in colour)
        (draw.ellipse if round_ else draw.rectangle)(xy, fill=fill)
    xs = [ox + b[i] * scale for b in facade for i in (0, 2)]
    ys = [oy + b[i] * scale for b in facade for i in (1, 3)]
    box = (min(xs), min(ys), max(xs), max(ys))
    if cover > 0:
        width = cover * (box[2] - box[0])
        left = box[0] if rng.random() < 0.5 else box[2] - width
        draw.rectangle([left, 0, left + width, size], fill=(128, 128, 128))
    return image, tuple(round(min(max(v, 0.0), size - 1.0), 1) for v in box)
