"""``gold-yolo``: Gold-YOLO (Wang et al., "Gold-YOLO: Efficient Object Detector via
Gather-and-Distribute Mechanism", NeurIPS 2023) as an mtbench plugin, sizes ``n`` and ``s``.

Structure as the paper and its configs (``gold_yolo-n.py`` / ``gold_yolo-s.py``):

- EfficientRep backbone (YOLOv6): RepVGG-block stem and stages at strides 4..32 (repeats
  1/6/12/18/6 x depth), SimCSPSPPF at the end; outputs c2..c5 (``fuse_P2``).
- RepGDNeck: low-GD (SimFusion_4in aligns c2..c5 at stride 16 by average pooling /
  bilinear upsampling, a 1x1 conv + 3 RepVGG blocks + 1x1 conv make the global
  information, injected into P4 and P3 by InjectionMultiSum blocks after SimFusion_3in
  local fusion, each followed by a RepBlock), then high-GD (PyramidPoolAgg of p3/p4/c5 at
  stride 64, two TopFormer-style attention blocks, a 1x1 conv, injected into n4 and n5
  after AdvPoolFusion).
- Efficient decoupled head (YOLOv6): per level a 1x1 stem, a 3x3 class conv and a 3x3 box
  conv, 1x1 predictions. ``reg_max`` 0 (plain distances) for n, 16 (DFL bins) for s, as
  the released configs. One extra box-branch channel carries mtbench's quality logit
  (dense encoding of :mod:`mtbench.models.dense`; the varifocal loss does not train it).

Parameter counts are those of the re-parameterised (deployed) model, as the paper reports
them: :meth:`GoldYOLO.fuse` folds every RepVGG block into one 3x3 conv. At 80 classes and
640 px: see ``tests`` (``test_gold_yolo_matches_paper``) and the README.

One deliberate difference from the released code: the injection block applies its
h-sigmoid gate also when the global map is pooled (the released code skips it there).
Pooling uses fixed kernels and strides, as the release does for ONNX export (see
``_pool_to``); inputs must be multiples of 64 px for the high-GD pooling to divide evenly.

Outputs: ``det``: list of ``(B, C + 4*(reg_max+1) + 1, S/s, S/s)`` for s = 8, 16, 32.
Task ``det`` only; ``level`` must be ``P3`` (the finest head level).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtbench.models.base import MultiTaskModel
from mtbench.models.blocks import Normalize, init_det_prior
from mtbench.models.yolo_blocks import make_divisible
from mtbench.plugins import Spec, hookimpl

#: size -> depth multiple, width multiple, neck extra config (gold_yolo-{n,s}.py), head reg_max
SIZES = {
    "n": dict(depth=0.33, width=0.25, embed_dim_p=96, trans_channels=(64, 32, 64, 128), reg_max=0),
    "s": dict(depth=0.33, width=0.50, embed_dim_p=128, trans_channels=(128, 64, 128, 256), reg_max=16),
}
BACKBONE_CH, BACKBONE_REPEATS = (64, 128, 256, 512, 1024), (1, 6, 12, 18, 6)
NECK_CH, NECK_REPEATS = (256, 128, 128, 256, 256, 512), (12, 12, 12, 12)
#: size -> (params M, GFLOPs) of the deployed model at 640 px, 80 COCO classes (paper, Table 1)
PAPER = {"n": (5.6, 12.1), "s": (21.5, 46.0)}


class ConvBN(nn.Sequential):
    """Conv2d (no bias) + BatchNorm, with an optional activation module."""

    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1, act: nn.Module | None = None,
                 groups: int = 1, bn_init: float = 1.0):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        nn.init.constant_(layers[1].weight, bn_init)
        super().__init__(*layers, *([act] if act is not None else []))


def sim_conv(cin, cout, k=1, s=1):
    """YOLOv6 ``SimConv``: conv-BN-ReLU."""
    return ConvBN(cin, cout, k, s, nn.ReLU(inplace=True))


def silu_conv(cin, cout, k=1, s=1):
    """YOLOv6 ``Conv``: conv-BN-SiLU."""
    return ConvBN(cin, cout, k, s, nn.SiLU(inplace=True))


def _fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    std = (bn.running_var + bn.eps).sqrt()
    return kernel * (bn.weight / std).reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * bn.weight / std


class RepVGGBlock(nn.Module):
    """RepVGG block (Ding et al., CVPR 2021): 3x3 conv-BN + 1x1 conv-BN (+ BN identity when
    shapes allow), summed, ReLU. :meth:`fuse` re-parameterises it into one 3x3 conv with bias."""

    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1):
        super().__init__()
        self.dense, self.one = ConvBN(cin, cout, 3, s), ConvBN(cin, cout, 1, s)
        self.identity = nn.BatchNorm2d(cin) if cin == cout and s == 1 else None
        self.fused: nn.Conv2d | None = None
        self.act = nn.ReLU(inplace=True)
        self.cin, self.cout, self.s = cin, cout, s

    def forward(self, x):
        if self.fused is not None:
            return self.act(self.fused(x))
        y = self.dense(x) + self.one(x)
        return self.act(y + self.identity(x) if self.identity is not None else y)

    @torch.no_grad()
    def fuse(self) -> None:
        k3, b3 = _fold_bn(self.dense[0].weight, self.dense[1])
        k1, b1 = _fold_bn(self.one[0].weight, self.one[1])
        k, b = k3 + F.pad(k1, [1, 1, 1, 1]), b3 + b1
        if self.identity is not None:
            eye = torch.zeros_like(k3)
            eye[torch.arange(self.cin), torch.arange(self.cin), 1, 1] = 1.0
            ki, bi = _fold_bn(eye, self.identity)
            k, b = k + ki, b + bi
        self.fused = nn.Conv2d(self.cin, self.cout, 3, self.s, 1, bias=True).to(k.device)
        self.fused.weight.copy_(k)
        self.fused.bias.copy_(b)
        del self.dense, self.one, self.identity
        self.identity = None


def rep_block(cin: int, cout: int, n: int) -> nn.Sequential:
    """YOLOv6 ``RepBlock``: ``n`` RepVGG blocks, the first changing channels."""
    return nn.Sequential(RepVGGBlock(cin, cout), *(RepVGGBlock(cout, cout) for _ in range(n - 1)))


class SimCSPSPPF(nn.Module):
    """CSP spatial pyramid pooling (YOLOv6 v3.0), ReLU convs, three chained 5x5 max-pools."""

    def __init__(self, cin: int, cout: int, e: float = 0.5):
        super().__init__()
        c = int(cout * e)
        self.cv1, self.cv2, self.cv3, self.cv4 = sim_conv(cin, c), sim_conv(cin, c), sim_conv(c, c, 3), sim_conv(c, c)
        self.cv5, self.cv6, self.cv7 = sim_conv(4 * c, c), sim_conv(c, c, 3), sim_conv(2 * c, cout)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.pool(x1)
        y2 = self.pool(y1)
        y3 = self.cv6(self.cv5(torch.cat([x1, y1, y2, self.pool(y2)], 1)))
        return self.cv7(torch.cat([self.cv2(x), y3], 1))


class EfficientRep(nn.Module):
    """EfficientRep backbone; returns c2..c5 (strides 4, 8, 16, 32)."""

    def __init__(self, ch: list[int], reps: list[int]):
        super().__init__()
        self.stem = RepVGGBlock(3, ch[0], s=2)
        self.stages = nn.ModuleList()
        for i in range(1, 5):
            layers = [RepVGGBlock(ch[i - 1], ch[i], s=2), rep_block(ch[i], ch[i], reps[i])]
            if i == 4:
                layers.append(SimCSPSPPF(ch[4], ch[4]))
            self.stages.append(nn.Sequential(*layers))

    def forward(self, x):
        x, out = self.stem(x), []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


def _pool_to(x: torch.Tensor, size) -> torch.Tensor:
    """Average-pool ``x`` down to ``size`` (h, w) with a fixed kernel and stride (the released
    code's ``onnx_AdaptiveAvgPool2d``): equal to adaptive pooling when the sizes divide, and
    exportable to ONNX, which adaptive pooling with traced sizes is not."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    sh, sw = h // int(size[0]), w // int(size[1])
    return F.avg_pool2d(x, (h - (int(size[0]) - 1) * sh, w - (int(size[1]) - 1) * sw), (sh, sw))


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    """Average-pool down or bilinearly upsample ``x`` to ``size`` (h, w)."""
    if x.shape[-2] > size[0]:
        return _pool_to(x, size)
    if x.shape[-2] < size[0]:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


class SimFusion3(nn.Module):
    """Low-GD local fusion of three neighbours at the middle one's size."""

    def __init__(self, c_mid: int, cout: int):
        super().__init__()
        self.cv1, self.fuse = sim_conv(c_mid, cout), sim_conv(cout * 3, cout)

    def forward(self, x0, x1, x2):
        size = x1.shape[-2:]
        return self.fuse(torch.cat([_resize(x0, size), self.cv1(x1), _resize(x2, size)], 1))


class Inject(nn.Module):
    """InjectionMultiSum_Auto_pool: ``local * h_sigmoid(act(global)) + embed(global)``, the
    global map resized to the local one; 1x1 conv-BN embeddings."""

    def __init__(self, cin: int, cout: int, cglobal: int):
        super().__init__()
        self.local, self.glob, self.gate = ConvBN(cin, cout), ConvBN(cglobal, cout), ConvBN(cglobal, cout)

    def forward(self, x_local, x_global):
        size = x_local.shape[-2:]
        gate = _resize(F.hardsigmoid(self.gate(x_global)), size)
        return self.local(x_local) * gate + _resize(self.glob(x_global), size)


class Attention(nn.Module):
    """TopFormer multi-head attention over a feature map (1x1 conv-BN projections)."""

    def __init__(self, dim: int, key_dim: int, heads: int, attn_ratio: float):
        super().__init__()
        self.heads, self.key_dim, self.d = heads, key_dim, int(attn_ratio * key_dim)
        self.q, self.k = ConvBN(dim, key_dim * heads), ConvBN(dim, key_dim * heads)
        self.v = ConvBN(dim, self.d * heads)
        self.proj = nn.Sequential(nn.ReLU6(), ConvBN(self.d * heads, dim, bn_init=0.0))
        self.scale = key_dim**-0.5

    def forward(self, x):
        b, _, h, w = x.shape
        q = self.q(x).reshape(b, self.heads, self.key_dim, h * w).transpose(2, 3)
        k = self.k(x).reshape(b, self.heads, self.key_dim, h * w)
        v = self.v(x).reshape(b, self.heads, self.d, h * w).transpose(2, 3)
        out = (q @ k).softmax(-1) @ v  # the released code does not scale q.k; kept as it is
        return self.proj(out.transpose(2, 3).reshape(b, self.d * self.heads, h, w))


class TopBlock(nn.Module):
    """Attention + conv MLP (1x1, depthwise 3x3, ReLU6, 1x1), both residual."""

    def __init__(self, dim: int, key_dim: int = 8, heads: int = 4, mlp_ratio: float = 1.0, attn_ratio: float = 2.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.attn = Attention(dim, key_dim, heads, attn_ratio)
        self.mlp = nn.Sequential(ConvBN(dim, hidden), nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden),
                                 nn.ReLU6(), ConvBN(hidden, dim))

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class RepGDNeck(nn.Module):
    """Gather-and-Distribute neck (RepGDNeck of the paper's n/s models); returns p3, n4, n5."""

    def __init__(self, ch: list[int], reps: list[int], embed_dim_p: int, trans: tuple[int, ...]):
        super().__init__()
        c2, c3, c4, c5 = ch[1:5]
        self.trans = trans
        self.low_ifm = nn.Sequential(silu_conv(c2 + c3 + c4 + c5, embed_dim_p),
                                     *(RepVGGBlock(embed_dim_p, embed_dim_p) for _ in range(3)),
                                     silu_conv(embed_dim_p, trans[0] + trans[1]))
        self.reduce_c5 = sim_conv(c5, ch[5])
        self.laf_p4, self.inject_p4 = SimFusion3(c4, ch[5]), Inject(ch[5], ch[5], trans[0])
        self.rep_p4 = rep_block(ch[5], ch[5], reps[5])
        self.reduce_p4 = sim_conv(ch[5], ch[6])
        self.laf_p3, self.inject_p3 = SimFusion3(c3, ch[6]), Inject(ch[6], ch[6], trans[1])
        self.rep_p3 = rep_block(ch[6], ch[6], reps[6])
        embed_dim_n = ch[6] + ch[5] + c5
        self.high_ifm = nn.Sequential(TopBlock(embed_dim_n), TopBlock(embed_dim_n))
        self.conv_n = nn.Conv2d(embed_dim_n, trans[2] + trans[3], 1)
        self.inject_n4 = Inject(ch[6] + ch[7], ch[8], trans[2])
        self.rep_n4 = rep_block(ch[8], ch[8], reps[7])
        self.inject_n5 = Inject(ch[5] + ch[9], ch[10], trans[3])
        self.rep_n5 = rep_block(ch[10], ch[10], reps[8])

    def forward(self, feats):
        c2, c3, c4, c5 = feats
        size = c4.shape[-2:]
        low = self.low_ifm(torch.cat([_resize(c2, size), _resize(c3, size), c4, _resize(c5, size)], 1))
        low4, low3 = low.split(self.trans[:2], 1)
        c5_half = self.reduce_c5(c5)
        p4 = self.rep_p4(self.inject_p4(self.laf_p4(c3, c4, c5_half), low4))
        p4_half = self.reduce_p4(p4)
        p3 = self.rep_p3(self.inject_p3(self.laf_p3(c2, c3, p4_half), low3))
        h, w = c5.shape[-2:]
        top = ((h - 1) // 2 + 1, (w - 1) // 2 + 1)
        high = self.conv_n(self.high_ifm(torch.cat([_pool_to(t, top) for t in (p3, p4, c5)], 1)))
        high4, high5 = high.split(self.trans[2:], 1)
        n4 = self.rep_n4(self.inject_n4(torch.cat([_pool_to(p3, p4_half.shape[-2:]), p4_half], 1), high4))
        n5 = self.rep_n5(self.inject_n5(torch.cat([_pool_to(n4, c5_half.shape[-2:]), c5_half], 1), high5))
        return [p3, n4, n5]


class EffiDeHead(nn.Module):
    """YOLOv6 efficient decoupled head for one level, in mtbench's dense encoding."""

    def __init__(self, c: int, num_classes: int, reg_max: int):
        super().__init__()
        self.stem, self.cls_conv, self.reg_conv = silu_conv(c, c), silu_conv(c, c, 3), silu_conv(c, c, 3)
        self.cls_pred = nn.Conv2d(c, num_classes, 1)
        self.reg_pred = nn.Conv2d(c, 4 * (reg_max + 1) + 1, 1)
        init_det_prior(self.cls_pred, 0, num_classes)  # prior 0.01, as YOLOv6

    def forward(self, x):
        x = self.stem(x)
        return torch.cat([self.cls_pred(self.cls_conv(x)), self.reg_pred(self.reg_conv(x))], 1)


class GoldYOLO(MultiTaskModel):
    """Gold-YOLO detector.

    :param tasks: ``{"det": TaskInfo}``.
    :param level: ``P3`` (heads at P3, P4, P5).
    :param size: ``n`` or ``s``.
    :param reg_max: override the size's DFL bins (n: 0, s: 16).
    :raises ValueError: other tasks, another level, an unknown size.
    """

    def __init__(self, tasks: dict, level: str = "P3", size: str = "n", reg_max: int | None = None):
        super().__init__()
        if set(tasks) != {"det"}:
            raise ValueError(f"gold-yolo is a detector: task 'det' only, got {sorted(tasks)}")
        if level != "P3":
            raise ValueError(f"gold-yolo has heads at P3, P4, P5: level must be P3, got {level}")
        if size not in SIZES:
            raise ValueError(f"size {size!r}: known {', '.join(SIZES)}")
        cfg = SIZES[size]
        self.set_tasks(tasks, level)
        self.strides["det"] = [8, 16, 32]
        ch = [make_divisible(c * cfg["width"]) for c in BACKBONE_CH + NECK_CH]
        reps = [max(round(n * cfg["depth"]), 1) if n > 1 else n for n in BACKBONE_REPEATS + NECK_REPEATS]
        self.normalize = Normalize((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.backbone = EfficientRep(ch[:5], reps[:5])
        self.neck = RepGDNeck(ch, reps, cfg["embed_dim_p"], cfg["trans_channels"])
        rm = cfg["reg_max"] if reg_max is None else reg_max
        self.heads = nn.ModuleList(EffiDeHead(c, tasks["det"].num_classes, rm) for c in (ch[6], ch[8], ch[10]))

    @classmethod
    def reference_figures(cls, size: str = "n", reg_max: int | None = None) -> list[dict]:
        """The paper's figures for ``size`` (mtbench's reference-figure contract, see
        :mod:`mtbench.profiling.reference`): measured at 640 px, 80 classes, det only, so a
        cell at other sizes/classes is checked by rebuilding the model there. The paper
        rounds to 0.1 M / 0.1 GFLOPs (n: +-0.9 %), hence a 1 % tolerance. None for a
        ``reg_max`` other than the released config's (not the paper's model)."""
        if size not in PAPER or (reg_max is not None and reg_max != SIZES[size]["reg_max"]):
            return []
        params_m, flops_g = PAPER[size]
        return [{"source": f"Gold-YOLO-{size.upper()} paper (Wang et al., NeurIPS 2023, Table 1)",
                 "params_m": params_m, "flops_g": flops_g, "tolerance": 0.01,
                 "conditions": {"image_size": 640, "tasks": {"det": 80}, "level": "P3"}}]

    def forward(self, x):
        feats = self.neck(self.backbone(self.normalize(x)))
        return {"det": [h(f) for h, f in zip(self.heads, feats)]}

    def fuse(self) -> "GoldYOLO":
        """Re-parameterise every RepVGG block for deployment (outputs unchanged, eval mode)."""
        self.eval()
        for m in self.modules():
            if isinstance(m, RepVGGBlock) and m.fused is None:
                m.fuse()
        return self

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.backbone, self.neck) for p in m.parameters() if p.requires_grad]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.neck.rep_p3.parameters() if p.requires_grad]


@hookimpl
def mtbench_register_models():
    return [Spec("model", "gold-yolo", GoldYOLO,
                 "Gold-YOLO n/s: EfficientRep + Gather-and-Distribute neck + YOLOv6 efficient decoupled head")]
