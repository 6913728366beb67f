"""A tiny `deblurbench train` run for the tests that kill and resume trainings (tests/test_train.py,
tests/test_kill_resume.py); the uninterrupted reference run is the `straight` fixture in conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

TRAIN = ('{"seed": 0, "epochs_constant": 2, "epochs_decay": 2, "lr": 1e-4, "lr_final": 1e-7, '
         '"betas": [0.5, 0.999], "eps": 1e-8, "n_critic": 2, "gp_weight": 10.0, "content_weight": 100.0, '
         '"perceptual_weights": "random", "perceptual_normalize": true, "batch_size": 1, "crop": 32, '
         '"val_every": 1, "log_every": 1, "checkpoint_every": 2}')


def train_cmd(data: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    """16 iterations of a one-block MSR2B GAN, a checkpoint every 2, deterministic, on the CPU."""
    return [sys.executable, "-m", "benchmark.cli", "train", "--method", "msr2b", "--method-config",
            '{"k": 1, "width": 8}', "--train", TRAIN, "--data", str(data), "--cache", str(cache),
            "--validation-images", "1", "--out", str(out), "--device", "cpu", "--threads", "1",
            "--deterministic", "--quiet", *extra]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
