"""Ours: the paper's MSR2B GAN (Qi & Wang 2023), and the Table 1 ablations with ResNet and Res2Net blocks.

All three share the generator of SPEC section 4 (``models.generator.Generator``), the 70x70 PatchGAN
critic and the WGAN-GP + lambda x perceptual loss; only the block type differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from benchmark.registry import Method, Training, register
from models.critic import PatchCritic
from models.generator import Generator
from models.losses import PerceptualLoss


class WeightedPerceptual(nn.Module):
    """``content_weight`` x MSE between VGG19 conv3_3 features (the paper's lambda x L_pers)."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__()
        self.weight = float(options["content_weight"])
        self.perceptual = PerceptualLoss(options["perceptual_weights"], normalize=options["perceptual_normalize"],
                                         reduction=options.get("perceptual_reduction", "chw"))

    def forward(self, restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        return self.weight * self.perceptual(restored, sharp)


def build_generator(options: Mapping[str, Any]) -> Generator:
    return Generator(block=options["block"], k=options["k"], width=options["width"], w0=options["w0"])


def build_critic(options: Mapping[str, Any]) -> PatchCritic:
    return PatchCritic()


GAN_TRAINING = Training(content_loss=WeightedPerceptual, build_critic=build_critic)


def _register_variant(name: str, display_name: str, block: str, paper_row: str, summary: str) -> Method:
    return register(Method(
        name=name,
        display_name=display_name,
        kind="trained",
        summary=summary,
        build=build_generator,
        training=GAN_TRAINING,
        defaults={"block": block, "k": 9, "width": 32, "w0": "identity"},
        paper_row=paper_row,
    ))


_register_variant("msr2b", "Ours (MSR2B)", "msr2b", "Ours",
                  "The paper's generator with k MSR2B blocks, PatchGAN critic, WGAN-GP + 100 x VGG19 perceptual loss.")
_register_variant("res2net", "Res2Net blocks", "res2net", "Res2Net",
                  "Table 1 ablation: the same GAN with Res2Net blocks (MSR2B's Part A alone).")
_register_variant("resnet", "ResNet blocks", "resnet", "ResNet",
                  "Table 1 ablation: the same GAN with plain ResNet blocks (Conv3x3-ReLU-Conv3x3 + x).")
