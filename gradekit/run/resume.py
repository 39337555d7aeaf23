"""``gradekit grade --resume``: reuse reports whose submission and grading setup are unchanged.

A report is reused when its notebook's hash, and the fingerprint of everything else a
report depends on (graders, public tests, spec, reference code, limits, the course
secret, gradekit itself), are those of this run.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from .. import __version__
from ..model import Limits, Report, RecordError
from ..report.write import read
from ..spec import Assignment


def fingerprint(assignment: Assignment, limits: Limits, secret: str) -> str:
    h = hashlib.sha256(f"{__version__}|{dataclasses.asdict(limits)}|{hashlib.sha256(secret.encode()).hexdigest()}".encode())
    top = assignment.course
    reference = Path(__file__).resolve().parents[2] / "reference"
    folders = [assignment.graders_dir, assignment.public_tests_dir, assignment.root / "assignment.toml", reference]
    for folder in folders:
        files = sorted(folder.rglob("*.py")) if folder.is_dir() else [folder] if folder.exists() else []
        for f in files:
            name = str(f.relative_to(top)) if f.is_relative_to(top) else f.name
            h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def reusable(folder: Path, sha256: str, setup: str) -> Report | None:
    """The report in ``folder`` when it was graded from the same notebook under the same setup."""
    try:
        old = read(folder)
    except (OSError, ValueError, RecordError):
        return None
    if old.status == "graded" and old.fingerprint == setup and old.submission.sha256 == sha256:
        return old
    return None
