"""Stand-ins for the generalisation test sets in the offline profiles (SPEC section 10): small trees in
HIDE's and RealBlur's own layouts, made by the camera-shake generator of :mod:`benchmark.synthetic`, so
that the evaluation, the official protocols and the generalisation table run for real without the
downloads. Their numbers test the pipeline, not the models, and the report says so.

They are made from the held-out photos (``synthetic.TEST_PHOTOS``; no training photo ever appears) at
other places and with other seeds than the GOPRO-like test split, and each imitates what sets its
real counterpart apart from GOPRO:

- HIDE-like: GOPRO's recipe (frames averaged as stored), with a stronger shake (HIDE's long shots of
  moving people), split over ``test-close-ups`` and ``test-long-shot`` with each sharp image in ``GT/``.
- RealBlur-like: one real exposure (the sub-frames averaged in linear light), over-exposed so that
  highlights clip, with sensor noise; and a reference that is not pixel-aligned with it (a sub-pixel
  shift) and a little darker, as RealBlur's reference camera was, which is what the official protocol's
  intensity scaling and ECC registration undo. ``-J`` stores gamma-encoded images passed through JPEG
  (quality 90, as a camera's JPEG engine would); ``-R`` stores linear, darker values (RealBlur-R's raw
  images). Scenes and frame numbers are the first entries of the official test list, so the pairs are
  named as RealBlur's are.

Everything is seeded: a pair depends only on the seed and its place.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from benchmark.data import REALBLUR_FOLDERS, realblur_test_list, write_image
from benchmark.synthetic import PHOTOS, TEST_PHOTOS, CameraShake, _build_atomically, load_photo, quantise

HIDE_SHAKE = 1.5  # HIDE's shake against the GOPRO-like set's: a longer path
REALBLUR_EXPOSURE = 1.3  # over-exposure: linear values above 1 / 1.3 clip
REALBLUR_NOISE = 2.0  # sensor noise, grey levels (0-255) on the gamma-encoded exposure
REALBLUR_REFERENCE_GAIN = 0.9  # the reference camera's exposure against the blurred one's
REALBLUR_SHIFT_PX = 0.75  # the largest misalignment of the reference, pixels in x and y
JPEG_QUALITY = 90
_CODES = {"hide": 11, "realblur": 12}  # keep these seeds apart from the GOPRO-like and Köhler-like sets


def _window(photo: np.ndarray, rng: np.random.Generator, size: int) -> tuple[int, int]:
    return int(rng.integers(0, photo.shape[0] - size + 1)), int(rng.integers(0, photo.shape[1] - size + 1))


def _check(pairs: int, size: int) -> None:
    if pairs < 1:
        raise ValueError(f"a stand-in set needs at least one pair, not {pairs}")
    for name in TEST_PHOTOS:
        if not 16 <= size <= min(load_photo(name).shape[:2]):
            raise ValueError(f"stand-in size {size} does not fit photo {name!r} (and RealBlur's SSIM needs > 11 px)")


def synthesise_hide(root: str | os.PathLike[str], *, seed: int, pairs: int, size: int, n_subframes: int = 9,
                    max_translation_px: float = 4.0) -> dict[str, Any]:
    """A HIDE-layout tree ``<root>/test/{test-close-ups,test-long-shot}/<k>fromSYN_<photo>.png`` with each
    sharp image of the same name in ``<root>/GT/``. Returns a JSON-ready summary."""
    _check(pairs, size)
    shake = CameraShake(n_subframes=n_subframes, max_translation_px=HIDE_SHAKE * max_translation_px)

    def fill(tmp: Path) -> dict[str, Any]:
        for k in range(pairs):
            photo_name = TEST_PHOTOS[k % len(TEST_PHOTOS)]
            photo = load_photo(photo_name)
            rng = np.random.default_rng([seed, _CODES["hide"], list(PHOTOS).index(photo_name), k])
            top, left = _window(photo, rng, size)
            exposure = shake.render(photo, top, left, size, size, shake.sample_path(rng))
            name = f"{k + 1}fromSYN_{photo_name}.png"
            subset = "test-close-ups" if k % 2 == 0 else "test-long-shot"
            write_image(tmp / "test" / subset / name, exposure.blur)
            write_image(tmp / "GT" / name, exposure.sharp)
        return {"layout": "hide", "root": str(root), "pairs": pairs, "size": size, "shake_factor": HIDE_SHAKE,
                "photos": list(TEST_PHOTOS)}

    return _build_atomically(Path(root), fill)


def _jpeg(image: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8)


def synthesise_realblur(root: str | os.PathLike[str], *, seed: int, pairs: int, size: int, n_subframes: int = 9,
                        max_translation_px: float = 4.0) -> dict[str, Any]:
    """RealBlur-J and -R layout trees under ``root``: ``<folder>/<scene>/{blur/blur_<K>,gt/gt_<K>}.png`` for the
    first ``pairs`` entries of the official test list, the same scenes in both. Returns a JSON-ready summary."""
    _check(pairs, size)
    shake = CameraShake(n_subframes=n_subframes, max_translation_px=max_translation_px)
    listed = realblur_test_list()[:pairs]

    def fill(tmp: Path) -> dict[str, Any]:
        for k, (scene, frame) in enumerate(listed):
            photo_name = TEST_PHOTOS[k % len(TEST_PHOTOS)]
            photo = load_photo(photo_name)
            rng = np.random.default_rng([seed, _CODES["realblur"], list(PHOTOS).index(photo_name), k])
            top, left = _window(photo, rng, size)
            exposure = shake.render(photo, top, left, size, size, shake.sample_path(rng))
            linear = np.clip(exposure.blur_gamma.astype(np.float64) / 255.0, 0, 1) ** 2.2 * REALBLUR_EXPOSURE
            encoded = np.clip(linear, 0, 1) ** (1 / 2.2) + rng.normal(0, REALBLUR_NOISE / 255.0, linear.shape)
            blurred = quantise(np.clip(encoded, 0, 1))
            shift = rng.uniform(-REALBLUR_SHIFT_PX, REALBLUR_SHIFT_PX, size=2)
            sharp = exposure.sharp.astype(np.float64) / 255.0
            moved = np.stack([ndimage.shift(sharp[..., c], shift, order=1, mode="nearest") for c in range(3)], -1)
            reference = np.clip(moved, 0, 1) * REALBLUR_REFERENCE_GAIN
            for variant, folder in REALBLUR_FOLDERS.items():
                if variant == "J":
                    blur_out, gt_out = _jpeg(blurred), quantise(reference)
                else:  # raw: linear light, so darker
                    blur_out = quantise((blurred.astype(np.float64) / 255.0) ** 2.2)
                    gt_out = quantise(reference ** 2.2)
                write_image(tmp / folder / scene / "blur" / f"blur_{frame}.png", blur_out)
                write_image(tmp / folder / scene / "gt" / f"gt_{frame}.png", gt_out)
        return {"layout": "realblur", "root": str(root), "pairs": pairs, "size": size,
                "scenes": [s for s, _ in listed], "exposure": REALBLUR_EXPOSURE, "noise": REALBLUR_NOISE,
                "reference_gain": REALBLUR_REFERENCE_GAIN, "shift_px": REALBLUR_SHIFT_PX, "jpeg_quality": JPEG_QUALITY,
                "photos": list(TEST_PHOTOS)}

    return _build_atomically(Path(root), fill)
