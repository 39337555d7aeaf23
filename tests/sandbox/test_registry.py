"""Backends come from a registry: the built-ins, and any package's `gradekit.backends`
entry point; the CLI's choices are its names; a backend's choice travels in a Job as data."""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from gradekit.cli import build_parser
from gradekit.model import BackendChoice, Job, Limits
from gradekit.sandbox import registry
from gradekit.sandbox.base import Sandbox
from gradekit.sandbox.docker.backend import DockerSandbox
from gradekit.sandbox.process.backend import ProcessSandbox


class FakeRemote(Sandbox):
    name = "fake-remote"

    def wrap(self, kernel_cmd, job):
        return kernel_cmd


def test_builtins_and_entry_points(monkeypatch):
    assert registry.backend_class("docker") is DockerSandbox and registry.backend_class("process") is ProcessSandbox
    ep = metadata.EntryPoint(name="fake-remote", value=f"{__name__}:FakeRemote", group=registry.GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [ep] if group == registry.GROUP else [])
    assert registry.names() == ["docker", "fake-remote", "process"]
    made = registry.make(BackendChoice("fake-remote", {"host": "node-3"}))
    assert isinstance(made, FakeRemote) and made.options == {"host": "node-3"}
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    grade_sandbox = next(a for a in sub.choices["grade"]._actions if a.dest == "sandbox")
    assert "fake-remote" in grade_sandbox.choices


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown sandbox 'nope'; choose from docker, process"):
        registry.make(BackendChoice("nope"))


def test_a_backends_options_travel_in_the_job_as_data(tmp_path):
    docker = registry.make(BackendChoice("docker", {"torch": False, "shm_mb": 128}))
    assert docker.options["shm_mb"] == 128 and docker.shm_mb == 128 and docker.torch is False
    job = Job(assignment="example", course=tmp_path, notebook=tmp_path / "nb.ipynb", sha256="ab", submitter="alice",
              sources=("class/alice/hw.ipynb",), report_dir=tmp_path / "out", work_root=tmp_path / "w",
              backend=BackendChoice("docker", docker.options), limits=Limits(memory_mb=640), gpus=("1",))
    again = Job.from_json(json.loads(json.dumps(job.to_json())))
    assert again == job and isinstance(again.report_dir, Path) and again.backend.options["shm_mb"] == 128
    assert registry.make(again.backend).options == docker.options
