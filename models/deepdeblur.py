"""DeepDeblur's networks, losses and weight loader; the method, its options and deviations are declared
in ``baselines/deepdeblur.py``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.weights import read_state, strict_load
from models.init import IDENTITY, initialise

RGB_RANGE = 255.0


def conv(c_in: int, c_out: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)


class ResBlock(nn.Module):
    def __init__(self, features: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(features, features, kernel), nn.ReLU(True), conv(features, features, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ScaleNet(nn.Module):
    def __init__(self, in_channels: int, features: int, blocks: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(in_channels, features, kernel),
                                  *[ResBlock(features, kernel) for _ in range(blocks)],
                                  conv(features, 3, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UpConv(nn.Module):
    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.uppath = nn.Sequential(conv(3, 12, kernel), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.uppath(x)


def gaussian_downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve the size after a 5x5 Gaussian (sigma 1) blur: the pyramid's low-pass step."""
    t = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
    g = torch.exp(-(t**2) / 2)
    g = (g[:, None] * g[None, :]) / g.sum() ** 2
    weight = g.expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), weight, stride=2, groups=x.shape[1])


def pyramid(x: torch.Tensor, scales: int) -> list[torch.Tensor]:
    """Finest first."""
    levels = [x]
    for _ in range(scales - 1):
        levels.append(gaussian_downsample(levels[-1]))
    return levels


class MSResNet(nn.Module):
    """Returns the restored image at every scale, coarse to fine, in [-1, 1].

    ``init``: a base scheme of :mod:`models.init` (``official``, the release's, is PyTorch's default), or
    that base + ``-identity``. The network has no global skip (each scale's body computes the image
    itself), so the untrained release starts far below its input (about -13 dB); ``-identity`` then zeroes
    every ResBlock's second conv (each block starts as the identity, as in the "zero-init residual"
    practice) and makes each scale's first and last convs a channel embedding and its inverse (a centred
    1 on the blurred image's three channels, zeros elsewhere), so the untrained network returns its
    blurred input at every scale. No ``-zero-out``: zeroing the output conv would give a grey image."""

    def __init__(self, scales: int = 3, features: int = 64, blocks: int = 19, kernel: int = 5,
                 init: str = "official") -> None:
        super().__init__()
        self.scales = scales
        self.size_multiple = 2 ** (scales - 1)
        self.body_models = nn.ModuleList(
            ScaleNet(3 if s == scales - 1 else 6, features, blocks, kernel) for s in range(scales))
        self.conv_end_models = nn.ModuleList([None] + [UpConv(kernel) for _ in range(1, scales)])
        initialise(self, init.removesuffix(IDENTITY))
        if init.endswith(IDENTITY):
            self.start_at_identity()

    @torch.no_grad()
    def start_at_identity(self) -> None:
        """Make every scale return its blurred input (see the class docstring); the other weights stay."""
        for scale in self.body_models:
            first, *blocks, last = scale.body
            for block in blocks:
                nn.init.zeros_(block.body[2].weight)
                nn.init.zeros_(block.body[2].bias)
            centre = first.kernel_size[0] // 2
            for conv in (first, last):  # weights are (out, in, k, k): channel c of the image <-> feature c
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
                for c in range(3):
                    conv.weight[c, c, centre, centre] = 1.0

    def forward(self, blurred: torch.Tensor) -> list[torch.Tensor]:
        # [-1, 1] is the release's [0, 255] shifted by -127.5 and scaled by 1/127.5.
        inputs = pyramid(blurred * (RGB_RANGE / 2), self.scales)
        outputs: list[torch.Tensor] = []
        previous = None
        for s in range(self.scales - 1, -1, -1):
            x = inputs[s] if previous is None else torch.cat([inputs[s], self.conv_end_models[s + 1](previous)], 1)
            previous = self.body_models[s](x)
            outputs.append(previous / (RGB_RANGE / 2))
        return outputs


LOSSES = ("l1", "mse+adv")


class MultiScaleContent(nn.Module):
    """The content term at every scale against the sharp pyramid (coarse to fine), averaged over scales:
    L1 (the release) or half the MSE on the [0, 1] range (the paper)."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__()
        if options["loss"] not in LOSSES:
            raise ValueError(f"deepdeblur option loss: {options['loss']!r} is not one of {', '.join(LOSSES)}")
        self.mse = options["loss"] == "mse+adv"

    def forward(self, outputs: list[torch.Tensor], sharp: torch.Tensor) -> torch.Tensor:
        targets = pyramid(sharp, len(outputs))[::-1]
        if self.mse:  # outputs are in [-1, 1]: a quarter of their MSE is the MSE on [0, 1]
            terms = [F.mse_loss(o, t) / 4 / 2 for o, t in zip(outputs, targets, strict=True)]
        else:
            terms = [F.l1_loss(o, t) for o, t in zip(outputs, targets, strict=True)]
        return sum(terms) / len(outputs)


class Discriminator(nn.Module):
    """The PyTorch release's discriminator: one logit per 256x256 image."""

    def __init__(self, features: int = 64, kernel: int = 5) -> None:
        super().__init__()
        plan = [(3, features // 2, 1), (features // 2, features // 2, 2), (features // 2, features, 1),
                (features, features, 2), (features, features * 2, 1), (features * 2, features * 2, 4),
                (features * 2, features * 4, 1), (features * 4, features * 4, 4), (features * 4, features * 8, 1)]
        layers = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
                  for c_in, c_out, stride in plan]
        layers.append(nn.Conv2d(features * 8, features * 8, 4, stride=4, padding=0, bias=False))
        self.conv_layers = nn.ModuleList(layers)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.dense = nn.Conv2d(features * 8, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 256:
            raise ValueError(f"DeepDeblur's discriminator needs crops of at least 256x256, got "
                             f"{x.shape[-2]}x{x.shape[-1]} (set the method's train crop to 256)")
        for layer in self.conv_layers:
            x = self.act(layer(x))
        return self.dense(x)


def build_discriminator(options: Mapping[str, Any]) -> Discriminator | None:
    return Discriminator(options["features"], options["kernel"]) if options["loss"] == "mse+adv" else None


def load_official(model: nn.Module, path: Path) -> None:
    """A release checkpoint ``model-*.pt`` holding ``{'G': state_dict}`` (or a bare state dict), or the
    released zipped experiment folder itself (its last ``models/model-N.pt`` is read)."""
    strict_load(model, read_state(path, key="G"), path)


def build(options: Mapping[str, Any]) -> MSResNet:
    return MSResNet(options["scales"], options["features"], options["blocks"], options["kernel"], init=options["init"])
