"""Progress of a batch: a rich progress bar on a terminal (ETA, counts per status), one
plain line per finished submission otherwise (logs, CI)."""
from __future__ import annotations

import sys
import threading
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..model import Report
from ..report.render.gradebook import terminal_text


class BatchProgress:
    """Call :meth:`done` per finished submission (any thread); use as a context manager."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled = total, enabled
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._console = Console(file=stream or sys.stderr, highlight=False)
        self._bar = None
        if enabled and self._console.is_terminal:
            self._bar = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=self._console, transient=False)
            self._task = self._bar.add_task("grading", total=total, counts="")

    def __enter__(self):
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()

    def done(self, report: Report, how: str | None = None) -> None:
        status = how or report.status
        with self._lock:
            self.counts[status] += 1
            if not self.enabled:
                return
            counts = "  ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            if self._bar is not None:
                self._bar.update(self._task, advance=1, counts=counts)
            else:
                n = sum(self.counts.values())
                self._console.print(f"[{n}/{self.total}] {terminal_text(report.submission.submitter)}: "
                                    f"{status} {report.score_text()}", markup=False)
