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


# -- Köhler et al. (ECCV 2012) ---------------------------------------------------------------------
# Read from the benchmark's own evaluation code (a copy is in codeslake/PVDNet,
# evaluation/evaluation_code/): eval_image.m, dftregistration.m, imshift.m + shiftmatrix.m,
# get_best_metric_value2.m and metrix_mux (preprocess_metrix_mux.m, ssim_index.m, mssim_index.m,
# ssim_index_modified.m). Written anew here; the roles of the two images are theirs.

# The columns of a Köhler score CSV besides ``image``: each SSIM says which one it is.
KOHLER_COLUMNS = ("psnr", "ssim_metrix", "ms_ssim_metrix", "best_frame")
KOHLER_SSIM_MIN_SIDE = 2 * RADIUS + 1  # ssim_index refuses smaller images
KOHLER_MS_SSIM_SCALES = 5
KOHLER_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # per scale, contrast and structure alike
KOHLER_MS_SSIM_ALPHA = 0.1333  # the luminance term, coarsest scale only
# Analysis low-pass filter of the biorthogonal (CDF) 9/7 wavelet: mssim_index's anti-aliasing filter
# before each 2x decimation, applied separably (its 2-D filter is the normalised outer product).
_BIOR97_LOWPASS = np.array([0.037828455507260, -0.023849465019560, -0.110624404418440, 0.377402855612830,
                            0.852698679008890, 0.377402855612830, -0.110624404418440, -0.023849465019560,
                            0.037828455507260])


def dft_register(reference: np.ndarray, moving: np.ndarray) -> tuple[int, int]:
    """The integer shift (dy, dx) with ``reference[i, j] ~ moving[i - dy, j - dx]``: ``dftregistration``
    with upsampling 1. The peak of the circular cross-correlation ifft2(F_reference conj(F_moving)) is
    searched over the whole array (the first peak in MATLAB's column-major order wins a tie); a 0-based
    peak index k >= floor(N / 2) means the shift k - N."""
    cc = np.fft.ifft2(np.fft.fft2(reference) * np.conj(np.fft.fft2(moving))).real
    h, w = cc.shape
    col, row = divmod(int(np.argmax(cc.T)), h)
    return row - h if row >= h // 2 else row, col - w if col >= w // 2 else col


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``imshift(a, [dy dx], 'same')`` for integers: ``out[i, j] = a[i - dy, j - dx]``, zero where that
    falls outside ``a``."""
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = a[max(-dy, 0):h - max(dy, 0),
                                                                 max(-dx, 0):w - max(dx, 0)]
    return out


def _valid_stats(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Gaussian (11x11, sigma 1.5) local means, variances and covariance, 'valid' part only (filter2)."""
    g = _gaussian_1d()

    def blur(a: np.ndarray) -> np.ndarray:
        a = ndimage.correlate1d(ndimage.correlate1d(a, g, axis=0), g, axis=1)
        return a[RADIUS:-RADIUS, RADIUS:-RADIUS]

    mx, my = blur(x), blur(y)
    return mx, my, blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my


def _ssim_components(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Means of ssim_index_modified's luminance M, contrast V and structure R maps (C3 = C2 / 2)."""
    mx, my, sxx, syy, sxy = _valid_stats(x, y)
    sx, sy = np.sqrt(np.maximum(sxx, 0.0)), np.sqrt(np.maximum(syy, 0.0))  # MATLAB: real(sqrt(.))
    m = (2 * mx * my + C1) / (mx * mx + my * my + C1)
    v = (2 * sx * sy + C2) / (sxx + syy + C2)
    r = (sxy + C2 / 2) / (sx * sy + C2 / 2)
    return float(m.mean()), float(v.mean()), float(r.mean())


def _ssim_map_mean(x: np.ndarray, y: np.ndarray) -> float:
    """metrix_mux 'SSIM': the mean of Wang's SSIM map over the 'valid' window positions."""
    mx, my, sxx, syy, sxy = _valid_stats(x, y)
    return float((((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx * mx + my * my + C1) * (sxx + syy + C2))).mean())


def kohler_ms_ssim_fits(shape: tuple[int, ...]) -> bool:
    """Whether every one of the 5 scales (each taken as rows/columns 1:2:end) keeps 11x11 pixels."""
    return all(-(-n // 2 ** (KOHLER_MS_SSIM_SCALES - 1)) >= KOHLER_SSIM_MIN_SIDE for n in shape[:2])


def kohler_ms_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """metrix_mux 'MSSIM' (mssim_index) of two 2-D float images with values in [0, 255].

    Five scales; before scales 2-5 both images are filtered with the 9/7 low-pass (symmetric border)
    and every second row and column is kept. Per scale the means of the contrast and structure maps,
    at the coarsest scale also of the luminance map, are combined as m5^0.1333 prod v_s^w_s prod
    r_s^w_s, w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). A negative structure mean makes MATLAB's
    power complex; every value is returned as its magnitude, which is what get_best_metric_value2's
    abs(max(...)) reports in all cases.
    """
    if not kohler_ms_ssim_fits(x.shape):
        raise ValueError(f"MS-SSIM needs {KOHLER_SSIM_MIN_SIDE}x{KOHLER_SSIM_MIN_SIDE} pixels at its 5th scale, "
                         f"i.e. at least 161 pixels a side; got {x.shape[1]}x{x.shape[0]}")
    lowpass = _BIOR97_LOWPASS / _BIOR97_LOWPASS.sum()
    value = 1.0
    for scale, weight in enumerate(KOHLER_MS_SSIM_WEIGHTS):
        if scale:
            x, y = ([ndimage.correlate1d(ndimage.correlate1d(a, lowpass, axis=0, mode="reflect"), lowpass, axis=1,
                                         mode="reflect")[::2, ::2] for a in (x, y)])  # 'reflect' = MATLAB 'symmetric'
        m, v, r = _ssim_components(x, y)
        value *= abs(v) ** weight * abs(r) ** weight
    return value * abs(m) ** KOHLER_MS_SSIM_ALPHA


def kohler_score(restored: np.ndarray, frames: Sequence[np.ndarray]) -> dict[str, Any]:
    """Köhler et al.'s benchmark score of one deblurred image, as their ``eval_image.m`` computes it.

    For each ground-truth frame x, with z the deblurred image (both float64, 0-255):
    ``zs = (sum(x z) / sum(z z)) z`` (the deblurred image scaled by least squares onto the frame); the
    integer shift registering the channel mean of zs to that of x (:func:`dft_register`, x the
    reference); zs and a ones mask shifted by it with zero fill (imshift); the frame masked,
    ``xr = x * mask``; both converted to luma 0.299 R + 0.587 G + 0.114 B (unrounded); then
    PSNR = 10 log10(255^2 / MSE) over the full frame, zeroed border included; ``ssim_metrix``: metrix_mux
    'SSIM' (Wang's ssim_index: 11x11 Gaussian, sigma 1.5, 'valid', K = 0.01 / 0.03, L = 255, no
    downsampling); ``ms_ssim_metrix``: metrix_mux 'MSSIM' (:func:`kohler_ms_ssim`; NaN when the image is
    too small for its 5 scales, where the official code stops with an error). Each metric keeps its own
    best frame (get_best_metric_value2: abs(max(...)) for PSNR and MSSIM; the max for SSIM, which
    eval_image.m does not offer itself). ``shift`` (dy, dx) moved the deblurred image onto the PSNR's
    best frame, ``scale`` scaled it.
    """
    if not frames:
        raise ValueError("kohler_score needs at least one ground-truth frame")
    z = _check_pair(restored, frames[0])[0]
    if min(z.shape[:2]) < KOHLER_SSIM_MIN_SIDE:
        raise ValueError(f"Köhler SSIM needs at least 11x11 pixels, got {z.shape[1]}x{z.shape[0]}")
    metrics = {"psnr": "best_frame", "ssim_metrix": "best_frame_ssim", "ms_ssim_metrix": "best_frame_ms_ssim"}
    best: dict[str, Any] = {**dict.fromkeys(metrics, -math.inf), **dict.fromkeys(metrics.values(), -1),
                            "shift": (0, 0), "scale": math.nan}
    energy = float(np.sum(z * z))
    with_ms = kohler_ms_ssim_fits(z.shape)
    luma = np.asarray(KOHLER_LUMA)
    for index, frame in enumerate(frames):
        x = _check_pair(restored, frame)[1]
        if energy == 0:  # an all-black deblurred image: the scale is 0/0 and MATLAB's scores are NaN
            continue
        scale = float(np.sum(x * z)) / energy
        zs = scale * z
        dy, dx = dft_register(x.mean(axis=2), zs.mean(axis=2))
        zr = _shift(zs, dy, dx) @ luma
        xr = (x * _shift(np.ones_like(zs), dy, dx)) @ luma
        scores = {"psnr": _psnr(xr, zr), "ssim_metrix": _ssim_map_mean(xr, zr)}
        if with_ms:
            scores["ms_ssim_metrix"] = kohler_ms_ssim(xr, zr)
        for key, value in scores.items():
            if value > best[key]:  # strictly greater: the first maximum wins, as MATLAB's max
                best[key], best[metrics[key]] = value, index
                if key == "psnr":
                    best.update(shift=(dy, dx), scale=scale)
    for key in metrics:  # no frame scored (too small for MS-SSIM, or a black image): NaN
        best[key] = math.nan if best[key] == -math.inf else best[key]
    best["psnr"] = abs(best["psnr"])  # get_best_metric_value2 reports abs(max(...))
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


# -- HIDE (Shen et al., ICCV 2019) and RealBlur (Rim et al., ECCV 2020) ---------------------------------
# research/generalisation-testsets.md §1-2. HIDE is scored as GOPRO is in MPRNet's evaluate_GOPRO_HIDE.m
# (MATLAB psnr and ssim on the uint8 RGB images). RealBlur is scored as its authors' evaluation_RealBlur_ecc.py
# does, read at rimchang/RealBlur@cf28b80 and written anew here, step by step.

HIDE_COLUMNS = ("psnr", "ssim_matlab")
REALBLUR_COLUMNS = ("psnr", "ssim", "ecc_converged")
REALBLUR_ECC_ITERATIONS = 100  # criteria (TERM_CRITERIA_EPS | TERM_CRITERIA_COUNT, 100, 0)
REALBLUR_ECC_EPS = 0.0
REALBLUR_ECC_FILTER = 5  # gaussFiltSize
REALBLUR_SSIM_PAD = RADIUS  # (win_size - 1) // 2 with win_size = 2 * int(3.5 * 1.5 + 0.5) + 1 = 11


def hide_score(restored: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """HIDE's official scores of one restored image: MATLAB ``psnr(input, gt)`` and ``ssim(input, gt)`` on the
    full uint8 RGB images, no crop, no Y channel (the SSIM is MATLAB's 3-D form, ``ssim(..., "matlab")``).
    The same two numbers :func:`score_image` gives GOPRO as ``psnr`` and ``ssim_matlab``."""
    return {"psnr": psnr(restored, reference), "ssim_matlab": ssim(restored, reference, "matlab")}


def realblur_align(restored: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """``image_align(deblurred, gt)`` of the RealBlur evaluation, on uint8 RGB images.

    Both images become float32 in [0, 1] (``imread(...).astype('float32') / 255``). With z the restored and x
    the reference image: ``zs = (sum(x z) / sum(z z)) z`` (least-squares intensity scaling, float32, not
    clipped); the homography W registering ``zs`` to ``x`` by OpenCV's ``findTransformECC`` on their
    ``COLOR_RGB2GRAY`` images (the reference is the template), starting from the identity, stopping after
    100 iterations (epsilon 0), Gaussian filter size 5, no mask; ``zr = warpPerspective(zs, W, INTER_CUBIC +
    WARP_INVERSE_MAP, BORDER_REFLECT)``; the valid-pixel mask ``cr``, a ones image warped the same way with
    INTER_NEAREST and a constant 0 border; then ``zr *= cr`` and ``xr = x * cr``.

    When ECC raises (it did not converge, or the images are uncorrelated) the identity warp is used instead,
    so the image is still scored, and ``converged`` is False. Returns ``zr``, ``xr``, ``cr`` (float32 HxWx3),
    ``warp`` (3x3 float32), ``scale`` and ``converged``.
    """
    import cv2  # only here: nothing else in the suite needs OpenCV

    _check_pair(restored, reference)  # uint8 and the same shape: the official script starts from the PNGs
    if restored.ndim != 3:
        raise ValueError(f"RealBlur scoring needs RGB images, got shape {restored.shape}")
    z = restored.astype(np.float32) / 255
    x = reference.astype(np.float32) / 255
    scale = np.sum(x * z) / np.sum(z * z)
    zs = scale * z
    warp = np.eye(3, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, REALBLUR_ECC_ITERATIONS, REALBLUR_ECC_EPS)
    try:
        _, warp = cv2.findTransformECC(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.cvtColor(zs, cv2.COLOR_RGB2GRAY),
                                       warp, cv2.MOTION_HOMOGRAPHY, criteria, None, REALBLUR_ECC_FILTER)
        converged = True
    except cv2.error:
        warp, converged = np.eye(3, 3, dtype=np.float32), False
    size = (x.shape[1], x.shape[0])
    zr = cv2.warpPerspective(zs, warp, size, flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT)
    cr = cv2.warpPerspective(np.ones_like(zs, dtype=np.float32), warp, size,
                             flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=0)
    return {"zr": zr * cr, "xr": x * cr, "cr": cr, "warp": warp, "scale": float(scale), "converged": converged}


def _gaussian_ssim_map(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """The full per-pixel SSIM map of one 2-D channel: scikit-image's ``structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, full=True)`` in float64 (as its release 0.17.2, which the RealBlur
    script requires, computes: later releases keep float32 input in float32)."""
    g = _gaussian_1d()

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.correlate1d(ndimage.correlate1d(a, g, axis=0, mode="reflect"), g, axis=1, mode="reflect")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def realblur_score(restored: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """RealBlur's official scores of one restored image (``evaluation_RealBlur_ecc.py``), after
    :func:`realblur_align`:

    - PSNR over the valid pixels: ``10 log10(1 / (sum((xr - zr)^2) / sum(cr)))`` (the squared error of the
      three channels summed in float64, divided by the mask's count over the three channels; data range 1).
    - SSIM: the per-channel Gaussian SSIM map of ``(xr, zr)`` (data range 1), multiplied by ``cr``, a 5-pixel
      border cropped from the map and the mask alike, then per channel ``sum(map) / sum(cr)``, averaged over
      the three channels.

    ``ecc_converged`` is False where ECC failed and the identity warp was used; ``scale`` and ``warp`` are
    the intensity scale and the homography (row-major, 9 numbers).
    """
    aligned = realblur_align(restored, reference)
    zr, xr, cr = aligned["zr"], aligned["xr"], aligned["cr"]
    if min(cr.shape[:2]) <= 2 * REALBLUR_SSIM_PAD:
        raise ValueError(f"RealBlur SSIM needs images larger than 11x11 pixels, got {cr.shape[1]}x{cr.shape[0]}")
    err = np.sum((xr - zr) ** 2, dtype=np.float64) / np.sum(cr)
    value_psnr = float(10 * np.log10(1.0 / err)) if err > 0 else math.inf
    x64, z64 = xr.astype(np.float64), zr.astype(np.float64)
    pad = REALBLUR_SSIM_PAD
    per_channel = []
    for c in range(xr.shape[2]):
        ssim_map = _gaussian_ssim_map(x64[..., c], z64[..., c], 1.0) * cr[..., c]
        mask = cr[pad:-pad, pad:-pad, c]
        per_channel.append(ssim_map[pad:-pad, pad:-pad].sum() / mask.sum())
    return {"psnr": value_psnr, "ssim": float(np.mean(per_channel)), "ecc_converged": aligned["converged"],
            "scale": aligned["scale"], "warp": [float(w) for w in aligned["warp"].ravel()]}
