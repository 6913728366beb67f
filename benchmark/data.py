"""Dataset readers, image I/O and the random-crop cache used for training.

Layouts read here (``research/deblur-facts.md`` §5-6):

- GOPRO: ``<root>/{train,test}/<sequence>/{blur,blur_gamma,sharp}/NNNNNN.png``, the same file
  name in the blurred folder and in ``sharp``.
- Köhler: ``<root>/BlurryImages/Blurry{i}_{j}.png`` and its ground-truth frames
  ``<root>/Image{i}/Kernel{j}/GroundTruth{i}_{j}_{frame}.png`` (frame counted from 1).
- HIDE (``research/generalisation-testsets.md`` §1): ``<root>/test/{test-close-ups,test-long-shot}/<name>``
  with the sharp image of the same name in ``<root>/GT/`` (``HIDE_dataset.zip``), or ``<root>/{input,target}/<name>``
  (the MPRNet / Restormer copy of the 2,025 test pairs).
- RealBlur-J / -R (§2): ``<root>/RealBlur-J_ECC_IMCORR_centroid_itensity_ref/scene<N>/{blur/blur_<K>,gt/gt_<K>}.png``
  (``-R``: ``RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref``), the 980 test pairs of each named by the official
  test list (``realblur_test_list.json``); or ``<root>/RealBlur_{J,R}/{input,target}/<name>`` (the Restormer copies)
  whose names must still name the listed scenes and frames.

Every pair is matched by name, never by position: a missing or extra file is a :class:`PairingError` naming
how many and the first few, never a shifted pairing.

The crop cache (:func:`build_crop_cache`, :class:`CropCache`, :class:`CropSampler`) decodes a
split once into uint8 ``.npy`` files that are memory-mapped, so a training step costs one slice
copy rather than two PNG decodes of a 1280x720 image.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from benchmark.files import give_default_mode, sweep_stale, temporary_sibling

if TYPE_CHECKING:  # torch is imported where a batch is made: scoring and synthesis never load it
    import torch

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
GOPRO_SPLITS = ("train", "test")


# -- image I/O ------------------------------------------------------------------------------------
def _to_rgb(image: Image.Image, rawmode: str = "") -> tuple[np.ndarray, str | None]:
    """The pixels of a decoded PIL image as uint8 HxWx3 RGB, and what had to change to get there.

    Every mode is read as the intensities it means, not its bit pattern: 16-bit samples are scaled by
    255/65535 (Pillow already keeps the high byte of a 16-bit-per-channel RGB or RGBA PNG, ``rawmode`` says
    so and the note too), 32-bit integers must lie in the 16-bit range and floating point in [0, 1] (what
    those modes mean in TIFF and PGM files), colour spaces (CMYK, YCbCr, LAB, HSV) are converted. Anything
    else is a ValueError: never a silently black, white or clipped image."""
    mode = image.mode
    deep = bool(re.search(r";16[BLN]$", rawmode)) and mode in ("RGB", "RGBA", "LA")  # Pillow kept 8 of 16 bits
    bits = "converted 16 bits per channel to 8" if deep else None
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy(), bits
    if mode in ("L", "1"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy(), "converted grayscale to RGB"
    if mode in ("LA", "La"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
        return rgb, _notes(bits, "dropped alpha channel; converted grayscale to RGB")
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy(), _notes(bits, "dropped alpha channel"
                                                                               if mode != "RGBX" else None)
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N and I: integer samples
        values = np.asarray(image, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"{mode} image with values {values.min()}..{values.max()}, beyond the 16-bit range "
                             "0..65535 whose meaning is known; convert it to 8 or 16 bits per sample")
        gray = np.round(values / 257.0).astype(np.uint8)  # 65535 / 257 = 255: the full range
        return np.repeat(gray[..., None], 3, axis=2), f"converted 16-bit grayscale ({mode}) to 8-bit RGB"
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            nan = " and NaN" if np.isnan(values).any() else ""
            raise ValueError(f"floating-point image with values {np.nanmin(values):g}..{np.nanmax(values):g}{nan}, "
                             "not in [0, 1]; save it as 8 or 16 bits per sample")
        gray = np.round(values * 255.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), "converted floating-point grayscale in [0, 1] to 8-bit RGB"
    if mode in ("P", "PA") and ("transparency" in image.info or mode == "PA"):
        return np.asarray(image.convert("RGBA").convert("RGB"), dtype=np.uint8).copy(), \
            "converted palette to RGB; dropped alpha channel"
    if mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy(), f"converted {mode} to RGB"
    raise ValueError(f"image mode {mode} is not one this suite reads (8- or 16-bit grayscale, RGB, RGBA, palette, "
                     "CMYK, YCbCr, LAB, HSV, 32-bit integer or float grayscale); convert it to RGB")


def _notes(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


def read_image_with_note(path: str | os.PathLike[str]) -> tuple[np.ndarray, str | None]:
    """Read an image file as uint8 HxWx3 RGB, with a note saying what was converted (or ``None``).

    Grayscale becomes three equal channels, alpha is dropped (not composited), 16-bit grayscale is
    scaled to 8 bit, and an EXIF orientation tag is applied so the array looks like the photo.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked just below
            opened = Image.open(path)
        with opened:
            if opened.width * opened.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
                raise Image.DecompressionBombError(f"{opened.width}x{opened.height}")  # PIL only warns below 2x
            rawmode = opened.tile[0][3] if opened.tile and isinstance(opened.tile[0][3], str) else ""
            opened.load()
            notes = []
            image = opened
            if opened.getexif().get(0x0112, 1) != 1:  # 0x0112: EXIF Orientation
                image = ImageOps.exif_transpose(opened)
                notes.append("applied EXIF orientation")
            array, note = _to_rgb(image, rawmode)
    except UnidentifiedImageError as err:
        raise ValueError(f"{path}: not an image file PIL can read") from err
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path}: declares {_declared_size(path)} pixels, beyond the "
                         f"{Image.MAX_IMAGE_PIXELS:,}-pixel limit (a decompression bomb, or a photo too large "
                         "to deblur here); downscale it first") from err
    except (OSError, ValueError) as err:  # a decoder's failure, or a mode with no known meaning
        raise ValueError(f"{path}: unreadable image ({err})") from err
    if note:
        notes.append(note)
    return array, "; ".join(notes) or None


def _declared_size(path: Path) -> str:
    """``WxH`` from the header of an image PIL refuses to decode, without decoding it."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # opening reads the header only; nothing is decoded here
    try:
        with Image.open(path) as image:
            return "x".join(map(str, image.size))
    except (OSError, ValueError):
        return "too many"
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def read_image(path: str | os.PathLike[str], *, convert: bool = True) -> np.ndarray:
    """Read an image file as uint8 HxWx3 RGB.

    With ``convert=True`` other modes are converted (the note is logged at INFO level); with
    ``convert=False`` anything that needed a conversion raises ValueError naming the file.
    """
    array, note = read_image_with_note(path)
    if note:
        if not convert:
            raise ValueError(f"{path}: not an 8-bit RGB image ({note} would be needed)")
        logger.info("%s: %s", path, note)
    return array


def write_image(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8 HxWx3 (or HxW) array atomically: temporary name in the same folder, then rename."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"{path}: expected a uint8 HxWx3 or HxW array, got {array.dtype} {array.shape}")
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise ValueError(f"{path}: unknown image suffix {path.suffix!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)  # .NAME.tmp-PID: swept by a later run (files.sweep_folder) if this one is killed
    try:
        with open(tmp, "wb") as handle:
            Image.fromarray(np.ascontiguousarray(array)).save(handle, format=image_format)
        os.replace(tmp, path)
    except OSError as err:  # a full or read-only disk: name the file the user asked for
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # orientations that swap the sides
                width, height = height, width
    except UnidentifiedImageError as err:
        raise ValueError(f"{path}: not an image file PIL can read") from err
    except Image.DecompressionBombError as err:
        raise ValueError(f"{path}: declares {_declared_size(path)} pixels, beyond the "
                         f"{Image.MAX_IMAGE_PIXELS:,}-pixel limit (a decompression bomb?)") from err
    return height, width


# -- GOPRO ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """One GOPRO blurred/sharp pair: sequence folder, file name, and the two files."""

    seq: str
    name: str
    blurred: Path
    sharp: Path


def _image_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def gopro_pairs(root: str | os.PathLike[str], split: str, blur_folder: str = "blur") -> list[Pair]:
    """Every pair of one GOPRO-layout split, sorted by sequence then file name.

    Raises FileNotFoundError naming the missing folder, and ValueError when a sequence's blurred
    and sharp folders do not hold the same file names or the split holds no pairs.
    """
    split_dir = Path(root) / split
    if split not in GOPRO_SPLITS:
        raise ValueError(f"{split_dir}: unknown GOPRO split {split!r} (expected one of {GOPRO_SPLITS})")
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: GOPRO split folder not found "
                                f"(expected <root>/{split}/<sequence>/)")
    pairs = []
    for seq_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        blurred_dir, sharp_dir = seq_dir / blur_folder, seq_dir / "sharp"
        for folder in (blurred_dir, sharp_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: folder not found "
                                        f"(GOPRO sequences hold {blur_folder}/ and sharp/)")
        blurred_names, sharp_names = _image_names(blurred_dir), _image_names(sharp_dir)
        if blurred_names != sharp_names:
            only_blurred = sorted(blurred_names - sharp_names)[:3]
            only_sharp = sorted(sharp_names - blurred_names)[:3]
            raise ValueError(f"{seq_dir}: {blur_folder}/ and sharp/ hold different file names "
                             f"(only in {blur_folder}/: {only_blurred}, only in sharp/: {only_sharp})")
        pairs.extend(Pair(seq_dir.name, name, blurred_dir / name, sharp_dir / name)
                     for name in sorted(blurred_names))
    if not pairs:
        raise ValueError(f"{split_dir}: no image pairs found")
    return pairs


def spread_over_scenes(pairs: Sequence[Pair], n: int) -> list[Pair]:
    """``n`` of ``pairs`` taken evenly from every scene (sequence): the scenes take turns, one pair each,
    until ``n`` are chosen, and each scene's share is spread evenly over its frames. The first ``n`` of the
    GOPRO test split would all come from its first scene (GOPR0384_11_00 holds 100 pairs)."""
    scenes: dict[str, list[Pair]] = {}
    for pair in pairs:
        scenes.setdefault(pair.seq, []).append(pair)
    counts = dict.fromkeys(scenes, 0)
    n = min(max(n, 0), len(pairs))
    while sum(counts.values()) < n:
        for seq, members in scenes.items():
            if counts[seq] < len(members) and sum(counts.values()) < n:
                counts[seq] += 1
    return [members[int((j + 0.5) * len(members) / counts[seq])]
            for seq, members in scenes.items() for j in range(counts[seq])]


# -- Köhler ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KohlerItem:
    """One Köhler blurred image (image ``image``, camera shake ``kernel``) and its ground-truth frames."""

    image: int
    kernel: int
    blurred: Path
    frames: tuple[Path, ...]


_BLURRY = re.compile(r"Blurry(\d+)_(\d+)\.png")


def kohler_items(root: str | os.PathLike[str]) -> list[KohlerItem]:
    """Every Köhler blurred image with its ground-truth frames (sorted by frame number),
    ordered by (image, kernel)."""
    root = Path(root)
    blurry_dir = root / "BlurryImages"
    if not blurry_dir.is_dir():
        raise FileNotFoundError(f"{blurry_dir}: Köhler folder not found "
                                "(expected BlurryImages/Blurry<i>_<j>.png)")
    items = []
    for path in blurry_dir.iterdir():
        match = _BLURRY.fullmatch(path.name)
        if not match:
            continue
        i, j = int(match[1]), int(match[2])
        frame_dir = root / f"Image{i}" / f"Kernel{j}"
        if not frame_dir.is_dir():
            raise FileNotFoundError(f"{frame_dir}: ground-truth frames of {path.name} not found")
        frame_pattern = re.compile(rf"GroundTruth{i}_{j}_(\d+)\.png")
        numbered = [(int(m[1]), p) for p in frame_dir.iterdir() if (m := frame_pattern.fullmatch(p.name))]
        if not numbered:
            raise ValueError(f"{frame_dir}: no GroundTruth{i}_{j}_<frame>.png frames")
        items.append(KohlerItem(i, j, path, tuple(p for _, p in sorted(numbered))))
    if not items:
        raise ValueError(f"{blurry_dir}: no Blurry<i>_<j>.png images")
    return sorted(items, key=lambda item: (item.image, item.kernel))


# -- HIDE and RealBlur ----------------------------------------------------------------------------
HIDE_TEST_PAIRS = 2025  # HA_deblur README: 6,397 train / 2,025 test of 8,422 pairs
HIDE_ALL_PAIRS = 8422
HIDE_SUBSETS = ("test-close-ups", "test-long-shot")
REALBLUR_TEST_PAIRS = 980
REALBLUR_VARIANTS = ("J", "R")
REALBLUR_FOLDERS = {"J": "RealBlur-J_ECC_IMCORR_centroid_itensity_ref",  # "itensity": the real folders' spelling
                    "R": "RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref"}
SHOWN = 3  # names quoted in a pairing error
# A name in a flat (input/target) RealBlur copy that says which listed pair it is: scene230_blur_7.png,
# scene230-blur_7.png or scene230_7.png.
_REALBLUR_FLAT_NAME = re.compile(r"(scene\d+)[_-](?:blur[_-])?(\d+)\.png")
_REALBLUR_BLUR_NAME = re.compile(r"blur_(\d+)\.png")


class PairingError(ValueError):
    """A test set whose blurred and sharp images do not pair up by name, or do not match the official list.

    The message is one line: where, how many are missing or extra, and the first few names; ``missing``
    and ``extra`` hold every name (relative to the test set's root).
    """

    def __init__(self, message: str, missing: Sequence[str] = (), extra: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing, self.extra = list(missing), list(extra)


def _first(names: Sequence[str]) -> str:
    return ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")


def _problems(missing: Sequence[str], extra: Sequence[str], what_missing: str, what_extra: str) -> list[str]:
    parts = []
    if missing:
        parts.append(f"{len(missing):,} {what_missing} ({_first(missing)})")
    if extra:
        parts.append(f"{len(extra):,} {what_extra} ({_first(extra)})")
    return parts


def hide_pairs(root: str | os.PathLike[str], expected: int | None = HIDE_TEST_PAIRS) -> list[Pair]:
    """The HIDE test pairs under ``root``, sorted by name; ``Pair.seq`` is ``"test"``, ``Pair.name`` the file name.

    HIDE publishes no list file: its test split is the blurred images of ``test/test-close-ups/`` and
    ``test/test-long-shot/``, each paired by name with ``GT/<name>`` (``GT/`` also holds the training
    pairs' sharp images). Checked here: no name in both test folders, every test image has its sharp
    partner, and, when ``train/`` is there too, every ``GT/`` image has a blurred partner in ``train/`` or
    ``test/`` (so a test image lost from a download is named, not only counted). The flat copy
    (``input/`` and ``target/``) must hold the same names in both. ``expected`` is the number of pairs
    (``None``: any, for miniature trees). Raises FileNotFoundError when neither layout is there and
    :class:`PairingError` (one line, the first few names) when the pairs do not add up.
    """
    root = Path(root)
    subsets = [root / "test" / s for s in HIDE_SUBSETS]
    if any(d.is_dir() for d in subsets):
        gt_dir = root / "GT"
        if not gt_dir.is_dir():
            raise FileNotFoundError(f"{gt_dir}: HIDE ground-truth folder not found (the official layout keeps "
                                    "every sharp image in GT/)")
        blurred: dict[str, Path] = {}
        both = []
        for folder in subsets:
            for name in sorted(_image_names(folder)) if folder.is_dir() else []:
                if name in blurred:
                    both.append(f"test/{HIDE_SUBSETS[1]}/{name}")
                blurred[name] = folder / name
        sharp_names = _image_names(gt_dir)
        missing = [f"GT/{n}" for n in sorted(set(blurred) - sharp_names)]
        orphans = []
        if (root / "train").is_dir():  # then every sharp image has a blurred partner somewhere
            orphans = [f"GT/{n}" for n in sorted(sharp_names - set(blurred) - _image_names(root / "train"))]
        extra = both + orphans
        parts = _problems(missing, orphans, "test images without their sharp image",
                          "sharp images in GT/ with no blurred image in train/ or test/")
        if both:
            parts.append(f"{len(both):,} images in both test folders ({_first(both)})")
        sharp_dir = gt_dir
    elif (root / "input").is_dir() and (root / "target").is_dir():
        blurred = {n: root / "input" / n for n in _image_names(root / "input")}
        sharp_names = _image_names(root / "target")
        missing = [f"target/{n}" for n in sorted(set(blurred) - sharp_names)]
        extra = [f"target/{n}" for n in sorted(sharp_names - set(blurred))]
        parts = _problems(missing, extra, "blurred images without their sharp image", "sharp images without their "
                          "blurred image")
        sharp_dir = root / "target"
    else:
        raise FileNotFoundError(f"{root}: no HIDE test set (expected test/test-close-ups/, test/test-long-shot/ and "
                                "GT/ as HIDE_dataset.zip unpacks, or input/ and target/ as in the MPRNet/Restormer "
                                "copy)")
    pairs = [Pair("test", n, blurred[n], sharp_dir / n) for n in sorted(set(blurred) & sharp_names)]
    if expected is not None and len(pairs) != expected:
        parts.append(f"{len(pairs):,} test pairs, expected {expected:,}")
    if parts:
        raise PairingError(f"{root}: the HIDE test set does not add up: " + "; ".join(parts), missing, extra)
    if not pairs:
        raise PairingError(f"{root}: no HIDE test pairs found")
    return pairs


@functools.cache
def _realblur_record() -> dict[str, Any]:
    return json.loads((Path(__file__).with_name("realblur_test_list.json")).read_text())


def realblur_test_list() -> list[tuple[str, int]]:
    """The 980 RealBlur test pairs as (scene, frame K), in the official lists' order (the same for J and R)."""
    return [(scene, int(k)) for scene, k in _realblur_record()["pairs"]]


def realblur_list_text(variant: str) -> str:
    """The official ``RealBlur_<variant>_test_list.txt``, byte for byte: ``<gt path> <blur path> `` per line."""
    folder = REALBLUR_FOLDERS[_realblur_variant(variant)]
    lines = [f"{folder}/{s}/gt/gt_{k}.png {folder}/{s}/blur/blur_{k}.png" for s, k in realblur_test_list()]
    return " \n".join(lines)  # every line but the last ends in a space; no final newline


def realblur_list_sha256(variant: str) -> str:
    """The SHA-256 of the official list file of ``variant`` (what :func:`realblur_list_text` must hash to)."""
    return _realblur_record()["sha256"][_realblur_variant(variant)]


def _realblur_variant(variant: str) -> str:
    v = str(variant).upper().removeprefix("REALBLUR-").removeprefix("REALBLUR_")
    if v not in REALBLUR_VARIANTS:
        raise ValueError(f"unknown RealBlur variant {variant!r} (expected J or R)")
    return v


def _scene_key(entry: tuple[str, int]) -> tuple[int, int]:
    return int(entry[0].removeprefix("scene")), entry[1]


def realblur_pairs(root: str | os.PathLike[str], variant: str, listed: Sequence[tuple[str, int]] | None = None,
                   *, check_list: bool = True) -> list[Pair]:
    """The RealBlur-``variant`` (``"J"`` or ``"R"``) test pairs under ``root``, sorted by scene then frame.

    ``Pair.seq`` is the scene (``scene230``) and ``Pair.name`` ``blur_<K>.png``, whichever layout the files
    are in, so restored images and score rows are named alike for both (the official script expects a
    restored image named ``<scene>_blur_<K>.png``). The official test list (``listed``, default
    :func:`realblur_test_list`) is the source of truth: every listed pair must be there, found by its path
    (``RealBlur-J_ECC_IMCORR_centroid_itensity_ref/<scene>/{blur,gt}/...``) or, in a flat copy, by a file
    name that names its scene and frame, present in both ``input/`` and ``target/``. A tree that holds the
    other variant's folder instead is refused as a J/R swap. ``check_list=False`` pairs the listed pairs the
    tree holds, and in a flat copy whatever it holds (miniature and stand-in trees), still by name. Raises
    FileNotFoundError when no RealBlur tree is there and :class:`PairingError` (one line, the first few
    names) when the pairs do not match the list.
    """
    root, v = Path(root), _realblur_variant(variant)
    other = "R" if v == "J" else "J"
    folder, flat = root / REALBLUR_FOLDERS[v], root / f"RealBlur_{v}"
    entries = list(realblur_test_list() if listed is None else listed)
    if folder.is_dir():
        if check_list:
            found = {e: (folder / e[0] / "blur" / f"blur_{e[1]}.png", folder / e[0] / "gt" / f"gt_{e[1]}.png")
                     for e in entries}
            missing = [p.relative_to(root).as_posix() for paths in found.values() for p in paths if not p.is_file()]
            if missing:
                raise PairingError(f"{root}: {len(missing):,} images of the {len(entries):,} listed RealBlur-{v} "
                                   f"test pairs missing ({_first(missing)})", missing)
        else:
            found, missing, listed_pairs = {}, [], set(entries)
            for scene in (d for d in folder.iterdir() if d.is_dir()):
                blurs = {int(m[1]) for n in (_image_names(scene / "blur") if (scene / "blur").is_dir() else ())
                         if (m := _REALBLUR_BLUR_NAME.fullmatch(n))}
                # the official folders hold the training pairs too: only listed pairs are test pairs
                for k in (k for k in blurs if (scene.name, k) in listed_pairs):
                    found[(scene.name, k)] = (scene / "blur" / f"blur_{k}.png", scene / "gt" / f"gt_{k}.png")
                    if not found[(scene.name, k)][1].is_file():
                        missing.append(found[(scene.name, k)][1].relative_to(root).as_posix())
            if missing:
                raise PairingError(f"{root}: {len(missing):,} RealBlur-{v} blurred images without their sharp "
                                   f"image ({_first(sorted(missing))})", sorted(missing))
    elif flat.is_dir():
        found = _realblur_flat(root, flat, v, entries, check_list)
    elif (root / REALBLUR_FOLDERS[other]).is_dir() or (root / f"RealBlur_{other}").is_dir():
        held = REALBLUR_FOLDERS[other] if (root / REALBLUR_FOLDERS[other]).is_dir() else f"RealBlur_{other}"
        raise PairingError(f"{root}: no RealBlur-{v} test set, only {held}/, which is RealBlur-{other}: "
                           f"RealBlur-J and RealBlur-R swapped?", [f"{REALBLUR_FOLDERS[v]}/"], [f"{held}/"])
    else:
        raise FileNotFoundError(f"{root}: no RealBlur-{v} test set (expected {REALBLUR_FOLDERS[v]}/ as "
                                f"RealBlur.tar.gz unpacks, or RealBlur_{v}/input/ and target/)")
    if not found:
        raise PairingError(f"{root}: no RealBlur-{v} test pairs found")
    return [Pair(e[0], f"blur_{e[1]}.png", *found[e]) for e in sorted(found, key=_scene_key)]


def _realblur_flat(root: Path, flat: Path, v: str, entries: Sequence[tuple[str, int]],
                   check_list: bool) -> dict[tuple[str, int], tuple[Path, Path]]:
    """Pairs of a flat copy (``RealBlur_<v>/{input,target}/<name>``), each name parsed into (scene, K)."""
    for side in ("input", "target"):
        if not (flat / side).is_dir():
            raise FileNotFoundError(f"{flat / side}: folder not found (a flat RealBlur copy holds input/ and target/)")
    inputs, targets = _image_names(flat / "input"), _image_names(flat / "target")
    missing = [f"target/{n}" for n in sorted(inputs - targets)]
    extra = [f"input/{n}" for n in sorted(targets - inputs)]
    parts = _problems(missing, extra, "blurred images without their sharp image",
                      "sharp images without their blurred image")
    if parts:
        raise PairingError(f"{flat}: " + "; ".join(parts), missing, extra)
    parsed = {n: m for n in inputs if (m := _REALBLUR_FLAT_NAME.fullmatch(n))}
    unnamed = sorted(inputs - set(parsed))
    if unnamed:
        raise PairingError(f"{flat}: {len(unnamed):,} file names do not name a RealBlur scene and frame "
                           f"({_first(unnamed)}; expected e.g. scene230_blur_7.png), so they cannot be matched "
                           "to the official test list; use the official RealBlur.tar.gz", [], unnamed)
    found = {(m[1], int(m[2])): (flat / "input" / n, flat / "target" / n) for n, m in parsed.items()}
    if len(found) < len(parsed):
        raise PairingError(f"{flat}: several file names name the same scene and frame")
    if check_list:
        listed = set(entries)
        missing = [f"{s}_blur_{k}.png" for s, k in sorted(listed - set(found), key=_scene_key)]
        extra = [found[e][0].name for e in sorted(set(found) - listed, key=_scene_key)]
        parts = _problems(missing, extra, f"of the {len(entries):,} listed RealBlur-{v} test pairs missing",
                          "pairs not in the official test list")
        if parts:
            raise PairingError(f"{root}: " + "; ".join(parts), missing, extra)
    return found


# -- crop cache -----------------------------------------------------------------------------------
CACHE_INDEX = "index.json"
CACHE_STACK = "pairs.npy"
CACHE_FORMAT = 1


def build_crop_cache(pairs: Sequence[Pair], cache_dir: str | os.PathLike[str]) -> Path:
    """Decode ``pairs`` once into a memory-mappable cache folder and return its path.

    Layout: ``index.json`` (sources and sizes of the pairs, in order) and, when every image has
    the same size (GOPRO: 1280x720), one ``pairs.npy`` of shape [N, 2, H, W, 3] uint8 (index 0
    blurred, 1 sharp); otherwise one ``pair_NNNNNN.npy`` of shape [2, H, W, 3] per pair. The folder
    is built under a temporary name and renamed into place; an existing cache there is replaced.
    """
    cache_dir = Path(cache_dir)
    if not pairs:
        raise ValueError(f"{cache_dir}: no pairs to cache")
    shapes = []
    for pair in pairs:
        blurred_shape, sharp_shape = _image_size(pair.blurred), _image_size(pair.sharp)
        if blurred_shape != sharp_shape:
            raise ValueError(f"pair {pair.seq}/{pair.name}: blurred {pair.blurred} is "
                             f"{blurred_shape[1]}x{blurred_shape[0]} but sharp {pair.sharp} is "
                             f"{sharp_shape[1]}x{sharp_shape[0]}")
        shapes.append(blurred_shape)
    layout = "stack" if len(set(shapes)) == 1 else "per_pair"

    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(cache_dir)  # the temporary folders of killed builds
    tmp = temporary_sibling(cache_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        stack = None
        if layout == "stack":
            stack = np.lib.format.open_memmap(tmp / CACHE_STACK, mode="w+", dtype=np.uint8,
                                              shape=(len(pairs), 2, *shapes[0], 3))
        for index, (pair, shape) in enumerate(zip(pairs, shapes, strict=True)):
            decoded = np.stack([read_image(pair.blurred), read_image(pair.sharp)])
            if decoded.shape[1:3] != shape:
                raise ValueError(f"pair {pair.seq}/{pair.name}: decoded size {decoded.shape[1:3]} "
                                 f"differs from its header {shape}")
            if stack is not None:
                stack[index] = decoded
            else:
                np.save(tmp / _pair_file(index), decoded)
        if stack is not None:
            stack.flush()
            del stack
        index_record = {
            "format": CACHE_FORMAT,
            "layout": layout,
            "pairs": [{"seq": p.seq, "name": p.name, "blurred": str(p.blurred), "sharp": str(p.sharp),
                       "height": h, "width": w} for p, (h, w) in zip(pairs, shapes, strict=True)],
        }
        (tmp / CACHE_INDEX).write_text(json.dumps(index_record, indent=1))
        replace_dir(tmp, cache_dir)
    except OSError as err:  # a failed write names no file: name the cache, so the message names its disk
        shutil.rmtree(tmp, ignore_errors=True)
        if err.filename:
            raise
        raise OSError(err.errno, err.strerror or str(err), str(cache_dir)) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return cache_dir


def _pair_file(index: int) -> str:
    return f"pair_{index:06d}.npy"


def replace_dir(new: Path, target: Path) -> None:
    """Move the finished folder ``new`` to ``target``.

    A previous ``target`` is moved aside first (a rename cannot replace a non-empty folder), put
    back if the move fails, and deleted once the new folder is in place.
    """
    give_default_mode(new, folder=True)  # a folder from mkdtemp is 0700: give it what mkdir would
    old = None
    if target.exists():
        old = temporary_sibling(target, "old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class CropCache:
    """Read access to a cache folder written by :func:`build_crop_cache`."""

    def __init__(self, cache_dir: str | os.PathLike[str], *, max_open: int = 256) -> None:
        self.path = Path(cache_dir)
        index_path = self.path / CACHE_INDEX
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path}: not a crop cache (build it with `deblurbench cache`)")
        record = json.loads(index_path.read_text())
        if record.get("format") != CACHE_FORMAT:
            raise ValueError(f"{index_path}: cache format {record.get('format')!r}, "
                             f"expected {CACHE_FORMAT}; rebuild it")
        self.layout: str = record["layout"]
        self.entries: list[dict[str, Any]] = record["pairs"]
        self.shapes = [(int(e["height"]), int(e["width"])) for e in self.entries]
        self._stack = None
        if self.layout == "stack":
            self._stack = np.load(self.path / CACHE_STACK, mmap_mode="r")
            if self._stack.shape[0] != len(self.entries):
                raise ValueError(f"{self.path / CACHE_STACK}: holds {self._stack.shape[0]} pairs, "
                                 f"index lists {len(self.entries)}; rebuild the cache")
        # Each memmap keeps a file descriptor open, so the per-pair layout keeps only the most
        # recently used ones open.
        self._open_pair = functools.lru_cache(maxsize=max_open)(self._load_pair)

    def __len__(self) -> int:
        return len(self.entries)

    def label(self, index: int) -> str:
        """``sequence/name`` of a pair, for messages."""
        entry = self.entries[index]
        return f"{entry['seq']}/{entry['name']}"

    def _load_pair(self, index: int) -> np.ndarray:
        return np.load(self.path / _pair_file(index), mmap_mode="r")

    def pair(self, index: int) -> np.ndarray:
        """The memory-mapped [2, H, W, 3] uint8 array of one pair (0 blurred, 1 sharp)."""
        if self._stack is not None:
            return self._stack[index]
        return self._open_pair(index)


class CropSampler:
    """Seeded random aligned crops from a :class:`CropCache`, as [-1, 1] NCHW float tensors.

    An epoch is one random crop of each pair, the pairs in a seeded permutation (SPEC §4). The
    permutation, the crop corners and the flips of epoch ``e`` are all drawn from
    ``numpy.random.default_rng([seed, e])``, so the sampler's whole state is ``(epoch, position)``
    and a resumed sampler yields exactly the batches the uninterrupted one would. A batch never
    spans two epochs: the last batch of an epoch is shorter when the batch size does not divide
    the number of pairs (``ceil(len / batch_size)`` batches per epoch).

    ``random_flip`` flips both images of a pair horizontally and, independently, vertically, each
    with probability 1/2.
    """

    def __init__(self, cache: CropCache | str | os.PathLike[str], crop: int, seed: int, *,
                 random_flip: bool = False) -> None:
        self.cache = cache if isinstance(cache, CropCache) else CropCache(cache)
        if crop < 1:
            raise ValueError(f"crop size must be positive, got {crop}")
        for index, (height, width) in enumerate(self.cache.shapes):
            if height < crop or width < crop:
                raise ValueError(f"pair {self.cache.label(index)} is {width}x{height}, smaller than the "
                                 f"{crop}x{crop} crop")
        self.crop, self.seed, self.random_flip = int(crop), int(seed), bool(random_flip)
        self._free = np.array(self.cache.shapes, dtype=np.int64) - self.crop + 1  # corner choices per axis
        self._epoch = 0
        self._position = 0
        self._plan_epoch = -1

    def __len__(self) -> int:
        return len(self.cache)

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return self._epoch

    @property
    def position(self) -> int:
        """How many pairs of the current epoch have been sampled."""
        return self._position

    def _plan(self) -> None:
        """Draw the current epoch's order, crop corners and flips (once per epoch)."""
        if self._plan_epoch == self._epoch:
            return
        rng = np.random.default_rng([self.seed, self._epoch])
        n = len(self)
        self._order = rng.permutation(n)
        self._tops = rng.integers(0, self._free[self._order, 0])
        self._lefts = rng.integers(0, self._free[self._order, 1])
        self._flips = rng.random((n, 2)) < 0.5
        self._plan_epoch = self._epoch

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``(blurred, sharp)`` batch, each float32 [B, 3, crop, crop] in [-1, 1]."""
        import torch

        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self._plan()
        stop = min(self._position + batch_size, len(self))
        c = self.crop
        batch = np.empty((stop - self._position, 2, c, c, 3), dtype=np.uint8)
        for slot, k in enumerate(range(self._position, stop)):
            top, left = self._tops[k], self._lefts[k]
            crop = self.cache.pair(int(self._order[k]))[:, top:top + c, left:left + c]
            if self.random_flip:
                flip_horizontal, flip_vertical = self._flips[k]
                if flip_horizontal:
                    crop = crop[:, :, ::-1]
                if flip_vertical:
                    crop = crop[:, ::-1]
            batch[slot] = crop
        self._position = stop
        if self._position == len(self):
            self._epoch += 1
            self._position = 0
        tensors = torch.from_numpy(batch).permute(1, 0, 4, 2, 3).contiguous().float().div_(127.5).sub_(1.0)
        return tensors[0], tensors[1]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless single-pair batches."""
        while True:
            yield self.next_batch(1)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this sampler is (plain ints and bools)."""
        return {"seed": self.seed, "crop": self.crop, "pairs": len(self), "random_flip": self.random_flip,
                "epoch": self._epoch, "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output; refuses a state taken on another cache or setting."""
        mine = self.state_dict()
        for key in ("seed", "crop", "pairs", "random_flip"):
            if state.get(key) != mine[key]:
                raise ValueError(f"sampler state was saved with {key}={state.get(key)!r}, this sampler has "
                                 f"{key}={mine[key]!r} (cache {self.cache.path})")
        position = int(state["position"])
        if not 0 <= position < len(self):
            raise ValueError(f"sampler state position {position} outside 0..{len(self) - 1}")
        self._epoch, self._position = int(state["epoch"]), position
