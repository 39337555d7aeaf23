"""Pretrained weights from a local ``TORCH_HOME``, never from the network.

torchvision keeps downloaded weights in ``$TORCH_HOME/hub/checkpoints/`` under the last
part of the weights' url (``torch.hub.load_state_dict_from_url``); the file names here are
read from the installed torchvision's weight enums, so they are the ones it would use.
Loading uses ``torch.load(..., weights_only=True)``: tensors only, never arbitrary pickles.
torch and torchvision are imported only when a function needs them.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

ARCHS = ("alexnet", "resnet18", "resnet50", "vgg16", "vgg19")


def _weights(arch: str, weights: str = "DEFAULT"):
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
    from torchvision.models import get_model_weights
    enum = get_model_weights(arch)
    try:
        return enum[weights]  # DEFAULT is an alias of the newest (resnet50: IMAGENET1K_V2)
    except KeyError:
        raise ValueError(f"{arch} has no weights {weights!r}; torchvision has "
                         f"{', '.join(enum.__members__)}") from None


def file_name(arch: str, weights: str = "DEFAULT") -> str:
    """The file name torchvision gives these weights, e.g. ``alexnet-owt-7be5be79.pth``."""
    return os.path.basename(urlparse(_weights(arch, weights).url).path)


def weights_file(root: str | os.PathLike, arch: str, weights: str = "DEFAULT") -> Path:
    """``<root>/hub/checkpoints/<file>`` for ``arch``; FileNotFoundError if it is not there."""
    path = Path(os.path.expanduser(os.fspath(root))) / "hub" / "checkpoints" / file_name(arch, weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"no {weights} weights for {arch}: expected {path}. Copy the file torchvision "
            f"downloads ({_weights(arch, weights).url}) there, or point the course's weights "
            "folder (a TORCH_HOME) at a folder that has it; nothing is downloaded.")
    return path


def load_pretrained(root: str | os.PathLike, arch: str, weights: str = "DEFAULT", *,
                    check_hash: bool = False):
    """The torchvision model ``arch`` with the weights read from the local file.

    As torchvision returns it (train mode; call ``.eval()`` to evaluate). ``check_hash``
    compares the file's SHA-256 with the prefix torchvision puts in the name (a truncated
    or substituted copy fails); synthetic weights do not pass it.
    """
    import torch
    from torchvision.models import get_model

    path = weights_file(root, arch, weights)
    if check_hash:
        _check_hash(path)
    model = get_model(arch, weights=None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model


def _check_hash(path: Path) -> None:
    # torchvision's names end in -<first hex digits of the sha256>.pth
    prefix = path.stem.rsplit("-", 1)[-1]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix):
        raise ValueError(f"{path}: SHA-256 {digest.hexdigest()[:12]}... does not start with "
                         f"{prefix}, the hash in its name: the file is damaged or not the original")
