"""Synthetic camera shake, the GOPRO / Köhler readers, image I/O and the crop cache."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.data import (
    CropCache,
    CropSampler,
    build_crop_cache,
    gopro_pairs,
    kohler_items,
    read_image,
    read_image_with_note,
    write_image,
)
from benchmark.synthetic import (
    PHOTOS,
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    CameraPath,
    CameraShake,
    check_photo_split,
    load_photo,
    synthesise_gopro,
    synthesise_kohler,
)

TINY = {"train_pairs": 5, "test_pairs": 2, "size": 32, "n_subframes": 5}


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _gradient_energy(image: np.ndarray) -> float:
    x = image.astype(np.float64)
    return float((np.diff(x, axis=0) ** 2).mean() + (np.diff(x, axis=1) ** 2).mean())


def _find_in_photo(photo: np.ndarray, crop: np.ndarray) -> list[tuple[int, int]]:
    """Every place where ``crop`` occurs exactly in ``photo``."""
    h, w = crop.shape[:2]
    corners = photo[: photo.shape[0] - h + 1, : photo.shape[1] - w + 1]
    candidates = np.argwhere((corners == crop[0, 0]).all(-1))
    return [(int(y), int(x)) for y, x in candidates if np.array_equal(photo[y:y + h, x:x + w], crop)]


@pytest.fixture(scope="module")
def gopro_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("syn") / "gopro"
    return root, synthesise_gopro(root, seed=7, **TINY)


# -- synthetic data -------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_other_bytes(gopro_tree, tmp_path):
    root, _ = gopro_tree
    synthesise_gopro(tmp_path / "again", seed=7, **TINY)
    synthesise_gopro(tmp_path / "other", seed=8, **TINY)
    reference = _tree_bytes(root)
    again, other = _tree_bytes(tmp_path / "again"), _tree_bytes(tmp_path / "other")
    assert reference == again
    assert reference.keys() == other.keys()
    assert all(reference[k] != other[k] for k in reference if "/blur/" in k)


def test_rebuild_replaces_the_tree_without_leftovers(tmp_path):
    root = tmp_path / "gopro"
    synthesise_gopro(root, seed=1, **{**TINY, "train_pairs": 10})
    synthesise_gopro(root, seed=1, **TINY)
    assert len(gopro_pairs(root, "train")) == TINY["train_pairs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gopro"]


def test_train_and_test_photos_are_disjoint(gopro_tree):
    _, summary = gopro_tree
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    assert set(TRAIN_PHOTOS) | set(TEST_PHOTOS) == set(PHOTOS)
    assert summary["splits"]["train"]["photos"] == list(TRAIN_PHOTOS)
    train_seqs, test_seqs = summary["splits"]["train"]["sequences"], summary["splits"]["test"]["sequences"]
    assert not set(train_seqs) & set(test_seqs)
    assert sum(train_seqs.values()) == TINY["train_pairs"] and sum(test_seqs.values()) == TINY["test_pairs"]
    with pytest.raises(ValueError, match="motorcycle"):
        check_photo_split(["motorcycle_left"], ["motorcycle_right"])
    with pytest.raises(ValueError, match="chelsea"):
        check_photo_split(["chelsea", "rocket"], ["chelsea"])
    with pytest.raises(ValueError, match="eagle"):
        synthesise_gopro(Path("unused"), seed=0, train_photos=["eagle"], **TINY)


def test_sharp_target_is_an_untouched_photo_crop(gopro_tree):
    root, _ = gopro_tree
    for split, photos in (("train", TRAIN_PHOTOS), ("test", TEST_PHOTOS)):
        for pair in gopro_pairs(root, split):
            photo = load_photo(pair.seq.removeprefix("SYN_"))
            assert pair.seq.removeprefix("SYN_") in photos
            assert _find_in_photo(photo, read_image(pair.sharp)), pair


def test_middle_subframe_is_the_target_and_others_move():
    photo = load_photo("chelsea")
    shake = CameraShake(n_subframes=7)
    path = shake.sample_path(np.random.default_rng(3))
    exposure = shake.render(photo, 100, 150, 40, 48, path)
    assert exposure.frames.shape == (7, 40, 48, 3)
    np.testing.assert_array_equal(exposure.sharp, photo[100:140, 150:198])
    np.testing.assert_array_equal(exposure.frames[3], exposure.sharp)
    assert all(not np.array_equal(exposure.frames[k], exposure.sharp) for k in (0, 6))
    assert path.angles_deg[3] == 0 and np.all(path.shifts_px[3] == 0)
    assert np.abs(path.angles_deg).max() <= shake.max_rotation_deg + 1e-9
    assert np.hypot(*path.shifts_px.T).max() <= shake.max_translation_px + 1e-9


def test_integer_translation_matches_hand_computed_average():
    """Pure whole-pixel shifts: each sub-frame is a shifted slice, and both blur versions follow
    the GOPRO formulas (plain average of sRGB frames; gamma 2.2 average)."""
    photo = load_photo("coffee")
    shifts = np.array([[-2.0, 1.0], [-1.0, 0.0], [0.0, 0.0], [3.0, -1.0], [4.0, -2.0]])
    path = CameraPath(angles_deg=np.zeros(5), shifts_px=shifts)
    top, left, h, w = 50, 60, 24, 30
    exposure = CameraShake(n_subframes=5).render(photo, top, left, h, w, path)
    slices = [photo[top - int(dy):top - int(dy) + h, left - int(dx):left - int(dx) + w] for dx, dy in shifts]
    for frame, expected in zip(exposure.frames, slices, strict=True):
        np.testing.assert_array_equal(frame, expected)
    stack = np.stack(slices).astype(np.float64) / 255.0
    expected_blur = np.round(stack.mean(0) * 255.0)
    expected_gamma = np.round(((stack ** 2.2).mean(0) ** (1 / 2.2)) * 255.0)
    assert np.abs(exposure.blur.astype(float) - expected_blur).max() <= 1
    assert np.mean(exposure.blur.astype(float) == expected_blur) > 0.99
    assert np.abs(exposure.blur_gamma.astype(float) - expected_gamma).max() <= 1
    assert np.mean(exposure.blur_gamma.astype(float) == expected_gamma) > 0.99


def test_blur_is_a_real_blur(gopro_tree):
    root, _ = gopro_tree
    for pair in gopro_pairs(root, "train"):
        sharp, blur = read_image(pair.sharp), read_image(pair.blurred)
        blur_gamma = read_image(pair.sharp.parent.parent / "blur_gamma" / pair.name)
        assert _gradient_energy(blur) < 0.9 * _gradient_energy(sharp), pair
        # The power mean with exponent 2.2 is never below the arithmetic mean.
        assert (blur_gamma.astype(int) - blur.astype(int)).min() >= -1
        assert blur_gamma.astype(float).mean() > blur.astype(float).mean()


def test_kohler_layout_and_frames(tmp_path):
    summary = synthesise_kohler(tmp_path / "kohler", seed=3, n_paths=3, size=32, n_subframes=11)
    items = kohler_items(tmp_path / "kohler")
    assert summary["images"] == 6
    assert [(k.image, k.kernel) for k in items] == [(i, j) for i in (1, 2) for j in (1, 2, 3)]
    for item in items:
        assert item.blurred == tmp_path / "kohler" / "BlurryImages" / f"Blurry{item.image}_{item.kernel}.png"
        assert [f.name for f in item.frames] == [f"GroundTruth{item.image}_{item.kernel}_{n}.png"
                                                for n in range(1, 12)]
        photo = load_photo(TEST_PHOTOS[item.image - 1])
        top, left = (photo.shape[0] - 32) // 2, (photo.shape[1] - 32) // 2
        np.testing.assert_array_equal(read_image(item.frames[5]), photo[top:top + 32, left:left + 32])


# -- readers --------------------------------------------------------------------------------------
def test_gopro_pairs_reads_the_tree(gopro_tree):
    root, summary = gopro_tree
    train = gopro_pairs(root, "train")
    assert len(train) == TINY["train_pairs"]
    assert train == sorted(train, key=lambda p: (p.seq, p.name))
    for pair in train:
        assert pair.blurred == root / "train" / pair.seq / "blur" / pair.name
        assert pair.sharp == root / "train" / pair.seq / "sharp" / pair.name
        assert len(pair.name) == len("000000.png")
    gamma = gopro_pairs(root, "test", "blur_gamma")
    assert [p.blurred.parent.name for p in gamma] == ["blur_gamma"] * TINY["test_pairs"]
    counts = {seq: sum(p.seq == seq for p in gamma) for seq in summary["splits"]["test"]["sequences"]}
    assert counts == summary["splits"]["test"]["sequences"]


def test_gopro_pairs_wrong_layout(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(FileNotFoundError, match="train"):
        gopro_pairs(tmp_path, "train")
    write_image(tmp_path / "train" / "SEQ" / "blur" / "000001.png", image)
    with pytest.raises(FileNotFoundError, match=r"SEQ/sharp"):
        gopro_pairs(tmp_path, "train")
    write_image(tmp_path / "train" / "SEQ" / "sharp" / "000002.png", image)
    with pytest.raises(ValueError, match=r"SEQ.*000001\.png.*000002\.png"):
        gopro_pairs(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="blur_gamma"):
        gopro_pairs(tmp_path, "train", "blur_gamma")


def test_kohler_items_wrong_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="BlurryImages"):
        kohler_items(tmp_path)
    write_image(tmp_path / "BlurryImages" / "Blurry1_2.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"Image1/Kernel2"):
        kohler_items(tmp_path)


def test_read_image_conversions(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    array, note = read_image_with_note(tmp_path / "gray.png")
    assert array.shape == (5, 7, 3) and note == "converted grayscale to RGB"
    assert all(np.array_equal(array[..., c], gray) for c in range(3))

    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    array, note = read_image_with_note(tmp_path / "rgba.png")
    assert note == "dropped alpha channel"
    np.testing.assert_array_equal(array, rgba[..., :3])
    with pytest.raises(ValueError, match="rgba.png"):
        read_image(tmp_path / "rgba.png", convert=False)

    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    array, note = read_image_with_note(tmp_path / "deep.png")
    assert "16-bit" in note
    np.testing.assert_array_equal(array[..., 0], np.round(deep / 257.0).astype(np.uint8))

    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    write_image(tmp_path / "sub" / "rgb.png", rgb)
    array, note = read_image_with_note(tmp_path / "sub" / "rgb.png")
    assert note is None
    np.testing.assert_array_equal(array, rgb)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["rgb.png"]

    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="notes.png"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="bad.png"):
        write_image(tmp_path / "bad.png", rgb.astype(np.float32))


# -- crop cache -----------------------------------------------------------------------------------
def _position_tree(root: Path, sizes: list[tuple[int, int]]) -> None:
    """Pairs whose sharp pixel at (y, x) is (y, x, 20 * pair) and whose blurred image is its negative,
    so a crop tells where it was cut and from which pair."""
    for index, (h, w) in enumerate(sizes):
        y, x = np.mgrid[0:h, 0:w]
        sharp = np.stack([y, x, np.full_like(y, 20 * index)], axis=-1).astype(np.uint8)
        write_image(root / "train" / f"S{index // 3}" / "sharp" / f"{index:06d}.png", sharp)
        write_image(root / "train" / f"S{index // 3}" / "blur" / f"{index:06d}.png", 255 - sharp)


def _as_uint8(t: torch.Tensor) -> np.ndarray:
    return torch.round((t + 1) * 127.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.fixture
def position_cache(tmp_path: Path) -> Path:
    _position_tree(tmp_path / "data", [(40, 50)] * 7)
    return build_crop_cache(gopro_pairs(tmp_path / "data", "train"), tmp_path / "cache")


def test_crops_are_aligned_and_cover_each_pair_once_per_epoch(position_cache):
    assert CropCache(position_cache).layout == "stack"
    sampler = CropSampler(position_cache, crop=16, seed=0)
    assert len(sampler) == 7
    for epoch in range(2):
        seen = []
        for batch_size in (3, 3, 3):  # the third batch is the epoch's short last one (7 = 3 + 3 + 1)
            blurred, sharp = sampler.next_batch(batch_size)
            assert blurred.dtype == torch.float32 and blurred.shape[1:] == (3, 16, 16)
            torch.testing.assert_close(blurred, -sharp, atol=1e-6, rtol=0)
            crops = _as_uint8(sharp)
            for crop in crops:
                top, left, index = int(crop[0, 0, 0]), int(crop[0, 0, 1]), int(crop[0, 0, 2]) // 20
                assert 0 <= top <= 40 - 16 and 0 <= left <= 50 - 16
                y, x = np.mgrid[top:top + 16, left:left + 16]
                assert (crop[..., 2] == 20 * index).all()
                np.testing.assert_array_equal(crop[..., 0], y)
                np.testing.assert_array_equal(crop[..., 1], x)
                seen.append(index)
        assert sorted(seen) == list(range(7))
        assert sampler.epoch == epoch + 1 and sampler.position == 0
    assert blurred.shape[0] == 1


def test_sampler_is_seeded_and_resumes_exactly(position_cache):
    first = CropSampler(position_cache, crop=16, seed=5)
    same = CropSampler(position_cache, crop=16, seed=5)
    other = CropSampler(position_cache, crop=16, seed=6)
    # 7 pairs in batches of 2: 2, 2, 2, 1 make epoch 0, then one batch into epoch 1.
    a = [first.next_batch(2)[1] for _ in range(5)]
    b = [same.next_batch(2)[1] for _ in range(5)]
    c = [other.next_batch(2)[1] for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))

    buffer = io.BytesIO()
    torch.save({"sampler": first.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["sampler"]
    expected = [first.next_batch(2) for _ in range(6)]
    resumed = CropSampler(position_cache, crop=16, seed=5)
    resumed.load_state_dict(state)
    assert (resumed.epoch, resumed.position) == (state["epoch"], state["position"]) == (1, 2)
    for (eb, es), (rb, rs) in zip(expected, [resumed.next_batch(2) for _ in range(6)], strict=True):
        assert torch.equal(eb, rb) and torch.equal(es, rs)
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(state)


def test_random_flip_keeps_pairs_aligned(position_cache):
    sampler = CropSampler(position_cache, crop=16, seed=1, random_flip=True)
    directions = set()
    for _ in range(6):
        blurred, sharp = sampler.next_batch(7)
        torch.testing.assert_close(blurred, -sharp, atol=1e-6, rtol=0)
        for crop in _as_uint8(sharp):
            directions.add((int(np.sign(np.diff(crop[:, 0, 0].astype(int)).mean())),
                            int(np.sign(np.diff(crop[0, :, 1].astype(int)).mean()))))
    assert directions == {(1, 1), (1, -1), (-1, 1), (-1, -1)}


def test_mixed_sizes_and_too_small_images(tmp_path):
    _position_tree(tmp_path / "data", [(40, 50), (30, 26), (24, 60)])
    cache = build_crop_cache(gopro_pairs(tmp_path / "data", "train"), tmp_path / "cache")
    assert CropCache(cache).layout == "per_pair"
    sampler = CropSampler(cache, crop=20, seed=0)
    blurred, sharp = sampler.next_batch(3)
    assert sorted(int(v) // 20 for v in _as_uint8(sharp)[:, 0, 0, 2]) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"S0/000002\.png.*smaller"):
        CropSampler(cache, crop=25, seed=0)
    with pytest.raises(FileNotFoundError, match="index.json"):
        CropSampler(tmp_path / "data", crop=8, seed=0)


def test_cache_refuses_pairs_of_different_sizes(tmp_path):
    write_image(tmp_path / "train" / "S" / "blur" / "000001.png", np.zeros((8, 9, 3), np.uint8))
    write_image(tmp_path / "train" / "S" / "sharp" / "000001.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"S/000001\.png"):
        build_crop_cache(gopro_pairs(tmp_path, "train"), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


# -- every mode Pillow opens, read as the intensities it means (issue 20) --------------------------------
def _png16(path: Path, colour_type: int, values: np.ndarray) -> Path:
    """A 16-bit PNG written by hand (Pillow writes none with colour): colour type 0 gray, 2 RGB, 4 gray+alpha."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    height, width = values.shape[:2]
    rows = b"".join(b"\0" + values[y].astype(">u2").tobytes() for y in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type,
                                                                          0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(("name", "make", "grey", "note"), [
    ("f.tif", lambda p: Image.fromarray(np.full((4, 5), 0.5, np.float32)).save(p), 128, "floating-point"),
    ("i.tif", lambda p: Image.fromarray(np.full((4, 5), 32896, np.int32)).save(p), 128, "16-bit grayscale (I)"),
    ("g16.png", lambda p: _png16(p, 0, np.full((4, 5), 32896)), 128, "16-bit grayscale (I;16)"),
    ("rgb16.png", lambda p: _png16(p, 2, np.full((4, 5, 3), 32896)), 128, "16 bits per channel"),
    ("la16.png", lambda p: _png16(p, 4, np.full((4, 5, 2), 65535)), 255, "dropped alpha"),
    ("one.png", lambda p: Image.new("1", (5, 4), 1).save(p), 255, "grayscale"),
    ("lab.tif", lambda p: Image.merge("LAB", [Image.new("L", (5, 4), v) for v in (255, 128, 128)]).save(p), 254,
     "LAB"),
    ("ycc.tif", lambda p: Image.new("YCbCr", (5, 4), (128, 128, 128)).save(p), 128, "YCbCr"),
    ("cmyk.tif", lambda p: Image.new("CMYK", (5, 4), (0, 0, 0, 127)).save(p), 128, "CMYK"),
    ("pa.tif", lambda p: Image.new("PA", (5, 4)).save(p), 0, "palette"),
])
def test_every_mode_is_read_as_the_intensities_it_means(tmp_path, name, make, grey, note):
    """Defects: a float image in [0, 1] came out black, 32-bit integers white, 16-bit RGB lost bits silently."""
    path = tmp_path / name
    make(path)
    array, said = read_image_with_note(path)
    assert array.shape == (4, 5, 3) and array.dtype == np.uint8
    assert abs(int(array[0, 0, 0]) - grey) <= 1 and note in said


@pytest.mark.parametrize(("values", "named"), [
    (np.full((4, 5), 2.0, np.float32), "not in [0, 1]"),
    (np.array([[np.nan, 0.5]], np.float32), "and NaN"),
    (np.full((4, 5), 70000, np.int32), "beyond the 16-bit range"),
    (np.full((4, 5), -3, np.int32), "beyond the 16-bit range"),
])
def test_modes_without_a_known_range_are_refused_in_one_line(tmp_path, values, named):
    Image.fromarray(values).save(tmp_path / "x.tif")
    with pytest.raises(ValueError, match=f"x.tif: unreadable image .*{re.escape(named)}"):
        read_image_with_note(tmp_path / "x.tif")
