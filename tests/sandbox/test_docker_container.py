"""The Docker backend against a real engine: container configuration (GPU device requests
and environment included, checked on the CPU), a kernel's life in a container, cleanup."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from gradekit.model import DataMount, KernelJob, Limits
from gradekit.sandbox.docker.backend import DockerSandbox
from gradekit.sandbox.docker.engine import docker_command
from gradekit.sandbox.docker.engine import LABEL_OWNER, list_containers, sweep

pytestmark = pytest.mark.docker


def inspect(cli: str, name: str) -> dict:
    out = subprocess.run([cli, "inspect", name], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def created(cli, sandbox, job):
    """`docker create` (not start) the container wrap() describes; returns its inspect."""
    sandbox.prepare(job)
    cmd = docker_command(sandbox.wrap(["python", "-m", "ipykernel_launcher", "-f", "x"], job))
    assert cmd[1] == "run"
    create = [cli, "create", *cmd[2:]]
    subprocess.run(create, capture_output=True, text=True, check=True)
    try:
        return inspect(cli, sandbox.container_name(job))
    finally:
        sandbox.cleanup(job)


def test_gpu_device_requests_reach_the_engine(docker_engine, light_image, tmp_path):
    """On a machine without GPUs the container is only created, never started: the engine
    records exactly the device request and environment a GPU run would get."""
    sandbox = DockerSandbox(image=light_image, docker=docker_engine)
    job = KernelJob(id="gpu-config", root=tmp_path / "job", limits=Limits(memory_mb=640, cpus=2, pids=77),
              gpus=("1", "3"))
    info = created(docker_engine, sandbox, job)
    host = info["HostConfig"]
    requests = host["DeviceRequests"]
    assert len(requests) == 1
    assert requests[0]["DeviceIDs"] == ["1", "3"] and requests[0]["Capabilities"] == [["gpu"]]
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert "NVIDIA_VISIBLE_DEVICES" not in env
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"


def test_container_configuration(docker_engine, light_image, tmp_path):
    sandbox = DockerSandbox(image=light_image, docker=docker_engine)
    job = KernelJob(id="config", root=tmp_path / "job", limits=Limits(memory_mb=640, cpus=1.5, pids=77, disk_mb=100))
    info = created(docker_engine, sandbox, job)
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False and host["Init"] is True
    assert host["Memory"] == 640 * 2**20 and host["MemorySwap"] == 640 * 2**20
    assert host["NanoCpus"] == 1_500_000_000 and host["PidsLimit"] == 77
    assert not host["DeviceRequests"]
    assert set(host["Tmpfs"]) == {"/work", "/tmp"} and "size=100m" in host["Tmpfs"]["/work"]
    assert host["LogConfig"]["Type"] == "none"
    assert [m["Target"] for m in host["Mounts"]] == [str(job.ipc_dir)]
    assert info["Config"]["User"] == "10001:10001"
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["HOME"] == "/work"
    assert info["Config"]["Labels"]["gradekit.job"] == "config"


def test_kernel_runs_confined_and_is_removed(docker_engine, light_image, tmp_path, no_leftover_containers):
    from gradekit.kernel.session import KernelSession
    sandbox = DockerSandbox(image=light_image, docker=docker_engine)
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.txt").write_text("data!")
    os.chmod(data, 0o755)
    os.chmod(tmp_path, 0o755)
    job = KernelJob(id="life", root=tmp_path / "job", limits=Limits(memory_mb=512, total_timeout=60),
                    data=(DataMount("course", data),))
    job.work_dir.mkdir(parents=True)
    (job.work_dir / "helper.py").write_text("VALUE = 41\n")
    nb = new_notebook(cells=[new_code_cell(c) for c in [
        "import os, helper\nx = helper.VALUE + 1\nuid = os.getuid()",
        "data = open(os.path.join(os.environ['GRADEKIT_DATA'], 'course', 'x.txt')).read()",
        "import os\nfd = os.open('/proc/1/fd/1', os.O_WRONLY)\nfor _ in range(5):\n    os.write(fd, b'z' * (1 << 20))",
    ]])
    session = KernelSession(sandbox, job)
    try:
        result = session.execute(nb)
        assert result.status == "completed", [(c.status, c.error) for c in result.cells]
        assert sandbox.inspect_state(job)["Running"] is True
        log = job.root / "kernel.log"
        time.sleep(0.5)
        assert log.stat().st_size <= 1024 * 1024 + 64 * 1024, log.stat().st_size   # console capped
    finally:
        session.close()
    assert not list_containers(docker_engine, job_id="life")
    sandbox.cleanup(job)    # idempotent


def test_out_of_memory_is_described(docker_engine, light_image, tmp_path, no_leftover_containers):
    from gradekit.kernel.session import KernelSession
    sandbox = DockerSandbox(image=light_image, docker=docker_engine)
    job = KernelJob(id="oom", root=tmp_path / "job", limits=Limits(memory_mb=256, total_timeout=60))
    nb = new_notebook(cells=[new_code_cell("import numpy as np\nx = np.ones(2**30, dtype=np.uint8)")])
    session = KernelSession(sandbox, job)
    try:
        result = session.execute(nb)
    finally:
        session.close()
    cell = result.cells[0]
    assert cell.status == "died", cell
    assert "out of memory" in cell.error and "256 MB" in cell.error, cell.error


def test_wall_clock_deadline_kills_the_container(docker_engine, light_image, tmp_path, no_leftover_containers):
    from gradekit.kernel.session import KernelSession
    sandbox = DockerSandbox(image=light_image, docker=docker_engine)
    job = KernelJob(id="deadline", root=tmp_path / "job",
              limits=Limits(total_timeout=4, cell_timeout=30, memory_mb=256))
    nb = new_notebook(cells=[new_code_cell("import time\ntime.sleep(20)")])
    session = KernelSession(sandbox, job)
    t = time.monotonic()
    try:
        result = session.execute(nb)
    finally:
        session.close()
    assert time.monotonic() - t < 20
    cell = result.cells[0]
    assert cell.status in ("died", "timeout"), cell
    if cell.status == "died":
        assert "wall-clock limit of 4 s" in cell.error, cell.error


def test_sweep_removes_containers_of_a_dead_grader(docker_engine, light_image, tmp_path):
    """A grader killed with SIGKILL cannot clean up: the next one sweeps its containers."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"gradekit-sweep-test-{os.getpid()}"
    subprocess.run([docker_engine, "run", "-d", "--name", name, "--label", "gradekit.job=sweep-test",
                    "--label", f"{LABEL_OWNER}={os.uname().nodename}:{dead.pid}",
                    "--network", "none", "--entrypoint", "sleep", light_image, "300"],
                   check=True, capture_output=True)
    try:
        removed = sweep(docker_engine)
        assert name in removed
        assert not list_containers(docker_engine, job_id="sweep-test")
    finally:
        subprocess.run([docker_engine, "rm", "-f", name], capture_output=True)


def test_gradekit_sweep_removes_dead_graders_containers_and_keeps_running_ones(docker_engine, light_image):
    """`gradekit sweep` (a cluster node's clean-up by hand): the container of a grader that
    died goes, the container of one that still runs (this test process) stays."""
    import sys
    dead = subprocess.Popen(["true"])
    dead.wait()
    names = {}
    for who, pid in (("dead", dead.pid), ("alive", os.getpid())):
        names[who] = f"gradekit-sweep-cli-{who}-{os.getpid()}"
        subprocess.run([docker_engine, "run", "-d", "--name", names[who], "--label", f"gradekit.job=sweep-cli-{who}",
                        "--label", f"{LABEL_OWNER}={os.uname().nodename}:{pid}",
                        "--network", "none", "--entrypoint", "sleep", light_image, "300"],
                       check=True, capture_output=True)
    try:
        out = subprocess.run([sys.executable, "-m", "gradekit", "sweep"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert f"removed {names['dead']}" in out.stdout, out.stdout
        assert names["alive"] not in out.stdout, out.stdout
        assert not list_containers(docker_engine, job_id="sweep-cli-dead")
        assert list_containers(docker_engine, job_id="sweep-cli-alive")
    finally:
        subprocess.run([docker_engine, "rm", "-f", *names.values()], capture_output=True)


def test_check_explains_a_missing_image(docker_engine):
    from gradekit.sandbox.base import SandboxUnavailable
    sandbox = DockerSandbox(image="gradekit-grading:does-not-exist", docker=docker_engine,
                            build_missing=False)
    with pytest.raises(SandboxUnavailable, match="gradekit image build"):
        sandbox.check()


def test_check_explains_a_missing_engine():
    from gradekit.sandbox.base import SandboxUnavailable
    sandbox = DockerSandbox(image="x", docker="/bin/false")
    with pytest.raises(SandboxUnavailable, match="--sandbox process"):
        sandbox.check()
