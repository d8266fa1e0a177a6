"""Gold-YOLO (Wang et al., NeurIPS 2023) in Jittor: the design of plugins/mtbench-gold-yolo,
module for module, so that its parameter and buffer names are the PyTorch model's
``state_dict`` names (the name mapping of :mod:`mtbench_jittor.weights` is the identity).

Same configuration tables (``SIZES``, channels and repeats of ``mtbench_gold_yolo``), same
blocks: EfficientRep backbone (RepVGG blocks, SimCSPSPPF), RepGDNeck (low-GD SimFusion /
injection / RepBlocks, high-GD TopFormer blocks), YOLOv6 efficient decoupled head in
mtbench's dense encoding (``C + 4*(reg_max+1) + 1`` channels per level, the last one the
quality logit). Training-time form only (RepVGG branches unfused), which is the form both
sides are compared in. Inputs: ``float32 (B, 3, S, S)`` in [0, 1], ``S`` a multiple of 64.
Outputs: list of 3 maps ``(B, C + 4*(reg_max+1) + 1, S/s, S/s)`` for s = 8, 16, 32.
"""

from __future__ import annotations

import math

import jittor as jt
from jittor import nn
from mtbench_gold_yolo import BACKBONE_CH, BACKBONE_REPEATS, NECK_CH, NECK_REPEATS, SIZES

from mtbench.models.yolo_blocks import make_divisible


class BatchNorm2d(nn.Module):
    """BatchNorm as PyTorch computes it: in training the batch variance as the mean squared
    deviation from the batch mean (two passes; Jittor's own ``BatchNorm2d`` takes
    ``E[x^2] - E[x]^2``, whose cancellation moved train-mode outputs by ~2e-3 relative here)
    and the running variance updated with the unbiased estimate (Jittor's: biased);
    momentum 0.1, eps 1e-5. Parameters ``weight``, ``bias``; buffers ``running_mean``,
    ``running_var`` (``stop_grad``), as PyTorch names them."""

    def __init__(self, c, eps=1e-5, momentum=0.1):
        self.eps, self.momentum = eps, momentum
        self.weight, self.bias = jt.ones((c,)), jt.zeros((c,))
        self.running_mean, self.running_var = jt.zeros((c,)).stop_grad(), jt.ones((c,)).stop_grad()

    def execute(self, x):
        if self.is_train:
            x64 = x.float64()  # Jittor sums sequentially: float32 sums of 10^5 values lose ~1e-4
            mean64 = x64.mean(dims=(0, 2, 3))
            var = (x64 - mean64.reshape(1, -1, 1, 1)).sqr().mean(dims=(0, 2, 3)).float32()
            mean = mean64.float32()
            n = x.numel() // x.shape[1]
            self.running_mean.update((1 - self.momentum) * self.running_mean + self.momentum * mean.detach())
            self.running_var.update((1 - self.momentum) * self.running_var
                                    + self.momentum * var.detach() * (n / max(n - 1, 1)))
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight / jt.sqrt(var + self.eps)
        return (x - mean.reshape(1, -1, 1, 1)) * scale.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)


class ConvBN(nn.Sequential):
    """Conv2d (no bias) + BatchNorm, with an optional activation module."""

    def __init__(self, cin, cout, k=1, s=1, act=None, groups=1, bn_init=1.0):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), BatchNorm2d(cout)]
        jt.init.constant_(layers[1].weight, bn_init)
        super().__init__(*layers, *([act] if act is not None else []))


def sim_conv(cin, cout, k=1, s=1):
    return ConvBN(cin, cout, k, s, nn.ReLU())


def silu_conv(cin, cout, k=1, s=1):
    return ConvBN(cin, cout, k, s, nn.SiLU())


def hardsigmoid(x):
    """PyTorch's ``F.hardsigmoid``: ``relu6(x + 3) / 6``."""
    return jt.clamp(x + 3.0, 0.0, 6.0) / 6.0


class RepVGGBlock(nn.Module):
    """3x3 conv-BN + 1x1 conv-BN (+ BN identity when shapes allow), summed, ReLU."""

    def __init__(self, cin, cout, k=3, s=1):
        self.dense, self.one = ConvBN(cin, cout, 3, s), ConvBN(cin, cout, 1, s)
        self.identity = BatchNorm2d(cin) if cin == cout and s == 1 else None
        self.act = nn.ReLU()

    def execute(self, x):
        y = self.dense(x) + self.one(x)
        return self.act(y + self.identity(x) if self.identity is not None else y)


def rep_block(cin, cout, n):
    return nn.Sequential(RepVGGBlock(cin, cout), *(RepVGGBlock(cout, cout) for _ in range(n - 1)))


def max_pool5(x):
    """5x5 max pooling, stride 1, padding 2 (``nn.MaxPool2d(5, 1, 2)``); padded by hand since
    Jittor's pooling refuses maps smaller than the kernel even when padding covers it."""
    return nn.pool(nn.pad(x, (2, 2, 2, 2), value=float("-inf")), 5, "maximum", stride=1)


class SimCSPSPPF(nn.Module):
    def __init__(self, cin, cout, e=0.5):
        c = int(cout * e)
        self.cv1, self.cv2, self.cv3, self.cv4 = sim_conv(cin, c), sim_conv(cin, c), sim_conv(c, c, 3), sim_conv(c, c)
        self.cv5, self.cv6, self.cv7 = sim_conv(4 * c, c), sim_conv(c, c, 3), sim_conv(2 * c, cout)

    def execute(self, x):
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = max_pool5(x1)
        y2 = max_pool5(y1)
        y3 = self.cv6(self.cv5(jt.concat([x1, y1, y2, max_pool5(y2)], 1)))
        return self.cv7(jt.concat([self.cv2(x), y3], 1))


class EfficientRep(nn.Module):
    def __init__(self, ch, reps):
        self.stem = RepVGGBlock(3, ch[0], s=2)
        self.stages = nn.ModuleList()
        for i in range(1, 5):
            layers = [RepVGGBlock(ch[i - 1], ch[i], s=2), rep_block(ch[i], ch[i], reps[i])]
            if i == 4:
                layers.append(SimCSPSPPF(ch[4], ch[4]))
            self.stages.append(nn.Sequential(*layers))

    def execute(self, x):
        x, out = self.stem(x), []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


def pool_to(x, size):
    """Average pooling with the fixed kernel and stride of the PyTorch ``_pool_to``; where the
    sizes divide (kernel = stride) as the mean over non-overlapping windows, since Jittor's
    pooling refuses a kernel as large as the map."""
    b, c, h, w = (int(v) for v in x.shape)
    oh, ow = int(size[0]), int(size[1])
    sh, sw = h // oh, w // ow
    kh, kw = h - (oh - 1) * sh, w - (ow - 1) * sw
    if (kh, kw) == (sh, sw):
        return x if (sh, sw) == (1, 1) else x.reshape(b, c, oh, sh, ow, sw).mean(dims=(3, 5))
    return nn.pool(x, (kh, kw), "mean", stride=(sh, sw))


def resize(x, size):
    if x.shape[-2] > size[0]:
        return pool_to(x, size)
    if x.shape[-2] < size[0]:
        return nn.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    return x


class SimFusion3(nn.Module):
    def __init__(self, c_mid, cout):
        self.cv1, self.fuse = sim_conv(c_mid, cout), sim_conv(cout * 3, cout)

    def execute(self, x0, x1, x2):
        size = x1.shape[-2:]
        return self.fuse(jt.concat([resize(x0, size), self.cv1(x1), resize(x2, size)], 1))


class Inject(nn.Module):
    def __init__(self, cin, cout, cglobal):
        self.local, self.glob, self.gate = ConvBN(cin, cout), ConvBN(cglobal, cout), ConvBN(cglobal, cout)

    def execute(self, x_local, x_global):
        size = x_local.shape[-2:]
        gate = resize(hardsigmoid(self.gate(x_global)), size)
        return self.local(x_local) * gate + resize(self.glob(x_global), size)


class Attention(nn.Module):
    def __init__(self, dim, key_dim, heads, attn_ratio):
        self.heads, self.key_dim, self.d = heads, key_dim, int(attn_ratio * key_dim)
        self.q, self.k = ConvBN(dim, key_dim * heads), ConvBN(dim, key_dim * heads)
        self.v = ConvBN(dim, self.d * heads)
        self.proj = nn.Sequential(nn.ReLU6(), ConvBN(self.d * heads, dim, bn_init=0.0))

    def execute(self, x):
        b, _, h, w = x.shape
        q = self.q(x).reshape(b, self.heads, self.key_dim, h * w).permute(0, 1, 3, 2)
        k = self.k(x).reshape(b, self.heads, self.key_dim, h * w)
        v = self.v(x).reshape(b, self.heads, self.d, h * w).permute(0, 1, 3, 2)
        out = nn.matmul(nn.softmax(nn.matmul(q, k), dim=-1), v)  # unscaled, as the release
        return self.proj(out.permute(0, 1, 3, 2).reshape(b, self.d * self.heads, h, w))


class TopBlock(nn.Module):
    def __init__(self, dim, key_dim=8, heads=4, mlp_ratio=1.0, attn_ratio=2.0):
        hidden = int(dim * mlp_ratio)
        self.attn = Attention(dim, key_dim, heads, attn_ratio)
        self.mlp = nn.Sequential(ConvBN(dim, hidden), nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden),
                                 nn.ReLU6(), ConvBN(hidden, dim))

    def execute(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class RepGDNeck(nn.Module):
    def __init__(self, ch, reps, embed_dim_p, trans):
        c2, c3, c4, c5 = ch[1:5]
        self.trans = list(trans)
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

    def execute(self, feats):
        c2, c3, c4, c5 = feats
        size = c4.shape[-2:]
        low = self.low_ifm(jt.concat([resize(c2, size), resize(c3, size), c4, resize(c5, size)], 1))
        low4, low3 = jt.split(low, self.trans[:2], 1)
        c5_half = self.reduce_c5(c5)
        p4 = self.rep_p4(self.inject_p4(self.laf_p4(c3, c4, c5_half), low4))
        p4_half = self.reduce_p4(p4)
        p3 = self.rep_p3(self.inject_p3(self.laf_p3(c2, c3, p4_half), low3))
        h, w = c5.shape[-2:]
        top = ((h - 1) // 2 + 1, (w - 1) // 2 + 1)
        high = self.conv_n(self.high_ifm(jt.concat([pool_to(t, top) for t in (p3, p4, c5)], 1)))
        high4, high5 = jt.split(high, self.trans[2:], 1)
        n4 = self.rep_n4(self.inject_n4(jt.concat([pool_to(p3, p4_half.shape[-2:]), p4_half], 1), high4))
        n5 = self.rep_n5(self.inject_n5(jt.concat([pool_to(n4, c5_half.shape[-2:]), c5_half], 1), high5))
        return [p3, n4, n5]


class EffiDeHead(nn.Module):
    def __init__(self, c, num_classes, reg_max):
        self.stem, self.cls_conv, self.reg_conv = silu_conv(c, c), silu_conv(c, c, 3), silu_conv(c, c, 3)
        self.cls_pred = nn.Conv2d(c, num_classes, 1)
        self.reg_pred = nn.Conv2d(c, 4 * (reg_max + 1) + 1, 1)
        jt.init.constant_(self.cls_pred.bias, -math.log((1 - 0.01) / 0.01))

    def execute(self, x):
        x = self.stem(x)
        return jt.concat([self.cls_pred(self.cls_conv(x)), self.reg_pred(self.reg_conv(x))], 1)


class Normalize(nn.Module):
    """``(x - mean) / std`` with ``(1, 3, 1, 1)`` buffers named as PyTorch's ``normalize.mean`` / ``.std``."""

    def __init__(self, mean, std):
        self.mean = jt.array(mean, dtype="float32").reshape(1, 3, 1, 1).stop_grad()
        self.std = jt.array(std, dtype="float32").reshape(1, 3, 1, 1).stop_grad()

    def execute(self, x):
        return (x - self.mean) / self.std


class GoldYOLO(nn.Module):
    """Gold-YOLO-``size`` for ``num_classes`` det classes (``reg_max``: the size's DFL bins by default).

    :raises ValueError: an unknown size.
    """

    strides = [8, 16, 32]

    def __init__(self, num_classes, size="n", reg_max=None):
        if size not in SIZES:
            raise ValueError(f"size {size!r}: known {', '.join(SIZES)}")
        cfg = SIZES[size]
        ch = [make_divisible(c * cfg["width"]) for c in BACKBONE_CH + NECK_CH]
        reps = [max(round(n * cfg["depth"]), 1) if n > 1 else n for n in BACKBONE_REPEATS + NECK_REPEATS]
        self.normalize = Normalize((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.backbone = EfficientRep(ch[:5], reps[:5])
        self.neck = RepGDNeck(ch, reps, cfg["embed_dim_p"], cfg["trans_channels"])
        rm = cfg["reg_max"] if reg_max is None else reg_max
        self.heads = nn.ModuleList([EffiDeHead(c, num_classes, rm) for c in (ch[6], ch[8], ch[10])])

    def execute(self, x):
        feats = self.neck(self.backbone(self.normalize(x)))
        return [h(f) for h, f in zip(self.heads, feats)]
