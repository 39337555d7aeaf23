"""gradekit.data.weights: torchvision's file names, local loading, tensors only."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from gradekit.data import ARCHS, check, load_pretrained, synthesize, weights_file
from gradekit.data.weights import file_name


def test_file_names_come_from_torchvision():
    m = torchvision.models
    enums = {"alexnet": m.AlexNet_Weights, "resnet18": m.ResNet18_Weights, "resnet50": m.ResNet50_Weights,
             "vgg16": m.VGG16_Weights, "vgg19": m.VGG19_Weights}
    assert set(enums) == set(ARCHS)
    for arch, enum in enums.items():
        assert file_name(arch) == enum.DEFAULT.url.rsplit("/", 1)[-1]
        assert file_name(arch, "IMAGENET1K_V1") == enum.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    assert file_name("alexnet") == "alexnet-owt-7be5be79.pth"  # the course's copy, by name
    assert file_name("resnet50") != file_name("resnet50", "IMAGENET1K_V1")  # DEFAULT is V2 there
    with pytest.raises(ValueError, match="alexnet, resnet18, resnet50, vgg16, vgg19"):
        file_name("lenet")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        file_name("alexnet", "IMAGENET1K_V9")


def test_load_pretrained_reads_the_local_file(tmp_path):
    rec = synthesize("torch-weights", tmp_path / "home", seed=4, archs=["alexnet"])
    assert check("torch-weights", rec.root) == []
    path = weights_file(rec.root, "alexnet")
    assert path == rec.root / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    saved = torch.load(path, weights_only=True)
    model = load_pretrained(rec.root, "alexnet")
    assert isinstance(model, torchvision.models.AlexNet)
    state = model.state_dict()
    assert list(state) == list(saved)
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    # not torchvision's own random init: the file's weights were loaded
    assert not torch.equal(torchvision.models.alexnet().features[0].weight, state["features.0.weight"])
    with pytest.raises(ValueError, match="does not start with 7be5be79"):
        load_pretrained(rec.root, "alexnet", check_hash=True)  # synthetic weights are not the real ones


def test_a_missing_file_says_where_it_should_be(tmp_path):
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(FileNotFoundError) as e:
        weights_file(tmp_path, "resnet18")
    assert str(expected) in str(e.value) and "nothing is downloaded" in str(e.value)
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        load_pretrained(tmp_path, "resnet18")


class _Payload:
    def __reduce__(self):
        return (os.mkdir, (str(_Payload.marker),))


def test_a_pickle_in_a_weights_file_is_never_run(tmp_path):
    path = tmp_path / "hub" / "checkpoints" / file_name("resnet18")
    path.parent.mkdir(parents=True)
    _Payload.marker = tmp_path / "pwned"
    torch.save({"fc.weight": _Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_pretrained(tmp_path, "resnet18")
    assert not Path(_Payload.marker).exists()
