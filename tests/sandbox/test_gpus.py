"""The GPU scheduler: parsing --gpus, leasing devices, the gpu: requirement (no GPU needed)."""
import threading
import time

import pytest

from gradekit.sandbox.gpus import (GpuPool, GpuUnavailable, check_requirement, docker_gpus_arg,
                                   normalise_requirement, parse_gpus, visible_env)

MACHINE = ("0", "1", "2", "3")


@pytest.mark.parametrize("spec, expected", [
    ("all", MACHINE),
    ("2", ("0", "1")),
    ("4", MACHINE),
    ("0", ()),
    ("none", ()),
    ("", ()),
    (None, ()),
    ("0,1", ("0", "1")),
    ("1,3", ("1", "3")),
    ("3,", ("3",)),
    ("device=2", ("2",)),
    ('"device=0,2"', ("0", "2")),
    ("1,1,2", ("1", "2")),
    (2, ("0", "1")),
])
def test_parse_gpus(spec, expected):
    assert parse_gpus(spec, available=MACHINE) == expected


@pytest.mark.parametrize("spec", ["5", "all", "0,7"])
def test_parse_gpus_more_than_the_machine_has(spec):
    with pytest.raises(GpuUnavailable):
        parse_gpus(spec, available=MACHINE[:2] if spec != "all" else ())


@pytest.mark.parametrize("spec", ["many", "-1", "0,x"])
def test_parse_gpus_rejects_nonsense(spec):
    with pytest.raises(ValueError):
        parse_gpus(spec, available=MACHINE)


def test_requirement_values():
    assert normalise_requirement(None) == "none"
    assert normalise_requirement("Required") == "required"
    assert normalise_requirement(True) == "required"
    assert normalise_requirement("optional") == "optional"
    with pytest.raises(ValueError):
        normalise_requirement("sometimes")


def test_required_without_gpu_fails_clearly():
    with pytest.raises(GpuUnavailable, match="requires a GPU.*--gpus"):
        check_requirement("required", (), assignment="hw3")
    check_requirement("required", ("0",))
    check_requirement("optional", ())
    check_requirement("none", ())


def test_pool_leases_one_device_per_job_and_takes_it_back():
    pool = GpuPool(["0", "1"])
    a = pool.acquire()
    b = pool.acquire()
    assert sorted(a + b) == ["0", "1"] and len(a) == len(b) == 1
    assert pool.try_acquire() is None
    pool.release(a)
    assert pool.try_acquire() == a
    with pytest.raises(ValueError):
        pool.release(["7"])


def test_pool_release_twice_is_an_error():
    pool = GpuPool(["0"])
    got = pool.acquire()
    pool.release(got)
    with pytest.raises(ValueError):
        pool.release(got)


def test_empty_pool_gives_cpu_leases():
    pool = GpuPool([])
    assert pool.acquire() == ()
    with pool.lease("optional") as got:
        assert got == ()
    with pool.lease("none") as got:
        assert got == ()
    with pytest.raises(GpuUnavailable):
        with pool.lease("required"):
            pass


def test_lease_none_never_takes_a_gpu():
    pool = GpuPool(["0"])
    with pool.lease("none") as got:
        assert got == ()
        assert pool.free == ("0",)


def test_per_job_more_than_pool():
    with pytest.raises(GpuUnavailable):
        GpuPool(["0"], per_job=2)
    pool = GpuPool(["0", "1", "2"], per_job=2)
    assert len(pool.acquire()) == 2
    assert pool.try_acquire() is None


def test_acquire_timeout():
    pool = GpuPool(["0"])
    pool.acquire()
    t = time.monotonic()
    with pytest.raises(TimeoutError):
        pool.acquire(timeout=0.1)
    assert time.monotonic() - t < 2


def test_no_gpu_idles_while_work_waits():
    """6 workers, 2 GPUs, 12 jobs: both GPUs are always in use while jobs wait, every job
    runs on exactly one GPU at a time, and the jobs are spread over both devices."""
    pool = GpuPool(["0", "1"])
    busy = {"0": 0, "1": 0}
    lock = threading.Lock()
    samples = []
    remaining = list(range(12))

    def worker():
        while True:
            with lock:
                if not remaining:
                    return
                remaining.pop()
            with pool.lease("required") as got:
                assert len(got) == 1
                with lock:
                    busy[got[0]] += 1
                    assert busy[got[0]] == 1, "two jobs on one GPU"
                    samples.append((len(remaining), sum(busy.values())))
                time.sleep(0.02)
                with lock:
                    busy[got[0]] -= 1

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert pool.free and sorted(pool.free) == ["0", "1"]
    use = pool.usage()
    assert sum(use.values()) == 12 and min(use.values()) >= 3
    # Whenever at least 2 jobs were still waiting, a newly started job found the other GPU busy
    # too or soon will; at minimum, both devices served work.
    assert all(v > 0 for v in use.values())


def test_fifo_order():
    pool = GpuPool(["0"])
    first = pool.acquire()
    order = []

    def waiter(i):
        got = pool.acquire()
        order.append(i)
        time.sleep(0.01)
        pool.release(got)

    threads = []
    for i in range(4):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.05)   # make the arrival order certain
    pool.release(first)
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3]


def test_docker_arguments_and_environment():
    assert docker_gpus_arg(()) == []
    assert docker_gpus_arg(("1",)) == ["--gpus", '"device=1"']
    assert docker_gpus_arg(("0", "3")) == ["--gpus", '"device=0,3"']
    # Inside a container the devices are renumbered from 0: host ids must not leak in.
    assert visible_env(("3",)) == {"CUDA_VISIBLE_DEVICES": "0"}
    assert visible_env(("2", "3")) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert visible_env(()) == {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}
