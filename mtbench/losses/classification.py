"""Image classification losses: ``cls/ce``, cross-entropy with optional label smoothing (Szegedy
et al., 2016); ``cls/kd``, knowledge distillation from a frozen ImageNet classifier (Hinton et al., 2015)."""

from __future__ import annotations

import math

import timm
import torch
import torch.nn.functional as F
from torch import nn

from mtbench.models.blocks import imagenet_classifier
from mtbench.plugins import Spec, hookimpl


class ClsCE(nn.Module):
    """Cross-entropy on ``float32 (B, C)`` logits and ``int64 (B,)`` targets.

    :param label_smoothing: in [0, 1).
    """

    def __init__(self, num_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        self.num_classes, self.label_smoothing = num_classes, label_smoothing

    def forward(self, raw: torch.Tensor, target: torch.Tensor, stride: int) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(raw, target, label_smoothing=self.label_smoothing)
        out = {"ce": ce, "total": ce, "num_pos": torch.tensor(float(target.numel()))}
        if self.label_smoothing:  # entropy of the smoothed target distribution
            c, eps = raw.shape[1], self.label_smoothing
            hi, lo = 1 - eps + eps / c, eps / c
            out["floor"] = torch.tensor(-(hi * math.log(hi) + (c - 1) * lo * math.log(lo)))
        return out


class ClsKD(ClsCE):
    """``cls/kd``: knowledge distillation from a frozen ImageNet classifier (Hinton, Vinyals &
    Dean, "Distilling the Knowledge in a Neural Network", 2015), the teacher seeing the very
    images the model sees, augmentations included ("consistent teaching": Beyer et al., "Knowledge
    distillation: A good teacher is patient and consistent", CVPR 2022)::

        total = (1 - alpha) * CE(z, y) + alpha * T^2 * KL(softmax(t / T) || softmax(z / T))

    ``z``: the model's ``float32 (B, C)`` logits; ``y``: ``int64 (B,)`` labels (CE with
    ``label_smoothing``, as ``cls/ce``); ``t``: the teacher's ImageNet-1k logits at the data
    set's classes, in the data set's class order (:func:`mtbench.models.blocks.imagenet_classifier`,
    its 1000 outputs restricted to the classes' WordNet ids, as the restricted-classifier row of
    ``benchmarks/cls_ceiling.py``), computed without gradient from ``images``. The teacher is a
    training-time aid only: it is not part of the model, its parameters, FLOPs or latency, and
    evaluation never runs it. It only applies where every class is an ImageNet-1k class (as
    Imagenette's are); the teacher has seen ImageNet's labelled train images, Imagenette's train
    images among them, so a result with it is one of ImageNet's labels as well as the data set's.

    Components: ``ce``, ``kd`` (the KL term, before ``alpha``), ``total``, ``num_pos``, ``floor``
    (the smallest ``total`` possible for the batch's labels and teacher outputs: exact for
    ``T = 1`` or ``alpha`` in {0, 1}, where it has a closed form; otherwise ``(1 - alpha)`` times
    the smoothed labels' entropy, a lower bound).

    :param class_names: the data set's class names (passed by mtbench): ImageNet-1k WordNet ids.
    :param teacher: timm name of a network with offline ImageNet weights.
    :param alpha: weight of the distillation term in [0, 1] (1: the teacher alone, as Beyer et al.).
    :param temperature: ``T > 0`` of both softmaxes.
    :raises ValueError: a class that is not an ImageNet-1k WordNet id (names them); ``alpha`` or
        ``temperature`` out of range.
    :raises PluginError: the teacher has no offline ImageNet weights.
    """

    takes_images = True
    declared_components = ("ce", "kd")

    def __init__(self, num_classes: int, class_names: tuple[str, ...], teacher: str = "tf_efficientnet_lite0",
                 alpha: float = 0.5, temperature: float = 1.0, label_smoothing: float = 0.0):
        super().__init__(num_classes, label_smoothing)
        if not 0 <= alpha <= 1 or not temperature > 0:
            raise ValueError(f"cls/kd needs 0 <= alpha <= 1 and temperature > 0; got alpha={alpha}, "
                             f"temperature={temperature}")
        self.index = imagenet_indices(class_names)
        self.alpha, self.t = alpha, temperature
        self.teacher = [imagenet_classifier(teacher)]  # in a list: not a submodule of the loss

    def forward(self, raw: torch.Tensor, target: torch.Tensor, stride: int, images: torch.Tensor) -> dict:
        out = super().forward(raw, target, stride)
        teacher = self.teacher[0]
        if teacher[0].mean.device != images.device:  # moved once, on the first batch
            teacher.to(images.device)
        with torch.no_grad():
            t = teacher(images)[:, self.index].float() / self.t
        z = raw.float() / self.t
        kd = F.kl_div(F.log_softmax(z, 1), F.log_softmax(t, 1), reduction="batchmean", log_target=True)
        out["kd"] = kd
        out["total"] = (1 - self.alpha) * out["ce"] + self.alpha * self.t**2 * kd
        out["floor"] = self._floor(target, t, raw.shape[1])
        return out

    def _floor(self, target: torch.Tensor, t: torch.Tensor, c: int) -> torch.Tensor:
        eps, a = self.label_smoothing, self.alpha
        y = F.one_hot(target, c).float() * (1 - eps) + eps / c
        h = lambda p: -torch.xlogy(p, p).sum(1).mean()  # noqa: E731  (entropy, nats)
        if a == 1:
            return torch.zeros(())
        if self.t == 1:  # total = CE(z, q) - a H(p_t) with q = (1 - a) y + a p_t: min at softmax(z) = q
            p = t.softmax(1)
            return h((1 - a) * y + a * p) - a * h(p)
        return (1 - a) * h(y)


def imagenet_indices(class_names) -> list[int]:
    """Positions of ``class_names`` (ImageNet-1k WordNet ids, e.g. ``n01440764``) among timm's
    1000 ImageNet classes.

    :raises ValueError: a name that is not one of them (the first few named).
    """
    wnids = timm.data.ImageNetInfo().label_names()
    missing = [n for n in class_names if n not in wnids]
    if missing:
        raise ValueError(f"cls/kd distils an ImageNet classifier, so every class must be an ImageNet-1k "
                         f"WordNet id; these are not: {missing[:5]}")
    return [wnids.index(n) for n in class_names]


@hookimpl
def mtbench_register_losses():
    return [Spec("loss", "ce", ClsCE, "cross-entropy with optional label smoothing", task="cls"),
            Spec("loss", "kd", ClsKD, "cross-entropy + distillation from a frozen ImageNet classifier "
                 "(Hinton et al. 2015; classes must be ImageNet WordNet ids)", task="cls")]
