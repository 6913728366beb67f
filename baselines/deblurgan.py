"""Kupyn et al. [19], DeblurGAN, as the official code has it at commit b15a520.

Generator: pix2pix's ResNet generator (ngf 64, 9 blocks, InstanceNorm without affine parameters,
reflection padding, dropout 0.5) ending in tanh, with the learned residual
``clamp(input + tanh(...), -1, 1)``. Critic: the 3-layer PatchGAN with padding 2 (a 35x35 map for a
256x256 input), seeing the image alone. WGAN-GP (5 critic steps, mu 10) + 100 x VGG19 conv3_3
perceptual loss on unnormalised [-1, 1] input; 150 epochs at 1e-4, then 150 of linear decay to 0.
Parameter names follow the official generator, so its released ``latest_net_G.pth`` loads strictly.
"""

from __future__ import annotations

from benchmark.registry import INIT_LIMIT, Lazy, Method, Training, register

register(Method(
    name="deblurgan",
    display_name="Kupyn et al. [19]",
    kind="trained",
    summary="DeblurGAN (official code at b15a520): ResNet generator with InstanceNorm, dropout and a tanh "
            "residual, 3-layer PatchGAN critic, WGAN-GP + 100 x VGG19 conv3_3 perceptual loss.",
    build=Lazy("models.deblurgan:build"),
    training=Training(content_loss=Lazy("models.losses:WeightedContent"),
                      build_critic=Lazy("models.deblurgan:build_critic")),
    defaults={"ngf": 64, "n_blocks": 9, "dropout": 0.5, "init": "normal-0.02", "lr": 1e-4, "betas": [0.5, 0.999],
              "eps": 1e-8, "lr_final": 0.0, "n_critic": 5, "gp_weight": 10.0, "content_weight": 100.0,
              "perceptual_normalize": False, "batch_size": 1, "crop": 256, "content": "perceptual",
              # the official loop's conventions, whatever the profile sets for the paper's network
              "gp_reduction": "sum", "perceptual_reduction": "chw", "critic_batches": "same"},
    # (its training settings are checked against config/schema.yaml's train section)
    limits={"init": INIT_LIMIT, "ngf": {"minimum": 1}, "n_blocks": {"minimum": 0},
            "dropout": {"minimum": 0, "exclusiveMaximum": 1}},
    deviations=(
        "Trained by this suite's loop on this profile's data and schedule (the paper profile uses the "
        "official 150 + 150 epochs); the official code resizes GOPRO frames to 640x360 before cropping, "
        "this suite crops full-resolution frames like every other method.",
        "Gradient penalty with one alpha per sample and a per-sample norm (the official code draws one "
        "alpha per batch and takes a per-pixel norm over channels).",
        "Dropout is off at inference (eval mode).",
    ),
    paper_row="Kupyn et al. [19]",
    load_official=Lazy("models.deblurgan:load_official"),
))
