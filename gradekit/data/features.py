"""Precomputed descriptors as ``.npy`` files (the ``npy-features`` format): a reader that
validates, and a synthetic writer.

A course hands out the descriptors of models it trained for hours (DLiP's practical gives
those of its fine-tuned and ranking-loss networks for Oxford 5k), so that students compare
retrieval results without training them. The layout:

``<root>/database.txt`` and ``<root>/queries.txt``
    The names of the rows, one a line, in row order: database images (without ``.jpg``)
    and queries (Oxford 5k's query names, ``all_souls_1`` ..), shared by every model.
``<root>/<model>/database.npy`` and ``<root>/<model>/queries.npy``
    One folder a model: an (images, d) and a (queries, d) floating array of the same d,
    as ``numpy.save`` writes them (read with ``allow_pickle=False``: a file that holds
    Python objects is refused, never unpickled).

``read_npy_features(root)`` checks the layout and says every problem in plain words;
``write_synthetic_npy_features(root, ...)`` writes descriptors for the synthetic Oxford 5k
that :func:`gradekit.data.oxford5k.write_synthetic_oxford5k` writes with the same sizes and
seed (the same names), so tests and dry runs can rank with them.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np

NAMES = {"database": "database.txt", "queries": "queries.txt"}
ARRAYS = {"database": "database.npy", "queries": "queries.npy"}
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ModelFeatures:
    """One model's descriptors: rows in the order of the data set's names."""
    database: np.ndarray
    queries: np.ndarray


@dataclass(frozen=True)
class NpyFeatures:
    """A read ``npy-features`` folder."""
    root: Path
    database_names: tuple[str, ...]
    query_names: tuple[str, ...]
    models: Mapping[str, ModelFeatures]


def read_npy_features(root: str | os.PathLike) -> NpyFeatures:
    """Read and check ``root``; every problem found is listed in one ``ValueError``."""
    base = Path(os.path.expanduser(os.fspath(root)))
    if not base.is_dir():
        raise FileNotFoundError(f"npy-features folder {base} {'is not a folder' if base.exists() else 'does not exist'}")
    problems: list[str] = []
    names = {part: _names(base / file, problems) for part, file in NAMES.items()}
    models = {}
    folders = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        problems.append("no model folder (<model>/database.npy and <model>/queries.npy)")
    for folder in folders:
        if not _MODEL.fullmatch(folder.name):
            problems.append(f"{folder.name!r} is not a model name (letters, digits, _ . -)")
            continue
        arrays = {part: _matrix(folder / file, problems) for part, file in ARRAYS.items()}
        if any(a is None for a in arrays.values()):
            continue
        for part, a in arrays.items():
            if names[part] is not None and len(a) != len(names[part]):
                problems.append(f"{folder.name}/{ARRAYS[part]} has {len(a)} rows for the {len(names[part])} names "
                                f"of {NAMES[part]}")
        if arrays["database"].shape[1] != arrays["queries"].shape[1]:
            problems.append(f"{folder.name}: the database's descriptors have {arrays['database'].shape[1]} dimensions, "
                            f"the queries' {arrays['queries'].shape[1]}")
        models[folder.name] = ModelFeatures(**arrays)
    if problems:
        raise ValueError(f"npy-features at {base}:\n" + "\n".join(f"- {p}" for p in problems))
    return NpyFeatures(base, names["database"], names["queries"], MappingProxyType(models))


def _names(path: Path, problems: list[str]) -> tuple[str, ...] | None:
    if not path.is_file():
        problems.append(f"{path.name} is missing (the names of the rows, one a line)")
        return None
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{path.name} cannot be read as text: {e}")
        return None
    if len(set(names)) != len(names):
        problems.append(f"{path.name} names a row twice")
    return names


def _matrix(path: Path, problems: list[str]) -> np.ndarray | None:
    shown = f"{path.parent.name}/{path.name}"
    if not path.is_file():
        problems.append(f"{shown} is missing")
        return None
    try:
        with open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":  # np.load would take anything else for a pickle
                problems.append(f"{shown} is not a .npy file (numpy.save writes them)")
                return None
        a = np.load(path, allow_pickle=False)
    except ValueError:  # an object array: it needs pickle, which is never used here
        problems.append(f"{shown} holds Python objects, not numbers (such a file is never unpickled)")
        return None
    except OSError as e:
        problems.append(f"{shown} cannot be read ({e.strerror or e})")
        return None
    if not isinstance(a, np.ndarray) or a.ndim != 2 or not np.issubdtype(a.dtype, np.floating):
        problems.append(f"{shown} should be a 2-d float array, not {getattr(a, 'dtype', type(a))} of shape "
                        f"{getattr(a, 'shape', '?')}")
        return None
    if not np.all(np.isfinite(a)):
        problems.append(f"{shown} holds NaN or infinite values")
        return None
    return a


def write_synthetic_npy_features(root: str | os.PathLike, *, models: tuple[str, ...] = ("trained",), dim: int = 32,
                                 num_landmarks: int = 3, queries_per_landmark: int = 5, images_per_landmark: int = 10,
                                 distractors: int = 10, seed: int = 0) -> NpyFeatures:
    """Descriptors of the synthetic Oxford 5k written with the same sizes and ``seed`` (its
    names are drawn again in a scratch folder): each landmark is a random direction; its
    good images lie near it, ok ones farther, junk ones farther still; distractors and the
    other models' noise are random. Each model sees the landmarks a little differently, so
    their mAPs differ. float32, as a network gives them. The same arguments give the same bytes."""
    from .oxford5k import write_synthetic_oxford5k
    base = Path(os.path.expanduser(os.fspath(root)))
    if base.exists() and (not base.is_dir() or any(base.iterdir())):
        raise FileExistsError(f"{base} is not an empty folder; write_synthetic_npy_features writes only into a new one")
    if not models or any(not _MODEL.fullmatch(m) for m in models) or dim < 2:
        raise ValueError("models: one name or more (letters, digits, _ . -); dim: at least 2")
    with tempfile.TemporaryDirectory() as scratch:
        oxford = write_synthetic_oxford5k(Path(scratch) / "oxford5k", num_landmarks=num_landmarks,
                                          queries_per_landmark=queries_per_landmark,
                                          images_per_landmark=images_per_landmark, distractors=distractors,
                                          image_size=16, seed=seed)
    rng = np.random.default_rng(seed + 7919)
    landmark_of = {q.name: q.name.rsplit("_", 1)[0] for q in oxford.queries.values()}
    label = {}
    for q in oxford.queries.values():
        for spread, names in ((1.0, q.good), (1.4, q.ok), (2.0, q.junk)):
            label.update({n: (landmark_of[q.name], spread) for n in names})
    base.mkdir(parents=True, exist_ok=True)
    (base / NAMES["database"]).write_text("".join(f"{n}\n" for n in oxford.image_names))
    (base / NAMES["queries"]).write_text("".join(f"{n}\n" for n in oxford.queries))
    for m in models:
        centre = {lm: rng.normal(size=dim) for lm in sorted(set(landmark_of.values()))}
        noise = float(rng.uniform(0.8, 1.2))

        def near(lm, spread):
            return centre[lm] + spread * noise * rng.normal(size=dim) / np.sqrt(dim) * np.linalg.norm(centre[lm])
        database = np.stack([near(*label[n]) if n in label else rng.normal(size=dim) for n in oxford.image_names])
        queries = np.stack([near(landmark_of[q], 0.6) for q in oxford.queries])
        (base / m).mkdir()
        np.save(base / m / ARRAYS["database"], database.astype(np.float32))
        np.save(base / m / ARRAYS["queries"], queries.astype(np.float32))
    return read_npy_features(base)
