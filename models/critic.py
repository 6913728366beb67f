"""The 70x70 PatchGAN critic of pix2pix, as the paper's discriminator (section 3.2).

C64 (stride 2, no norm) - C128 (s2) - C256 (s2) - C512 (s1) - 1-channel conv (s1); 4x4 kernels,
padding 1, LeakyReLU 0.2, no sigmoid (a WGAN critic). A 256x256 input gives a 30x30 map, each cell
seeing a 70x70 patch. The paper's text says "the front four layers, with Stride 2", which contradicts
its own 30x30 output and 70x70 patches; the output size is followed (SPEC section 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from models.init import initialise


class PatchCritic(nn.Module):
    """The critic; ``in_channels=6`` serves the pix2pix-style option of also showing it the blurred image.

    The normalisation is ``nn.InstanceNorm2d`` with its default ``affine=False`` (no learned scale or
    shift), as in pix2pix's and DeblurGAN's PatchGAN. Weights N(0, 0.02), biases 0.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64) -> None:
        super().__init__()

        def layer(c_in: int, c_out: int, stride: int, norm: bool) -> list[nn.Module]:
            parts: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1)]
            if norm:
                parts.append(nn.InstanceNorm2d(c_out))
            return [*parts, nn.LeakyReLU(0.2)]

        self.model = nn.Sequential(
            *layer(in_channels, ndf, 2, norm=False),
            *layer(ndf, ndf * 2, 2, norm=True),
            *layer(ndf * 2, ndf * 4, 2, norm=True),
            *layer(ndf * 4, ndf * 8, 1, norm=True),
            nn.Conv2d(ndf * 8, 1, 4, stride=1, padding=1),
        )
        initialise(self, "normal-0.02")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """N x C x H x W -> N x 1 x H' x W' map of critic scores (higher = more like a sharp image)."""
        return self.model(image)


def build(options: Mapping[str, Any]) -> PatchCritic:
    return PatchCritic()
