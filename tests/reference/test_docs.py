"""docs/reference/*.md carry the docstrings of reference/ (scripts/reference_docs.py)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("reference_docs", ROOT / "scripts" / "reference_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_pages_match_the_docstrings():
    assert _script().stale_pages() == [], "run: .venv/bin/python scripts/reference_docs.py"


def test_a_changed_docstring_makes_its_page_stale(monkeypatch):
    from reference import knn

    monkeypatch.setattr(knn.knn_predict, "__doc__", "Edited without regenerating the page.")
    assert _script().stale_pages() == ["docs/reference/knn.md"]
