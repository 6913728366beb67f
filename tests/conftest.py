"""Shared fixtures, made once per session: a tiny synthetic GOPRO-like tree and its crop cache, and
the smoke workflow run locally (which the SLURM test compares its own run with)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from training_run import train_cmd
from workflow_run import readme_example, snakemake

from benchmark.data import build_crop_cache, gopro_pairs
from benchmark.synthetic import synthesise_gopro

REPO = Path(__file__).resolve().parents[1]


# Fixtures whose one run many tests share, in their collection order (the seeds test adds to the smoke run's
# results last): under pytest-xdist (pyproject.toml) each group runs on one worker, so each runs once.
SHARED_RUNS = {"smoke_run": "smoke", "paper_run": "paper"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        group = next((SHARED_RUNS[f] for f in getattr(item, "fixturenames", ()) if f in SHARED_RUNS), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


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


@pytest.fixture(scope="session")
def plugin_env(tmp_path_factory) -> dict:
    """The README's example method, installed as its own package (entry point) into a private folder."""
    pkg, site = tmp_path_factory.mktemp("pkg"), tmp_path_factory.mktemp("site")
    (pkg / "my_unsharp.py").write_text(readme_example())
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "my-unsharp"\nversion = "0.1"\n'
        '[project.entry-points."deblurbench.methods"]\nunsharp = "my_unsharp"\n'
        '[tool.setuptools]\npy-modules = ["my_unsharp"]\n')
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(pkg)], check=True, capture_output=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, plugin_env):
    """The smoke DAG run locally with `--cores 2`: (results/smoke, the working folder)."""
    workdir = tmp_path_factory.mktemp("smoke")
    start = time.perf_counter()
    result = snakemake(workdir, "--cores", "2", "--config", "profile=smoke", env=plugin_env)
    elapsed = time.perf_counter() - start  # printed only: tests never assert a wall time
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in (workdir / "results/smoke/logs").glob("*.log")
                     if "rror" in p.read_text())
    assert result.returncode == 0, f"{result.stderr[-4000:]}\n{logs}"
    (workdir / "snakemake.out").write_text(result.stdout + result.stderr)  # what the user saw
    print(f"smoke profile: {elapsed:.1f} s")
    return workdir / "results" / "smoke", workdir


@pytest.fixture(scope="session")
def straight(tiny_gopro, tiny_cache, tmp_path_factory):
    """An uninterrupted tiny training (tests/training_run.py): the reference that killed and resumed
    runs must match bit for bit."""
    out = tmp_path_factory.mktemp("straight")
    subprocess.run(train_cmd(tiny_gopro, tiny_cache, out), check=True)
    return out
