"""Files handed in beside the notebook: trained weights, saved predictions, neural codes.

The spec's ``[submission] files`` patterns say which are wanted, with a size limit for each
file and for all together. Matching files are kept (as bytes, or by path in a folder the
instructor gave us) and later copied into the kernel's working folder; they are never
opened on the trusted side (a student's ``.pt`` is a pickle). Others are listed as ignored,
oversize ones refused, each with the reason, for the report.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ..model import HandedInFiles
from ..spec import SubmissionFiles

MB = 1024 * 1024
#: A submission with more files than this is not listed in full in its report.
LISTED = 50


@dataclasses.dataclass
class HandedInFile:
    relative: str                 # POSIX path inside the submission ("weights/model.pt")
    size: int
    sha256: str
    data: bytes | None = None     # read from a zip
    path: Path | None = None      # in a folder: copied from here (never followed if a link)

    def content(self) -> bytes:
        if self.data is not None:
            return self.data
        with open(self.path, "rb") as fh:
            return fh.read(self.size + 1)


def shown(name: str) -> str:
    """A student's file name as the report may show it: escapes for control codes, capped."""
    return name.encode("unicode_escape").decode("ascii")[:200]


def _safe(relative: str) -> bool:
    pure = PurePosixPath(relative)
    return bool(relative) and not pure.is_absolute() and ".." not in pure.parts and all(
        p and p.isprintable() and "\\" not in p for p in pure.parts)


def select(names: list[str], size_of: Callable[[str], int], read: Callable[[str, int], bytes],
           rules: SubmissionFiles, *, keep_bytes: bool) -> tuple[list[HandedInFile], HandedInFiles]:
    """The files of one submitter that the spec wants, and what the report says of all.

    ``names`` are relative paths, ``size_of(name)`` their sizes, ``read(name, cap)`` their
    bytes (at most ``cap``). ``keep_bytes``: hold the bytes (zips), else read them only to
    hash them (folders: copied again later, from the same path)."""
    kept: list[HandedInFile] = []
    record = HandedInFiles()
    total = 0
    for name in sorted(names):
        label = shown(name)
        if not rules.matches(name) or not _safe(name):
            if len(record.ignored) < LISTED:
                record.ignored.append(label)
            continue
        size = size_of(name)
        limit_one, limit_all = int(rules.max_file_mb * MB), int(rules.max_total_mb * MB)
        if size > limit_one:
            record.refused.append(f"{label}: {size / MB:.1f} MB, over the limit of {rules.max_file_mb:g} MB per file")
            continue
        if total + size > limit_all:
            record.refused.append(f"{label}: the files together would pass the limit of {rules.max_total_mb:g} MB")
            continue
        if len(kept) >= rules.max_count:
            record.refused.append(f"{label}: more than {rules.max_count} files")
            continue
        data = read(name, size)
        if len(data) != size:  # changed while we read it, or a lying zip header
            record.refused.append(f"{label}: its size changed while it was read")
            continue
        total += size
        kept.append(HandedInFile(name, size, hashlib.sha256(data).hexdigest(), data if keep_bytes else None))
        record.accepted.append(label)
    return kept, record


def content_key(notebook_sha256: str, files: list[HandedInFile]) -> str:
    """What makes two submissions the same: the notebook and every file handed in with it."""
    if not files:
        return notebook_sha256
    h = hashlib.sha256(notebook_sha256.encode())
    for f in sorted(files, key=lambda f: f.relative):
        h.update(f"\0{f.relative}\0{f.sha256}".encode())
    return h.hexdigest()


def write(files: list[HandedInFile], folder: Path) -> None:
    """Trusted copies of ``files`` under ``folder`` (for the worker to hand to the kernel)."""
    for f in files:
        target = folder.joinpath(*PurePosixPath(f.relative).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = f.content()
        if len(data) != f.size or hashlib.sha256(data).hexdigest() != f.sha256:
            continue  # changed since intake: not the file we listed
        target.write_bytes(data)
