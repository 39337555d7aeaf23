"""The outputs a question points at (``shows = ["tag"]`` in the spec), kept for its feedback.

A question about a plot names the tag of the cell that draws it; after the notebook ran,
that cell's text and PNG images go into the question's row of the report, capped, so the
feedback page can show the student what their notebook produced next to the verdict.
"""
from __future__ import annotations

import base64
import binascii

from ..kernel.parameters import is_injected
from ..model import CellOutput
from ..spec import Assignment

TEXT_CHARS = 4000
IMAGE_BYTES = 512 * 1024   # each PNG, decoded
IMAGES_PER_QUESTION = 4
PNG = b"\x89PNG\r\n\x1a\n"


def _png(data) -> str | None:
    """``data`` if it is base64 of a PNG within the cap, else None (outputs are the student's)."""
    if isinstance(data, list):
        data = "".join(str(d) for d in data)
    if not isinstance(data, str) or len(data) > IMAGE_BYTES * 4 // 3 + 16:
        return None
    try:
        raw = base64.b64decode(data.replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        return None
    return base64.b64encode(raw).decode("ascii") if raw.startswith(PNG) else None


def _text(out) -> str:
    if out.get("output_type") == "stream":
        text = out.get("text", "")
    else:
        text = out.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else str(text)


def question_outputs(assignment: Assignment, nb) -> dict[str, list[CellOutput]]:
    """question id -> the outputs of the cells tagged with one of its ``shows`` tags."""
    found: dict[str, list[CellOutput]] = {}
    number = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code" or is_injected(cell):
            continue
        number += 1
        tags = set(cell.get("metadata", {}).get("tags", []) or [])
        for q in assignment.questions:
            if not tags.intersection(q.shows):
                continue
            text, images = [], []
            for out in cell.get("outputs", []):
                text.append(_text(out))
                png = _png(out.get("data", {}).get("image/png")) if out.get("output_type") in (
                    "display_data", "execute_result") else None
                if png and len(images) < IMAGES_PER_QUESTION:
                    images.append(png)
            found.setdefault(q.id, []).append(CellOutput(number=number, text="".join(text)[:TEXT_CHARS], images=images))
    return found
