"""DeblurGAN's networks and weight loader; the method, its options and deviations are declared in
``baselines/deblurgan.py``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.weights import read_state, strict_load
from models.init import initialise


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.Dropout(dropout), nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class DeblurGANGenerator(nn.Module):
    """``model.N`` indices as in the official ``ResnetGenerator`` (48 tensors, 11,378,179 parameters).

    ``init``: a scheme of :mod:`models.init`; the official one is ``normal-0.02``. Its output conv (before
    the tanh) is not small under it: the untrained network adds a residual of about 0.3 on [-1, 1], some
    12 dB below the blurred input; ``normal-0.02-zero-out`` starts at the identity (tanh(0) = 0)."""

    size_multiple = 4

    def __init__(self, ngf: int = 64, n_blocks: int = 9, dropout: float = 0.5, init: str = "normal-0.02") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        initialise(self, init, output=self.model[-2])

    def forward(self, blurred: torch.Tensor) -> torch.Tensor:
        return torch.clamp(blurred + self.model(blurred), -1.0, 1.0)


class NLayerCritic(nn.Module):
    """The official ``NLayerDiscriminator`` (n_layers 3, kernel 4, padding 2, InstanceNorm, no sigmoid)."""

    def __init__(self, ndf: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2, True)]
        channels = ndf
        for n, stride in ((1, 2), (2, 2), (3, 1)):
            out = ndf * min(2**n, 8)
            layers += [nn.Conv2d(channels, out, 4, stride=stride, padding=2), nn.InstanceNorm2d(out),
                       nn.LeakyReLU(0.2, True)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=2))
        self.model = nn.Sequential(*layers)
        initialise(self, "normal-0.02")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


PRE_04_NORM_BUFFERS = ("running_mean", "running_var")


def load_official(model: nn.Module, path: Path) -> None:
    """The authors' ``latest_net_G.pth`` (a plain state dict of the generator).

    The released file was saved by PyTorch < 0.4, whose InstanceNorm2d kept running statistics
    (``model.2.running_mean``, ...; KupynOrest/DeblurGAN#51, #80, #130); an InstanceNorm2d without
    ``track_running_stats`` never reads them, so those two buffers of InstanceNorm layers are dropped
    and everything else loads strictly.
    """
    norms = {name for name, m in model.named_modules() if isinstance(m, nn.InstanceNorm2d)}
    state = {k: v for k, v in read_state(path).items()
             if not (k.rpartition(".")[2] in PRE_04_NORM_BUFFERS and k.removeprefix("module.").rpartition(".")[0]
                     in norms)}
    strict_load(model, state, path)


def build(options: Mapping[str, Any]) -> DeblurGANGenerator:
    return DeblurGANGenerator(ngf=options["ngf"], n_blocks=options["n_blocks"], dropout=options["dropout"],
                              init=options["init"])


def build_critic(options: Mapping[str, Any]) -> NLayerCritic:
    return NLayerCritic()
