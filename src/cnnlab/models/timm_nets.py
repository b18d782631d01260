"""Pretrained backbones from the ecosystem: ``--model timm:NAME`` (e.g. ``timm:resnet18.a1_in1k``,
``timm:mobilenetv3_small_100.lamb_in1k``), through timm and the Hugging Face Hub (the optional extra
``pip install 'cnnlab[pretrained]'``).

The weights come from the Hub's cache (``$HF_HOME/hub``, checked by the Hub's own hashes), downloaded
on first use unless ``$CNNLAB_OFFLINE`` or ``$HF_HUB_OFFLINE`` is set. A run's images are resized to
the backbone's pretrained input size and normalised with its mean and std (:func:`input_config`).
A saved run is rebuilt from the name alone (timm's own code, no file's), its weights loaded from
``model.safetensors`` as any run's are.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError

TIMM = "timm:"  # the prefix of a timm model's name in --model and model.json
INSTALL = "pip install 'cnnlab[pretrained]'"


def is_timm(model: str) -> bool:
    return model.startswith(TIMM)


@dataclass(frozen=True)
class InputConfig:
    """What a pretrained backbone's images are: square side, channels, and per-channel mean and std
    of the pixels scaled to 0-1."""

    image_size: int
    channels: int
    mean: list[float]
    std: list[float]


@functools.cache
def timm_module() -> Any:
    """timm, imported once, offline when cnnlab is; a one-line error when it is not installed."""
    if os.environ.get("CNNLAB_OFFLINE") and "huggingface_hub" not in sys.modules:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read once, when huggingface_hub is imported
    if importlib.util.find_spec("timm") is None:
        raise CnnlabError(f"--model timm:... needs timm and huggingface_hub: {INSTALL}")
    torchvision_importable()
    import timm

    return timm


def torchvision_importable() -> None:
    """timm imports torchvision, and PyPI's torchvision for Linux is a CUDA build: beside PyTorch's
    CPU build its compiled ops cannot load, and its import then fails registering two of them
    (``operator torchvision::nms does not exist``). timm uses none of them; declaring the two
    operators (without kernels, so they still fail if ever called) lets the import go on. A
    torchvision whose ops load (a CPU build, or with CUDA beside it) is left as it is."""
    if "torchvision" in sys.modules or (spec := importlib.util.find_spec("torchvision")) is None:
        return
    import torch

    library = next(iter(spec.submodule_search_locations or []), "")
    try:
        torch.ops.load_library(os.path.join(library, "_C.so"))
        return
    except (OSError, ImportError, RuntimeError):
        pass
    missing = [name for name in ("nms", "qnms") if not has_operator(torch, name)]
    if missing:
        fragment = torch.library.Library("torchvision", "FRAGMENT")
        for name in missing:
            fragment.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _FRAGMENTS.append(fragment)


def has_operator(torch: Any, name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


_FRAGMENTS: list = []  # the torch.library fragment that holds those declarations, kept alive


def checked_name(model: str) -> str:
    """The timm name in ``timm:NAME``, or a :class:`CnnlabError` naming the fix."""
    name = model.removeprefix(TIMM)
    timm = timm_module()
    known = bool(name) and timm.is_model(name.split(".")[0])
    if known and "." in name:  # a pretrained tag: one the architecture has
        try:
            timm.models.get_pretrained_cfg(name)
        except RuntimeError:
            known = False
    if not known:
        raise CnnlabError(f"unknown timm model '{name}': list them with python -c \"import timm; "
                          f"print(timm.list_models(pretrained=True))\", e.g. timm:resnet18.a1_in1k")
    return name


def input_config(model: str) -> InputConfig:
    """The pretrained input of ``timm:NAME``: its side, channels, mean and std (its pretrained config)."""
    timm = timm_module()
    config = timm.models.get_pretrained_cfg(checked_name(model)) or {}
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    channels, _, side = config.get("input_size", (3, 224, 224))
    return InputConfig(int(side), int(channels), [float(m) for m in config.get("mean", (0.485, 0.456, 0.406))],
                       [float(s) for s in config.get("std", (0.229, 0.224, 0.225))])


def check_weights_at_hand(model: str) -> None:
    """Offline, refuse a backbone whose pretrained weights are not in the Hub's cache before any
    data is read (online, timm downloads them when the network is built)."""
    timm, name = timm_module(), checked_name(model)
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return
    config = timm.models.get_pretrained_cfg(name)
    repo = getattr(config, "hf_hub_id", None)
    if repo and not any(isinstance(try_to_load_from_cache(repo, file), str)
                        for file in ("model.safetensors", "pytorch_model.bin")):
        raise not_cached(name, repo)


def not_cached(name: str, repo: str) -> CnnlabError:
    return CnnlabError(f"timm:{name}: its pretrained weights are not in the Hugging Face cache ($HF_HOME/hub) and "
                       f"this machine is offline; download them where there is a network (python -c \"import timm; "
                       f"timm.create_model('{name}', pretrained=True)\", from the Hub's {repo}) and copy the cache "
                       "here")


def timm_network(model: str, num_classes: int, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    """``timm:NAME`` with a new output layer of ``num_classes``; ``pretrained``: its ImageNet weights
    from the Hub (its cache first), every layer but the output layer's."""
    timm, name = timm_module(), checked_name(model)
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels)
    except (OSError, RuntimeError, ValueError) as exc:
        if type(exc).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") or "offline" in str(exc).lower():
            raise not_cached(name, getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None) or name) from None
        raise CnnlabError(f"timm:{name}: {str(exc).splitlines()[0]}") from None
