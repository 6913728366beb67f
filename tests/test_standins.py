"""The offline stand-ins of HIDE and RealBlur (benchmark/standins.py): the real layouts (paired by the same
code as the downloads), made from the held-out photos only, deterministic, and RealBlur-like in what its
protocol undoes (a darker, misaligned reference)."""

import numpy as np

from benchmark import testsets
from benchmark.data import REALBLUR_FOLDERS, read_image, realblur_test_list
from benchmark.metrics import realblur_score
from benchmark.standins import REALBLUR_REFERENCE_GAIN, synthesise_hide, synthesise_realblur
from benchmark.synthetic import TEST_PHOTOS


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_hide_stand_in_has_hides_layout_from_held_out_photos(tmp_path):
    synthesise_hide(tmp_path / "h", seed=3, pairs=5, size=48)
    pairs = testsets.pairs("hide", tmp_path / "h", "structure")
    assert len(pairs) == 5 and all(p.sharp.parent.name == "GT" for p in pairs)
    assert {p.blurred.parent.name for p in pairs} == {"test-close-ups", "test-long-shot"}
    assert {p.name.split("fromSYN_")[1][:-4] for p in pairs} <= set(TEST_PHOTOS)
    synthesise_hide(tmp_path / "again", seed=3, pairs=5, size=48)
    assert _files(tmp_path / "h") == _files(tmp_path / "again")


def test_realblur_stand_in_is_named_from_the_official_list_and_needs_its_alignment(tmp_path):
    synthesise_realblur(tmp_path / "r", seed=3, pairs=3, size=64)
    listed = realblur_test_list()[:3]
    for variant in ("realblur-j", "realblur-r"):
        pairs = testsets.pairs(variant, tmp_path / "r", "structure")
        assert [(p.seq, p.name) for p in pairs] == sorted((s, f"blur_{k}.png") for s, k in listed)
    assert set(REALBLUR_FOLDERS.values()) == {p.name for p in (tmp_path / "r").iterdir()}
    pair = testsets.pairs("realblur-j", tmp_path / "r", "structure")[0]
    blurred, reference = read_image(pair.blurred), read_image(pair.sharp)
    # the reference is darker than the exposure (the protocol's scale undoes it) and registration converges
    assert reference.mean() < blurred.mean()
    scored = realblur_score(blurred, reference)
    assert scored["ecc_converged"] and scored["scale"] < 1.0
    raw = read_image(testsets.pairs("realblur-r", tmp_path / "r", "structure")[0].blurred)
    assert raw.mean() < blurred.mean() * 0.8 and REALBLUR_REFERENCE_GAIN < 1  # -R: linear values, darker
    assert not np.array_equal(raw, blurred)
