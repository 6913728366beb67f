"""Files and folders the suite writes get the mode the user's umask gives (0644 / 0755 under 022), not
the private 0600 / 0700 of mkstemp and mkdtemp, `deblur`'s outputs and the synthetic data included."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.data import build_crop_cache, gopro_pairs, write_image
from benchmark.files import staged_dir, umask, write_text_atomic
from benchmark.synthetic import synthesise_gopro


@pytest.fixture(params=[0o022, 0o027])
def mask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(root: Path) -> set[tuple[str, int]]:
    return {("folder" if p.is_dir() else "file", _mode(p)) for p in [root, *root.rglob("*")]}


def test_umask_is_read_without_changing_it(mask):
    assert umask() == mask
    assert os.umask(mask) == mask  # still in force


def test_every_writer_respects_the_umask(tmp_path, mask):
    file_mode, folder_mode = 0o666 & ~mask, 0o777 & ~mask
    image = np.zeros((8, 8, 3), np.uint8)
    write_image(tmp_path / "a.png", image)
    write_text_atomic(tmp_path / "a.json", "{}")
    assert _mode(tmp_path / "a.png") == _mode(tmp_path / "a.json") == file_mode
    with staged_dir(tmp_path / "staged") as tmp:
        write_image(tmp / "x" / "b.png", image)
    synthesise_gopro(tmp_path / "gopro", seed=0, train_pairs=2, test_pairs=1, size=16, n_subframes=3)
    build_crop_cache(gopro_pairs(tmp_path / "gopro", "train"), tmp_path / "cache")
    for folder in ("staged", "gopro", "cache"):
        assert _modes(tmp_path / folder) <= {("file", file_mode), ("folder", folder_mode)}, folder


def test_deblur_outputs_respect_the_umask(tmp_path, mask, capsys):
    write_image(tmp_path / "photo.png", np.full((12, 16, 3), 120, np.uint8))
    assert main(["deblur", str(tmp_path / "photo.png"), "--method", "blurred"]) == 0
    outputs = [p for p in tmp_path.iterdir() if p.name != "photo.png"]
    assert len(outputs) == 1 and _mode(outputs[0]) == 0o666 & ~mask
