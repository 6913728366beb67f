"""Shared fixtures: a tiny synthetic GOPRO-like tree and its crop cache, made once per session."""

from pathlib import Path

import pytest
import torch

from benchmark.data import build_crop_cache, gopro_pairs
from benchmark.synthetic import synthesise_gopro

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # Tests share 2 cores with each other's subprocesses; one thread each keeps timings sane.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_gopro(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "gopro"
    synthesise_gopro(root, seed=7, train_pairs=4, test_pairs=2, size=48, n_subframes=5)
    return root


@pytest.fixture(scope="session")
def tiny_cache(tiny_gopro, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("cache") / "train"
    build_crop_cache(gopro_pairs(tiny_gopro, "train"), cache)
    return cache
