"""Textbook non-blind deconvolutions (scikit-image) fed with the kernel that Pan's engine estimates.

Rows beyond the paper: they show what the estimated kernel is worth without the robust IRLS step of the
``pan`` row. Each row uses the kernel of the same options and defaults as ``pan``: given the folder of
kernels Pan's restore wrote (``deblurbench restore --kernels <pan out>/kernels``) it reads them instead
of estimating them again; otherwise it estimates each itself. Its timing (``deblurbench time``) always
includes the estimation, as Pan's does.

Settings chosen on 12 synthetic 192x192 RGB crops (astronaut, coffee, chelsea; a line and a curved 13x13
motion kernel; noise sigma 0.005) deconvolved with Pan's estimated kernel: Wiener balance 0.1 (mean PSNR
21.9 / 22.9 / 23.8 / 24.6 / 25.0 dB for balance 0.005 / 0.01 / 0.02 / 0.05 / 0.1; larger values approach
the blurred input), Richardson-Lucy 10 iterations (25.5 / 24.9 / 24.2 / 23.2 dB for 10 / 20 / 30 / 50:
more iterations amplify the kernel's errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from baselines.pan import KERNEL_DEFAULTS, KERNEL_LIMITS, kernel_of
from benchmark.deconv import fft_size, smooth_periodic_pad
from benchmark.registry import Method, register


def wiener_deconvolve(image: np.ndarray, kernel: np.ndarray, balance: float) -> np.ndarray:
    """skimage's Wiener-Hunt filter (Laplacian regulariser) on each channel of a float HxWx3 image.

    The filter is circular, so the image is first given a smooth periodic border
    (:func:`benchmark.deconv.smooth_periodic_pad`), and cropped back after: no ringing from the edges.
    """
    from skimage.restoration import wiener  # imported here: it pulls in scipy.signal (1 s)

    height, width = image.shape[:2]
    # At least 3x3: skimage's Laplacian regulariser is a 3x3 kernel.
    grid = tuple(max(side, 3) for side in fft_size(height, width, kernel.shape))
    padded = smooth_periodic_pad(image, grid)
    channels = [wiener(padded[..., c], kernel, balance, clip=False) for c in range(image.shape[2])]
    return np.clip(np.stack(channels, axis=-1)[:height, :width], 0.0, 1.0)


def richardson_lucy_deconvolve(image: np.ndarray, kernel: np.ndarray, iterations: int) -> np.ndarray:
    """skimage's Richardson-Lucy on all channels at once (a kernel one channel deep), float HxWx3 image.

    skimage convolves with zeros outside the image, which would darken the border; the image is mirrored
    by the kernel size on every side first and cropped back after.
    """
    from skimage.restoration import richardson_lucy  # imported here: it pulls in scipy.signal (1 s)

    pad = max(kernel.shape)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    restored = richardson_lucy(padded, kernel[..., None], num_iter=iterations, clip=False)
    return np.clip(restored[pad:pad + image.shape[0], pad:pad + image.shape[1]], 0.0, 1.0)


def restore_wiener(model: None, blurred: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    restored = wiener_deconvolve(blurred / 255.0, kernel_of(blurred, options), options["balance"])
    return np.round(restored * 255.0).astype(np.uint8)


def restore_richardson_lucy(model: None, blurred: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    restored = richardson_lucy_deconvolve(blurred / 255.0, kernel_of(blurred, options), options["rl_iterations"])
    return np.round(restored * 255.0).astype(np.uint8)


register(Method(
    name="wiener",
    display_name="Wiener (Pan kernel)",
    kind="classical",
    summary="Extra row beyond the paper: skimage Wiener-Hunt deconvolution (Laplacian regulariser, "
            "balance 0.1) of each channel with the kernel estimated by Pan's L0 engine.",
    restore=restore_wiener,
    defaults={**KERNEL_DEFAULTS, "balance": 0.1},
    limits={**KERNEL_LIMITS, "balance": {"exclusiveMinimum": 0}},
    deviations=("Not in the paper; the kernel is Pan's estimate, so errors of the estimate show here too.",),
))

register(Method(
    name="richardson-lucy",
    display_name="Richardson-Lucy (Pan kernel)",
    kind="classical",
    summary="Extra row beyond the paper: skimage Richardson-Lucy deconvolution (10 iterations) of each "
            "channel with the kernel estimated by Pan's L0 engine.",
    restore=restore_richardson_lucy,
    defaults={**KERNEL_DEFAULTS, "rl_iterations": 10},
    limits={**KERNEL_LIMITS, "rl_iterations": {"minimum": 1}},
    deviations=("Not in the paper; the kernel is Pan's estimate, so errors of the estimate show here too.",),
))
