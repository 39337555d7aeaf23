"""The grading image: build it, list it, make sure an up-to-date one exists.

One ``Dockerfile`` makes two variants of the same image (``--build-arg TORCH=``):

* ``full``  — torch 2.14.1 + torchvision 0.29.1 and the scientific stack (about 6 GB,
  the default for grading course notebooks);
* ``light`` — the same image without torch/torchvision (about 0.7 GB; the project's tests
  and numpy-only assignments).

Tags are content-addressed: ``gradekit-grading:<variant>-<hash>``, where the hash covers
the Dockerfile, ``.dockerignore``, ``scripts/image/`` and the build arguments. Nothing of
an assignment is built into the image (data is mounted read-only at run time), so
changing an assignment never rebuilds anything, and changing the recipe's light
packages rebuilds only the layers after torch (Docker's layer cache). The newest build of
each variant is also tagged ``gradekit-grading:<variant>``.

Offline builds install from a wheelhouse filled on the host with ``pip download``
(``.wheelhouse/<variant>/``, bind-mounted into the build, never copied into a layer);
when the wheelhouse cannot be filled the build installs from the package index instead.
The build context is ``.cache/image-context/<variant>/``: hard links to the recipe and
to that variant's wheels only.

For a cluster without a registry, :func:`save` writes ``docker save TAG | gzip`` to a file
and :func:`load` loads it on a node, after checking that the file holds grading images only,
by their content-addressed tags.

Usable without the CLI: ``python -m gradekit.sandbox.docker.image build [--light]``, ``... ls``,
``... ensure [--light]``, ``... tag [--light]``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

REPOSITORY = "gradekit-grading"
BASE_IMAGE = "debian:bookworm-slim"
VARIANTS = ("full", "light")
IMAGE_PYTHON = "/opt/gradekit/venv/bin/python"
#: Wheels are built for the image's interpreter, whatever the host runs.
IMAGE_PYTHON_VERSION = "3.11"
#: Debian bookworm has glibc 2.36: every manylinux tag up to that (pip does not expand them).
IMAGE_PLATFORMS = tuple(f"manylinux_2_{v}_x86_64" for v in range(36, 4, -1)) + (
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

Log = Callable[[str], None]


class ImageError(RuntimeError):
    """The image cannot be built or found; the message says what to do."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- locating

def source_root() -> Path | None:
    """The checkout that holds the Dockerfile (``GRADEKIT_SOURCE`` overrides)."""
    env = os.environ.get("GRADEKIT_SOURCE")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3])
    for c in candidates:
        if (c / "Dockerfile").is_file() and (c / "scripts" / "image").is_dir():
            return c
    return None


def docker_cli(for_build: bool = False) -> str:
    """The docker client to run. For builds, one that can use BuildKit without buildx.

    ``GRADEKIT_DOCKER`` overrides. Debian's client (``/usr/bin/docker``, 20.10) builds
    with ``DOCKER_BUILDKIT=1``; clients from 23 on need the buildx plugin for that.
    """
    env = os.environ.get("GRADEKIT_DOCKER")
    if env:
        return env
    found = []
    for c in ("/usr/bin/docker", shutil.which("docker")):
        if c and os.access(c, os.X_OK) and c not in found:
            found.append(c)
    if not found:
        raise ImageError(
            "no docker client found. Install Docker (Debian: apt-get install docker.io), "
            "or run scripts/ensure-docker.sh as root.")
    if not for_build:
        return found[0]
    for c in found:
        if _has_buildx(c) or _client_major(c) < 23:
            return c
    raise ImageError(
        f"{found[0]} needs the buildx plugin to build with BuildKit. Install it "
        f"(Debian: apt-get install docker-buildx, or docker.io's own client), or set "
        f"GRADEKIT_DOCKER to a client that builds with DOCKER_BUILDKIT=1.")


def _client_major(cli: str) -> int:
    try:
        out = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        return int(out.split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return 99


def _has_buildx(cli: str) -> bool:
    try:
        return subprocess.run([cli, "buildx", "version"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


# --------------------------------------------------------------------------- recipe

def variant_of(torch: bool) -> str:
    return "full" if torch else "light"


def recipe_files(root: Path) -> list[Path]:
    files = [root / "Dockerfile", root / ".dockerignore"]
    files += sorted(p for p in (root / "scripts" / "image").rglob("*") if p.is_file())
    return [f for f in files if f.is_file()]


def recipe_hash(torch: bool = True, root: Path | None = None,
                base_image: str = BASE_IMAGE) -> str:
    """Hash of everything the image is built from (not the wheelhouse: it is pinned)."""
    root = root or source_root()
    if root is None:
        raise ImageError("the gradekit source (Dockerfile, scripts/image/) was not found; "
                         "set GRADEKIT_SOURCE to a checkout of gradekit")
    h = hashlib.sha256()
    for f in recipe_files(root):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    h.update(f"TORCH={'full' if torch else 'none'}\0BASE_IMAGE={base_image}\0".encode())
    return h.hexdigest()


def image_tag(torch: bool = True, root: Path | None = None) -> str:
    """The content-addressed tag of the image this checkout builds."""
    return f"{REPOSITORY}:{variant_of(torch)}-{recipe_hash(torch, root)[:12]}"


def alias_tag(torch: bool = True) -> str:
    return f"{REPOSITORY}:{variant_of(torch)}"


# --------------------------------------------------------------------------- queries

@dataclasses.dataclass
class ImageInfo:
    tag: str
    id: str
    variant: str
    recipe: str
    size_mb: float
    created: str
    current: bool       # built from this checkout's recipe

    def line(self) -> str:
        mark = "current" if self.current else "stale"
        return f"{self.tag:<40} {self.variant:<6} {self.size_mb:>8.0f} MB  {self.created[:19]}  {mark}"


def _run(cmd: Sequence[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)


def exists(tag: str, docker: str | None = None) -> bool:
    docker = docker or docker_cli()
    return _run([docker, "image", "inspect", "--format", "{{.Id}}", tag]).returncode == 0


def list_images(docker: str | None = None) -> list[ImageInfo]:
    """Every grading image on the engine, newest first."""
    docker = docker or docker_cli()
    out = _run([docker, "images", "--filter", "label=gradekit.image=grading",
                "--format", "{{.Repository}}:{{.Tag}}"])
    if out.returncode != 0:
        raise ImageError(f"docker images failed: {out.stderr.strip()}")
    tags = [t for t in out.stdout.split() if not t.endswith(":<none>")]
    if not tags:
        return []
    info = _run([docker, "image", "inspect", *tags])
    if info.returncode != 0:
        raise ImageError(f"docker image inspect failed: {info.stderr.strip()}")
    root = source_root()
    currents = {}
    if root is not None:
        currents = {v: recipe_hash(v == "full", root) for v in VARIANTS}
    result = []
    by_tag = {}
    for obj in json.loads(info.stdout):
        for t in obj.get("RepoTags") or []:
            by_tag[t] = obj
    for t in tags:
        obj = by_tag.get(t)
        if obj is None:
            continue
        labels = (obj.get("Config") or {}).get("Labels") or {}
        variant = "full" if labels.get("gradekit.torch") == "full" else "light"
        recipe = labels.get("gradekit.recipe", "")
        result.append(ImageInfo(tag=t, id=obj["Id"].split(":")[-1][:12], variant=variant,
                                recipe=recipe[:12], size_mb=obj.get("Size", 0) / 1e6,
                                created=obj.get("Created", ""),
                                current=bool(currents) and currents.get(variant) == recipe))
    result.sort(key=lambda i: (i.created, i.tag), reverse=True)
    return result


# --------------------------------------------------------------------------- building

def requirement_files(root: Path, torch: bool) -> list[Path]:
    d = root / "scripts" / "image"
    files = [d / "requirements.txt"]
    if torch:
        files += [d / "requirements-torch.txt", d / "requirements-torchvision.txt"]
    return files


def wheelhouse_dir(root: Path, torch: bool) -> Path:
    """``.wheelhouse/<variant>``: the wheels one variant installs, and nothing else."""
    return root / ".wheelhouse" / variant_of(torch)


def fill_wheelhouse(torch: bool = True, root: Path | None = None, *, log: Log = _stderr,
                    python: str | None = None) -> bool:
    """``pip download`` the image's packages into ``.wheelhouse/<variant>`` (idempotent).

    Wheels are chosen for the image's interpreter (CPython 3.11, glibc 2.36, x86-64),
    whatever the host runs. Returns False when pip could not fetch them (the build then
    installs from the package index).
    """
    root = root or source_root()
    assert root is not None
    house = wheelhouse_dir(root, torch)
    house.mkdir(parents=True, exist_ok=True)
    reqs = requirement_files(root, torch)
    stamp_hash = hashlib.sha256(b"".join(f.read_bytes() for f in reqs)).hexdigest()[:16]
    stamp = house / f".filled-{stamp_hash}"
    if stamp.exists():
        return True
    cmd = [python or sys.executable, "-m", "pip", "download", "-q", "-d", str(house),
           "--only-binary=:all:", "--python-version", IMAGE_PYTHON_VERSION,
           "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none"]
    for plat in IMAGE_PLATFORMS:
        cmd += ["--platform", plat]
    cmd += ["--platform", "any"]
    for f in reqs:
        cmd += ["-r", str(f)]
    log(f"gradekit image: filling the wheelhouse {house} (pip download)")
    t = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        log("gradekit image: pip download failed; the build will use the package index:\n  "
            + "\n  ".join(res.stderr.strip().splitlines()[-5:]))
        return False
    for old in house.glob(".filled-*"):
        old.unlink()
    stamp.touch()
    log(f"gradekit image: wheelhouse ready in {time.monotonic() - t:.0f} s")
    return True


def build_context(root: Path, torch: bool, use_wheelhouse: bool) -> Path:
    """A build context holding only what this variant's build reads: the recipe, and
    (hard links to) its wheels. Sending the whole checkout, or the full variant's 3 GB of
    wheels to a light build, costs a minute on a fresh engine."""
    ctx = root / ".cache" / "image-context" / variant_of(torch)
    if ctx.exists():
        shutil.rmtree(ctx)
    (ctx / ".wheelhouse").mkdir(parents=True)

    def link(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    for f in recipe_files(root):
        link(f, ctx / f.relative_to(root))
    if use_wheelhouse:
        for whl in wheelhouse_dir(root, torch).glob("*.whl"):
            link(whl, ctx / ".wheelhouse" / whl.name)
    return ctx


def ensure_base_image(root: Path, base_image: str = BASE_IMAGE, *, docker: str | None = None,
                      log: Log = _stderr) -> None:
    """Pull ``debian:bookworm-slim``, or debootstrap it when nothing can be pulled."""
    docker = docker or docker_cli()
    if exists(base_image, docker):
        return
    script = root / "scripts" / "build-base-image.sh"
    env = dict(os.environ, BASE_IMAGE=base_image, DOCKER=docker)
    log(f"gradekit image: {base_image} is missing; running {script}")
    res = subprocess.run(["bash", str(script)], env=env)
    if res.returncode != 0:
        raise ImageError(f"could not provide the base image {base_image} (see above)")


def build(torch: bool = True, *, wheelhouse: bool | None = None, base_image: str = BASE_IMAGE,
          root: Path | None = None, force: bool = False, quiet: bool = False,
          log: Log = _stderr) -> str:
    """Build the grading image; return its content-addressed tag.

    ``torch``: the full variant (True) or the light one. ``wheelhouse``: True = fill and
    use ``.wheelhouse`` (fail if pip cannot), False = install from the index, None =
    try the wheelhouse, fall back to the index. ``force``: rebuild even if the tag exists
    (Docker's layer cache still applies).
    """
    root = root or source_root()
    if root is None:
        raise ImageError("the gradekit source (Dockerfile, scripts/image/) was not found; "
                         "set GRADEKIT_SOURCE to a checkout of gradekit")
    docker = docker_cli(for_build=True)
    tag = image_tag(torch, root)
    if not force and exists(tag, docker):
        _run([docker, "tag", tag, alias_tag(torch)])
        log(f"gradekit image: {tag} is up to date")
        return tag
    ensure_base_image(root, base_image, docker=docker, log=log)
    use_wheels = False
    if wheelhouse is not False:
        use_wheels = fill_wheelhouse(torch, root, log=log)
        if not use_wheels and wheelhouse:
            raise ImageError("could not fill the wheelhouse with pip download (see above)")
    ctx = build_context(root, torch, use_wheels)
    recipe = recipe_hash(torch, root, base_image)
    cmd = [docker, "build", "-f", str(ctx / "Dockerfile"),
           "--build-arg", f"TORCH={'full' if torch else 'none'}",
           "--build-arg", f"BASE_IMAGE={base_image}",
           "--build-arg", f"GRADEKIT_RECIPE={recipe}",
           "-t", tag, "-t", alias_tag(torch)]
    if os.path.isfile(CA_BUNDLE):
        cmd += ["--secret", f"id=cacert,src={CA_BUNDLE}"]
    if quiet:
        cmd.append("-q")
    cmd.append(str(ctx))
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    env.setdefault("BUILDKIT_PROGRESS", "plain")
    log(f"gradekit image: building {tag} ({'with' if torch else 'without'} torch)")
    t = time.monotonic()
    res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL if quiet else None)
    if res.returncode != 0:
        raise ImageError(f"docker build failed (exit {res.returncode}); command: {' '.join(cmd)}")
    log(f"gradekit image: built {tag} in {time.monotonic() - t:.0f} s")
    return tag


def resolve(torch: bool = True) -> str:
    """The tag to run: ``GRADEKIT_IMAGE`` if set, else this checkout's content-addressed tag,
    else (installed without the source) the variant's alias tag."""
    env = os.environ.get("GRADEKIT_IMAGE")
    if env:
        return env
    try:
        return image_tag(torch)
    except ImageError:
        return alias_tag(torch)


def ensure(torch: bool = True, *, build_missing: bool = True, log: Log = _stderr) -> str:
    """An up-to-date image's tag; builds it on first use when ``build_missing``."""
    tag = resolve(torch)
    docker = docker_cli()
    if exists(tag, docker):
        return tag
    if os.environ.get("GRADEKIT_IMAGE"):
        raise ImageError(f"GRADEKIT_IMAGE={tag} does not exist on this Docker engine")
    if not build_missing or source_root() is None:
        raise ImageError(
            f"the grading image {tag} is missing. Build it with: gradekit image build"
            f"{'' if torch else ' --light'}   (or: python -m gradekit.sandbox.docker.image build"
            f"{'' if torch else ' --light'})")
    log(f"gradekit image: {tag} is missing; building it now (first use)")
    return build(torch, log=log)


# --------------------------------------------------------------------------- moving images

TAG_PATTERN = re.compile(rf"^{re.escape(REPOSITORY)}:({'|'.join(VARIANTS)})-([0-9a-f]{{12}})$")
SAVE_GZIP_LEVEL = 1      # docker save | gzip -1: most of the size gain at a fraction of the time
_SMALL = 1 << 20         # members of a saved image read into memory: manifests and configs


def grading_tag(tag: str) -> re.Match | None:
    """The content-addressed tag of a grading image (``gradekit-grading:<variant>-<hash>``), or None."""
    return TAG_PATTERN.match(tag)


def save(path: Path, tag: str | None = None, torch: bool = True, *, docker: str | None = None,
         log: Log = _stderr) -> str:
    """``docker save TAG | gzip`` into ``path``, for a cluster without a registry; the tag
    (default: this checkout's, :func:`resolve`) travels in the file. Returns the tag."""
    docker = docker or docker_cli()
    tag = tag or resolve(torch)
    if not grading_tag(tag):
        raise ImageError(f"{tag} is not a grading image's content-addressed tag "
                         f"({REPOSITORY}:<variant>-<hash>; gradekit image ls shows them)")
    if not exists(tag, docker):
        raise ImageError(f"the grading image {tag} is not on this Docker engine: gradekit image build"
                         f"{'' if tag.split(':')[1].startswith('full') else ' --light'}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    log(f"gradekit image: saving {tag} to {path}")
    t = time.monotonic()
    with open(tmp, "wb") as out:
        saver = subprocess.Popen([docker, "save", tag], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        zipper = subprocess.run(["gzip", "-c", f"-{SAVE_GZIP_LEVEL}"], stdin=saver.stdout, stdout=out,
                                stderr=subprocess.PIPE)
        saver.stdout.close()
        err = saver.stderr.read().decode(errors="replace").strip()
        code = saver.wait()
    if code != 0 or zipper.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ImageError(f"docker save {tag} | gzip failed: "
                         f"{err or zipper.stderr.decode(errors='replace').strip()}")
    os.replace(tmp, path)
    log(f"gradekit image: saved {tag} ({path.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - t:.0f} s")
    return tag


def saved_tags(path: Path) -> list[str]:
    """The tags in a saved image (``docker save`` output, gzipped or not), after checking that
    each is a grading image's content-addressed tag that its image's labels agree with.
    Raises :class:`ImageError` for any other file: ``docker load`` would otherwise (re)tag
    whatever images it holds on the node, ``debian`` or ``python`` included."""
    import tarfile
    small: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:  # one pass, streamed: layers are not kept
            for member in tar:
                if member.isfile() and member.size <= _SMALL and not member.name.endswith("layer.tar"):
                    small[member.name] = tar.extractfile(member).read()
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ImageError(f"{path} is not a saved image (docker save | gzip): {exc}") from None
    try:
        manifest = json.loads(small["manifest.json"])
    except (KeyError, ValueError):
        raise ImageError(f"{path} is not a saved image: it has no manifest.json") from None
    tags = []
    for entry in manifest:
        image_tags = entry.get("RepoTags") or []
        if not image_tags:
            raise ImageError(f"{path} holds an image without a tag: gradekit loads grading images only, "
                             "by their content-addressed tag (save them with gradekit image save)")
        try:
            labels = json.loads(small[entry["Config"]]).get("config", {}).get("Labels") or {}
        except (KeyError, ValueError, AttributeError):
            raise ImageError(f"{path}: the configuration of {image_tags[0]} is missing from the file") from None
        for t in image_tags:
            m = grading_tag(t)
            if not m:
                raise ImageError(f"{path} holds {t}, which is not a gradekit grading image "
                                 f"({REPOSITORY}:<variant>-<hash>): not loaded")
            if labels.get("gradekit.image") != "grading" or not labels.get("gradekit.recipe", "").startswith(m[2]):
                raise ImageError(f"{path}: the image tagged {t} is not the grading image that tag names "
                                 "(its gradekit labels differ): not loaded")
            tags.append(t)
    if not tags:
        raise ImageError(f"{path} holds no image")
    return tags


def load(path: Path, *, docker: str | None = None, log: Log = _stderr) -> list[str]:
    """``docker load`` a file made by :func:`save`, after :func:`saved_tags` checked it;
    each variant's alias tag then names the image loaded, as after a build. Returns the tags."""
    path = Path(path)
    tags = saved_tags(path)
    docker = docker or docker_cli()
    log(f"gradekit image: loading {', '.join(tags)} from {path}")
    res = _run([docker, "load", "-q", "-i", str(path)], timeout=3600)
    if res.returncode != 0:
        raise ImageError(f"docker load failed: {res.stderr.strip()}")
    for t in tags:
        if not exists(t, docker):
            raise ImageError(f"docker load did not create {t}: {res.stdout.strip()}")
        _run([docker, "tag", t, f"{REPOSITORY}:{grading_tag(t)[1]}"])
    return tags


# --------------------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m gradekit.sandbox.docker.image",
                                description="Build and list gradekit's grading images.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("build", "ensure", "tag"):
        s = sub.add_parser(name)
        s.add_argument("--light", action="store_true", help="the variant without torch")
        if name == "build":
            s.add_argument("--force", action="store_true")
            s.add_argument("--offline", action="store_true", help="wheelhouse only")
            s.add_argument("--online", action="store_true", help="package index only")
    sub.add_parser("ls")
    a = p.parse_args(argv)
    try:
        if a.cmd == "build":
            wh = True if a.offline else False if a.online else None
            print(build(not a.light, wheelhouse=wh, force=a.force))
        elif a.cmd == "ensure":
            print(ensure(not a.light))
        elif a.cmd == "tag":
            print(resolve(not a.light))
        else:
            images = list_images()
            if not images:
                print("no grading image; build one with: gradekit image build")
            for i in images:
                print(i.line())
    except ImageError as e:
        print(f"gradekit image: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
