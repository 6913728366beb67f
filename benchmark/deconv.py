"""Shared FFT deconvolution utilities: kernels as transfer functions, blurring, smooth periodic padding
and an outlier-robust (IRLS) non-blind deconvolution.

Kernel convention (as MATLAB ``conv2``/``psf2otf`` and ``scipy.ndimage.convolve``): a kernel is a small
float array whose centre is element ``(kh // 2, kw // 2)``, and blurring is true convolution (the kernel is
flipped). Images are float ``HxW`` or ``HxWxC``; every routine works on all channels at once by moving the
channel axis first and transforming the last two axes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
from scipy import fft

Boundary = Literal["symmetric", "circular"]
DataNorm = Literal["l1-robust", "l2"]


def _check_kernel(kernel: np.ndarray) -> np.ndarray:
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or min(kernel.shape) < 1:
        raise ValueError(f"benchmark/deconv.py: a kernel must be a non-empty 2-D array, got shape {kernel.shape}")
    return kernel


def _centred_pad(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Zero-pad ``kernel`` to ``shape`` and roll its centre to element (0, 0)."""
    kh, kw = kernel.shape
    if kh > shape[0] or kw > shape[1]:
        raise ValueError(f"benchmark/deconv.py: kernel {kernel.shape} is larger than the image {tuple(shape)}")
    padded = np.zeros(shape, dtype=np.float64)
    padded[:kh, :kw] = kernel
    return np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1))


def psf2otf(kernel: np.ndarray, shape: tuple[int, int], *, real: bool = False) -> np.ndarray:
    """Transfer function of ``kernel`` on a ``shape`` grid (MATLAB ``psf2otf``).

    ``real=True`` returns the half spectrum of ``scipy.fft.rfft2`` (shape ``(H, W // 2 + 1)``), which is
    what the solvers here multiply with; otherwise the full ``fft2`` spectrum.
    """
    padded = _centred_pad(_check_kernel(kernel), (int(shape[0]), int(shape[1])))
    return fft.rfft2(padded) if real else fft.fft2(padded)


def otf2psf(otf: np.ndarray, kernel_shape: tuple[int, int], *, image_shape: tuple[int, int] | None = None
            ) -> np.ndarray:
    """The ``kernel_shape`` kernel around the origin of the inverse transform of ``otf`` (MATLAB ``otf2psf``).

    ``image_shape`` is the grid of a half spectrum from ``psf2otf(..., real=True)``; leave it ``None`` for a
    full spectrum (then only the real part is kept).
    """
    if image_shape is None:
        full = np.real(fft.ifft2(otf))
    else:
        full = fft.irfft2(otf, s=image_shape)
    kh, kw = kernel_shape
    return np.roll(full, (kh // 2, kw // 2), axis=(0, 1))[:kh, :kw]


def _channels_first(image: np.ndarray) -> tuple[np.ndarray, bool]:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        return image[None], False
    if image.ndim == 3:
        return np.moveaxis(image, -1, 0), True
    raise ValueError(f"benchmark/deconv.py: expected an HxW or HxWxC image, got shape {image.shape}")


def _channels_last(stack: np.ndarray, had_channels: bool) -> np.ndarray:
    return np.moveaxis(stack, 0, -1) if had_channels else stack[0]


def _convolve_circular(stack: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    shape = stack.shape[-2:]
    return fft.irfft2(fft.rfft2(stack) * psf2otf(kernel, shape, real=True), s=shape)


def blur(image: np.ndarray, kernel: np.ndarray, *, boundary: Boundary = "symmetric") -> np.ndarray:
    """Convolve every channel of ``image`` with ``kernel`` by FFT; the result has the image's shape.

    ``boundary="symmetric"`` extends the image by mirroring with the edge sample repeated (numpy
    ``"symmetric"``, scipy.ndimage ``"reflect"``); ``"circular"`` wraps it around (periodic image).
    """
    kernel = _check_kernel(kernel)
    stack, had_channels = _channels_first(image)
    if boundary == "circular":
        return _channels_last(_convolve_circular(stack, kernel), had_channels)
    if boundary != "symmetric":
        raise ValueError(f"benchmark/deconv.py: boundary must be 'symmetric' or 'circular', not {boundary!r}")
    ph, pw = kernel.shape
    padded = np.pad(stack, ((0, 0), (ph, ph), (pw, pw)), mode="symmetric")
    blurred = _convolve_circular(padded, kernel)[:, ph:ph + stack.shape[1], pw:pw + stack.shape[2]]
    return _channels_last(blurred, had_channels)


def _crossfade_band(stack: np.ndarray, band: int) -> np.ndarray:
    """Append ``band`` columns that pass smoothly from the mirror image of the right edge to that of the left.

    Column ``t`` of the band blends the image mirrored past its last column with the image mirrored before
    its first column (which is where that band column lands when the result is tiled) by a raised cosine,
    so the tiled image is continuous at both seams.
    """
    if band == 0:
        return stack
    width = stack.shape[-1]
    mirrored = np.pad(stack, ((0, 0), (0, 0), (band, band)), mode="reflect" if width > 1 else "edge")
    after_right = mirrored[..., band + width:]
    before_left = mirrored[..., :band]
    weight = 0.5 * (1.0 + np.cos(np.pi * np.arange(1, band + 1) / (band + 1)))
    return np.concatenate([stack, weight * after_right + (1.0 - weight) * before_left], axis=-1)


def smooth_periodic_pad(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Extend ``image`` at the bottom and right to ``shape`` so that it tiles without seams (an edge taper).

    A circular (FFT) deconvolution of the result has no boundary jump to ring on; crop ``[:H, :W]`` after.
    Plays the role of Liu & Jia's ``wrap_boundary_liu`` in Pan's code with a simpler band: a raised-cosine
    cross-fade between the mirrored right and left (then bottom and top) edges.
    """
    stack, had_channels = _channels_first(image)
    height, width = stack.shape[-2:]
    if shape[0] < height or shape[1] < width:
        raise ValueError(f"benchmark/deconv.py: cannot pad a {height}x{width} image to the smaller {tuple(shape)}")
    wide = _crossfade_band(stack, shape[1] - width)
    tall = np.swapaxes(_crossfade_band(np.swapaxes(wide, -1, -2), shape[0] - height), -1, -2)
    return _channels_last(tall, had_channels)


def fft_size(height: int, width: int, kernel_shape: tuple[int, int]) -> tuple[int, int]:
    """A fast FFT grid holding the image and the ``kernel - 1`` band a linear convolution needs."""
    return (fft.next_fast_len(height + kernel_shape[0] - 1, real=True),
            fft.next_fast_len(width + kernel_shape[1] - 1, real=True))


def _forward_differences(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.roll(stack, -1, axis=-1) - stack, np.roll(stack, -1, axis=-2) - stack


def _difference_adjoint(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    return (np.roll(gx, 1, axis=-1) - gx) + (np.roll(gy, 1, axis=-2) - gy)


def _channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=(-2, -1), keepdims=True)


def _preconditioned_cg(apply_a: Callable[[np.ndarray], np.ndarray], rhs: np.ndarray, x: np.ndarray,
                       precondition: Callable[[np.ndarray], np.ndarray], iterations: int,
                       tolerance: float) -> np.ndarray:
    """Preconditioned conjugate gradients on every channel at once (separate step sizes per channel)."""
    tiny = np.finfo(np.float64).tiny
    residual = rhs - apply_a(x)
    z = precondition(residual)
    direction = z.copy()
    rz = _channel_dot(residual, z)
    stop = tolerance * np.sqrt(_channel_dot(rhs, rhs)).max()
    for _ in range(iterations):
        a_direction = apply_a(direction)
        alpha = rz / np.maximum(_channel_dot(direction, a_direction), tiny)
        x = x + alpha * direction
        residual = residual - alpha * a_direction
        if np.sqrt(_channel_dot(residual, residual)).max() <= stop:
            break
        z = precondition(residual)
        rz_next = _channel_dot(residual, z)
        direction = z + (rz_next / np.maximum(rz, tiny)) * direction
        rz = rz_next
    return x


def irls_deconvolve(blurred: np.ndarray, kernel: np.ndarray, *, lam: float = 3e-3, iterations: int = 6,
                    cg_iterations: int = 15, p: float = 0.8, data_norm: DataNorm = "l1-robust",
                    robust_threshold: float = 0.01, gradient_floor: float = 0.01) -> np.ndarray:
    """Outlier-robust non-blind deconvolution by iteratively reweighted least squares; returns [0, 1] floats.

    Minimises ``sum_obs rho(k * x - b) + lam * sum |grad x|^p`` over a latent image ``x`` on a grid larger
    than ``b`` by the kernel radius on every side: the data term counts only observed pixels, so the
    border is filled by the prior rather than by a guessed boundary condition (no ringing from the image
    edge), then the result is cropped back. ``rho`` is ``r^2`` (``"l2"``) or, for ``"l1-robust"``, the
    Huber function with threshold ``robust_threshold`` (quadratic for inliers, L1 beyond: saturated pixels
    and kernel errors lose their pull). The hyper-Laplacian prior (``p`` = 0.8, Levin et al. 2007) is
    majorised with gradient magnitudes floored at ``gradient_floor``. Each of ``iterations`` reweightings
    solves its quadratic problem by ``cg_iterations`` conjugate gradients preconditioned with the
    Fourier-diagonal operator of the mean weights; the first solve uses unit data weights and the
    quadratic prior ``lam |grad x|^2``.
    """
    if data_norm not in ("l1-robust", "l2"):
        raise ValueError(f"benchmark/deconv.py: data_norm must be 'l1-robust' or 'l2', not {data_norm!r}")
    if not 0 < p <= 2:
        raise ValueError(f"benchmark/deconv.py: the prior exponent p must lie in (0, 2], got {p}")
    kernel = _check_kernel(kernel)
    if not kernel.sum() > 0:
        raise ValueError("benchmark/deconv.py: the kernel must have a positive sum")
    kernel = kernel / kernel.sum()
    observed, had_channels = _channels_first(blurred)
    _, height, width = observed.shape
    radius = max(kernel.shape) // 2
    grid = (fft.next_fast_len(height + 2 * radius, real=True), fft.next_fast_len(width + 2 * radius, real=True))
    inside = (slice(None), slice(radius, radius + height), slice(radius, radius + width))

    otf = psf2otf(kernel, grid, real=True)
    otf_power = np.abs(otf) ** 2
    difference_power = (np.abs(psf2otf(np.array([[1.0, -1.0]]), grid, real=True)) ** 2
                        + np.abs(psf2otf(np.array([[1.0], [-1.0]]), grid, real=True)) ** 2)

    def convolve(stack: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
        return fft.irfft2(fft.rfft2(stack) * spectrum, s=grid)

    target = np.zeros((observed.shape[0], *grid))
    target[inside] = observed
    mask = np.zeros_like(target)
    mask[inside] = 1.0
    x = np.roll(smooth_periodic_pad(observed.transpose(1, 2, 0), grid).transpose(2, 0, 1), (radius, radius),
                axis=(-2, -1))
    data_weight = mask
    prior_x = prior_y = np.full_like(target, lam)
    for iteration in range(iterations):
        if iteration:
            residual = convolve(x, otf) - target
            if data_norm == "l1-robust":
                data_weight = mask * np.minimum(1.0, robust_threshold / np.maximum(np.abs(residual), 1e-12))
            gx, gy = _forward_differences(x)
            prior_x = lam * 0.5 * p * np.maximum(np.abs(gx), gradient_floor) ** (p - 2.0)
            prior_y = lam * 0.5 * p * np.maximum(np.abs(gy), gradient_floor) ** (p - 2.0)

        def apply_a(v: np.ndarray, wd: np.ndarray = data_weight, wx: np.ndarray = prior_x,
                    wy: np.ndarray = prior_y) -> np.ndarray:
            gx, gy = _forward_differences(v)
            return convolve(wd * convolve(v, otf), np.conj(otf)) + _difference_adjoint(wx * gx, wy * gy)

        diagonal = (data_weight.mean(axis=(-2, -1), keepdims=True) * otf_power
                    + 0.5 * (prior_x + prior_y).mean(axis=(-2, -1), keepdims=True) * difference_power)

        def precondition(v: np.ndarray, diagonal: np.ndarray = diagonal) -> np.ndarray:
            return convolve(v, 1.0 / diagonal)

        rhs = convolve(data_weight * target, np.conj(otf))
        x = _preconditioned_cg(apply_a, rhs, x, precondition, cg_iterations, 1e-6)
    return np.clip(_channels_last(x[inside], had_channels), 0.0, 1.0)


def opt_fft_size(n: int) -> int:
    """The smallest length >= ``n`` of the form 2^a 3^b 5^c 7^d, optionally times one 11 or one 13 (Cho's
    ``opt_fft_size``: the lengths his deconvolution code pads to)."""
    if n < 1:
        raise ValueError(f"benchmark/deconv.py: an FFT length must be positive, got {n}")
    m = n
    while True:
        rest = m
        for prime in (2, 3, 5, 7):
            while rest % prime == 0:
                rest //= prime
        if rest in (1, 11, 13):
            return m
        m += 1


def _laplace_fill(boundary: np.ndarray) -> np.ndarray:
    """Harmonic interpolation: keep the outer ring of ``boundary`` and fill its interior with the solution of
    Laplace's equation for that ring (Dirichlet problem solved by the 2-D type-I sine transform)."""
    height, width = boundary.shape
    result = boundary.copy()
    if height < 3 or width < 3:
        return result
    ring = boundary.copy()
    ring[1:-1, 1:-1] = 0.0
    # The ring's pull on the interior: -(sum of the ring neighbours) of each interior pixel.
    source = -(ring[1:-1, 2:] + ring[1:-1, :-2] + ring[:-2, 1:-1] + ring[2:, 1:-1])
    cols = np.arange(1, width - 1)
    rows = np.arange(1, height - 1)[:, None]
    eigen = (2.0 * np.cos(np.pi * cols / (width - 1)) - 2.0) + (2.0 * np.cos(np.pi * rows / (height - 1)) - 2.0)
    result[1:-1, 1:-1] = fft.idstn(fft.dstn(source, type=1) / eigen, type=1)
    return result


def _ramp(first: np.ndarray, last: np.ndarray, n: int) -> np.ndarray:
    """``n`` values from ``first`` to ``last`` along a new first axis (Cho's ``(1-a) first + a last``)."""
    a = np.arange(n, dtype=np.float64) / (n - 1) if n > 1 else np.zeros(1)
    return (1.0 - a)[:, None] * first + a[:, None] * last


def wrap_boundary_liu(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Extend ``image`` at the bottom and right to ``shape`` so that it tiles smoothly (Cho's variant of Liu &
    Jia, ICIP 2008, ``wrap_boundary_liu.m``, ported with its block layout).

    Three harmonic patches are solved: the band below the image (between its last and first rows), the band
    to its right (between its last and first columns), and the corner between those two bands. The bottom
    band placed under the image starts with a copy of the image's last row, as in the original code.
    """
    stack, had_channels = _channels_first(image)
    _, height, width = stack.shape
    pad_h, pad_w = int(shape[0]) - height, int(shape[1]) - width
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"benchmark/deconv.py: cannot pad a {height}x{width} image to the smaller {tuple(shape)}")
    out = np.zeros((stack.shape[0], height + pad_h, width + pad_w))
    for c, img in enumerate(stack):
        below = np.zeros((pad_h + 2, width))
        below[0], below[-1] = img[-1], img[0]
        if pad_h:
            below[1:-1, 0] = _ramp(below[0, :1], below[-1, :1], pad_h)[:, 0]
            below[1:-1, -1] = _ramp(below[0, -1:], below[-1, -1:], pad_h)[:, 0]
        below = _laplace_fill(below)
        right = np.zeros((height, pad_w + 2))
        right[:, 0], right[:, -1] = img[:, -1], img[:, 0]
        if pad_w:
            right[0, 1:-1] = _ramp(right[:1, 0], right[:1, -1], pad_w)[:, 0]
            right[-1, 1:-1] = _ramp(right[-1:, 0], right[-1:, -1], pad_w)[:, 0]
        right = _laplace_fill(right)
        corner = np.zeros((pad_h + 2, pad_w + 2))
        corner[0], corner[-1] = right[-1], right[0]
        corner[:, 0], corner[:, -1] = below[:, -1], below[:, 0]
        corner = _laplace_fill(corner)
        out[c, :height, :width] = img
        out[c, :height, width:] = right[:, 1:pad_w + 1]
        out[c, height:, :width] = below[:pad_h]
        out[c, height:, width:] = corner[1:pad_h + 1, 1:pad_w + 1]
    return _channels_last(out, had_channels)


OUTLIER_PROBABILITY = 0.1  # Cho's p(m_x = 0)
OUTLIER_DENSITY = 1.0  # uniform density of an outlier's value on [0, 1]
CHO_PRIOR_WEIGHT = 0.1  # w0
CHO_GRADIENT_FLOOR = 0.01  # thr_e

# Cho, Wang & Lee's derivative filters (``deconv_outlier.m`` / ``deconv_L2.m``), applied as MATLAB's
# ``imfilter(x, f, 'circular')`` (correlation), each with the relative weight of its hyper-Laplacian term:
# dx = [0 -1 1], dy = dx', dxx = [-1 2 -1], dyy = dxx' (weight 1, 1, 1/4, 1/4) and
# dxy = [-1 1 0; 1 -1 0; 0 0 0] (weight 1/4). As taps {(row offset, column offset): coefficient}:
CHO_FILTERS: tuple[tuple[dict[tuple[int, int], float], float], ...] = (
    ({(0, 0): -1.0, (0, 1): 1.0}, 1.0),
    ({(0, 0): -1.0, (1, 0): 1.0}, 1.0),
    ({(0, -1): -1.0, (0, 0): 2.0, (0, 1): -1.0}, 0.25),
    ({(-1, 0): -1.0, (0, 0): 2.0, (1, 0): -1.0}, 0.25),
    ({(-1, -1): -1.0, (-1, 0): 1.0, (0, -1): 1.0, (0, 0): -1.0}, 0.25),
)


def _forward(v: np.ndarray, axis: int) -> np.ndarray:
    """Circular forward difference ``v[i + 1] - v[i]`` along ``axis`` (-1: columns, -2: rows)."""
    out = np.empty_like(v)
    n = v.shape[axis]
    take = [slice(None)] * v.ndim

    def part(start: int | None, stop: int | None) -> tuple[slice, ...]:
        take[axis] = slice(start, stop)
        return tuple(take)

    np.subtract(v[part(1, None)], v[part(None, n - 1)], out=out[part(None, n - 1)])
    np.subtract(v[part(None, 1)], v[part(n - 1, None)], out=out[part(n - 1, None)])
    return out


def _forward_adjoint(u: np.ndarray, axis: int) -> np.ndarray:
    """The adjoint of :func:`_forward`: ``u[i - 1] - u[i]``, circular."""
    out = np.empty_like(u)
    n = u.shape[axis]
    take = [slice(None)] * u.ndim

    def part(start: int | None, stop: int | None) -> tuple[slice, ...]:
        take[axis] = slice(start, stop)
        return tuple(take)

    np.subtract(u[part(None, n - 1)], u[part(1, None)], out=out[part(1, None)])
    np.subtract(u[part(n - 1, None)], u[part(None, 1)], out=out[part(None, 1)])
    return out


def _cho_derivatives(v: np.ndarray) -> list[np.ndarray]:
    """``v`` correlated with each of :data:`CHO_FILTERS`, from forward differences: dxx = dx^T dx,
    dxy = -(dy^T dx^T)."""
    dx, dy = _forward(v, -1), _forward(v, -2)
    return [dx, dy, _forward_adjoint(dx, -1), _forward_adjoint(dy, -2),
            -_forward_adjoint(_forward_adjoint(v, -1), -2)]


def _cho_derivatives_adjoint(terms: list[np.ndarray | None]) -> np.ndarray:
    """The sum of the adjoints of :data:`CHO_FILTERS` applied to ``terms`` (``None`` terms skipped)."""
    gx, gy, gxx, gyy, gxy = terms
    x_part = gx if gxx is None else gx + _forward(gxx, -1)
    y_part = gy if gyy is None else gy + _forward(gyy, -2)
    total = _forward_adjoint(x_part, -1) + _forward_adjoint(y_part, -2)
    if gxy is not None:
        total -= _forward(_forward(gxy, -2), -1)
    return total


class OutlierDeconvolution(NamedTuple):
    """What :func:`outlier_deconvolve` returns, each in the layout of its input image.

    ``latent``: the deblurred image (not clipped); ``inlier``: the E-step's inlier probability of each
    pixel (Cho's second output); ``weights``: the data weights of the last solve (the inlier probability,
    0 where the re-blurred latent image leaves [0, 1]); ``padded``: the latent image on the whole padded
    grid, to warm-start another call with the same shapes (``init``).
    """

    latent: np.ndarray
    inlier: np.ndarray
    weights: np.ndarray
    padded: np.ndarray


def outlier_deconvolve(blurred: np.ndarray, kernel: np.ndarray, *, lam: float = 3e-3, sigma: float = 5.0 / 255.0,
                       iterations: int = 15, cg_iterations: int = 25, cg_tolerance: float = 1e-4,
                       p: float = 0.8, init: np.ndarray | None = None) -> OutlierDeconvolution:
    """Non-blind deconvolution with outlier handling of Cho, Wang & Lee (ICCV 2011), as their
    ``deconv_outlier.m`` computes it (single precision, like the original).

    The blurred image is padded to ``opt_fft_size(size + kernel - 1)`` by :func:`wrap_boundary_liu`; only
    the original pixels carry data weight. A first solve uses unit data weights and the Gaussian prior
    ``lam |grad x|^2``; then each of ``iterations`` EM steps computes, from the residual ``k * x - b`` of
    the current latent image, the probability that a pixel is an inlier (Gaussian noise ``sigma`` against
    a uniform outlier density with prior 0.1), sets it to 0 where ``k * x`` leaves [0, 1] (clipped,
    i.e. saturated, pixels), and solves the weighted least-squares problem with the hyper-Laplacian prior
    of exponent ``p`` on dx, dy (weight 0.1) and dxx, dyy, dxy (weight 0.025), majorised at the current
    latent image with magnitudes floored at 0.01, by ``cg_iterations`` conjugate-gradient steps (all
    channels in one vector, stopping when the residual norm falls below ``cg_tolerance``).

    ``init`` (a ``padded`` result of an earlier call on the same shapes) skips the first solve and
    starts the EM steps from that latent image.
    """
    kernel = _check_kernel(kernel)
    if not kernel.sum() > 0:
        raise ValueError("benchmark/deconv.py: the kernel must have a positive sum")
    if sigma <= 0 or lam < 0 or iterations < 0 or cg_iterations < 0:
        raise ValueError(f"benchmark/deconv.py: outlier_deconvolve needs sigma > 0, lam >= 0 and non-negative "
                         f"iteration counts, got sigma={sigma}, lam={lam}, iterations={iterations}, "
                         f"cg_iterations={cg_iterations}")
    stack, had_channels = _channels_first(blurred)
    _, height, width = stack.shape
    grid = (opt_fft_size(height + kernel.shape[0] - 1), opt_fft_size(width + kernel.shape[1] - 1))
    target = _channels_first(wrap_boundary_liu(blurred, grid))[0].astype(np.float32)
    mask = np.zeros_like(target)
    mask[:, :height, :width] = 1.0
    otf = psf2otf(kernel, grid, real=True).astype(np.complex64)

    def convolve(v: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
        return fft.irfft2(fft.rfft2(v) * spectrum, s=grid).astype(np.float32)

    def solve(x: np.ndarray, data_weight: np.ndarray, prior: list[np.ndarray]) -> np.ndarray:
        def apply_a(v: np.ndarray) -> np.ndarray:
            weighted = [None if w is None else w * d for w, d in zip(prior, _cho_derivatives(v), strict=True)]
            return convolve(data_weight * convolve(v, otf), np.conj(otf)) + np.float32(lam) * _cho_derivatives_adjoint(
                weighted)

        rhs = convolve(data_weight * target, np.conj(otf))
        residual = rhs - apply_a(x)
        direction = residual.copy()
        rs_old = np.sum(residual * residual)
        for _ in range(cg_iterations):
            a_direction = apply_a(direction)
            alpha = rs_old / np.sum(direction * a_direction)
            x = x + alpha * direction
            residual = residual - alpha * a_direction
            rs_new = np.sum(residual * residual)
            if np.sqrt(rs_new) < cg_tolerance:
                break
            direction = residual + (rs_new / rs_old) * direction
            rs_old = rs_new
        return x

    if init is None:
        ones = np.ones_like(target)
        x = solve(target.copy(), mask, [ones, ones, None, None, None])
    else:
        x = _channels_first(init)[0].astype(np.float32)
        if x.shape != target.shape:
            raise ValueError(f"benchmark/deconv.py: init has shape {x.shape}, the padded grid is {target.shape}")
    inlier = weights = mask
    normaliser = np.float32(1.0 / math.sqrt(2.0 * math.pi * sigma**2))
    for _ in range(iterations):
        reblurred = convolve(x, otf)
        likelihood = normaliser * np.exp(-((reblurred - target) ** 2) / np.float32(2.0 * sigma**2))
        inlier = (1.0 - OUTLIER_PROBABILITY) * likelihood
        inlier = inlier / (inlier + np.float32(OUTLIER_PROBABILITY * OUTLIER_DENSITY))
        weights = mask * inlier
        weights[(reblurred > 1.0) | (reblurred < 0.0)] = 0.0
        prior = [np.float32(CHO_PRIOR_WEIGHT * scale)
                 * np.maximum(np.abs(d), np.float32(CHO_GRADIENT_FLOOR)) ** np.float32(p - 2.0)
                 for (_, scale), d in zip(CHO_FILTERS, _cho_derivatives(x), strict=True)]
        x = solve(x, weights, prior)

    def crop(a: np.ndarray) -> np.ndarray:
        return _channels_last(a[:, :height, :width], had_channels)

    return OutlierDeconvolution(crop(x), crop(inlier), crop(weights), _channels_last(x, had_channels))


def kernel_correlation(reference: np.ndarray, estimate: np.ndarray, max_shift: int = 3) -> float:
    """Largest normalised cross-correlation of two kernels over shifts of up to ``max_shift`` pixels."""
    side = max(reference.shape[0], estimate.shape[0]) + 2 * max_shift

    def centred(k: np.ndarray) -> np.ndarray:
        out = np.zeros((side, side))
        top = (side - k.shape[0]) // 2
        out[top:top + k.shape[0], top:top + k.shape[1]] = k
        return out / np.linalg.norm(k)

    a, b = centred(reference), centred(estimate)
    shifts = range(-max_shift, max_shift + 1)
    return max(float(np.sum(a * np.roll(b, (dy, dx), axis=(0, 1)))) for dy in shifts for dx in shifts)
