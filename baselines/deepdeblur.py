"""Nah et al. [14], DeepDeblur, as its PyTorch release (SeungjunNah/DeepDeblur-PyTorch) builds it.

Three scales coarse to fine; each is conv 5x5 -> 19 ResBlocks (conv-ReLU-conv + x, 64 features,
5x5) -> conv 5x5 to RGB. The coarsest scale sees the blurred image at 1/4 size; each finer scale
sees its blurred image concatenated with the coarser output upsampled by conv 3->12 + PixelShuffle(2).
Inputs and outputs are shifted by -/+127.5 on the release's [0, 255] range. Parameter names follow
the release (``body_models.{0,1,2}``, 0 the finest; ``conv_end_models.{1,2}.uppath.0``), so its
``model-*.pt`` loads strictly.

Loss, option ``loss``:

- ``l1`` (default): the PyTorch release's ``1*L1``, L1 at every scale averaged over the scales.
- ``mse+adv``: the paper's (Nah et al. 2017, eq. 2-4 and the Torch release's ``mse_weight=1``,
  ``adv_weight=1e-4``): ``1/(2K) sum_k mean((L_k - S_k)^2)`` on the [0, 1] range, plus 1e-4 x the
  BCE adversarial loss of a discriminator that sees the finest output. The discriminator is the
  PyTorch release's (``src/model/discriminator.py``): ten 5x5 convs without bias, 32-32-64-64-128-128-
  256-256-512 channels with strides 1-2-1-2-1-4-1-4-1, then a 4x4 stride-4 conv to 512 and a 1x1 conv
  to one logit, LeakyReLU 0.2 after every conv but the last; it needs crops of 256 (one logit per
  crop). One discriminator step per generator step (the release's ``gan_k = 1``).
"""

from __future__ import annotations

from benchmark.registry import INIT_LIMIT, Lazy, Method, Training, register

register(Method(
    name="deepdeblur",
    display_name="Nah et al. [14]",
    kind="trained",
    summary="DeepDeblur (PyTorch release): 3-scale coarse-to-fine CNN, 19 ResBlocks of 64 features per "
            "scale, 5x5 kernels, conv + PixelShuffle upsampling, multi-scale L1 loss (option loss: mse+adv "
            "for the paper's multi-scale MSE + 1e-4 adversarial term).",
    build=Lazy("models.deepdeblur:build"),
    training=Training(content_loss=Lazy("models.deepdeblur:MultiScaleContent"),
                      build_critic=Lazy("models.deepdeblur:build_discriminator"), adversarial="bce",
                      adversarial_weight=1e-4),
    defaults={"scales": 3, "features": 64, "blocks": 19, "kernel": 5, "loss": "l1", "init": "official", "lr": 1e-4,
              "betas": [0.9, 0.999], "eps": 1e-8, "lr_final": 1.25e-5, "batch_size": 16, "crop": 256,
              "n_critic": 1},
    limits={"init": INIT_LIMIT, "scales": {"minimum": 1}, "features": {"minimum": 1}, "blocks": {"minimum": 0},
            "kernel": {"minimum": 1, "not": {"multipleOf": 2}}, "loss": {"enum": ["l1", "mse+adv"]}},
    deviations=(
        "Loss: by default the PyTorch release's multi-scale L1, not the paper's MSE + 1e-4 adversarial term "
        "(which option loss: mse+adv trains, with the release's discriminator and 256x256 crops).",
        "Schedule: this profile's epochs, decaying linearly to the release's final rate 1.25e-5 instead of "
        "its steps (x0.5 at epochs 500, 750 and 900 of 1000).",
        "Pyramid: 5x5 Gaussian (sigma 1) then stride 2 for the down-scaled inputs and targets.",
        "Trained on this profile's GOPRO folder (the release uses blur_gamma).",
    ),
    paper_row="Nah et al. [14]",
    load_official=Lazy("models.deepdeblur:load_official"),
))
