"""Start a student's kernel through its sandbox, with jupyter_client doing the talking.

jupyter_client launches kernels through *provisioners*; the sandbox backend supplies the
one for each job (:meth:`gradekit.sandbox.base.Sandbox.provisioner`). The kernel listens
on IPC (Unix) sockets in ``job.ipc_dir``, so it needs no network, and interrupts travel
as messages (``interrupt_mode: message``), so no signal has to cross into a container.
Also here: the client quirks that make a fresh kernel answer sooner.
"""
from __future__ import annotations

import sys
import time
import uuid
from queue import Empty

import zmq
from jupyter_client import AsyncKernelClient, AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec

from ..model import KernelJob
from ..sandbox.base import Sandbox


class PromptKernelClient(AsyncKernelClient):
    """An AsyncKernelClient that notices a fresh kernel sooner.

    jupyter_client's ``wait_for_ready`` ends by draining IOPub until 0.2 s pass in silence,
    and its sockets retry a connection to a kernel that is not listening yet every 100 ms:
    together about a third of a second per submission with the CPU idle. Here the sockets
    retry every 10 ms, and IOPub is drained of what has arrived, without waiting for more;
    a late status message is harmless, as nbclient reads only replies to its own requests.
    """

    def start_channels(self, *args, **kwargs) -> None:
        self.context.setsockopt(zmq.RECONNECT_IVL, 10)  # default for the sockets made next
        super().start_channels(*args, **kwargs)

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                msg = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                pass
            else:
                # the reply counts once IOPub is connected too (the kernel announces "busy")
                if msg["msg_type"] == "kernel_info_reply":
                    try:
                        await self.iopub_channel.get_msg(timeout=0.2)
                    except Empty:
                        pass
                    else:
                        self._handle_kernel_info_reply(msg)
                        break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
        while await self.iopub_channel.msg_ready():
            await self.iopub_channel.get_msg(timeout=0)

    wait_for_ready = _async_wait_for_ready  # jupyter_client binds the public name to its own


class SandboxKernelManager(AsyncKernelManager):
    """An AsyncKernelManager bound to one job in one sandbox."""

    def __init__(self, sandbox: Sandbox, job: KernelJob, **kwargs):
        super().__init__(
            transport="ipc",
            ip=str(job.ipc_dir / "k"),           # socket paths: k-<port>; short (108-byte limit)
            connection_file=str(job.connection_file),
            kernel_id=str(uuid.uuid4()),
            client_factory=PromptKernelClient,
            **kwargs,
        )
        self._sandbox = sandbox
        self._job = job
        self._kernel_spec = KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (gradekit sandbox)",
            language="python",
            interrupt_mode="message",
        )

    async def _async_pre_start_kernel(self, **kw):
        if self.provisioner is None:
            self.provisioner = self._sandbox.provisioner(
                self._job, kernel_id=self.kernel_id, kernel_spec=self._kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)

    def describe_exit(self) -> str:
        """Plain words for why the kernel is gone (memory limit, a signal, an exit code)."""
        exit_code = getattr(self.provisioner, "exit_code", None)  # a remote provisioner may not tell
        code = exit_code() if exit_code is not None else None
        return self._sandbox.describe_exit(self._job, code)
