"""Image quality metrics, written down to the last rounding step (SPEC section 6).

Inputs are uint8 HxWx3 RGB arrays (restored images are quantised before scoring, as if saved to
PNG); all arithmetic is float64. PSNR uses peak 255 over the full image. SSIM comes in three
variants that published deblurring tables silently mix:

- ``matlab``: MATLAB's ``ssim`` on an RGB uint8 image. MATLAB treats the MxNx3 array as a volume and
  filters with a 3-D Gaussian (sigma 1.5, 11x11x11, normalised) with replicate padding, so along the
  channel axis the 3 samples are edge-extended; the map has the image's size and is averaged whole.
- ``wang``: Wang et al.'s per-channel SSIM, 2-D Gaussian 11x11 (sigma 1.5, truncated at 3.5 sigma),
  population statistics, averaged over channels after cropping a 5-pixel border; equal to
  scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=-1)``.
- ``y``: ``wang`` on BT.601 luma as MATLAB's ``rgb2ycbcr`` computes it for uint8 input
  (Y = 16 + 65.481 R + 128.553 G + 24.966 B with R, G, B in [0, 1]), unrounded, data range 255.

C1 = (0.01 * 255)^2 and C2 = (0.03 * 255)^2 throughout.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from scipy import ndimage

SSIM_VARIANTS = ("matlab", "wang", "y")
PEAK = 255.0
C1 = (0.01 * PEAK) ** 2
C2 = (0.03 * PEAK) ** 2
SIGMA = 1.5
RADIUS = 5  # 11-sample windows: MATLAB's 2*ceil(3*sigma)+1, scikit-image's int(3.5*sigma + 0.5)
KOHLER_LUMA = (0.299, 0.587, 0.114)


def _check_pair(restored: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    for name, a in (("restored", restored), ("reference", reference)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8:
            raise ValueError(f"{name} must be a uint8 array, got {getattr(a, 'dtype', type(a))}")
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
            raise ValueError(f"{name} must be HxW or HxWx3, got shape {a.shape}")
    if restored.shape != reference.shape:
        raise ValueError(f"shapes differ: restored {restored.shape}, reference {reference.shape}")
    return restored.astype(np.float64), reference.astype(np.float64)


def _psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(PEAK**2 / mse)


def psnr(restored: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB over every pixel and channel, peak 255."""
    return _psnr(*_check_pair(restored, reference))


def bt601_luma(image: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` Y of a uint8 RGB image, as float64 in [16, 235], not rounded."""
    rgb = image.astype(np.float64) / 255.0
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def psnr_y(restored: np.ndarray, reference: np.ndarray) -> float:
    _check_pair(restored, reference)
    return _psnr(bt601_luma(restored), bt601_luma(reference))


def _gaussian_1d() -> np.ndarray:
    t = np.arange(-RADIUS, RADIUS + 1, dtype=np.float64)
    g = np.exp(-(t**2) / (2 * SIGMA**2))
    return g / g.sum()


def _ssim_map(x: np.ndarray, y: np.ndarray, blur) -> np.ndarray:
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx * mx + my * my + C1) * (sxx + syy + C2))


def _wang_2d(x: np.ndarray, y: np.ndarray) -> float:
    """Gaussian SSIM of one 2-D channel, border of RADIUS cropped (scikit-image's convention)."""
    g = _gaussian_1d()

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.correlate1d(ndimage.correlate1d(a, g, axis=0, mode="reflect"), g, axis=1, mode="reflect")

    return float(_ssim_map(x, y, blur)[RADIUS:-RADIUS, RADIUS:-RADIUS].mean())


def _matlab_3d(x: np.ndarray, y: np.ndarray) -> float:
    g = _gaussian_1d()

    def blur(a: np.ndarray) -> np.ndarray:
        for axis in range(a.ndim):
            a = ndimage.correlate1d(a, g, axis=axis, mode="nearest")  # 'nearest' = MATLAB 'replicate'
        return a

    return float(_ssim_map(x, y, blur).mean())


def ssim(restored: np.ndarray, reference: np.ndarray, variant: str = "matlab") -> float:
    """SSIM under one of :data:`SSIM_VARIANTS` (see the module docstring for each definition)."""
    if variant not in SSIM_VARIANTS:
        raise ValueError(f"unknown SSIM variant {variant!r}; valid: {', '.join(SSIM_VARIANTS)}")
    x, y = _check_pair(restored, reference)
    if min(x.shape[:2]) < 2 * RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {x.shape[1]}x{x.shape[0]}")
    if variant == "matlab":
        return _matlab_3d(x, y)
    if variant == "y":
        return _wang_2d(bt601_luma(restored), bt601_luma(reference))
    if x.ndim == 2:
        return _wang_2d(x, y)
    return float(np.mean([_wang_2d(x[..., c], y[..., c]) for c in range(x.shape[2])]))


def _integer_shift(x: np.ndarray, z: np.ndarray) -> tuple[int, int]:
    """The integer (dy, dx) that best aligns z to x: x[i, j] ~ z[i - dy, j - dx] (DFT cross-correlation
    peak, as ``dftregistration`` with upsampling 1), wrapped to the signed range."""
    cc = np.fft.ifft2(np.fft.fft2(x) * np.conj(np.fft.fft2(z)))
    dy, dx = np.unravel_index(np.argmax(np.abs(cc)), cc.shape)
    h, w = x.shape
    return int(dy - h if dy > h // 2 else dy), int(dx - w if dx > w // 2 else dx)


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved down by dy and right by dx, with zeros where nothing moved in (imshift 'same')."""
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = a[max(-dy, 0):h - max(dy, 0),
                                                                 max(-dx, 0):w - max(dx, 0)]
    return out


def kohler_score(restored: np.ndarray, frames: Sequence[np.ndarray]) -> dict[str, Any]:
    """The Köhler et al. (ECCV 2012) benchmark protocol against every ground-truth frame.

    For each frame z: least-squares intensity scaling zs = (sum(x z) / sum(z z)) z; the integer shift
    aligning the channel means of zs to x (DFT registration); zs and a ones mask shifted by it with
    zero fill; x masked; both converted to luma 0.299 R + 0.587 G + 0.114 B; PSNR = 10 log10(255^2 /
    MSE) over the full frame (zeroed border included) and SSIM (``wang`` on that luma). The best
    frame counts, for PSNR and SSIM independently. ``shift`` (dy, dx) moves the frame onto the image.
    """
    if not frames:
        raise ValueError("kohler_score needs at least one ground-truth frame")
    x = _check_pair(restored, frames[0])[0]
    luma = np.asarray(KOHLER_LUMA)
    best: dict[str, Any] = {"psnr": -math.inf, "ssim": -math.inf}
    for index, frame in enumerate(frames):
        z = _check_pair(restored, frame)[1]
        scale = float(np.sum(x * z) / np.sum(z * z))
        zs = scale * z
        dy, dx = _integer_shift(x.mean(axis=2), zs.mean(axis=2))
        mask = _shift(np.ones_like(zs), dy, dx)
        zr, xr = _shift(zs, dy, dx) @ luma, (x * mask) @ luma
        value = _psnr(xr, zr)
        if value > best["psnr"]:
            best.update(psnr=value, best_frame=index, shift=(dy, dx), scale=scale)
        best["ssim"] = max(best["ssim"], _wang_2d(xr, zr))
    return best


@cache
def _pyiqa_metric(name: str):
    import pyiqa
    import torch

    # pyiqa finds an architecture by its module name; CW_SSIM lives in ssim_arch, which that guess misses,
    # so create_metric would import every architecture (transformers, timm: ~8 s per score job).
    # Importing that module first registers SSIM and CW_SSIM and skips the scan.
    with contextlib.suppress(ImportError):
        import pyiqa.archs.ssim_arch  # noqa: F401

    return pyiqa.create_metric(name, as_loss=False, device=torch.device("cpu"))


def _to_pyiqa(image: np.ndarray):
    import torch

    return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def cw_ssim(restored: np.ndarray, reference: np.ndarray) -> float:
    """Complex-wavelet SSIM from pyiqa (it needs no downloaded weights)."""
    _check_pair(restored, reference)
    return float(_pyiqa_metric("cw_ssim")(_to_pyiqa(restored), _to_pyiqa(reference)).item())


def pyiqa_psnr_ssim(restored: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """pyiqa's own PSNR and SSIM (its defaults), the independent cross-check of this module."""
    _check_pair(restored, reference)
    a, b = _to_pyiqa(restored), _to_pyiqa(reference)
    return {"psnr": float(_pyiqa_metric("psnr")(a, b).item()), "ssim": float(_pyiqa_metric("ssim")(a, b).item())}


def score_image(restored: np.ndarray, reference: np.ndarray, *, with_cw_ssim: bool = False) -> dict[str, float]:
    """Every per-image metric the report uses, keyed as the score CSVs' columns."""
    scores = {"psnr": psnr(restored, reference), "psnr_y": psnr_y(restored, reference)}
    scores |= {f"ssim_{v}": ssim(restored, reference, v) for v in SSIM_VARIANTS}
    if with_cw_ssim:
        scores["cw_ssim"] = cw_ssim(restored, reference)
    return scores
