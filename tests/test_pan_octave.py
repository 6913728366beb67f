"""Pan et al.'s readable building blocks against the official MATLAB code run in GNU Octave, and against plain
transcriptions written here.

``tests/data/pan_octave/reference.mat`` holds small inputs and what the official code returned for them:
Cho, Wang & Lee's ``deconv_outlier`` (with ``wrap_boundary_liu``, ``opt_fft_size``, ``fftconv``), and Pan's
``gradient_confidence_full`` (r-map), ``shock`` and ``determine_truck``. How it was made, with the exact
commands and the sources: ``tests/data/pan_octave/README.md``.
"""

from pathlib import Path

import numpy as np
import pytest
from scipy import io, ndimage

from baselines.pan import edge_threshold, kernel_irls, rmap, shock_filter
from benchmark.deconv import (
    CHO_FILTERS,
    _cho_derivatives,
    _cho_derivatives_adjoint,
    opt_fft_size,
    outlier_deconvolve,
    wrap_boundary_liu,
)

REFERENCE = Path(__file__).parent / "data" / "pan_octave" / "reference.mat"


@pytest.fixture(scope="module")
def ref() -> dict:
    return io.loadmat(REFERENCE)


@pytest.mark.parametrize("case, lam", [("rgb", 0.003), ("gray", 0.01)])
def test_outlier_deconvolution_matches_chos_code(ref, case, lam):
    """RGB 21x26 with a 7x5 kernel, saturation, noise and salt-and-pepper pixels; gray 19x23 with an even
    5x6 kernel. Both in single precision like the original: within 2e-4 of Octave's result."""
    blurred, kernel = ref[f"blurred_{case}"], ref[f"kernel_{case}"]
    result = outlier_deconvolve(blurred, kernel, lam=lam)
    expected = ref[f"latent_{case}"]
    assert result.latent.shape == blurred.shape
    np.testing.assert_allclose(result.latent, expected, atol=2e-4)
    # Cho's second output is the E-step's inlier map on the padded grid; ours is cropped to the image.
    np.testing.assert_allclose(result.inlier, ref[f"inlier_{case}"][:blurred.shape[0], :blurred.shape[1]], atol=2e-4)
    if case == "rgb":  # saturated, noisy, salt and pepper: the outlier model has work to do
        assert result.inlier.min() < 0.1 and result.inlier.max() > 0.9 and (result.weights == 0).any()
    # A kernel flipped by 180 degrees (convolution taken as correlation) would not pass.
    flipped = outlier_deconvolve(blurred, kernel[::-1, ::-1], lam=lam).latent
    assert np.abs(flipped - expected).max() > 0.05


def test_wrap_boundary_and_fft_sizes_match_chos_code(ref):
    np.testing.assert_allclose(wrap_boundary_liu(ref["wrap_in"], (16, 20)), ref["wrap_out"], atol=1e-12)
    sizes = [opt_fft_size(int(n)) for n in ref["fft_lengths"].ravel()]
    assert sizes == [int(m) for m in ref["fft_sizes"].ravel()]


@pytest.mark.parametrize("window", [3, 5])
def test_rmap_matches_pans_gradient_confidence(ref, window):
    np.testing.assert_allclose(rmap(ref["rmap_in"], window), ref[f"rmap_{window}"], atol=1e-12)


def test_shock_filter_matches_gilboas_code(ref):
    np.testing.assert_allclose(shock_filter(ref["shock_in"], 10, 1.0), ref["shock_10_1"], atol=1e-12)
    np.testing.assert_allclose(shock_filter(ref["shock_in"], 7, 0.5), ref["shock_7_05"], atol=1e-12)


def test_edge_threshold_matches_pans_determine_truck(ref):
    assert edge_threshold(ref["truck_in"], (5, 5)) == pytest.approx(ref["truck_5x5"].item(), abs=1e-12)
    assert edge_threshold(ref["truck_in"], (7, 3)) == pytest.approx(ref["truck_7x3"].item(), abs=1e-12)


def _filter(taps: dict) -> np.ndarray:
    f = np.zeros((3, 3))
    for (dy, dx), c in taps.items():
        f[1 + dy, 1 + dx] = c
    return f


def test_cho_derivatives_are_imfilters_circular_correlations_and_their_adjoint():
    """Transcription of ``imfilter(x, f, 'circular')`` (correlation, wrapped) for dx = [0 -1 1], dy,
    dxx = [-1 2 -1], dyy and dxy = [-1 1 0; 1 -1 0; 0 0 0], on a non-square stack of two channels."""
    rng = np.random.default_rng(0)
    v = rng.random((2, 7, 9))
    filters = [np.array([[0, 0, 0], [0, -1, 1], [0, 0, 0]]), np.array([[0, 0, 0], [0, -1, 0], [0, 1, 0]]),
               np.array([[0, 0, 0], [-1, 2, -1], [0, 0, 0]]), np.array([[0, -1, 0], [0, 2, 0], [0, -1, 0]]),
               np.array([[-1, 1, 0], [1, -1, 0], [0, 0, 0]])]
    for (taps, _), f in zip(CHO_FILTERS, filters, strict=True):
        np.testing.assert_array_equal(_filter(taps), f)
    for d, f in zip(_cho_derivatives(v), filters, strict=True):
        expected = np.stack([ndimage.correlate(c, f.astype(float), mode="wrap") for c in v])
        np.testing.assert_allclose(d, expected, atol=1e-12)
    u = [rng.random(v.shape) for _ in filters]
    lhs = sum(np.sum(d * w) for d, w in zip(_cho_derivatives(v), u, strict=True))
    assert lhs == pytest.approx(float(np.sum(v * _cho_derivatives_adjoint(u))), rel=1e-12)


def test_e_step_weights_follow_chos_formula():
    """One E-step on a given latent image (no CG step, so the latent stays as given), transcribed: Gaussian
    inlier likelihood (sigma) against a uniform outlier density with prior 0.1, weight 0 where the re-blurred
    latent leaves [0, 1] and outside the image. The kernel is asymmetric, so a flipped convolution fails."""
    rng = np.random.default_rng(1)
    blurred = rng.uniform(0.0, 1.0, (12, 14))
    kernel = np.array([[0.0, 0.1, 0.0], [0.5, 0.2, 0.0], [0.0, 0.0, 0.2]])
    grid = (opt_fft_size(12 + 2), opt_fft_size(14 + 2))
    latent = rng.uniform(-0.2, 1.3, grid)  # leaves [0, 1] after blurring in places
    sigma = 0.05
    result = outlier_deconvolve(blurred, kernel, sigma=sigma, iterations=1, cg_iterations=0, init=latent)
    target = wrap_boundary_liu(blurred, grid)
    reblurred = ndimage.convolve(latent, kernel, mode="wrap")
    inlier = 0.9 * np.exp(-(reblurred - target) ** 2 / (2 * sigma**2)) / np.sqrt(2 * np.pi * sigma**2)
    inlier = inlier / (inlier + 0.1)
    weights = np.where((reblurred > 1) | (reblurred < 0), 0.0, inlier)[:12, :14]
    np.testing.assert_allclose(result.latent, latent[:12, :14], atol=1e-6)
    np.testing.assert_allclose(result.inlier, inlier[:12, :14], atol=1e-5)
    np.testing.assert_allclose(result.weights, weights, atol=1e-5)
    assert (weights == 0).any() and (weights > 0.5).any()


def test_kernel_step_solves_the_weighted_normal_equations():
    """Against a dense transcription: columns are the latent gradients shifted by each kernel offset
    (convolution: prediction(p) = sum_q k(q) L(p - q), the kernel's centre at (h // 2, w // 2), latent 0
    outside its grid), rows weighted by w. A non-square kernel with an even side catches a transposed or
    off-centre kernel."""
    rng = np.random.default_rng(2)
    shape, size = (11, 13), (4, 5)
    latent = [rng.standard_normal(shape) * (rng.random(shape) < 0.4) for _ in range(2)]
    blurred = [rng.standard_normal(shape) for _ in range(2)]
    weights = rng.uniform(0.0, 1.0, shape)
    rows, columns = [], []
    for lat, blu in zip(latent, blurred, strict=True):
        padded = np.pad(lat, ((size[0], size[0]), (size[1], size[1])))
        block = []
        for a in range(size[0]):
            for b in range(size[1]):
                dy, dx = a - size[0] // 2, b - size[1] // 2
                block.append(padded[size[0] - dy:size[0] - dy + shape[0], size[1] - dx:size[1] - dx + shape[1]].ravel())
        columns.append(np.stack(block, axis=1) * np.sqrt(weights.ravel())[:, None])
        rows.append(blu.ravel() * np.sqrt(weights.ravel()))
    a, b = np.concatenate(columns), np.concatenate(rows)
    l2 = 0.01  # relative to the data term's diagonal, sum w (Lx^2 + Ly^2)
    diagonal = np.sum(weights * (latent[0] ** 2 + latent[1] ** 2))
    expected = np.linalg.solve(a.T @ a + l2 * diagonal * np.eye(a.shape[1]), a.T @ b).reshape(size)
    start = np.full(size, 1.0 / np.prod(size))
    found = kernel_irls(*latent, *blurred, weights, start, l2=l2, lam=0.0, exponent=0.5, irls_iterations=0,
                        cg_iterations=200)
    assert (expected < 0).any()  # the clipping shows too
    np.testing.assert_allclose(found, np.maximum(expected, 0.0), atol=1e-8)
