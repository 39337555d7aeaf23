"""Who handed a notebook in, from the names LMS and Gradescope exports use.

* an LMS folder export: one folder per student (``alice/hw.ipynb``) -> ``alice``;
* Canvas's file naming (``smithalice_12345_678901_hw.ipynb``, ``..._LATE_...``) -> ``smithalice``;
* Moodle's folder naming (``Alice Smith_12345_assignsubmission_file_/hw.ipynb``) -> ``Alice Smith``;
* a Gradescope export (``submission_123/...`` beside ``submission_metadata.yml``) -> the
  submitters' names from the metadata;
* a lone notebook -> its file name.
"""
from __future__ import annotations

import re

_CANVAS = re.compile(r"^(?P<name>[^_/]+)_(?:LATE_)?\d+_\d+_.+$")
_MOODLE = re.compile(r"^(?P<name>.+?)_\d+_assignsubmission_\w*?_?$")
_GS_SUBMISSION = re.compile(r"^(?::?)(submission_\d+):\s*$")
_GS_NAME = re.compile(r"^\s*-?\s*:?name:\s*(?P<name>.+?)\s*$")


def from_folder(name: str) -> str:
    m = _MOODLE.match(name)
    return m.group("name") if m else name


def from_file(name: str) -> str:
    m = _CANVAS.match(name)
    return m.group("name") if m else name


def gradescope_names(metadata_text: str) -> dict[str, str]:
    """``submission_123`` -> "Alice Smith, Bob Jones", from a Gradescope export's
    ``submission_metadata.yml`` (read as text: its keys are Ruby symbols)."""
    names: dict[str, list[str]] = {}
    current = None
    for line in metadata_text.splitlines()[:200_000]:
        m = _GS_SUBMISSION.match(line)
        if m:
            current = m.group(1)
            names.setdefault(current, [])
            continue
        m = _GS_NAME.match(line)
        if m and current is not None:
            names[current].append(m.group("name").strip("'\""))
    return {k: ", ".join(v) for k, v in names.items() if v}
