"""Fixtures shared by the project's tests: the Docker engine and the light grading image.

Without a Docker engine the tests that need one cannot mean anything, so under CI
(``CI=true``) they FAIL with the reason (``make test`` starts the engine with
scripts/ensure-docker.sh first); elsewhere they are skipped with the same reason.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The tests live in one folder per pipeline stage; `support` (shared helpers) sits here.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gradekit.sandbox.docker.engine import engine_available, engine_help, list_containers  # noqa: E402


def pytest_configure(config):
    """Synthetic stand-ins for every data set the bundled assignments read (nothing is
    downloaded): made once per run, world-readable (kernels run as their own user), and named
    through GRADEKIT_DATA_<NAME>, as an instructor would name a real copy."""
    import shutil
    import tempfile

    from gradekit.spec import load
    root = Path(tempfile.mkdtemp(prefix="gk-test-data-"))
    os.chmod(root, 0o755)
    config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
    from gradekit.data.synth import synthesize
    for spec in sorted((Path(__file__).resolve().parents[1] / "assignments").glob("*/assignment.toml")):
        for d in load(spec.parent.name).data:
            sizes = dict(d.synth)
            target = root / spec.parent.name / d.name
            synthesize(d.format, target, seed=sizes.pop("seed", 0), **sizes)
            os.chmod(target.parent, 0o755)
            os.environ[d.env_override] = str(target)


def notebooks_wanted(items) -> dict[str, set[str]]:
    """assignment id -> the notebooks the selected tests need: tests parametrized with ``aid``
    (and ``variant`` or ``alternative``; test_assignments.py), and tests marked
    ``@pytest.mark.notebooks(AID, "master", "alt-NAME", ...)``."""
    wanted: dict[str, set[str]] = {}
    for item in items:
        for mark in item.iter_markers("notebooks"):
            wanted.setdefault(mark.args[0], set()).update(mark.args[1:])
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "aid" not in params:
            continue
        need = wanted.setdefault(params["aid"], set())
        if "variant" in params:
            need.add(f"variant-{params['variant']['name']}")
        elif "alternative" in params:
            need.add(f"alt-{params['alternative']['name']}")
        elif "missing_part" in params:
            need.add(f"missing-{params['missing_part']}")
        elif "misnamed_part" in params:
            need.update({f"misnamed-{params['misnamed_part']}", f"unmarked-{params['misnamed_part']}"})
        elif item.originalname == "test_template_scores_zero":
            need.add("template")
        elif item.originalname != "test_template_is_current":
            need.add("master")
    return wanted


@pytest.fixture(scope="session")
def graded(request, tmp_path_factory):
    """``graded(aid, name)``: the report (report.json's data) of the master, template, a wrong
    variant or a valid alternative; each assignment's selected notebooks graded in one batch."""
    from support import SelectedNotebooks
    return SelectedNotebooks(notebooks_wanted(request.session.items), tmp_path_factory)


@pytest.fixture(scope="session", autouse=True)
def gradekit_home(tmp_path_factory):
    """Course secrets made by the tests' `gradekit grade` runs stay in a temporary folder."""
    home = tmp_path_factory.mktemp("gradekit-home")
    os.environ["GRADEKIT_HOME"] = str(home)
    return home


def _unavailable(reason: str):
    msg = (f"{reason}\n{engine_help(reason)}\n"
           "(run: scripts/ensure-docker.sh --light, or make test, which does it)")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("Docker tests cannot run under CI: " + msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def docker_engine() -> str:
    from gradekit.sandbox.docker.image import ImageError, docker_cli
    try:
        cli = docker_cli()
    except ImageError as e:
        _unavailable(str(e))
    if not engine_available(cli):
        _unavailable("no Docker engine answers")
    return cli


@pytest.fixture(scope="session")
def light_image(docker_engine) -> str:
    """The grading image without torch (built on first use, as `gradekit grade` would)."""
    from gradekit.sandbox.docker import image
    try:
        tag = image.ensure(torch=False)
    except image.ImageError as e:
        _unavailable(f"the light grading image is missing and could not be built: {e}")
    os.environ["GRADEKIT_IMAGE_LIGHT"] = tag
    return tag


@pytest.fixture(scope="session")
def full_image(docker_engine) -> str:
    """The grading image with torch (built on first use from the wheelhouse: minutes)."""
    from gradekit.sandbox.docker import image
    try:
        return image.ensure(torch=True)
    except image.ImageError as e:
        _unavailable(f"the full grading image is missing and could not be built: {e}")


@pytest.fixture
def no_leftover_containers(docker_engine):
    """Fails the test when a gradekit container started during it is still there."""
    before = {c["name"] for c in list_containers(docker_engine)}
    yield
    after = [c for c in list_containers(docker_engine) if c["name"] not in before]
    assert not after, f"containers left behind: {after}"


def docker_ps_names(cli: str) -> set[str]:
    out = subprocess.run([cli, "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True)
    return set(out.stdout.split())
