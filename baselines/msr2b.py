"""Ours: the paper's MSR2B GAN (Qi & Wang 2023), and the Table 1 ablations with ResNet and Res2Net blocks.

All three share the generator of SPEC section 4 (``models.generator.Generator``), the 70x70 PatchGAN
critic and the WGAN-GP + lambda x perceptual loss; only the block type differs.
"""

from __future__ import annotations

from benchmark.registry import INIT_LIMIT, Lazy, Method, Training, register

GAN_TRAINING = Training(content_loss=Lazy("models.losses:WeightedContent"), build_critic=Lazy("models.critic:build"))


def _register_variant(name: str, display_name: str, block: str, paper_row: str, summary: str) -> Method:
    return register(Method(
        name=name,
        display_name=display_name,
        kind="trained",
        summary=summary,
        build=Lazy("models.generator:build"),
        training=GAN_TRAINING,
        defaults={"block": block, "k": 9, "width": 32, "w0": "identity", "init": "he-identity"},
        limits={"block": {"enum": ["msr2b", "res2net", "resnet"]}, "k": {"minimum": 1}, "width": {"minimum": 1},
                "w0": {"enum": ["identity", "t1"]}, "init": INIT_LIMIT},
        paper_row=paper_row,
    ))


_register_variant("msr2b", "Ours (MSR2B)", "msr2b", "Ours",
                  "The paper's generator with k MSR2B blocks, PatchGAN critic, WGAN-GP + 100 x VGG19 perceptual loss.")
_register_variant("res2net", "Res2Net blocks", "res2net", "Res2Net",
                  "Table 1 ablation: the same GAN with Res2Net blocks (MSR2B's Part A alone).")
_register_variant("resnet", "ResNet blocks", "resnet", "ResNet",
                  "Table 1 ablation: the same GAN with plain ResNet blocks (Conv3x3-ReLU-Conv3x3 + x).")
