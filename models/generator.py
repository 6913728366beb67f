"""The paper's generator (Qi & Wang 2023, section 3.2 and Fig. 4) with MSR2B, Res2Net or ResNet blocks.

Images are in [-1, 1]. ``Generator.forward`` reads in the order of the figure: head (7x7 conv, two
stride-2 3x3 convs), body (k blocks whose outputs are all kept), fusion of the k outputs by a 1x1
conv (the local skip connections), tail (two stride-2 transposed convs, a 1x1 conv) and the global
skip ``clamp(blurred + residual, -1, 1)``. There is no normalisation anywhere (the paper removes IN).
The reading of the details the paper leaves open is SPEC section 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.init import initialise

BLOCKS = ("msr2b", "res2net", "resnet")
W0_READINGS = ("identity", "t1")


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters, trainable or not."""
    return sum(p.numel() for p in module.parameters())


def conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """A conv with 'same' padding, so a stride-2 conv halves even sides exactly."""
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)


class PartA(nn.Module):
    """Eq. 4: a 1x1 bottleneck to four groups s1..s4 of width w, then t1 = s1, t2 = ReLU(H2(s2)),
    t_i = ReLU(H_i(s_i + t_{i-1})) for i = 3, 4."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.width = width
        self.bottleneck = conv(channels, 4 * width, 1)
        self.H2 = conv(width, width, 3)
        self.H3 = conv(width, width, 3)
        self.H4 = conv(width, width, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        s1, s2, s3, s4 = torch.split(F.relu(self.bottleneck(x)), self.width, dim=1)
        t1 = s1  # no conv on the first group: its features are reused as they are
        t2 = F.relu(self.H2(s2))
        t3 = F.relu(self.H3(s3 + t2))
        t4 = F.relu(self.H4(s4 + t3))
        return t1, t2, t3, t4


class MSR2B(nn.Module):
    """The multi-scale residual block (section 3.1, Fig. 3): Part A, Part B on P = [t2, t3, t4], merge, + x.

    Part B (Eq. 5-7): W1 = ReLU(K1(P)) (3x3), W2 = ReLU(K2(P)) (5x5), output ReLU(Kb([W0, W1, W2])) (1x1
    to 4w). The paper never defines W0: ``w0="identity"`` (default) takes W0 = P, a bypass around the
    two convs; ``w0="t1"`` takes W0 = t1, the one group Part B does not otherwise see.
    Merge (Eq. 8): Y = 1x1 conv of [t1, t2, t3, t4, Part B] (8w channels) back to ``channels``; out = x + Y.
    """

    def __init__(self, channels: int = 256, width: int = 32, w0: str = "identity") -> None:
        super().__init__()
        if w0 not in W0_READINGS:
            raise ValueError(f"MSR2B: w0 must be one of {', '.join(W0_READINGS)}, not {w0!r}")
        self.w0 = w0
        self.part_a = PartA(channels, width)
        self.K1 = conv(3 * width, 3 * width, 3)
        self.K2 = conv(3 * width, 3 * width, 5)
        w0_channels = 3 * width if w0 == "identity" else width
        self.Kb = conv(w0_channels + 6 * width, 4 * width, 1)
        self.merge = conv(8 * width, channels, 1)

    @property
    def branch_end(self) -> nn.Conv2d:
        """The last conv before ``x + Y`` (zeroed by the ``-identity`` inits)."""
        return self.merge

    def part_b(self, P: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        W0 = P if self.w0 == "identity" else t1
        W1 = F.relu(self.K1(P))
        W2 = F.relu(self.K2(P))
        return F.relu(self.Kb(torch.cat([W0, W1, W2], dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t1, t2, t3, t4 = self.part_a(x)
        W_out = self.part_b(torch.cat([t2, t3, t4], dim=1), t1)
        Y = self.merge(torch.cat([t1, t2, t3, t4, W_out], dim=1))
        return x + Y


class Res2NetBlock(nn.Module):
    """Table 1 ablation: MSR2B's Part A alone, [t1..t4] fused by a 1x1 conv, + x."""

    def __init__(self, channels: int = 256, width: int = 32) -> None:
        super().__init__()
        self.part_a = PartA(channels, width)
        self.merge = conv(4 * width, channels, 1)

    @property
    def branch_end(self) -> nn.Conv2d:
        return self.merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.merge(torch.cat(self.part_a(x), dim=1))


class ResNetBlock(nn.Module):
    """Table 1 ablation: Conv3x3-ReLU-Conv3x3 + x, no normalisation, no dropout."""

    def __init__(self, channels: int = 256) -> None:
        super().__init__()
        self.conv1 = conv(channels, channels, 3)
        self.conv2 = conv(channels, channels, 3)

    @property
    def branch_end(self) -> nn.Conv2d:
        return self.conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def make_block(block: str, channels: int, width: int, w0: str) -> nn.Module:
    if block == "msr2b":
        return MSR2B(channels, width, w0)
    if block == "res2net":
        return Res2NetBlock(channels, width)
    if block == "resnet":
        return ResNetBlock(channels)
    raise ValueError(f"unknown generator block type {block!r}; valid: {', '.join(BLOCKS)}")


class Generator(nn.Module):
    """The generator of Fig. 4 with k blocks of type ``block`` (``msr2b``, or the Table 1 ablations).

    ``init`` is a scheme of :mod:`models.init`; the paper is silent. ``normal-0.02`` (DeblurGAN's, made
    for a network with InstanceNorm after every conv) starves this one, which has none: the residual
    starts at about 0.01 grey levels and more ReLUs die in training; plain ``he`` grows the activations
    block by block to several hundred; ``he-identity`` (the default, chosen by the measurement in
    ``docs/measurements.md``) starts every block and the whole network at the identity."""

    size_multiple = 4  # two stride-2 convs

    def __init__(self, block: str = "msr2b", k: int = 9, width: int = 32, w0: str = "identity",
                 channels: int = 256, init: str = "he-identity") -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"Generator: k (number of blocks) must be at least 1, not {k}")
        self.head = nn.Sequential(
            conv(3, 64, 7), nn.ReLU(),
            conv(64, 128, 3, stride=2), nn.ReLU(),
            conv(128, channels, 3, stride=2), nn.ReLU(),
        )
        self.blocks = nn.ModuleList(make_block(block, channels, width, w0) for _ in range(k))
        self.fusion = nn.Sequential(conv(k * channels, channels, 1), nn.ReLU())
        self.tail = nn.Sequential(
            nn.ConvTranspose2d(channels, 128, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            conv(64, 3, 1),  # no activation: the residual must be able to go negative
        )
        initialise(self, init, output=self.tail[-1], branch_ends=[b.branch_end for b in self.blocks])

    def pad_to_multiple(self, x: torch.Tensor) -> torch.Tensor:
        """Pad bottom and right up to a multiple of ``size_multiple``: reflect, or replicate where a
        side is too short to reflect."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.size_multiple, (-w) % self.size_multiple
        if not (ph or pw):
            return x
        return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")

    def forward(self, blurred: torch.Tensor) -> torch.Tensor:
        h, w = blurred.shape[-2:]
        x = self.head(self.pad_to_multiple(blurred))
        block_outputs = []
        for block in self.blocks:
            x = block(x)
            block_outputs.append(x)
        residual = self.tail(self.fusion(torch.cat(block_outputs, dim=1)))[..., :h, :w]
        return torch.clamp(blurred + residual, -1.0, 1.0)


def build(options: Mapping[str, Any]) -> Generator:
    """The generator of ``baselines/msr2b.py``'s three methods, from their options."""
    return Generator(block=options["block"], k=options["k"], width=options["width"], w0=options["w0"],
                     init=options["init"])
