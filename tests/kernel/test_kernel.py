"""The kernel client gradekit starts kernels with."""
from __future__ import annotations

from jupyter_client import AsyncKernelClient

from gradekit.kernel.manager import PromptKernelClient, SandboxKernelManager
from gradekit.model import KernelJob, Limits
from gradekit.sandbox.process.backend import ProcessSandbox


def test_kernels_get_the_prompt_client_and_its_ready_wait(tmp_path):
    # jupyter_client binds `wait_for_ready` to its own coroutine at class level: overriding
    # `_async_wait_for_ready` alone left its 0.2 s wait for IOPub silence in every start
    assert PromptKernelClient.wait_for_ready is PromptKernelClient._async_wait_for_ready
    assert PromptKernelClient.wait_for_ready is not AsyncKernelClient.wait_for_ready
    km = SandboxKernelManager(ProcessSandbox(), KernelJob(id="k", root=tmp_path / "job", limits=Limits()))
    assert isinstance(km.client(), PromptKernelClient)


def test_a_cell_stopped_by_the_disk_limit_says_so(tmp_path):
    """A full working folder (its own tmpfs of limits.disk_mb) ends the cell with ENOSPC, and
    the cell's error names the disk limit, as a timeout names the time limit (issue 17.2)."""
    from nbformat.v4 import new_code_cell, new_notebook
    from gradekit.kernel.session import KernelSession
    from support import needs_root
    needs_root()
    sandbox = ProcessSandbox()
    sandbox.check()
    if getattr(sandbox, "unbounded", None):
        import pytest
        pytest.fail(f"this host cannot bound the kernel's folders: {sandbox.unbounded}")
    tmp_path.chmod(0o711)
    job = KernelJob(id="disk", root=tmp_path / "job", limits=Limits(disk_mb=8, cell_timeout=60, total_timeout=120))
    job.root.mkdir()
    session = KernelSession(sandbox, job)
    try:
        result = session.execute(new_notebook(cells=[new_code_cell(
            "with open('big.bin', 'wb') as f:\n    for _ in range(16):\n        f.write(b'0' * (1 << 20))")]))
    finally:
        session.close()
    cell = result.cells[0]
    assert cell.status == "error", result
    assert "No space left on device" in cell.error and "the disk limit" in cell.error and "8 MB" in cell.error, cell.error
