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
