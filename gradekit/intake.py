"""Intake: turn what instructors hand us into validated submissions, or clear rejections.

Accepted: ``.ipynb`` files, folders of them (one submission per notebook, found
recursively), and zip exports (LMS bulk downloads, Gradescope exports). Every notebook is
validated with nbformat and keyed by the SHA-256 of its bytes. Nothing here executes or
imports anything from a submission; zip members are read into memory, never extracted,
so a hostile name (``../x``, ``/etc/x``) or a link can touch nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path, PurePosixPath

import nbformat

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024      # one notebook, as stored
MAX_ZIP_TOTAL_BYTES = 2 * 1024 * 1024 * 1024  # all notebooks of one zip, uncompressed
SUPPORTED_NBFORMAT = 4


@dataclasses.dataclass
class Submission:
    """One notebook to grade, or the reason it cannot be graded."""

    source: str                       # where it came from, for people ("alice/hw.ipynb")
    sha256: str                       # of the notebook's bytes ("" when unreadable)
    notebook: nbformat.NotebookNode | None = None
    rejected: str | None = None       # plain-words reason; set when notebook is None

    @property
    def id(self) -> str:
        """The report folder's name: the content hash, shortened (and the source's for rejects)."""
        key = self.sha256 or hashlib.sha256(self.source.encode()).hexdigest()
        return key[:16]


def _reject(source: str, data: bytes | None, reason: str) -> Submission:
    digest = hashlib.sha256(data).hexdigest() if data is not None else ""
    return Submission(source=source, sha256=digest, rejected=reason)


def load_bytes(source: str, data: bytes, *, max_bytes: int = MAX_NOTEBOOK_BYTES) -> Submission:
    """Validate one notebook given as bytes."""
    if len(data) > max_bytes:
        return _reject(source, data, f"the notebook is {len(data):,} bytes, over the limit of {max_bytes:,}")
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return _reject(source, data, "the file is not text (UTF-8): it is not a Jupyter notebook")
    except json.JSONDecodeError as exc:
        return _reject(source, data, f"the file is not valid JSON, so not a notebook ({exc.msg}, line {exc.lineno})")
    if not isinstance(raw, dict) or "cells" not in raw:
        return _reject(source, data, "the JSON has no 'cells': it is not a Jupyter notebook")
    major = raw.get("nbformat")
    if major != SUPPORTED_NBFORMAT:
        return _reject(source, data, f"notebook format version {major!r} is not supported "
                       f"(save it with Jupyter as format {SUPPORTED_NBFORMAT})")
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=SUPPORTED_NBFORMAT)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises several types; any is a rejection
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return _reject(source, data, f"the notebook does not follow the nbformat schema: {reason}")
    if not any(c.cell_type == "code" and c.source.strip() for c in nb.cells):
        return _reject(source, data, "the notebook has no code to run (no non-empty code cells)")
    if nb.metadata.get("kernelspec", {}).get("language", "python") not in ("python", ""):
        return _reject(source, data, "the notebook's kernel is not Python")
    return Submission(source=source, sha256=hashlib.sha256(data).hexdigest(), notebook=nb)


def _from_zip(path: Path) -> list[Submission]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [_reject(str(path), None, f"the zip file cannot be read: {exc}")]
    found: list[Submission] = []
    total = 0
    with archive:
        for info in archive.infolist():
            name = info.filename
            where = f"{path.name}:{name}"
            if info.is_dir():
                continue
            pure = PurePosixPath(name.replace("\\", "/"))
            if not name.lower().endswith(".ipynb"):
                continue
            if pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":"):
                found.append(_reject(where, None, "the zip entry's path is absolute or leaves the archive ('..'); refused"))
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                found.append(_reject(where, None, "the zip entry is a symbolic link; refused"))
                continue
            if any(p.startswith("__MACOSX") or p.startswith(".") for p in pure.parts):
                continue  # Finder metadata and hidden checkpoints are not submissions
            if info.file_size > MAX_NOTEBOOK_BYTES:
                found.append(_reject(where, None, f"the notebook is {info.file_size:,} bytes, over the limit of {MAX_NOTEBOOK_BYTES:,}"))
                continue
            total += info.file_size
            if total > MAX_ZIP_TOTAL_BYTES:
                found.append(_reject(where, None, "the zip holds more notebook data than the limit; the rest was not read"))
                break
            try:
                with archive.open(info) as fh:
                    data = fh.read(MAX_NOTEBOOK_BYTES + 1)  # the header may lie; never read more
            except Exception as exc:
                found.append(_reject(where, None, f"the zip entry cannot be read: {exc}"))
                continue
            found.append(load_bytes(where, data))
    if not found:
        found.append(_reject(str(path), None, "the zip file contains no .ipynb notebook"))
    return found


def _from_file(path: Path) -> Submission:
    source = str(path)
    if path.is_symlink():
        return _reject(source, None, "the submission is a symbolic link; refused")
    if not path.name.lower().endswith(".ipynb"):
        return _reject(source, None, f"'{path.name}' is not a notebook (.ipynb)")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return _reject(source, None, f"the notebook is {size:,} bytes, over the limit of {MAX_NOTEBOOK_BYTES:,}")
    return load_bytes(source, path.read_bytes())


def collect(paths: list[str | Path]) -> list[Submission]:
    """Every submission found in ``paths``, in a stable order; never raises for bad input."""
    out: list[Submission] = []
    for p in map(Path, paths):
        if p.is_symlink() and not p.is_dir():
            out.append(_from_file(p))
        elif p.is_dir():
            notebooks = sorted(
                q for q in p.rglob("*")
                if q.suffix.lower() in (".ipynb", ".zip")
                and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
            if not notebooks:
                out.append(_reject(str(p), None, "the folder contains no .ipynb notebook"))
            for q in notebooks:
                if q.is_symlink():
                    out.append(_reject(str(q), None, "the submission is a symbolic link; refused"))
                elif q.suffix.lower() == ".zip":
                    out.extend(_from_zip(q))
                else:
                    out.append(_from_file(q))
        elif p.suffix.lower() == ".zip" and p.exists():
            out.extend(_from_zip(p))
        elif p.exists():
            out.append(_from_file(p))
        else:
            out.append(_reject(str(p), None, "no such file or folder"))
    return out


def notebook_bytes(nb: nbformat.NotebookNode) -> bytes:
    buf = io.StringIO()
    nbformat.write(nb, buf)
    return buf.getvalue().encode()
