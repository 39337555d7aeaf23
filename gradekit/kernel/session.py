"""Run a student's notebook in its sandboxed kernel, cell by cell, and keep the kernel.

nbclient executes the cells; we add what grading needs on top:

* per-cell and whole-notebook time limits (a slow cell is interrupted and recorded, and
  the next cell still runs);
* outputs capped per cell, so 1 GB of prints costs the grader nothing, and an error's
  message and traceback capped too (a 40 MB exception message is cut, not stored);
* at most ``limits.max_cells`` code cells run: a notebook of 100 000 cells is cut, and said so;
* a cell that raises is recorded, and execution goes on, so later questions can earn;
* when the kernel dies (``os._exit``, out of memory, killed) or hangs past an interrupt,
  it is restarted and the cells that had run to their end (cleanly or with an error) are
  replayed, then execution goes on after the fatal cell. At most ``MAX_RESTARTS`` times, and
  replays count against the notebook's time limit like any other cell.

The kernel outlives the notebook: graders talk to it through :mod:`gradekit.bridge.host`.
jupyter_client's async manager runs on an event loop in a background thread; the
bridge's own blocking client talks to the kernel from the grading thread.
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import Future

import nbformat
import zmq
from jupyter_client import BlockingKernelClient
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from ..model import CellResult, ExecutionResult, KernelJob
from ..sandbox.base import Sandbox
from .manager import SandboxKernelManager
from .parameters import is_injected

MAX_RESTARTS = 3
TIMEOUT_ENAME = "CellTimeoutError"


class _CappedClient(NotebookClient):
    """nbclient with outputs capped per cell and the last execute_reply remembered."""

    output_cap: int = 64_000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bytes: dict[int, int] = {}
        self.truncated: set[int] = set()
        self.last_reply: dict | None = None
        self.on_cell_executed = self._remember_reply

    def _remember_reply(self, cell, cell_index, execute_reply):
        self.last_reply = execute_reply

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg["content"], default=str))
        used = self._bytes.get(cell_index, 0) + size
        self._bytes[cell_index] = used
        if msg["msg_type"] == "error" and size > self.output_cap:
            # an error is kept (it says what went wrong), but cut to the cap like any output
            self.truncated.add(cell_index)
            msg = dict(msg, content=_capped_error(msg["content"], self.output_cap))
        elif used > self.output_cap and msg["msg_type"] != "error":
            if cell_index not in self.truncated:
                self.truncated.add(cell_index)
                outs.append(nbformat.v4.new_output(
                    "stream", name="stderr",
                    text=f"[gradekit: output of this cell cut at {self.output_cap:,} bytes]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TRACEBACK_CHARS = 4000


def _capped_error(content: dict, cap: int) -> dict:
    """An error message's content within ``cap`` bytes: the name, the start of the message,
    the last frames of the traceback (each cut)."""
    ename = str(content.get("ename", "Error"))[:200]
    evalue = str(content.get("evalue", ""))
    keep = max(200, cap // 4)
    if len(evalue) > keep:
        evalue = evalue[:keep] + f"… [gradekit: message cut, {len(evalue):,} characters in all]"
    frames = [str(f)[:keep // 4] for f in list(content.get("traceback", []))[-8:]]
    return {"ename": ename, "evalue": evalue, "traceback": frames}


DISK_FULL = "[Errno 28] No space left on device"  # an uncaught OSError(ENOSPC), as Python shows it


def _error_of(cell) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"[:500]
    return None


def _student_traceback(cell) -> str:
    """The error's traceback, the student's own frames only (their cells, not library code
    or gradekit), without terminal colours, capped."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            frames = [_ANSI.sub("", str(f)) for f in out.get("traceback", [])[:200]]
            mine = [f for f in frames if f.lstrip().startswith(("Cell In[", "Input In [", "File <ipython-input"))
                    or "<ipython-input" in f.split("\n", 1)[0]]
            text = "\n".join(mine + frames[-1:] if frames and (not mine or mine[-1] != frames[-1]) else mine)
            return text[:TRACEBACK_CHARS]
    return ""


class KernelSession:
    """One sandboxed kernel for one job: run the notebook, then serve the bridge."""

    def __init__(self, sandbox: Sandbox, job: KernelJob):
        self.sandbox, self.job = sandbox, job
        self.limits = job.limits
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"kernel-{job.id}", daemon=True)
        self._thread.start()
        self._client: _CappedClient | None = None
        self._blocking: BlockingKernelClient | None = None
        self._ran_cells: list[str] = []    # cells that ran to the end (ok or raised), for replays
        self.restarts = 0
        self.death: str | None = None      # why the kernel is gone, when it is

    # -- plumbing -------------------------------------------------------------------
    def _run(self, coro, timeout: float | None = None):
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    async def _start(self, nb) -> None:
        self.sandbox.prepare(self.job)
        km = SandboxKernelManager(self.sandbox, self.job)
        client = _CappedClient(
            nb, km=km, timeout=int(self.limits.cell_timeout), allow_errors=True,
            interrupt_on_timeout=True, iopub_timeout=5, startup_timeout=120,
            error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": "", "traceback": []},
            record_timing=False, shutdown_kernel="immediate",
        )
        client.output_cap = self.limits.output_bytes
        log = open(self.job.root / "kernel.log", "ab")
        try:
            await client.async_start_new_kernel(cwd=str(self.job.work_dir), stdout=log, stderr=log)
        finally:
            log.close()
        await client.async_start_new_kernel_client()
        self._client = client
        self._blocking = None

    async def _stop(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.km is not None:
            try:
                await client._async_cleanup_kernel()
            except Exception:
                self.sandbox.kill(self.job)
        self.sandbox.cleanup(self.job)

    async def _alive(self) -> bool:
        client = self._client
        return bool(client and client.km and await client.km.is_alive())

    async def _responsive(self, timeout: float) -> bool:
        """True when the kernel answers a trivial request within ``timeout`` seconds."""
        kc = self._client.kc
        msg_id = kc.execute("", silent=True, store_history=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reply = await kc.get_shell_msg(timeout=max(0.05, deadline - time.monotonic()))
            except Exception:
                if not await self._alive():
                    return False
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                return True
        return False

    async def _describe_death(self) -> str:
        km = self._client.km if self._client else None
        return km.describe_exit() if km is not None else "the kernel is gone"

    async def _revive(self, nb, why: str, deadline: float) -> bool:
        """Restart the kernel and replay the cells that had run, within ``deadline``
        (``time.monotonic()``): a replay counts against the time limit like any cell."""
        self.death = why
        if self.restarts >= MAX_RESTARTS:
            await self._stop()
            return False
        self.restarts += 1
        await self._stop()
        try:
            await self._start(nb)
        except Exception as exc:  # a kernel that cannot start again ends the run, not the worker
            self.death = f"{why}; it could not be restarted: {exc}"
            await self._stop()
            return False
        for source in self._ran_cells:
            remaining = deadline - time.monotonic()
            if remaining < 1:
                self.death = f"{why}; the time limit ran out while earlier cells were replayed"
                await self._stop()
                return False
            self._client.timeout = max(1, int(min(self.limits.cell_timeout, remaining)))
            cell = nbformat.v4.new_code_cell(source)
            try:
                await self._client.async_execute_cell(cell, 0, store_history=False)
            except DeadKernelError:
                return False
        self.death = None
        return True

    # -- the notebook ---------------------------------------------------------------
    async def _execute(self, nb) -> ExecutionResult:
        t_start = time.monotonic()
        deadline = t_start + self.limits.total_timeout
        cells: list[CellResult] = []
        try:
            await self._start(nb)
        except Exception as exc:
            await self._stop()
            return ExecutionResult("failed_to_start", [], time.monotonic() - t_start,
                                   message=f"the kernel could not be started: {exc}")
        status_flags: set[str] = set()
        executed = 0
        number = 0  # code cells counted from 1, as people count them in the notebook
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            injected = is_injected(cell)
            number += 0 if injected else 1  # gradekit's parameters cell is not the student's
            if number > self.limits.max_cells:
                total = sum(1 for c in nb.cells if c.cell_type == "code")
                status_flags.add("too_many_cells")
                cells.append(CellResult(index, "skipped", 0.0, f"not run: the notebook has {total:,} code cells, and only "
                                        f"the first {self.limits.max_cells:,} are run", "", number=number))
                break
            if not cell.source.strip():
                continue
            head = cell.source.strip().splitlines()[0][:80]
            remaining = deadline - time.monotonic()
            if remaining < 1:
                status_flags.add("timeout")
                cells.append(CellResult(index, "skipped", 0.0,
                                        f"not run: the notebook's time limit of {self.limits.total_timeout:g} s was reached",
                                        head, number=number))
                continue
            if self._client is None:
                cells.append(CellResult(index, "skipped", 0.0, f"not run: {self.death}", head, number=number))
                continue
            self._client.timeout = max(1, int(min(self.limits.cell_timeout, remaining)))
            self._client.last_reply = None
            t0 = time.monotonic()
            try:
                executed += 1
                await self._client.async_execute_cell(cell, index, execution_count=executed)
            except DeadKernelError:
                why = await self._describe_death()
                cells.append(CellResult(index, "died", time.monotonic() - t0, f"the kernel died: {why}", head,
                                        number=number))
                status_flags.add("died")
                await self._revive(nb, why, deadline)
                continue
            took = time.monotonic() - t0
            reply = (self._client.last_reply or {}).get("content", {})
            truncated = index in self._client.truncated
            if reply.get("ename") == TIMEOUT_ENAME:
                limit = self._client.timeout
                why = (f"the limit for one cell is {self.limits.cell_timeout:g} s" if limit >= self.limits.cell_timeout
                       else f"the notebook's time limit of {self.limits.total_timeout:g} s ran out")
                cells.append(CellResult(index, "timeout", took, f"stopped after {limit} s ({why})", head, truncated,
                                        number=number))
                status_flags.add("timeout")
                if not await self._responsive(10):
                    await self._revive(nb, "the kernel did not stop after its cell timed out", deadline)
                continue
            error = _error_of(cell)
            if error and DISK_FULL in error:  # say which limit stopped it, as for time and memory
                error += (f" (the disk limit: the notebook's working folder, /tmp and the kernel's own folders "
                          f"hold at most {self.limits.disk_mb:,} MB each)")
            cells.append(CellResult(index, "error" if error else "ok", took, error, head, truncated, number=number,
                                    traceback=_student_traceback(cell) if error else ""))
            if error:
                status_flags.add("error")
            self._ran_cells.append(cell.source)
        duration = time.monotonic() - t_start
        if "died" in status_flags:
            status, message = "died", "the kernel died while running the notebook: " + "; ".join(
                c.error for c in cells if c.status == "died")
        elif "timeout" in status_flags:
            status, message = "timeout", "part of the notebook ran out of time (the cells are listed below)"
        elif "error" in status_flags:
            status, message = "completed_with_errors", "some cells raised errors (the cells are listed below)"
        else:
            status, message = "completed", None
        if "too_many_cells" in status_flags:
            cut = f"only the first {self.limits.max_cells:,} code cells were run (limits.max_cells)"
            message = f"{message}; {cut}" if message else cut
        if self.restarts:
            message = (message or "") + f" (the kernel was restarted {self.restarts} time(s) and earlier cells replayed)"
        return ExecutionResult(status, cells, duration, self.restarts, message)

    def execute(self, nb) -> ExecutionResult:
        return self._run(self._execute(nb))

    # -- for the bridge ------------------------------------------------------------
    def blocking_client(self) -> BlockingKernelClient | None:
        """A synchronous client to the current kernel, or None when it is gone."""
        if self._client is None or not self._run(self._alive(), timeout=30):
            return None
        if self._blocking is None:
            kc = BlockingKernelClient(context=zmq.Context())  # its own: the async one is on another thread
            # From memory, not from the connection file: it lies in a folder the kernel can write to.
            kc.load_connection_info(self._client.km.get_connection_info())
            kc.start_channels()
            kc.allow_stdin = False
            self._blocking = kc
        return self._blocking

    def kernel_alive(self) -> bool:
        return self._client is not None and bool(self._run(self._alive(), timeout=30))

    def death_reason(self) -> str:
        return self._run(self._describe_death(), timeout=30)

    def interrupt(self) -> None:
        if self._client is not None and self._client.km is not None:
            self._run(self._client.km.interrupt_kernel(), timeout=30)

    def revive(self, why: str) -> bool:
        """Kill a stuck kernel, start a new one and replay the cells that had run."""
        if self._blocking is not None:
            self._blocking.stop_channels()
            self._blocking = None
        nb = self._client.nb if self._client else nbformat.v4.new_notebook()
        # during grading: a fresh budget of the notebook's limit for the replay (the worker's
        # hard limit still bounds the whole)
        return self._run(self._revive(nb, why, time.monotonic() + self.limits.total_timeout))

    def close(self) -> None:
        try:
            if self._blocking is not None:
                self._blocking.stop_channels()
                self._blocking.context.term()
                self._blocking = None
            self._run(self._stop(), timeout=60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
