"""Start a student's kernel inside a sandbox, with jupyter_client doing the talking.

jupyter_client launches kernels through *provisioners*; ours asks the sandbox backend to
wrap the ordinary ``ipykernel_launcher`` command, and hands it a scrubbed environment.
The kernel listens on IPC (Unix) sockets in ``job.ipc_dir``, so it needs no network, and
interrupts travel as messages (``interrupt_mode: message``), so no signal has to cross
into a container.
"""
from __future__ import annotations

import sys
import uuid

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.provisioning import LocalProvisioner

from .sandbox.base import Job, Sandbox


class SandboxProvisioner(LocalProvisioner):
    """A LocalProvisioner whose command and environment come from a sandbox backend."""

    sandbox: Sandbox
    job: Job

    async def pre_launch(self, **kwargs):
        kwargs = await super().pre_launch(**kwargs)
        kwargs["env"] = self.sandbox.environment(self.job)
        kwargs["cwd"] = str(self.job.work_dir)
        self.sandbox.grant_connection_file(self.job)
        return kwargs

    async def launch_kernel(self, cmd, **kwargs):
        return await super().launch_kernel(self.sandbox.wrap(list(cmd), self.job), **kwargs)

    async def kill(self, restart: bool = False) -> None:
        self.sandbox.kill(self.job)
        await super().kill(restart=restart)

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if not restart:
            self.sandbox.cleanup(self.job)


class SandboxKernelManager(AsyncKernelManager):
    """An AsyncKernelManager bound to one job in one sandbox."""

    def __init__(self, sandbox: Sandbox, job: Job, **kwargs):
        super().__init__(
            transport="ipc",
            ip=str(job.ipc_dir / "k"),           # socket paths: k-<port>; short (108-byte limit)
            connection_file=str(job.connection_file),
            kernel_id=str(uuid.uuid4()),
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
            provisioner = SandboxProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self._kernel_spec, parent=self)
            provisioner.sandbox = self._sandbox
            provisioner.job = self._job
            self.provisioner = provisioner
        return await super()._async_pre_start_kernel(**kw)

    def describe_exit(self) -> str:
        """Plain words for why the kernel is gone (memory limit, a signal, an exit code)."""
        code = None
        if self.provisioner is not None and getattr(self.provisioner, "process", None) is not None:
            code = self.provisioner.process.poll()
        return self._sandbox.describe_exit(self._job, code)
