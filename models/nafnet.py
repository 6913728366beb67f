"""NAFNet's network, PSNR loss and weight loader; the method, its options and deviations are declared in
``baselines/nafnet.py``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.weights import read_state, strict_load
from models.init import initialise


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of each pixel, with per-channel weight and bias (eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) / (var + self.eps).sqrt() * self.weight[:, None, None] + self.bias[:, None, None]


class LocalAvgPool(nn.Module):
    """TLC's test-time pool: the mean over a ``kernel`` window (clipped to the image) at every position
    where the window fits, the border filled by replicating the nearest such mean; the global mean when
    the window covers the whole feature map. Box sums come from an integral image (summed-area table)."""

    def __init__(self, kernel: tuple[int, int]) -> None:
        super().__init__()
        self.kernel = kernel

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.kernel[0] >= h and self.kernel[1] >= w:
            return x.mean(dim=(-2, -1), keepdim=True)
        kh, kw = min(h, self.kernel[0]), min(w, self.kernel[1])
        table = F.pad(x.cumsum(-2).cumsum(-1), (1, 0, 1, 0))
        box = table[..., kh:, kw:] - table[..., :-kh, kw:] - table[..., kh:, :-kw] + table[..., :-kh, :-kw]
        mean = box / (kh * kw)
        dh, dw = h - mean.shape[-2], w - mean.shape[-1]
        return F.pad(mean, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode="replicate")


class SimpleGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    def __init__(self, c: int, pool: nn.Module | None = None) -> None:
        super().__init__()
        dw = 2 * c
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.sca = nn.Sequential(pool or nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.sg = SimpleGate()
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        y = inp + self.conv3(x * self.sca(x)) * self.beta
        return y + self.conv5(self.sg(self.conv4(self.norm2(y)))) * self.gamma


class NAFNet(nn.Module):
    """[0, 1] in, [0, 1] out (not clamped); any size."""

    value_range = (0.0, 1.0)

    def __init__(self, width: int = 64, enc_blk_nums: Sequence[int] = (1, 1, 1, 28), middle_blk_num: int = 1,
                 dec_blk_nums: Sequence[int] = (1, 1, 1, 1), local: bool = True, train_size: int = 256,
                 img_channel: int = 3, init: str = "official") -> None:
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(f"nafnet options: enc_blk_nums {list(enc_blk_nums)} and dec_blk_nums "
                             f"{list(dec_blk_nums)} must have the same length")
        base = int(train_size * 1.5)

        def pool(level: int) -> nn.Module | None:
            # The official conversion sizes each pool from a forward pass at train_size: a stage at
            # 1/2^level resolution gets (train_size / 2^level) * base / train_size.
            if not local:
                return None
            k = (train_size >> level) * base // train_size
            return LocalAvgPool((k, k))

        self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        chan = width
        for level, n in enumerate(enc_blk_nums):
            self.encoders.append(nn.Sequential(*[NAFBlock(chan, pool(level)) for _ in range(n)]))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2))
            chan *= 2
        depth = len(enc_blk_nums)
        self.middle_blks = nn.Sequential(*[NAFBlock(chan, pool(depth)) for _ in range(middle_blk_num)])
        for level, n in zip(range(depth - 1, -1, -1), dec_blk_nums, strict=True):
            self.ups.append(nn.Sequential(nn.Conv2d(chan, 2 * chan, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan, pool(level)) for _ in range(n)]))
        self.padder_size = 2**depth
        initialise(self, init, output=self.ending)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        inp = F.pad(inp, (0, (-w) % self.padder_size, 0, (-h) % self.padder_size))
        x = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips), strict=True):
            x = decoder(up(x) + skip)
        return (self.ending(x) + inp)[..., :h, :w]


class PSNRLoss(nn.Module):
    """The official PSNR loss: ``10/ln(10) * log(MSE + 1e-8)`` per image, averaged over the batch."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__()

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = (output - target).pow(2).mean(dim=(1, 2, 3))
        return (10 / math.log(10)) * torch.log(mse + 1e-8).mean()


def to_unit_range(blurred: torch.Tensor, sharp: torch.Tensor, generator: torch.Generator):
    """The loop's [-1, 1] crops as the [0, 1] images NAFNet trains on."""
    return (blurred + 1) / 2, (sharp + 1) / 2


def load_official(model: nn.Module, path: Path) -> None:
    """A released ``NAFNet-GoPro-width*.pth``: ``{'params': state_dict}`` (BasicSR's layout)."""
    strict_load(model, read_state(path, key="params"), path)


def build(options: Mapping[str, Any]) -> NAFNet:
    return NAFNet(options["width"], options["enc_blk_nums"], options["middle_blk_num"], options["dec_blk_nums"],
                  local=options["local"], train_size=options["train_size"], init=options["init"])
