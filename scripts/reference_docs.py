"""Regenerate the "## API" section of each docs/reference/<module>.md page from
the docstrings in reference/<module>.py (the title, overview and example above
it are written by hand and kept).

    .venv/bin/python scripts/reference_docs.py          # rewrite the pages
    .venv/bin/python scripts/reference_docs.py --check  # exit 1 if a page is stale

tests/reference/test_docs.py runs the check, so a docstring edit without a
regenerated page fails the suite.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("losses", "layers", "architectures", "retrieval", "metric_learning", "knn", "classification")
API = "## API\n"


def api_section(module_name: str) -> str:
    module = importlib.import_module(f"reference.{module_name}")
    parts = [API]
    for name in module.__all__:
        obj = getattr(module, name)
        if callable(obj):
            parts.append(f"\n### `{name}{inspect.signature(obj)}`\n\n{inspect.getdoc(obj)}\n")
        else:
            parts.append(f"\n### `{name}`\n\nConstant: `{obj!r}`.\n")
    return "".join(parts)


def rendered(module_name: str) -> tuple[Path, str, str]:
    """(page, its text now, its text with the API section regenerated)."""
    page = ROOT / "docs" / "reference" / f"{module_name}.md"
    text = page.read_text()
    head = text[:text.index(API)] if API in text else text.rstrip("\n") + "\n\n"
    return page, text, head + api_section(module_name)


def stale_pages() -> list[str]:
    return [str(page.relative_to(ROOT)) for page, now, new in map(rendered, MODULES) if now != new]


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    if "--check" in argv:
        stale = stale_pages()
        for page in stale:
            print(f"stale: {page} (run scripts/reference_docs.py)")
        return 1 if stale else 0
    for page, now, new in map(rendered, MODULES):
        if now != new:
            page.write_text(new)
            print(f"rewrote {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
