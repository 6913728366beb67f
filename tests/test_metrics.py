"""Metrics against independent references: scikit-image, a direct 3-D SSIM, and hand-made Köhler cases."""

import math

import numpy as np
import pytest
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.metrics import (
    SSIM_VARIANTS,
    bt601_luma,
    kohler_score,
    psnr,
    psnr_y,
    pyiqa_psnr_ssim,
    score_image,
    ssim,
)


def _pair(size=(40, 56), sigma=12.0, seed=0):
    sharp = data.astronaut()[120:120 + size[0], 160:160 + size[1]]
    noisy = np.clip(sharp + np.random.default_rng(seed).normal(0, sigma, sharp.shape), 0, 255).astype(np.uint8)
    return noisy, sharp


def test_psnr_matches_scikit_image():
    restored, reference = _pair()
    assert psnr(restored, reference) == pytest.approx(peak_signal_noise_ratio(reference, restored, data_range=255),
                                                      abs=1e-10)
    assert psnr(reference, reference) == math.inf


def test_wang_matches_scikit_image_gaussian_ssim():
    restored, reference = _pair()
    expected = structural_similarity(reference, restored, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255, channel_axis=-1)
    assert ssim(restored, reference, "wang") == pytest.approx(expected, abs=1e-10)


def test_y_is_wang_on_bt601_luma():
    restored, reference = _pair()
    yr, yref = bt601_luma(restored), bt601_luma(reference)
    assert yref.min() >= 16 and yref.max() <= 235
    expected = structural_similarity(yref, yr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255)
    assert ssim(restored, reference, "y") == pytest.approx(expected, abs=1e-10)
    assert psnr_y(restored, reference) == pytest.approx(peak_signal_noise_ratio(yref, yr, data_range=255))


def _matlab_ssim_by_hand(a, b):
    """MATLAB ssim on an RGB volume, written directly: an explicit 11x11x11 Gaussian window slid over
    a replicate-padded volume, one voxel at a time."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    t = np.arange(-5, 6)
    g1 = np.exp(-(t**2) / (2 * 1.5**2))
    w = g1[:, None, None] * g1[None, :, None] * g1[None, None, :]
    w /= w.sum()
    px, py = np.pad(x, 5, mode="edge"), np.pad(y, 5, mode="edge")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            for k in range(x.shape[2]):
                wx, wy = px[i:i + 11, j:j + 11, k:k + 11], py[i:i + 11, j:j + 11, k:k + 11]
                mx, my = (w * wx).sum(), (w * wy).sum()
                vx, vy = (w * wx * wx).sum() - mx**2, (w * wy * wy).sum() - my**2
                cxy = (w * wx * wy).sum() - mx * my
                values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_matlab_variant_matches_a_direct_3d_implementation():
    restored, reference = _pair(size=(14, 16), sigma=20.0)
    assert ssim(restored, reference, "matlab") == pytest.approx(_matlab_ssim_by_hand(restored, reference), abs=1e-12)


def test_variants_are_named_and_differ():
    restored, reference = _pair()
    values = {v: ssim(restored, reference, v) for v in SSIM_VARIANTS}
    assert len(set(np.round(list(values.values()), 6))) == 3
    with pytest.raises(ValueError, match="matlab"):
        ssim(restored, reference, "fast")
    assert set(score_image(restored, reference)) == {"psnr", "psnr_y", "ssim_matlab", "ssim_wang", "ssim_y"}


def test_bad_inputs_are_refused():
    restored, reference = _pair()
    with pytest.raises(ValueError, match="uint8"):
        psnr(restored.astype(np.float32), reference)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(restored[1:], reference)


def _kohler_by_hand(x, z, dy, dx):
    """Masked luma PSNR of the protocol for a known shift (no registration search)."""
    x, z = x.astype(np.float64), z.astype(np.float64)
    zs = (np.sum(x * z) / np.sum(z * z)) * z
    h, w = x.shape[:2]
    shifted, mask = np.zeros_like(zs), np.zeros_like(zs)
    shifted[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = zs[max(-dy, 0):h - max(dy, 0),
                                                                       max(-dx, 0):w - max(dx, 0)]
    mask[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = 1
    luma = np.array([0.299, 0.587, 0.114])
    mse = np.mean(((x * mask) @ luma - shifted @ luma) ** 2)
    return 10 * np.log10(255**2 / mse)


def test_kohler_finds_a_known_shift():
    image = data.astronaut()[100:164, 140:204]
    # The ground-truth frame sees the scene moved up 3 rows and right 2 columns.
    frame = np.zeros_like(image)
    frame[:-3, 2:] = image[3:, :-2]
    result = kohler_score(image, [frame])
    assert result["shift"] == (3, -2)
    assert result["psnr"] == pytest.approx(_kohler_by_hand(image, frame, 3, -2), abs=1e-6)


def test_kohler_undoes_a_known_intensity_scale():
    image = data.astronaut()[200:248, 200:260]
    frame = np.clip(np.round(image * 0.8), 0, 255).astype(np.uint8)
    result = kohler_score(image, [frame])
    assert result["shift"] == (0, 0)
    assert result["scale"] == pytest.approx(np.sum(image.astype(float) * frame) / np.sum(frame.astype(float) ** 2))
    assert result["scale"] == pytest.approx(1.25, abs=0.01)
    assert result["psnr"] == pytest.approx(_kohler_by_hand(image, frame, 0, 0), abs=1e-6)
    assert result["psnr"] > psnr(frame, image) + 10  # the scale, not the raw difference, is scored


def test_kohler_picks_the_best_frame():
    image = data.astronaut()[50:98, 300:348]
    rng = np.random.default_rng(1)
    frames = [np.clip(image + rng.normal(0, s, image.shape), 0, 255).astype(np.uint8) for s in (20, 3, 10)]
    result = kohler_score(image, frames)
    assert result["best_frame"] == 1
    assert result["psnr"] == pytest.approx(_kohler_by_hand(image, frames[1], *result["shift"]), abs=1e-6)


def test_pyiqa_cross_check():
    """pyiqa's PSNR is ours (float32 arithmetic). pyiqa's SSIM is not one of our variants: by default it
    scores luma Y = 0.299 R + 0.587 G + 0.114 B (YIQ), rounded to integers, with a 'valid' Gaussian
    window; computed that way with our Gaussian SSIM, the two agree to float32 precision."""
    from benchmark.metrics import KOHLER_LUMA, _wang_2d

    restored, reference = _pair()
    theirs = pyiqa_psnr_ssim(restored, reference)
    assert theirs["psnr"] == pytest.approx(psnr(restored, reference), abs=1e-4)
    luma = np.asarray(KOHLER_LUMA)
    ours_their_way = _wang_2d(np.round(restored.astype(float) @ luma), np.round(reference.astype(float) @ luma))
    assert theirs["ssim"] == pytest.approx(ours_their_way, abs=1e-5)
    assert abs(theirs["ssim"] - ssim(restored, reference, "y")) > 1e-3  # and it is a different number from `y`
