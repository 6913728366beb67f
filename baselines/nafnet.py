"""Chen et al., NAFNet (ECCV 2022, "Simple Baselines for Image Restoration"), as megvii-research/NAFNet builds it.

A U-Net of NAFBlocks: 3x3 intro conv -> four encoder stages (NAFBlocks, then a 2x2 stride-2 conv
doubling the channels) -> middle NAFBlocks -> four decoder stages (1x1 conv to twice the channels +
PixelShuffle(2), plus the encoder skip, then NAFBlocks) -> 3x3 ending conv, plus the input. A NAFBlock
is LayerNorm2d -> 1x1 conv (x2 channels) -> 3x3 depth-wise conv -> SimpleGate (split in two halves,
multiply) -> simplified channel attention (global average pool, 1x1 conv, multiply) -> 1x1 conv,
scaled by ``beta`` and added; then LayerNorm2d -> 1x1 conv (x2) -> SimpleGate -> 1x1 conv, scaled by
``gamma`` and added. The network works on [0, 1] images (``value_range``) and zero-pads them
internally to a multiple of 2^stages (16), cropping the output back.

GoPro configurations (``options/test/GoPro/NAFNet-width{32,64}.yml``): width 32 or 64, encoder blocks
[1, 1, 1, 28], one middle block, decoder blocks [1, 1, 1, 1]; 17,111,907 and 67,888,835 parameters.
Parameter names follow the official ``NAFNet_arch.py`` so the released ``{'params': state_dict}`` files
load strictly.

Option ``local`` (default true, as the official GoPro test configuration's ``NAFNetLocal``): the test-time
local statistics of Chu et al. (TLC, arXiv:2112.04491), in which every channel-attention pool averages a
window of 1.5 x the training size (scaled to the stage's resolution) around each pixel instead of the whole
image; ``train_size`` (256) sets that window. At the training size or below it is the global pool.

Training (``options/train/GoPro/NAFNet-width64.yml``): PSNR loss ``10/ln(10) * log(MSE + 1e-8)`` on [0, 1],
lr 1e-3, betas (0.9, 0.9), decaying to 1e-7.
"""

from __future__ import annotations

from benchmark.registry import INIT_LIMIT, Lazy, Method, Training, register

register(Method(
    name="nafnet",
    display_name="Chen et al. (NAFNet)",
    kind="trained",
    summary="NAFNet (ECCV 2022, official code): U-Net of NAFBlocks (LayerNorm, depth-wise conv, SimpleGate, "
            "simplified channel attention), GoPro configuration width 64 (option width: 32 for the smaller "
            "release), encoder blocks [1, 1, 1, 28]; [0, 1] images; PSNR loss; option local: TLC test-time pool.",
    build=Lazy("models.nafnet:build"),
    training=Training(content_loss=Lazy("models.nafnet:PSNRLoss"), prepare_batch=Lazy("models.nafnet:to_unit_range")),
    defaults={"width": 64, "enc_blk_nums": [1, 1, 1, 28], "middle_blk_num": 1, "dec_blk_nums": [1, 1, 1, 1],
              "local": True, "train_size": 256, "init": "official", "lr": 1e-3, "betas": [0.9, 0.9], "eps": 1e-8,
              "lr_final": 1e-7, "batch_size": 64, "crop": 256},
    limits={"width": {"minimum": 1}, "enc_blk_nums": {"minItems": 1, "items": {"minimum": 0}},
            "middle_blk_num": {"minimum": 0}, "dec_blk_nums": {"minItems": 1, "items": {"minimum": 0}},
            "train_size": {"minimum": 1}, "init": INIT_LIMIT},
    deviations=(
        "Trained by this suite's loop: Adam without weight decay (the official AdamW has 1e-3) and this "
        "profile's epochs with a linear decay to 1e-7 (official: cosine over 400k iterations, batch 64 of 256 "
        "crops with flips and rotations). Its main use here is the authors' released weights.",
        "Option local (default true, the official GoPro test's NAFNetLocal): exact integral-image local pooling "
        "(the official fast_imp: false path); local: false uses the global pool of plain NAFNet.",
    ),
    paper_row=None,
    load_official=Lazy("models.nafnet:load_official"),
))
