"""The default provisioner: start the kernel here, with the command a sandbox backend wraps.

jupyter_client launches kernels through *provisioners*. This one is a
``LocalProvisioner`` whose command comes from :meth:`Sandbox.wrap` and whose environment is
the sandbox's (nothing of the grader's leaks in); stopping it stops the sandbox too.
"""
from __future__ import annotations

from jupyter_client.provisioning import LocalProvisioner

from ..model import KernelJob


class CommandProvisioner(LocalProvisioner):
    """A LocalProvisioner whose command and environment come from a sandbox backend."""

    def __init__(self, *, sandbox, job: KernelJob, **kwargs):
        super().__init__(**kwargs)
        self.sandbox = sandbox
        self.job = job

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

    def exit_code(self) -> int | None:
        process = getattr(self, "process", None)
        return process.poll() if process is not None else None
