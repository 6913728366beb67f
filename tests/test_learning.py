"""The learning regression test (issue 18, item 5): the one training loop must make the paper's generator learn.

Forty seeded iterations of a one-block MSR2B generator (He init, every block and the output starting as the
identity; L1 content term, Adam 2e-3 after a 5-iteration warm-up, batch 8 of 32 px crops) on eight embedded
GOPRO-like pairs, through :meth:`benchmark.train.Trainer.run`, must move three things by a fixed margin:
the content loss falls, the residual grows from exactly zero to grey levels, and the PSNR on the training
images rises above the blurred input's. Measured on the reference code (docs/measurements.md): loss -8%,
residual about 3 grey levels, PSNR +0.35 dB. Each margin is about half of that, and each of the faults this
test exists for misses at least one of them: a broken gradient (a random direction), an output detached from
the graph (backward fails), a wrong sign in the loss (the loss rises) and a frozen optimizer (nothing moves).
"""

import csv

import numpy as np
import pytest
import torch

from benchmark import registry
from benchmark.data import CropSampler, build_crop_cache, gopro_pairs, read_image
from benchmark.synthetic import synthesise_gopro
from benchmark.train import Trainer, train_settings

SETTINGS = {"seed": 0, "epochs_constant": 40, "epochs_decay": 0, "lr": 2e-3, "lr_final": 2e-3, "betas": [0.9, 0.999],
            "eps": 1e-8, "warmup_iterations": 5, "n_critic": 0, "gp_weight": 10.0, "content_weight": 1.0,
            "content": "l1", "perceptual_weights": "random", "perceptual_normalize": True, "batch_size": 8,
            "crop": 32, "val_every": 40, "log_every": 1, "checkpoint_every": 10**6, "keep_checkpoint": False,
            "quiet": True}
LOSS_FALL, RESIDUAL_GREY_LEVELS, PSNR_GAIN_DB = 0.03, 1.0, 0.15


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning") / "gopro"
    synthesise_gopro(root, seed=11, train_pairs=8, test_pairs=1, size=48, n_subframes=7, max_translation_px=6)
    cache = build_crop_cache(gopro_pairs(root, "train"), root.parent / "cache")
    return cache, [(read_image(p.blurred), read_image(p.sharp)) for p in gopro_pairs(root, "train")]


def test_the_training_loop_makes_the_generator_learn(pairs, tmp_path):
    cache, images = pairs
    method = registry.get("msr2b")
    options = method.options({"k": 1, "width": 8, "init": "he-identity"})
    trainer = Trainer(method, options, train_settings(SETTINGS, method, None), CropSampler(cache, 32, 0), tmp_path,
                      torch.device("cpu"), validation=images)
    trainer.run()
    assert trainer.iteration == 40  # 40 epochs of one batch of the 8 pairs

    with (tmp_path / "log.csv").open() as f:
        log = list(csv.DictReader(f))
    loss = np.array([float(r["loss_content"]) for r in log])
    with (tmp_path / "val.csv").open() as f:
        psnr = [float(r["psnr"]) for r in csv.DictReader(f)]
    first, last = loss[:5].mean(), loss[-5:].mean()
    residual = float(log[-1]["residual_rms"])
    print(f"loss {first:.4f} -> {last:.4f}, residual {residual:.2f} grey levels, "
          f"PSNR {psnr[0]:.2f} -> {psnr[-1]:.2f} dB")
    assert float(log[0]["residual_rms"]) < 1.0  # it starts at (almost) the identity
    assert all(float(r["grad_norm"]) > 0 for r in log)  # the generator's gradient norm, every logged iteration
    assert last < (1 - LOSS_FALL) * first, f"the content loss did not fall: {first:.4f} -> {last:.4f}"
    assert residual > RESIDUAL_GREY_LEVELS, f"the residual stayed at {residual:.3f} grey levels"
    assert psnr[-1] > psnr[0] + PSNR_GAIN_DB, f"PSNR on the training pairs {psnr[0]:.2f} -> {psnr[-1]:.2f} dB"
