"""The exact `docker run` command of the Docker backend (no engine needed)."""
import os

import pytest

from gradekit.model import DataMount, KernelJob, Limits
from gradekit.sandbox.docker.backend import CONTAINER_UID, DATA_MOUNT, DockerSandbox, _csv
from gradekit.sandbox.docker.engine import docker_command
from gradekit.sandbox.docker.engine import engine_help

KERNEL = ["/host/venv/bin/python", "-m", "ipykernel_launcher", "-f", "CONN"]


def opts(cmd, flag):
    """Every value given to ``flag`` in ``cmd``."""
    return [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == flag]


@pytest.fixture
def sandbox():
    return DockerSandbox(image="gradekit-grading:test", docker="docker")


@pytest.fixture
def job(tmp_path, sandbox):
    j = KernelJob(id="abc123", root=tmp_path / "job", limits=Limits(memory_mb=768, cpus=1.5, pids=99,
                                                              disk_mb=300, file_size_mb=50,
                                                              total_timeout=100, grading_allowance=50),
            hidden_paths=(tmp_path / "graders",))
    yield j
    sandbox.cleanup(j)  # prepare() may have mounted the IPC folder's tmpfs (as root): nothing stays mounted


def wrap(sandbox, job):
    sandbox.prepare(job) if os.geteuid() == 0 else (job.work_dir.mkdir(parents=True),
                                                    job.ipc_dir.mkdir(parents=True))
    try:
        return docker_command(sandbox.wrap(list(KERNEL) + [str(job.connection_file)], job))
    finally:
        sandbox.cleanup(job)  # no container was made; prepare()'s IPC tmpfs (as root) is unmounted


def test_hardening_flags(sandbox, job):
    cmd = wrap(sandbox, job)
    assert cmd[:2] == ["docker", "run"]
    assert "--rm" not in cmd        # describe_exit must be able to inspect a dead container
    assert opts(cmd, "--network") == ["none"]
    assert opts(cmd, "--user") == [f"{CONTAINER_UID}:{CONTAINER_UID}"]
    assert "--read-only" in cmd
    assert opts(cmd, "--cap-drop") == ["ALL"]
    assert "--cap-add" not in cmd and "--privileged" not in cmd
    assert opts(cmd, "--security-opt") == ["no-new-privileges"]
    assert "--init" in cmd
    assert opts(cmd, "--ipc") == ["private"]
    assert opts(cmd, "--log-driver") == ["none"]
    assert opts(cmd, "--workdir") == ["/work"]


def test_limits_come_from_the_job(sandbox, job):
    cmd = wrap(sandbox, job)
    assert opts(cmd, "--memory") == ["768m"]
    assert opts(cmd, "--memory-swap") == ["768m"]       # no swap
    assert opts(cmd, "--cpus") == ["1.5"]
    assert opts(cmd, "--pids-limit") == ["99"]
    ulimits = opts(cmd, "--ulimit")
    assert f"fsize={50 * 1024 * 1024}:{50 * 1024 * 1024}" in ulimits
    assert "core=0:0" in ulimits
    tmpfs = opts(cmd, "--tmpfs")
    work = [t for t in tmpfs if t.startswith("/work:")][0]
    assert "size=300m" in work and "nosuid" in work and "nodev" in work
    assert f"uid={CONTAINER_UID}" in work and "mode=0700" in work
    tmp = [t for t in tmpfs if t.startswith("/tmp:")][0]
    assert "size=300m" in tmp and "nosuid" in tmp
    env = dict(e.split("=", 1) for e in opts(cmd, "-e"))
    assert env["GRADEKIT_DEADLINE"] == "150"             # total_timeout + grading allowance
    labels = dict(l.split("=", 1) for l in opts(cmd, "--label"))
    assert labels["gradekit.job"] == "abc123"
    assert labels["gradekit.owner"].endswith(f":{os.getpid()}")


def test_ipc_dir_is_mounted_at_the_same_path_and_nothing_hidden_is(sandbox, job, tmp_path):
    cmd = wrap(sandbox, job)
    mounts = opts(cmd, "--mount")
    assert _csv("type=bind", f"source={job.ipc_dir}", f"target={job.ipc_dir}") in mounts
    joined = " ".join(cmd)
    assert str(tmp_path / "graders") not in joined
    assert "-v" not in cmd and "--volume" not in cmd
    # Only the IPC folder: no data, no submission files (the work dir is empty).
    assert len(mounts) == 1


def test_submission_files_and_data_are_read_only(sandbox, job, tmp_path):
    data = tmp_path / "data, with comma"
    data.mkdir()
    job.data = (DataMount("set", data),)
    job.work_dir.mkdir(parents=True)
    (job.work_dir / "helper.py").write_text("X = 1\n")
    cmd = wrap(sandbox, job)
    mounts = opts(cmd, "--mount")
    assert _csv("type=bind", f"source={job.work_dir}", "target=/mnt/submission", "readonly") in mounts
    data_mount = [m for m in mounts if f"{DATA_MOUNT}/set" in m][0]
    assert data_mount.endswith("readonly") and '"source=' in data_mount   # CSV-quoted path
    env = dict(e.split("=", 1) for e in opts(cmd, "-e"))
    assert env["GRADEKIT_DATA"] == DATA_MOUNT


def test_kernel_command_uses_the_image_python(sandbox, job):
    cmd = wrap(sandbox, job)
    i = cmd.index("gradekit-grading:test")
    assert cmd[i + 1:] == ["/opt/gradekit/venv/bin/python", "-m", "ipykernel_launcher", "-f", "CONN",
                           str(job.connection_file)]


def test_container_environment(sandbox, job):
    job.env = {"MY_VAR": "1", "SOMEDIR": str(job.work_dir)}
    env = sandbox.container_environment(job)
    assert env["HOME"] == "/work"
    assert env["PATH"].startswith("/opt/gradekit/venv/bin:")
    assert env["MPLCONFIGDIR"].startswith("/tmp/")
    assert env["MY_VAR"] == "1" and env["SOMEDIR"] == "/work"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["NVIDIA_VISIBLE_DEVICES"] == "void"
    # The Popen'd process is the docker client: it gets the host's Docker settings only.
    client = sandbox.environment(job)
    assert "MY_VAR" not in client and "GRADEKIT_DATA" not in client


def test_gpu_device_requests(sandbox, job):
    job.gpus = ("2",)
    cmd = wrap(sandbox, job)
    assert opts(cmd, "--gpus") == ['"device=2"']
    env = dict(e.split("=", 1) for e in opts(cmd, "-e"))
    assert env["CUDA_VISIBLE_DEVICES"] == "0"          # renumbered inside the container
    assert "NVIDIA_VISIBLE_DEVICES" not in env         # Docker's --gpus sets it
    job2 = KernelJob(id="two", root=job.root.parent / "job2", limits=job.limits, gpus=("0", "3"))
    cmd = wrap(sandbox, job2)
    assert opts(cmd, "--gpus") == ['"device=0,3"']


def test_no_gpus_means_no_device_request(sandbox, job):
    cmd = wrap(sandbox, job)
    assert "--gpus" not in cmd
    env = dict(e.split("=", 1) for e in opts(cmd, "-e"))
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_container_names_are_unique_and_safe(sandbox, tmp_path):
    a = KernelJob(id="../weird id/x", root=tmp_path / "a", limits=Limits())
    b = KernelJob(id="../weird id/x", root=tmp_path / "b", limits=Limits())
    other = DockerSandbox(image="img", docker="docker")
    na, nb = sandbox.container_name(a), other.container_name(b)
    assert na != nb
    for n in (na, nb):
        assert n.startswith("gradekit-") and "/" not in n and " " not in n


def test_engine_help_says_what_to_do():
    text = engine_help("Cannot connect to the Docker daemon")
    assert "ensure-docker.sh" in text or "install Docker" in text
    assert "--sandbox process" in text


def test_console_output_is_capped(sandbox, job):
    sandbox.prepare(job) if os.geteuid() == 0 else None
    job.ipc_dir.mkdir(parents=True, exist_ok=True)
    full = sandbox.wrap(KERNEL, job)
    sandbox.forget(job)
    assert full[:2] == ["/bin/sh", "-c"] and "head -c" in full[2] and "cat >/dev/null" in full[2]
    assert docker_command(full)[:2] == ["docker", "run"]


def test_ipc_dir_is_sticky(sandbox, job):
    job.ipc_dir.mkdir(parents=True)
    job.connection_file.write_text("{}")
    os.chmod(job.connection_file, 0o600)
    sandbox.grant_connection_file(job)
    assert job.ipc_dir.stat().st_mode & 0o7777 == 0o1777
    assert job.connection_file.stat().st_mode & 0o777 == 0o644
    assert job.connection_file.stat().st_uid == os.geteuid()
