"""``gradekit image save`` / ``gradekit image load``: a grading image carried to a node
without a registry (docker save | gzip, docker load), content-addressed tag kept; any other
image refused before ``docker load`` runs."""
from __future__ import annotations

import io
import json
import secrets
import subprocess
import tarfile

import pytest

from gradekit import cli
from gradekit.sandbox.docker import image


def image_id(docker: str, ref: str) -> str | None:
    out = subprocess.run([docker, "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


@pytest.fixture
def small_grading_image(docker_engine):
    """A grading image in name and labels only (the base image plus gradekit's labels: no
    layer of its own, so saving it takes seconds, not the light image's minute). The
    variant's alias tag, which a load moves, is put back afterwards."""
    docker = docker_engine
    base = image.BASE_IMAGE
    if image_id(docker, base) is None:
        pytest.skip(f"{base} is not on this engine (gradekit image build --light pulls it)")
    recipe = secrets.token_hex(32)
    tag = f"{image.REPOSITORY}:light-{recipe[:12]}"
    alias = f"{image.REPOSITORY}:light"
    alias_before = image_id(docker, alias)
    dockerfile = (f"FROM {base}\nLABEL gradekit.image=grading gradekit.recipe={recipe} "
                  "gradekit.torch=none\n")
    subprocess.run([docker, "build", "-q", "-t", tag, "-"], input=dockerfile, text=True,
                   capture_output=True, check=True)
    try:
        yield tag
    finally:
        subprocess.run([docker, "rmi", "-f", tag], capture_output=True)
        if alias_before is not None and image_id(docker, alias) != alias_before:
            subprocess.run([docker, "tag", alias_before, alias], capture_output=True, check=True)


@pytest.mark.docker
def test_saved_image_loads_under_its_tag(docker_engine, small_grading_image, tmp_path, capsys):
    docker, tag = docker_engine, small_grading_image
    before = image_id(docker, tag)
    file = tmp_path / "grading.tar.gz"
    assert cli.main(["image", "save", str(file), "--tag", tag]) == 0
    assert capsys.readouterr().out.strip() == tag
    with open(file, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # gzipped
    subprocess.run([docker, "rmi", tag], capture_output=True, check=True)
    assert image_id(docker, tag) is None
    assert image.saved_tags(file) == [tag]
    assert cli.main(["image", "load", str(file)]) == 0
    assert capsys.readouterr().out.strip() == tag
    assert image_id(docker, tag) == before


def fake_save(path, tags, labels) -> None:
    """A file shaped like ``docker save`` output (manifest and config, no layers), gzipped."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("abc.json", {"config": {"Labels": labels}}),
                           ("manifest.json", [{"Config": "abc.json", "RepoTags": tags, "Layers": []}])):
            raw = json.dumps(data).encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    path.write_bytes(buf.getvalue())


GRADING = {"gradekit.image": "grading", "gradekit.recipe": "0123456789ab" + "0" * 52}


@pytest.mark.parametrize("tags, labels, why", [
    (["debian:bookworm-slim"], GRADING, "not a gradekit grading image"),
    (["gradekit-grading:light-0123456789ab", "python:3.11"], GRADING, "not a gradekit grading image"),
    (["gradekit-grading:light"], GRADING, "not a gradekit grading image"),   # an alias, not content-addressed
    (["gradekit-grading:light-0123456789ab"], {}, "labels differ"),
    (["gradekit-grading:light-ffffffffffff"], GRADING, "labels differ"),      # the tag names another recipe
    ([], GRADING, "without a tag"),
])
def test_load_refuses_what_is_not_a_grading_image(tmp_path, monkeypatch, tags, labels, why):
    monkeypatch.setattr(image, "_run", lambda *a, **k: pytest.fail("docker was run"))
    file = tmp_path / "image.tar.gz"
    fake_save(file, tags, labels)
    with pytest.raises(image.ImageError, match=why):
        image.load(file, docker="docker")


def test_load_refuses_a_file_that_is_no_saved_image(tmp_path, capsys):
    file = tmp_path / "notes.tar.gz"
    file.write_bytes(b"not a tar")
    assert cli.main(["image", "load", str(file)]) == cli.EXIT_FAILED
    assert "is not a saved image" in capsys.readouterr().err
