"""Synthetic camera shake: GOPRO-like and Köhler-like sets made from photos that ship with packages.

How the real sets were made (``research/classical-and-synthesis.md`` §5): GOPRO averages 7-13
successive 240 fps frames and keeps the middle frame as the sharp target; its ``blur`` folder
averages the stored sRGB frames directly (a linear camera response assumed), ``blur_gamma``
averages after undoing a gamma-2.2 response (``x ** 2.2``, average, ``** (1 / 2.2)``). Köhler
replays 12 recorded camera shakes in front of 4 printed motifs and keeps every sharp frame along
the trajectory as ground truth.

Here a sharp photo crop stands for the scene and a random smooth camera path
(:class:`CameraShake`) for the hand: each sub-frame is the crop rotated about its centre and
translated by the pose, sampled bilinearly from the full photo in linear light; the pose of the
middle sub-frame is the identity, so the sharp target is the photo crop itself. Everything is
drawn from ``numpy.random.default_rng`` seeded by ``[seed, ...]`` lists, so a pair depends only
on the seed and its own place (split, photo, index), not on how many other pairs are made.
Sensor noise (``noise_sigma``): every sub-frame gets its own Gaussian noise on its gamma-encoded
values, as each of GOPRO's 240 fps frames carries its own; the sharp target is one such noisy frame
and the blurred image their average (noise / sqrt(N)), so the pair differs by noise as well as by
blur, as GOPRO's do. Saturation is not modelled.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from benchmark.data import replace_dir, write_image

GAMMA = 2.2


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


def _motorcycle(side: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return data.stereo_motorcycle()[side]

    return load


# Only loaders whose files ship inside the installed wheels (never one that downloads).
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle_left": _motorcycle(0),
    "motorcycle_right": _motorcycle(1),
    "grace_hopper": _grace_hopper,
}

# The two motorcycle photos are a stereo pair of one scene: they must stay on the same side.
SCENE_OF = {"motorcycle_left": "motorcycle", "motorcycle_right": "motorcycle"}

# Held out: two unrelated scenes, one still life and one portrait, both at least 400 px on their
# short side so that Köhler-like crops fit. Train keeps the other portrait (astronaut), fur
# (chelsea), JPEG artefacts (rocket) and the motorcycle stereo pair together.
TEST_PHOTOS: tuple[str, ...] = ("coffee", "grace_hopper")
TRAIN_PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "rocket", "motorcycle_left", "motorcycle_right")


@functools.lru_cache(maxsize=len(PHOTOS))
def load_photo(name: str) -> np.ndarray:
    """A bundled photo as a read-only uint8 HxWx3 RGB array."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; bundled photos: {', '.join(PHOTOS)}")
    photo = np.ascontiguousarray(PHOTOS[name]()[..., :3], dtype=np.uint8)
    photo.setflags(write=False)
    return photo


_LINEAR_OF_UINT8 = (np.arange(256, dtype=np.float64) / 255.0) ** GAMMA


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 gamma-encoded values -> float64 linear light in [0, 1] (inverse gamma 2.2)."""
    return _LINEAR_OF_UINT8[image]


def srgb_to_linear_float(encoded: np.ndarray) -> np.ndarray:
    """float gamma-encoded values in [0, 1] -> linear light (inverse gamma 2.2)."""
    return np.clip(encoded, 0.0, 1.0) ** GAMMA


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """float linear light in [0, 1] -> float gamma-encoded values in [0, 1] (gamma 1 / 2.2)."""
    return np.clip(linear, 0.0, 1.0) ** (1.0 / GAMMA)


def quantise(values: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8, rounded and clipped."""
    return np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class CameraPath:
    """Poses of the N sub-frames of one exposure.

    ``angles_deg[k]`` rotates the scene about the image centre and ``shifts_px[k] = (x, y)`` then
    moves it (x right, y down, pixels); pose ``N // 2`` is the identity.
    """

    angles_deg: np.ndarray
    shifts_px: np.ndarray

    def __len__(self) -> int:
        return len(self.angles_deg)

    def extent_px(self, height: int, width: int) -> float:
        """The longest distance any corner or the centre of a ``height`` x ``width`` image travels
        between two sub-frames: the blur extent in pixels."""
        half_h, half_w = (height - 1) / 2.0, (width - 1) / 2.0
        points = np.array([[0.0, 0.0], [-half_w, -half_h], [half_w, -half_h], [-half_w, half_h],
                           [half_w, half_h]])
        theta = np.deg2rad(self.angles_deg)[:, None]
        x = np.cos(theta) * points[:, 0] - np.sin(theta) * points[:, 1] + self.shifts_px[:, :1]
        y = np.sin(theta) * points[:, 0] + np.cos(theta) * points[:, 1] + self.shifts_px[:, 1:]
        distances = np.hypot(x[:, None] - x[None], y[:, None] - y[None])
        return float(distances.max())


@dataclass(frozen=True)
class RenderedShake:
    """One exposure: every sub-frame, the two blurred versions and the sharp target (uint8 HxWx3)."""

    frames: np.ndarray
    blur: np.ndarray
    blur_gamma: np.ndarray
    sharp: np.ndarray


@dataclass(frozen=True)
class CameraShake:
    """A random smooth hand-held camera path and the exposure it makes.

    The path is a random walk with momentum in (x, y, angle): each step's velocity keeps
    ``momentum`` of the previous one plus fresh Gaussian noise, which makes smooth curves rather
    than jitter. It is centred on the middle sub-frame and scaled so its largest shift from the
    middle pose is ``max_translation_px`` times a factor drawn from
    ``[min_amplitude_fraction, 1]``, and likewise the largest angle with ``max_rotation_deg``.
    The defaults keep consecutive sub-frames about a pixel apart at 9 sub-frames (further apart,
    the average shows separate copies, the ghosting GOPRO is known for). ``noise_sigma`` is each
    sub-frame's sensor noise in grey levels (0-255, gamma-encoded).
    """

    n_subframes: int = 9
    max_translation_px: float = 4.0
    max_rotation_deg: float = 1.5
    momentum: float = 0.8
    min_amplitude_fraction: float = 0.3
    noise_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.n_subframes < 1:
            raise ValueError(f"n_subframes must be at least 1, got {self.n_subframes}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 <= self.min_amplitude_fraction <= 1.0:
            raise ValueError(f"min_amplitude_fraction must be in [0, 1], got {self.min_amplitude_fraction}")
        if self.max_translation_px < 0 or self.max_rotation_deg < 0 or self.noise_sigma < 0:
            raise ValueError("max_translation_px, max_rotation_deg and noise_sigma must not be negative")

    def sample_path(self, rng: np.random.Generator) -> CameraPath:
        """Draw one path from ``rng``."""
        n = self.n_subframes
        innovation = np.sqrt(1.0 - self.momentum**2)
        velocity = rng.standard_normal(3)
        steps = np.zeros((n, 3))
        for k in range(1, n):
            velocity = self.momentum * velocity + innovation * rng.standard_normal(3)
            steps[k] = velocity
        poses = np.cumsum(steps, axis=0)
        poses -= poses[n // 2]
        shifts, angles = poses[:, :2], poses[:, 2]
        shift_peak, angle_peak = np.hypot(shifts[:, 0], shifts[:, 1]).max(), np.abs(angles).max()
        shift_target = rng.uniform(self.min_amplitude_fraction, 1.0) * self.max_translation_px
        angle_target = rng.uniform(self.min_amplitude_fraction, 1.0) * self.max_rotation_deg
        shifts = shifts * (shift_target / shift_peak) if shift_peak > 0 else shifts
        angles = angles * (angle_target / angle_peak) if angle_peak > 0 else angles
        return CameraPath(angles_deg=angles, shifts_px=shifts)

    def render(self, photo: np.ndarray, top: int, left: int, height: int, width: int,
               path: CameraPath, rng: np.random.Generator | None = None) -> RenderedShake:
        """Expose the ``height`` x ``width`` window of ``photo`` at (``top``, ``left``) along ``path``.

        Sub-frames are sampled bilinearly from the whole photo (reflected at its borders), in
        linear light, then get their noise (drawn from ``rng``, needed when ``noise_sigma`` > 0).
        ``blur_gamma`` averages them in linear light; ``blur`` averages their gamma-encoded values
        (GOPRO's linear-response version); ``sharp`` is the middle sub-frame.
        """
        photo_h, photo_w = photo.shape[:2]
        if not (0 <= top and top + height <= photo_h and 0 <= left and left + width <= photo_w):
            raise ValueError(f"window {width}x{height} at ({left}, {top}) does not fit "
                             f"a {photo_w}x{photo_h} photo")
        centre_y, centre_x = top + (height - 1) / 2.0, left + (width - 1) / 2.0
        out_y, out_x = np.mgrid[top:top + height, left:left + width].astype(np.float64)
        rel_x = out_x[None] - centre_x - path.shifts_px[:, 0, None, None]
        rel_y = out_y[None] - centre_y - path.shifts_px[:, 1, None, None]
        theta = np.deg2rad(path.angles_deg)[:, None, None]
        cos, sin = np.cos(theta), np.sin(theta)
        # Inverse pose: the photo point that the camera sees at each output pixel.
        src_x = cos * rel_x + sin * rel_y + centre_x
        src_y = -sin * rel_x + cos * rel_y + centre_y

        # Only the part of the photo the path can reach is linearised and sampled.
        y0, x0 = max(int(np.floor(src_y.min())) - 1, 0), max(int(np.floor(src_x.min())) - 1, 0)
        y1, x1 = min(int(np.floor(src_y.max())) + 2, photo_h), min(int(np.floor(src_x.max())) + 2, photo_w)
        window = srgb_to_linear(photo[y0:y1, x0:x1])
        coords = np.stack([src_y - y0, src_x - x0])
        frames_linear = np.stack([
            ndimage.map_coordinates(np.ascontiguousarray(window[..., c]), coords, order=1, mode="reflect")
            for c in range(3)], axis=-1)
        frames_gamma = linear_to_srgb(frames_linear)
        if self.noise_sigma > 0:
            if rng is None:
                raise ValueError("CameraShake.render: noise_sigma > 0 needs an rng for the noise")
            frames_gamma = np.clip(frames_gamma + rng.normal(0.0, self.noise_sigma / 255.0, frames_gamma.shape), 0, 1)
            frames_linear = srgb_to_linear_float(frames_gamma)
        frames = quantise(frames_gamma)
        return RenderedShake(
            frames=frames,
            blur=quantise(frames_gamma.mean(axis=0)),
            blur_gamma=quantise(linear_to_srgb(frames_linear.mean(axis=0))),
            sharp=frames[len(path) // 2],
        )


# The camera-shake settings a profile may set under data.synthetic (config/schema.yaml); others keep
# CameraShake's defaults.
SHAKE_SETTINGS = ("max_translation_px", "max_rotation_deg", "noise_sigma")


def synthetic_shake(settings: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`synthesise_gopro` / :func:`synthesise_kohler` that shape the shake,
    from a profile's ``data.synthetic`` section."""
    return {k: settings[k] for k in SHAKE_SETTINGS if k in settings}


def check_photo_split(train_photos: Sequence[str], test_photos: Sequence[str]) -> None:
    """Raise ValueError unless both lists name known photos and share no photo and no scene."""
    for name in (*train_photos, *test_photos):
        if name not in PHOTOS:
            raise ValueError(f"unknown photo {name!r}; bundled photos: {', '.join(PHOTOS)}")
    shared = {SCENE_OF.get(n, n) for n in train_photos} & {SCENE_OF.get(n, n) for n in test_photos}
    if shared:
        raise ValueError(f"train and test photos share the scene(s) {sorted(shared)}: they must be disjoint")


def _spread(total: int, n: int) -> list[int]:
    """``total`` items over ``n`` bins as evenly as possible, the first bins taking the remainder."""
    return [total // n + (k < total % n) for k in range(n)]


def _extent_summary(extents: Sequence[float]) -> dict[str, float]:
    if not extents:
        return {}
    values = np.asarray(extents)
    return {"min": round(float(values.min()), 3), "median": round(float(np.median(values)), 3),
            "max": round(float(values.max()), 3)}


def _build_atomically(root: Path, fill: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fill`` on a fresh temporary folder beside ``root``, then rename it to ``root``
    (replacing a previous tree); on failure nothing at ``root`` changes."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        summary = fill(tmp)
        replace_dir(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


_SPLIT_CODE = {"train": 0, "test": 1}


def synthesise_gopro(root: str | os.PathLike[str], *, seed: int, train_pairs: int = 48, test_pairs: int = 12,
                     size: int = 128, n_subframes: int = 9, train_photos: Sequence[str] = TRAIN_PHOTOS,
                     test_photos: Sequence[str] = TEST_PHOTOS, max_translation_px: float = 4.0,
                     max_rotation_deg: float = 1.5, momentum: float = 0.8,
                     min_amplitude_fraction: float = 0.3, noise_sigma: float = 0.0) -> dict[str, Any]:
    """Write a GOPRO-layout tree ``<root>/{train,test}/SYN_<photo>/{blur,blur_gamma,sharp}/NNNNNN.png``.

    One sequence per photo, the pairs of a split spread evenly over its photos; each pair is a
    ``size`` x ``size`` window at a random place in the photo, exposed along a fresh
    :class:`CameraShake` path of ``n_subframes`` sub-frames. A pair's file name is the number
    (6 digits, from 1) of its middle sub-frame on a virtual video in which the pairs' exposures
    follow one another without overlap, so names are the same in the three folders and not
    consecutive, like GOPRO's. Returns a JSON-ready summary (counts per sequence, blur extents).
    """
    check_photo_split(train_photos, test_photos)
    shake = CameraShake(n_subframes=n_subframes, max_translation_px=max_translation_px,
                        max_rotation_deg=max_rotation_deg, momentum=momentum,
                        min_amplitude_fraction=min_amplitude_fraction, noise_sigma=noise_sigma)
    plan = {"train": (tuple(train_photos), train_pairs), "test": (tuple(test_photos), test_pairs)}
    for split, (photos, count) in plan.items():
        if count < 0 or (count > 0 and not photos):
            raise ValueError(f"{split}: cannot make {count} pairs from photos {list(photos)}")
        for name in photos:
            photo_h, photo_w = load_photo(name).shape[:2]
            if not 1 <= size <= min(photo_h, photo_w):
                raise ValueError(f"size {size} does not fit photo {name!r} ({photo_w}x{photo_h})")

    def fill(tmp: Path) -> dict[str, Any]:
        splits = {}
        for split, (photos, count) in plan.items():
            sequences, extents = {}, []
            for name, n_pairs in zip(photos, _spread(count, len(photos)), strict=True):
                photo = load_photo(name)
                seq_dir = tmp / split / f"SYN_{name}"
                for k in range(n_pairs):
                    rng = np.random.default_rng([seed, _SPLIT_CODE[split], list(PHOTOS).index(name), k])
                    top = int(rng.integers(0, photo.shape[0] - size + 1))
                    left = int(rng.integers(0, photo.shape[1] - size + 1))
                    path = shake.sample_path(rng)
                    exposure = shake.render(photo, top, left, size, size, path, rng)
                    file_name = f"{k * n_subframes + n_subframes // 2 + 1:06d}.png"
                    write_image(seq_dir / "blur" / file_name, exposure.blur)
                    write_image(seq_dir / "blur_gamma" / file_name, exposure.blur_gamma)
                    write_image(seq_dir / "sharp" / file_name, exposure.sharp)
                    extents.append(path.extent_px(size, size))
                sequences[f"SYN_{name}"] = n_pairs
            (tmp / split).mkdir(parents=True, exist_ok=True)
            splits[split] = {"photos": list(photos), "pairs": count, "sequences": sequences,
                             "blur_extent_px": _extent_summary(extents)}
        return {"layout": "gopro", "root": str(root), "seed": seed, "size": size,
                "shake": asdict(shake), "splits": splits}

    return _build_atomically(Path(root), fill)


def synthesise_kohler(root: str | os.PathLike[str], *, seed: int, photos: Sequence[str] = TEST_PHOTOS,
                      n_paths: int = 12, size: int = 128, n_subframes: int = 9,
                      max_translation_px: float = 4.0, max_rotation_deg: float = 1.5, momentum: float = 0.8,
                      min_amplitude_fraction: float = 0.3, noise_sigma: float = 0.0) -> dict[str, Any]:
    """Write a Köhler-layout tree: ``<root>/BlurryImages/Blurry{i}_{j}.png`` and every sub-frame as
    ``<root>/Image{i}/Kernel{j}/GroundTruth{i}_{j}_{frame}.png`` (frame from 1).

    Image ``i`` (from 1) is the centred ``size`` x ``size`` window of ``photos[i - 1]``; path ``j``
    (1..``n_paths``) is the same for every image, as Köhler replayed the same 12 recorded shakes
    in front of each motif. The blurred image averages in linear light (a real exposure, like
    GOPRO's ``blur_gamma``). Returns a JSON-ready summary.
    """
    for name in photos:
        if name not in PHOTOS:
            raise ValueError(f"unknown photo {name!r}; bundled photos: {', '.join(PHOTOS)}")
    if not photos or n_paths < 1:
        raise ValueError(f"need at least one photo and one path, got {list(photos)} and n_paths={n_paths}")
    shake = CameraShake(n_subframes=n_subframes, max_translation_px=max_translation_px,
                        max_rotation_deg=max_rotation_deg, momentum=momentum,
                        min_amplitude_fraction=min_amplitude_fraction, noise_sigma=noise_sigma)
    for name in photos:
        photo_h, photo_w = load_photo(name).shape[:2]
        if not 1 <= size <= min(photo_h, photo_w):
            raise ValueError(f"size {size} does not fit photo {name!r} ({photo_w}x{photo_h})")
    paths = [shake.sample_path(np.random.default_rng([seed, j])) for j in range(1, n_paths + 1)]

    def fill(tmp: Path) -> dict[str, Any]:
        for i, name in enumerate(photos, start=1):
            photo = load_photo(name)
            top, left = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
            for j, path in enumerate(paths, start=1):
                exposure = shake.render(photo, top, left, size, size, path, np.random.default_rng([seed, i, j]))
                write_image(tmp / "BlurryImages" / f"Blurry{i}_{j}.png", exposure.blur_gamma)
                for frame, image in enumerate(exposure.frames, start=1):
                    write_image(tmp / f"Image{i}" / f"Kernel{j}" / f"GroundTruth{i}_{j}_{frame}.png", image)
        return {"layout": "kohler", "root": str(root), "seed": seed, "size": size, "photos": list(photos),
                "images": len(photos) * n_paths, "frames_per_image": n_subframes, "shake": asdict(shake),
                "blur_extent_px": _extent_summary([p.extent_px(size, size) for p in paths])}

    return _build_atomically(Path(root), fill)
