"""Kupyn et al. [19], DeblurGAN, as the official code has it at commit b15a520.

Generator: pix2pix's ResNet generator (ngf 64, 9 blocks, InstanceNorm without affine parameters,
reflection padding, dropout 0.5) ending in tanh, with the learned residual
``clamp(input + tanh(...), -1, 1)``. Critic: the 3-layer PatchGAN with padding 2 (a 35x35 map for a
256x256 input), seeing the image alone. WGAN-GP (5 critic steps, mu 10) + 100 x VGG19 conv3_3
perceptual loss on unnormalised [-1, 1] input; 150 epochs at 1e-4, then 150 of linear decay to 0.
Parameter names follow the official generator, so its released ``latest_net_G.pth`` loads strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from baselines.msr2b import WeightedPerceptual
from benchmark.registry import Method, Training, register
from benchmark.weights import read_state, strict_load
from models.generator import init_weights


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
    """``model.N`` indices as in the official ``ResnetGenerator`` (48 tensors, 11,378,179 parameters)."""

    size_multiple = 4

    def __init__(self, ngf: int = 64, n_blocks: int = 9, dropout: float = 0.5) -> None:
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
        init_weights(self)

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
        init_weights(self)

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
    return DeblurGANGenerator(ngf=options["ngf"], n_blocks=options["n_blocks"], dropout=options["dropout"])


register(Method(
    name="deblurgan",
    display_name="Kupyn et al. [19]",
    kind="trained",
    summary="DeblurGAN (official code at b15a520): ResNet generator with InstanceNorm, dropout and a tanh "
            "residual, 3-layer PatchGAN critic, WGAN-GP + 100 x VGG19 conv3_3 perceptual loss.",
    build=build,
    training=Training(content_loss=WeightedPerceptual, build_critic=lambda options: NLayerCritic()),
    defaults={"ngf": 64, "n_blocks": 9, "dropout": 0.5, "lr": 1e-4, "betas": [0.5, 0.999], "eps": 1e-8,
              "lr_final": 0.0, "n_critic": 5, "gp_weight": 10.0, "content_weight": 100.0,
              "perceptual_normalize": False, "batch_size": 1, "crop": 256,
              # the official loop's conventions, whatever the profile sets for the paper's network
              "gp_reduction": "sum", "perceptual_reduction": "chw", "critic_batches": "same"},
    deviations=(
        "Trained by this suite's loop on this profile's data and schedule (the paper profile uses the "
        "official 150 + 150 epochs); the official code resizes GOPRO frames to 640x360 before cropping, "
        "this suite crops full-resolution frames like every other method.",
        "Gradient penalty with one alpha per sample and a per-sample norm (the official code draws one "
        "alpha per batch and takes a per-pixel norm over channels).",
        "Dropout is off at inference (eval mode).",
    ),
    paper_row="Kupyn et al. [19]",
    load_official=load_official,
))
