"""Intake (trusted): files, folders and zips in; one validated :class:`IntakeItem` per submitter out."""
from .collect import collect, gradescope_submission, pick_notebook
from .notebook import MAX_NOTEBOOK_BYTES, IntakeItem, load_bytes, notebook_bytes, spooling, write_parts

__all__ = ["collect", "gradescope_submission", "pick_notebook", "IntakeItem", "load_bytes", "notebook_bytes", "spooling",
           "write_parts",
           "MAX_NOTEBOOK_BYTES"]
