"""Intake: what instructors hand us, turned into one :class:`IntakeItem` per submitter.

Accepted: ``.ipynb`` files, folders, and zip exports (LMS bulk downloads, Gradescope
exports). In a folder or a zip, each top-level folder is one submitter (a student's
folder, named as the LMS names it), and each top-level notebook is one submitter too. A
submitter's notebook is found by :func:`pick_notebook`, the same rule the Gradescope
runner uses: the only notebook, or among several the one whose metadata names the
assignment. A submitter folder without a notebook is reported ``missing``, with what it
held.

An assignment handed in as several notebooks (the spec's ``[[parts]]``) gets one item per
submitter whose ``parts`` hold the notebook found for each part (:func:`match_parts`): by
its file name (the part's pattern), else by its metadata (``metadata.gradekit.part``, and
the assignment's id when it names one). Loose notebooks at the top of a folder or zip given
to :func:`collect` are then one submitter's parts (named after the folder or zip), not a
submitter each.

Every notebook is validated with nbformat and keyed by the SHA-256 of its bytes. Zip
members are read into memory, never extracted, so a hostile name (``../x``, ``/etc/x``)
or a link can touch nothing. Sources are shown relative to what was given: no host
paths reach students.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from ..spec import Part, SubmissionFiles
from . import files as handed_in
from . import identity
from .notebook import MAX_NOTEBOOK_BYTES, IntakeItem, load_bytes

MAX_ZIP_TOTAL_BYTES = 2 * 1024 * 1024 * 1024  # all notebooks of one zip, uncompressed
MAX_FOLDER_DEPTH = 16    # a submitter's notebook is looked for this deep, no deeper
MAX_METADATA_BYTES = 64 * 1024 * 1024
GRADESCOPE_METADATA = "submission_metadata.yml"
_IGNORED = ("__MACOSX", ".ipynb_checkpoints")


def _ignored(parts: Iterable[str]) -> bool:
    return any(p.startswith(".") or p in _IGNORED for p in parts)


def _gradekit_metadata(data: bytes) -> dict:
    """A notebook's ``metadata.gradekit`` table, {} when it has none or cannot be read (not
    JSON, not UTF-8, nested past the parser's depth: the notebook's own check says why)."""
    try:
        meta = json.loads(data.decode("utf-8")).get("metadata", {})
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return {}
    gk = meta.get("gradekit") if isinstance(meta, dict) else None
    return gk if isinstance(gk, dict) else {}


def _assignment_of(data: bytes) -> str | None:
    return _gradekit_metadata(data).get("assignment")


def _part_of(data: bytes, assignment_id: str | None) -> str | None:
    """The part a notebook's metadata names (``metadata.gradekit.part``), when its assignment
    (if it names one) is this one."""
    gk = _gradekit_metadata(data)
    if not isinstance(gk.get("part"), str):
        return None
    named = gk.get("assignment")
    return gk["part"] if named is None or assignment_id is None or named == assignment_id else None


def _names(names: list[str]) -> str:
    return ", ".join(f"`{handed_in.shown(n)}`" for n in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def match_parts(notebooks: list[str], read, assignment_id: str | None,
                parts: tuple[Part, ...]) -> tuple[dict[str, tuple[str | None, str, str]], list[str]]:
    """Which notebook is which part: (part id -> (relative name or None, note, why none), notes).

    A notebook is a part's when its file name matches that part's pattern alone. Several for
    one part: the one whose metadata names the part, if exactly one does; else the part is
    refused (a plain reason; nothing is guessed from dates, which copying loses). A notebook
    no pattern matches is the part its metadata names (``metadata.gradekit.part``) when
    that part has no notebook yet and no other such notebook names it: accepted with a
    note. Any other notebook is not graded, and ``notes`` say so."""
    by_name: dict[str, list[str]] = {p.id: [] for p in parts}
    loose: list[str] = []
    for n in notebooks:
        hits = [p for p in parts if p.matches(n)]
        (by_name[hits[0].id] if len(hits) == 1 else loose).append(n)
    found: dict[str, tuple[str | None, str, str]] = {}
    notes: list[str] = []
    for p in parts:
        names = by_name[p.id]
        if len(names) == 1:
            found[p.id] = (names[0], "", "")
        elif names:
            marked = [n for n in names if _part_of(read(n), assignment_id) == p.id]
            if len(marked) == 1:
                found[p.id] = (marked[0], f"{len(names)} notebooks are named like `{p.pattern}` ({_names(names)}); "
                               f"`{handed_in.shown(marked[0])}`, the one whose metadata marks it as {p.title}, "
                               "was graded", "")
            else:
                found[p.id] = (None, "", f"{len(names)} notebooks for {p.title} were found ({_names(names)}) and "
                               f"{'none' if not marked else len(marked)} of them {'is' if not marked else 'are'} marked "
                               f"as {p.title} in its metadata: hand in one notebook named like `{p.pattern}`")
    wanted: dict[str, list[str]] = {}
    for n in loose:
        pid = _part_of(read(n), assignment_id)
        if pid is not None and pid in by_name and not by_name[pid]:
            wanted.setdefault(pid, []).append(n)
        else:
            notes.append(f"`{handed_in.shown(n)}` was not graded: its name matches no part of the assignment "
                         f"(expected names like {', '.join(f'`{q.pattern}`' for q in parts)})"
                         + (" and its metadata names no part that is missing" if pid is None or pid in by_name else
                            f" and its metadata names a part ({handed_in.shown(pid)!r}) the assignment does not have"))
    for p in parts:
        names = wanted.get(p.id, [])
        if len(names) == 1:
            found[p.id] = (names[0], f"`{handed_in.shown(names[0])}` is not named like `{p.pattern}`, but its metadata "
                           f"marks it as {p.title} of this assignment: it was graded as {p.title}", "")
        elif names:
            notes.append(f"{_names(names)} were not graded: each is marked as {p.title} in its metadata, and only "
                         f"one notebook per part is graded (name it like `{p.pattern}`)")
        if p.id not in found:
            found[p.id] = (None, "", p.missing_reason)
    return found, notes


def parts_item(source: str, submitter: str, found: dict[str, tuple[str | None, str, str]], notes: list[str],
               load, parts: tuple[Part, ...]) -> IntakeItem:
    """One submitter's item from :func:`match_parts`' answer; ``load(name, code_required=...)`` gives a
    notebook's item (a part staff grade alone may be prose only)."""
    items: dict[str, IntakeItem] = {}
    for p in parts:
        name, note, why = found[p.id]
        if name is None:
            items[p.id] = IntakeItem(source="", sha256="", submitter=submitter, rejected=why,
                                     missing=why == p.missing_reason)
            continue
        one = load(name, code_required=not p.staff_only)
        one.submitter, one.note = submitter, note
        items[p.id] = one
    # the notes are part of what is graded: two submitters with the same notebooks but other notes
    # (a stray notebook not graded, a part found by its metadata) each get a report with their own
    key = hashlib.sha256("|".join([f"{pid}:{i.sha256}:{i.note or ''}" for pid, i in items.items()]
                                  + list(notes)).encode()).hexdigest()
    top = IntakeItem(source=source, sha256=key, submitter=submitter, parts=items, notes=list(notes))
    if not top.gradable:
        top.sha256 = ""
        top.missing = all(i.missing for i in items.values())
        top.rejected = "; ".join([i.rejected or "" for i in items.values()] + notes)
    return top


def pick_notebook(notebooks: list[str], read, assignment_id: str | None) -> tuple[str | None, str | None]:
    """The one notebook of a submitter: (relative name, None), or (None, why not).

    ``notebooks`` are relative names, ``read(name)`` gives a notebook's bytes (capped)."""
    if len(notebooks) == 1:
        return notebooks[0], None
    named = [n for n in notebooks if assignment_id and _assignment_of(read(n)) == assignment_id]
    if len(named) == 1:
        return named[0], None
    which = "none of them is" if not named else f"{len(named)} of them are"
    return None, (f"the submission holds {len(notebooks)} notebooks ({', '.join(notebooks[:10])}) and {which} "
                  f"marked as this assignment's ({assignment_id!r}) in its metadata: hand in only the notebook "
                  "made from the assignment's template")


def _missing(submitter: str, source: str, others: list[str]) -> IntakeItem:
    held = ", ".join(others[:10]) + (f" and {len(others) - 10} more" if len(others) > 10 else "") if others else "nothing"
    return IntakeItem(source=source, sha256="", submitter=submitter, missing=True,
                      rejected=f"no Jupyter notebook (.ipynb) was handed in (found: {held})")


# -- folders ------------------------------------------------------------------------------
def _walk(folder: Path) -> tuple[list[str], list[str]]:
    """(notebooks, other files) under ``folder``, relative, links skipped."""
    notebooks, others = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        depth = len(Path(dirpath).relative_to(folder).parts)
        # a tree thousands of folders deep is a student's to make: never walk it all
        dirnames[:] = sorted(d for d in dirnames if not _ignored([d])) if depth < MAX_FOLDER_DEPTH else []
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(folder).as_posix()
            if _ignored([name]):
                continue
            if p.is_symlink():  # never followed: it could point at any host file
                others.append(f"{rel} (a link, ignored)")
            elif name.lower().endswith(".ipynb"):
                notebooks.append(rel)
            else:
                others.append(rel)
    return notebooks, others


def _read_capped(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(MAX_NOTEBOOK_BYTES + 1)


def _from_file(path: Path, source: str, submitter: str, code_required: bool = True) -> IntakeItem:
    if path.is_symlink():
        item = IntakeItem(source=source, sha256="", rejected="the submission is a symbolic link; refused")
    elif not path.name.lower().endswith(".ipynb"):
        item = IntakeItem(source=source, sha256="", rejected=f"'{path.name}' is not a notebook (.ipynb)")
    elif path.stat().st_size > MAX_NOTEBOOK_BYTES:
        item = IntakeItem(source=source, sha256="", rejected=f"the notebook is {path.stat().st_size:,} bytes, "
                          f"over the limit of {MAX_NOTEBOOK_BYTES:,}")
    else:
        item = load_bytes(source, _read_capped(path), code_required=code_required)
    item.submitter = submitter
    return item


def _submitter_folder(folder: Path, label: str, submitter: str, assignment_id: str | None,
                      rules: SubmissionFiles | None = None, parts: tuple[Part, ...] = (),
                      only: list[str] | None = None) -> IntakeItem:
    notebooks, others = _walk(folder)
    if only is not None:  # loose notebooks at the top of a class folder: those alone
        notebooks, others = [n for n in notebooks if n in only], []
    if not notebooks:
        return _missing(submitter, label, others)
    if parts:
        found, notes = match_parts(notebooks, lambda n: _read_capped(folder / n), assignment_id, parts)
        item = parts_item(label, submitter, found, notes,
                          lambda n, **kw: _from_file(folder / n, f"{label}/{n}", submitter, **kw), parts)
    else:
        chosen, why = pick_notebook(notebooks, lambda n: _read_capped(folder / n), assignment_id)
        if chosen is None:
            return IntakeItem(source=label, sha256="", submitter=submitter, rejected=why)
        item = _from_file(folder / chosen, f"{label}/{chosen}", submitter)
    if rules is not None and rules.patterns and item.gradable:
        plain = [o for o in others if not o.endswith(" (a link, ignored)")]

        def read(name: str, cap: int) -> bytes:
            with open(folder / name, "rb") as fh:
                return fh.read(cap + 1)
        item.files, item.handed_in = handed_in.select(plain, lambda n: (folder / n).stat().st_size, read, rules,
                                                      keep_bytes=False)
        item.handed_in.ignored += [handed_in.shown(o) for o in others if o.endswith(" (a link, ignored)")][:10]
        for f in item.files:
            f.path = folder / f.relative
    return item


def _from_folder(folder: Path, label: str, assignment_id: str | None,
                 rules: SubmissionFiles | None = None, parts: tuple[Part, ...] = ()) -> list[IntakeItem]:
    items: list[IntakeItem] = []
    gs_names = {}
    meta = folder / GRADESCOPE_METADATA
    if meta.is_file() and not meta.is_symlink():
        with open(meta, "rb") as fh:
            gs_names = identity.gradescope_names(fh.read(MAX_METADATA_BYTES).decode("utf-8", "replace"))
    entries = sorted(p for p in folder.iterdir() if not _ignored([p.name]))
    if parts:  # loose notebooks at the top: one submitter's parts, named after the folder
        loose = [p.name for p in entries if p.suffix.lower() == ".ipynb" and not p.is_symlink() and p.is_file()]
        if loose:
            items.append(_submitter_folder(folder, label, identity.from_folder(folder.name), assignment_id,
                                           None, parts, only=loose))
        entries = [p for p in entries if p.name not in loose]
    for p in entries:
        rel = f"{label}/{p.name}"
        if p.is_symlink():
            items.append(IntakeItem(source=rel, sha256="", submitter=p.name,
                                    rejected="the submission is a symbolic link; refused"))
        elif p.is_dir():
            name = gs_names.get(p.name) or identity.from_folder(p.name)
            items.append(_submitter_folder(p, rel, name, assignment_id, rules, parts))
        elif p.suffix.lower() == ".zip":
            items.extend(_from_zip(p, rel, assignment_id, rules, parts))
        elif p.suffix.lower() == ".ipynb":
            items.append(_from_file(p, rel, identity.from_file(p.name)))
    if not items:
        items.append(_missing(label, label, [p.name for p in entries]))
    return items


# -- zips ---------------------------------------------------------------------------------
def _from_zip(path: Path, label: str, assignment_id: str | None,
              rules: SubmissionFiles | None = None, parts: tuple[Part, ...] = ()) -> list[IntakeItem]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [IntakeItem(source=label, sha256="", submitter=path.stem, rejected=f"the zip file cannot be read: {exc}")]
    items: list[IntakeItem] = []
    total = 0
    with archive:
        groups: dict[str, list[zipfile.ZipInfo]] = {}
        others: dict[str, list[str]] = {}
        members: dict[str, dict[str, zipfile.ZipInfo]] = {}  # submitter folder -> its other files
        gs_names = {}
        for info in archive.infolist():
            name = info.filename.replace("\\", "/")
            pure = PurePosixPath(name)
            if info.is_dir():
                continue
            where = f"{label}:{name}"
            if pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":"):
                if name.lower().endswith(".ipynb"):
                    items.append(IntakeItem(source=where, sha256="", submitter=name,
                                            rejected="the zip entry's path is absolute or leaves the archive ('..'); refused"))
                continue
            if _ignored(pure.parts):
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                if name.lower().endswith(".ipynb"):
                    items.append(IntakeItem(source=where, sha256="", submitter=name,
                                            rejected="the zip entry is a symbolic link; refused"))
                continue
            if name == GRADESCOPE_METADATA and info.file_size < MAX_METADATA_BYTES:
                gs_names = identity.gradescope_names(archive.read(info).decode("utf-8", "replace"))
                continue
            key = pure.parts[0] if len(pure.parts) > 1 else name  # a submitter folder, or a lone notebook
            if parts and len(pure.parts) == 1:
                key = ""  # with parts, loose notebooks at the top are the zip's own submitter's
            if name.lower().endswith(".ipynb"):
                groups.setdefault(key, []).append(info)
            elif len(pure.parts) > 1:  # a file in a submitter's folder: listed if the folder has no notebook
                others.setdefault(key, []).append("/".join(pure.parts[1:]))
                members.setdefault(key, {})["/".join(pure.parts[1:])] = info

        def read(info: zipfile.ZipInfo) -> bytes:
            with archive.open(info) as fh:
                return fh.read(MAX_NOTEBOOK_BYTES + 1)  # the header may lie; never read more

        def load(info: zipfile.ZipInfo, code_required: bool = True) -> IntakeItem:
            nonlocal total
            where = f"{label}:{info.filename}"
            if info.file_size > MAX_NOTEBOOK_BYTES:
                return IntakeItem(source=where, sha256="", rejected=f"the notebook is {info.file_size:,} bytes, "
                                  f"over the limit of {MAX_NOTEBOOK_BYTES:,}")
            total += info.file_size
            if total > MAX_ZIP_TOTAL_BYTES:
                return IntakeItem(source=where, sha256="",
                                  rejected="the zip holds more notebook data than the limit; the rest was not read")
            try:
                return load_bytes(where, read(info), code_required=code_required)
            except Exception as exc:
                return IntakeItem(source=where, sha256="", rejected=f"the zip entry cannot be read: {exc}")

        for key in sorted(set(groups) | set(others)):
            is_folder = key not in [i.filename for i in groups.get(key, [])]
            submitter = ((gs_names.get(key) or identity.from_folder(key)) if is_folder and key
                         else identity.from_folder(path.stem) if is_folder else identity.from_file(PurePosixPath(key).name))
            infos = groups.get(key, [])
            if not infos:
                if is_folder:
                    items.append(_missing(submitter, f"{label}:{key}", others.get(key, [])))
                continue
            by_rel = {}
            for i in infos:
                name = i.filename.replace("\\", "/")
                by_rel["/".join(PurePosixPath(name).parts[1:]) if is_folder and key else name] = i
            if parts:
                found, notes = match_parts(sorted(by_rel), lambda n: read(by_rel[n]), assignment_id, parts)
                item = parts_item(f"{label}:{key}" if key else label, submitter, found, notes,
                                  lambda n, **kw: load(by_rel[n], **kw), parts)
            else:
                chosen, why = pick_notebook(sorted(by_rel), lambda n: read(by_rel[n]), assignment_id)
                if chosen is None:
                    items.append(IntakeItem(source=f"{label}:{key}", sha256="", submitter=submitter, rejected=why))
                    continue
                item = load(by_rel[chosen])
            item.submitter = submitter
            if rules is not None and rules.patterns and is_folder and item.gradable:
                mine = members.get(key, {})

                def read_member(name: str, cap: int, mine=mine) -> bytes:
                    with archive.open(mine[name]) as fh:
                        return fh.read(cap + 1)  # the header may lie; never read more
                item.files, item.handed_in = handed_in.select(list(mine), lambda n, mine=mine: mine[n].file_size,
                                                              read_member, rules, keep_bytes=True)
            items.append(item)
    if not items:
        items.append(IntakeItem(source=label, sha256="", submitter=path.stem,
                                rejected="the zip file contains no .ipynb notebook"))
    return items


# -- the entry point ----------------------------------------------------------------------
def collect(paths: list[str | Path], assignment_id: str | None = None,
            files: SubmissionFiles | None = None, parts: tuple[Part, ...] = ()) -> list[IntakeItem]:
    """One item per submitter found in ``paths``, in a stable order; never raises for bad input.
    ``files``: the spec's rules for files beside the notebook (a submitter's folder or zip);
    ``parts``: the spec's parts, when a submission is several notebooks."""
    out: list[IntakeItem] = []
    for p in map(Path, paths):
        label = p.name or str(p)
        if p.is_symlink() and not p.is_dir():
            out.append(_from_file(p, label, identity.from_file(p.name)))
        elif p.is_dir():
            out.extend(_from_folder(p, label, assignment_id, files, parts))
        elif p.suffix.lower() == ".zip" and p.exists():
            out.extend(_from_zip(p, label, assignment_id, files, parts))
        elif p.exists() and parts and p.suffix.lower() == ".ipynb":  # one notebook: one part, the others missing
            found, notes = match_parts([p.name], lambda n: _read_capped(p), assignment_id, parts)
            out.append(parts_item(label, identity.from_file(p.name), found, notes,
                                  lambda n, **kw: _from_file(p, label, identity.from_file(p.name), **kw), parts))
        elif p.exists():
            out.append(_from_file(p, label, identity.from_file(p.name)))
        else:
            out.append(IntakeItem(source=label, sha256="", submitter=label, rejected="no such file or folder"))
    for item in out:
        item.submitter = item.submitter or item.source
    # Two submitters of one name (two sections' zips, each with "hw.ipynb") keep a report
    # each: the name is made distinct with where each came from.
    names = [i.submitter for i in out]
    for item in out:
        if names.count(item.submitter) > 1:
            item.submitter = f"{item.submitter} ({item.source})"
    return out


def gradescope_submission(folder: Path, assignment_id: str, files: SubmissionFiles | None = None,
                          parts: tuple[Part, ...] = ()) -> IntakeItem:
    """The notebook (or with ``parts``, the notebooks) of one Gradescope submission folder
    (``/autograder/submission``)."""
    return _submitter_folder(folder, "submission", "submission", assignment_id, files, parts)
