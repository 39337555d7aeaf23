"""One notebook's bytes, validated: an :class:`IntakeItem` with the notebook, or the reason
it cannot be graded. Nothing here executes or imports anything from a submission."""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path

import nbformat

from ..model import HandedInFiles, JobPart

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024      # one notebook, as stored
MAX_BATCH_NOTEBOOK_BYTES = 4 * 1024 * 1024 * 1024  # a batch's distinct notebooks together (spooled on disk)
SUPPORTED_NBFORMAT = 4


@dataclasses.dataclass
class IntakeItem:
    """What intake found for one submitter: a notebook to grade, or why there is none."""

    source: str                       # where it came from, relative to what was given ("subs/alice/hw.ipynb")
    sha256: str                       # of the notebook's bytes ("" when unreadable or missing)
    notebook: nbformat.NotebookNode | None = None
    rejected: str | None = None       # plain-words reason; set when notebook is None
    submitter: str = ""               # who handed it in, for people ("alice", "hw.ipynb")
    missing: bool = False             # the submitter handed in no notebook at all
    files: list = dataclasses.field(default_factory=list)  # intake.files.HandedInFile: wanted files beside it
    handed_in: HandedInFiles | None = None  # what the report says of the files beside it
    # several notebooks (the spec's [[parts]]): part id -> the notebook found for it, in the spec's
    # order; a part without one has an item with ``rejected`` saying why (``missing``: none at all).
    # Then ``notebook`` is None, ``sha256`` covers every part's, and ``source`` is the submitter's folder.
    parts: dict[str, "IntakeItem"] = dataclasses.field(default_factory=dict)
    note: str = ""                    # a part's notebook: how it was recognised, when not by its name
    notes: list[str] = dataclasses.field(default_factory=list)  # for the student: notebooks not graded, and why
    spooled: Path | None = None       # under :func:`spooling`: the validated bytes on disk, ``notebook`` None

    @property
    def has_notebook(self) -> bool:
        return self.notebook is not None or self.spooled is not None

    @property
    def gradable(self) -> bool:
        """There is a notebook to run: this one, or at least one part's."""
        return self.has_notebook or any(p.has_notebook for p in self.parts.values())

    def load(self) -> nbformat.NotebookNode | None:
        """The notebook, read from the spool when it was put there (a fresh copy each time)."""
        if self.notebook is not None or self.spooled is None:
            return self.notebook
        return nbformat.read(str(self.spooled), as_version=SUPPORTED_NBFORMAT)

    @property
    def content_key(self) -> str:
        """Same notebook and same files: graded once."""
        from .files import content_key
        return content_key(self.sha256, self.files)

    @property
    def id(self) -> str:
        """The content key: the notebook's hash shortened (the source's for rejects)."""
        key = self.sha256 or hashlib.sha256(self.source.encode()).hexdigest()
        return key[:16]


@dataclasses.dataclass
class _Spool:
    folder: Path
    budget: int
    used: int = 0


_SPOOL: contextvars.ContextVar[_Spool | None] = contextvars.ContextVar("gradekit_intake_spool", default=None)


@contextlib.contextmanager
def spooling(folder: Path, budget: int = MAX_BATCH_NOTEBOOK_BYTES):
    """Within this block, every notebook intake accepts is kept on disk in ``folder`` (one
    file per distinct content), not in memory: a batch of hundreds of large notebooks holds
    one at a time (issue 17.13). ``budget``: the distinct notebooks' bytes together, for the
    whole batch; past it, notebooks are refused with the reason."""
    folder.mkdir(parents=True, exist_ok=True)
    token = _SPOOL.set(_Spool(folder, budget))
    try:
        yield folder
    finally:
        _SPOOL.reset(token)


def _spooled(item: IntakeItem, data: bytes) -> IntakeItem:
    spool = _SPOOL.get()
    if spool is None:
        return item
    path = spool.folder / f"{item.sha256}.ipynb"
    if not path.exists():  # identical notebooks (any number of zips) cost their bytes once
        if spool.used + len(data) > spool.budget:
            return IntakeItem(source=item.source, sha256=item.sha256, rejected=(
                f"the batch's notebooks together are over the intake's limit of {spool.budget:,} bytes; "
                "this one was not read (grade the class in smaller batches)"))
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        spool.used += len(data)
    item.notebook, item.spooled = None, path
    return item


def _reject(source: str, data: bytes | None, reason: str) -> IntakeItem:
    digest = hashlib.sha256(data).hexdigest() if data is not None else ""
    return IntakeItem(source=source, sha256=digest, rejected=reason)


def load_bytes(source: str, data: bytes, *, max_bytes: int = MAX_NOTEBOOK_BYTES,
               code_required: bool = True) -> IntakeItem:
    """Validate one notebook given as bytes. ``code_required=False``: a notebook of prose only is
    accepted (a part whose questions staff grade); otherwise it is refused as empty."""
    if len(data) > max_bytes:
        return _reject(source, data, f"the notebook is {len(data):,} bytes, over the limit of {max_bytes:,}")
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return _reject(source, data, "the file is not text (UTF-8): it is not a Jupyter notebook")
    except json.JSONDecodeError as exc:
        return _reject(source, data, f"the file is not valid JSON, so not a notebook ({exc.msg}, line {exc.lineno})")
    except RecursionError:  # a hostile file of nested brackets: Python's parser gives up, and so do we
        return _reject(source, data, "the file's JSON is nested too deeply to be a notebook")
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
    if code_required and not any(c.cell_type == "code" and c.source.strip() for c in nb.cells):
        return _reject(source, data, "the notebook has no code to run (no non-empty code cells)")
    if nb.metadata.get("kernelspec", {}).get("language", "python") not in ("python", ""):
        return _reject(source, data, "the notebook's kernel is not Python")
    return _spooled(IntakeItem(source=source, sha256=hashlib.sha256(data).hexdigest(), notebook=nb), data)


def notebook_bytes(nb: nbformat.NotebookNode) -> bytes:
    buf = io.StringIO()
    nbformat.write(nb, buf)
    return buf.getvalue().encode()


def write_parts(item: IntakeItem, folder: Path, prefix: str) -> tuple[JobPart, ...]:
    """A submission's parts as the worker takes them (``Job.parts``): each part's notebook
    written, a trusted copy, to ``folder/PREFIX-PART.ipynb``; in the spec's order."""
    parts = []
    for pid, one in item.parts.items():
        path = None
        if one.has_notebook:
            path = folder / f"{prefix}-{pid}.ipynb"
            nbformat.write(one.load(), str(path))
        parts.append(JobPart(pid, path, one.sha256, one.source, one.note, one.rejected or "", one.missing))
    return tuple(parts)
