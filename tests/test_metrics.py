"""Metrics against independent references: scikit-image, a direct 3-D SSIM, and a transcription of the Köhler
benchmark's MATLAB evaluation code."""

import functools
import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.signal import correlate2d
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.metrics import (
    SSIM_VARIANTS,
    bt601_luma,
    dft_register,
    kohler_ms_ssim,
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


# -- Köhler: a plain transcription of the benchmark's MATLAB code ------------------------------------
# eval_image.m, dftregistration.m (usfac 1), imshift.m + shiftmatrix.m ('same', integer shifts),
# get_best_metric_value2.m and metrix_mux's preprocess / PSNR / ssim_index / mssim_index /
# ssim_index_modified, line by line with MATLAB's 1-based indices, written here without
# benchmark.metrics so that kohler_score is checked against something it does not share.


@functools.cache
def _m_shiftmatrix1d(n, d):
    sd, d = np.sign(d), abs(d)
    m = n - math.ceil(d)
    cd = math.ceil(d)
    d = d - cd + 1
    eye_m, eye_n = np.eye(m), np.eye(n)
    if sd > 0:
        a = np.hstack([np.zeros((m, cd)), eye_m, np.zeros((m, cd - 1)), eye_m, np.zeros((m, 1))])
        b = np.kron(np.array([[d], [1 - d]]), eye_n)
    elif sd == 0:
        a = np.hstack([eye_m, eye_m])
        b = np.kron(np.array([[d], [1 - d]]), eye_n)
    else:
        a = np.hstack([np.zeros((m, 1)), eye_m, np.zeros((m, cd - 1)), eye_m, np.zeros((m, cd))])
        b = np.kron(np.array([[1 - d], [d]]), eye_n)
    return a @ b


def _m_colshift_same(x, t):
    sx = x.shape
    y = _m_shiftmatrix1d(sx[0], -t[0]) @ x @ _m_shiftmatrix1d(sx[1], -t[1]).T
    xs = np.zeros(sx)
    if t[0] >= 0 and t[1] >= 0:
        xs[t[0]:, t[1]:] = y  # xs(1+t(1):end, 1+t(2):end) = y
    elif t[0] <= 0 and t[1] <= 0:
        xs[:sx[0] + t[0], :sx[1] + t[1]] = y  # xs(1:end+t(1), 1:end+t(2)) = y
    elif t[0] >= 0 and t[1] <= 0:
        xs[t[0]:, :sx[1] + t[1]] = y
    elif t[0] <= 0 and t[1] >= 0:
        xs[:sx[0] + t[0], t[1]:] = y
    return xs


def _m_imshift_same(x, t):
    return np.stack([_m_colshift_same(x[:, :, i], t) for i in range(x.shape[2])], axis=2)


def _m_dftregistration(buf1ft, buf2ft):
    m, n = buf1ft.shape
    cc = np.fft.ifft2(buf1ft * np.conj(buf2ft)).real  # MATLAB's ifft2 is real for conjugate-symmetric input
    max1, loc1 = cc.max(axis=0), cc.argmax(axis=0)  # [max1, loc1] = max(CC): per column, first row
    loc2 = int(np.argmax(max1))  # [max2, loc2] = max(max1): first column
    rloc, cloc = int(loc1[loc2]) + 1, loc2 + 1
    md2, nd2 = math.trunc(m / 2), math.trunc(n / 2)
    row_shift = rloc - m - 1 if rloc > md2 else rloc - 1
    col_shift = cloc - n - 1 if cloc > nd2 else cloc - 1
    return row_shift, col_shift


def _m_preprocess(image):
    return 0.29900 * image[:, :, 0] + 0.58700 * image[:, :, 1] + 0.11400 * image[:, :, 2]


def _m_fspecial_gaussian():
    half = 5
    xx, yy = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1))
    h = np.exp(-(xx * xx + yy * yy) / (2 * 1.5 * 1.5))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def _m_filter2_valid(window, img):
    return correlate2d(img, window, mode="valid")


def _m_ssim_index(img1, img2):
    window, k, big_l = _m_fspecial_gaussian(), (0.01, 0.03), 255
    c1, c2 = (k[0] * big_l) ** 2, (k[1] * big_l) ** 2
    window = window / window.sum()
    mu1, mu2 = _m_filter2_valid(window, img1), _m_filter2_valid(window, img2)
    sigma1_sq = _m_filter2_valid(window, img1 * img1) - mu1 * mu1
    sigma2_sq = _m_filter2_valid(window, img2 * img2) - mu2 * mu2
    sigma12 = _m_filter2_valid(window, img1 * img2) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)) / ((mu1 * mu1 + mu2 * mu2 + c1)
                                                             * (sigma1_sq + sigma2_sq + c2))
    return ssim_map.mean()


def _m_ssim_index_modified(img1, img2, k):
    window, big_l = _m_fspecial_gaussian(), 255
    c1, c2 = (k[0] * big_l) ** 2, (k[1] * big_l) ** 2
    mu1, mu2 = _m_filter2_valid(window, img1), _m_filter2_valid(window, img2)
    sigma1_sq = _m_filter2_valid(window, img1 * img1) - mu1 * mu1
    sigma2_sq = _m_filter2_valid(window, img2 * img2) - mu2 * mu2
    sigma1, sigma2 = np.sqrt(sigma1_sq.astype(complex)).real, np.sqrt(sigma2_sq.astype(complex)).real
    sigma12 = _m_filter2_valid(window, img1 * img2) - mu1 * mu2
    big_m = (2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1)
    big_v = (2 * sigma1 * sigma2 + c2) / (sigma1_sq + sigma2_sq + c2)
    big_r = (sigma12 + c2 / 2) / (sigma1 * sigma2 + c2 / 2)
    return big_m.mean(), big_v.mean(), big_r.mean()


def _m_power(base, exponent):
    return base**exponent if base >= 0 else complex(base) ** exponent  # MATLAB: complex for a negative base


def _m_mssim_index(img1, img2):
    nlevs, k = 5, (0.01, 0.03)
    lod = np.array([0.037828455507260, -0.023849465019560, -0.110624404418440, 0.377402855612830,
                    0.852698679008890, 0.377402855612830, -0.110624404418440, -0.023849465019560, 0.037828455507260])
    lpf = np.outer(lod, lod)
    lpf = lpf / lpf.sum()
    ssim_v, ssim_r = np.zeros(nlevs), np.zeros(nlevs)
    _, ssim_v[0], ssim_r[0] = _m_ssim_index_modified(img1, img2, k)
    for s in range(1, nlevs):
        img1 = correlate2d(np.pad(img1, 4, mode="symmetric"), lpf, mode="valid")  # imfilter(.., 'symmetric', 'same')
        img2 = correlate2d(np.pad(img2, 4, mode="symmetric"), lpf, mode="valid")
        img1, img2 = img1[::2, ::2], img2[::2, ::2]
        ssim_m, ssim_v[s], ssim_r[s] = _m_ssim_index_modified(img1, img2, k)
    alpha, beta = 0.1333, [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    comp = [_m_power(ssim_m, alpha), np.prod([_m_power(v, b) for v, b in zip(ssim_v, beta, strict=True)]),
            np.prod([_m_power(r, g) for r, g in zip(ssim_r, beta, strict=True)])]
    return np.prod(comp)


def _m_metrix_mux(reference, query, metric):
    reference, query = _m_preprocess(reference), _m_preprocess(query)
    if metric == "PSNR":
        with np.errstate(divide="ignore"):  # MATLAB: 255^2 / 0 = Inf
            return 10 * math.log10(255 * 255 / np.mean((reference.ravel() - query.ravel()) ** 2))
    return {"SSIM": _m_ssim_index, "MSSIM": _m_mssim_index}[metric](reference, query)


def _m_eval_image(deblurred, frames, metric):
    z = deblurred.astype(float)
    c = np.ones(deblurred.shape)
    scores, shifts = [], []
    for frame in frames:
        x = frame.astype(float)
        xf = np.fft.fft2(x.mean(axis=2))
        zs = (np.sum(x * z) / np.sum(z * z)) * z
        zf = np.fft.fft2(zs.mean(axis=2))
        shift = _m_dftregistration(xf, zf)
        cr, zr = _m_imshift_same(c, shift), _m_imshift_same(zs, shift)
        xr = x * cr
        scores.append(_m_metrix_mux(xr, zr, metric))
        shifts.append(shift)
    return scores, shifts


def _m_best(scores):
    """get_best_metric_value2 for PSNR and MSSIM: abs(max(score(:))); MATLAB's max compares magnitudes
    once any element is complex, and returns the first maximum."""
    values = np.array(scores)
    if np.iscomplexobj(values) and np.any(values.imag != 0):
        index = int(np.argmax(np.abs(values)))
    else:
        index = int(np.argmax(values.real))
    return abs(values[index]), index


def _swapped_roles_psnr(deblurred, frame):
    """The convention this suite used before: the FRAME scaled onto and shifted to the deblurred image,
    the deblurred image masked. Not Köhler's protocol; here to show the cases below tell them apart."""
    z, x = frame.astype(float), deblurred.astype(float)
    zs = (np.sum(x * z) / np.sum(z * z)) * z
    shift = _m_dftregistration(np.fft.fft2(x.mean(axis=2)), np.fft.fft2(zs.mean(axis=2)))
    zr, xr = _m_imshift_same(zs, shift), x * _m_imshift_same(np.ones(x.shape), shift)
    return _m_metrix_mux(xr, zr, "PSNR")


def _kohler_case(shape, scale, shift, noise=0.0, frames=1, offset=0.0, blur=False, unrelated=False, at=(100, 120),
                 seed=0):
    """Ground-truth frames cut along a short camera path from a photo, and a 'deblurred' image: the
    scene moved by ``shift`` (so the image registers onto frame 0 with that shift), times ``scale``,
    plus ``offset`` and noise, optionally blurred, rounded and clipped to uint8."""
    rng = np.random.default_rng(seed)
    scene = data.astronaut().astype(float)
    (h, w), (top, left) = shape, (at[0] + 8, at[1] + 8)

    def crop(image, dy, dx):
        return image[top + dy:top + dy + h, left + dx:left + dx + w]

    path = [(i // 2, (i + 1) // 2) for i in range(frames)]  # (0, 0), (0, 1), (1, 1), (1, 2), ...
    gt = [np.clip(np.round(crop(scene, *p)), 0, 255).astype(np.uint8) for p in path]
    source = crop(data.coffee().astype(float), *shift) if unrelated else crop(scene, *shift)
    deblurred = scale * source + offset + rng.normal(0.0, noise, source.shape)
    if blur:
        deblurred = ndimage.uniform_filter(deblurred, size=(3, 3, 1))
    return np.clip(np.round(deblurred), 0, 255).astype(np.uint8), gt


KOHLER_CASES = {
    "identical": dict(shape=(48, 48), scale=1.0, shift=(0, 0)),
    "noiseless-shifted-copy": dict(shape=(48, 48), scale=1.0, shift=(3, -2)),
    "s0.9-shift(5,5)": dict(shape=(47, 53), scale=0.9, shift=(5, 5), noise=2),
    "s1.1-shift(-5,-5)": dict(shape=(47, 53), scale=1.1, shift=(-5, -5), noise=2),
    "s0.9-shift(-4,3)": dict(shape=(51, 45), scale=0.9, shift=(-4, 3), noise=5),
    "s1.1-shift(2,-5)": dict(shape=(51, 45), scale=1.1, shift=(2, -5), noise=5),
    "s1.0-shift(-1,4)-noisy": dict(shape=(45, 61), scale=1.0, shift=(-1, 4), noise=8),
    "s1.1-offset-clipped-255": dict(shape=(64, 64), scale=1.1, shift=(5, 0), offset=40),
    "s0.9-shift(0,-5)": dict(shape=(64, 64), scale=0.9, shift=(0, -5), noise=3),
    "heavy-noise": dict(shape=(33, 39), scale=1.0, shift=(1, 1), noise=25),
    "s0.9-blurred": dict(shape=(41, 57), scale=0.9, shift=(4, -1), blur=True),
    "s1.1-dark-region": dict(shape=(49, 49), scale=1.1, shift=(-3, 3), noise=1, at=(0, 0)),
    "unrelated-image": dict(shape=(48, 48), scale=1.0, shift=(0, 0), unrelated=True),
    "unrelated-s0.9-odd": dict(shape=(37, 41), scale=0.9, shift=(2, 2), noise=4, unrelated=True),
    "4-frames-s0.9": dict(shape=(48, 52), scale=0.9, shift=(2, -3), noise=2, frames=4),
    "5-frames-s1.1": dict(shape=(45, 45), scale=1.1, shift=(-5, 4), noise=6, frames=5),
    "3-frames-clipped-0": dict(shape=(55, 49), scale=1.0, shift=(1, -4), offset=-60, frames=3),
    "ms-s0.9-shift(3,-4)": dict(shape=(165, 171), scale=0.9, shift=(3, -4), noise=3),
    "ms-s1.1-2-frames": dict(shape=(161, 163), scale=1.1, shift=(-5, 5), noise=2, frames=2),
    "ms-blurred-unrelated": dict(shape=(170, 162), scale=1.0, shift=(0, 0), blur=True, unrelated=True),
}


@pytest.mark.parametrize("case", list(KOHLER_CASES))
def test_kohler_score_is_eval_image(case):
    spec = KOHLER_CASES[case]
    deblurred, frames = _kohler_case(**spec)
    ours = kohler_score(deblurred, frames)

    psnrs, shifts = _m_eval_image(deblurred, frames, "PSNR")
    expected_psnr, psnr_frame = _m_best(psnrs)
    assert ours["psnr"] == pytest.approx(expected_psnr, abs=1e-9)
    assert ours["best_frame"] == psnr_frame
    assert ours["shift"] == shifts[psnr_frame]
    ssims = _m_eval_image(deblurred, frames, "SSIM")[0]
    assert ours["ssim_metrix"] == pytest.approx(max(ssims), abs=1e-10)
    assert ours["best_frame_ssim"] == int(np.argmax(ssims))
    if min(spec["shape"]) >= 161:
        mssims = _m_eval_image(deblurred, frames, "MSSIM")[0]
        expected_ms, ms_frame = _m_best(mssims)
        assert ours["ms_ssim_metrix"] == pytest.approx(expected_ms, abs=1e-10)
        assert ours["best_frame_ms_ssim"] == ms_frame
    else:  # below 161 pixels a side, the 5th scale is smaller than the 11x11 window
        assert math.isnan(ours["ms_ssim_metrix"])


@pytest.mark.parametrize("roll", [(-4, 3), (5, 5), (0, -5)])
def test_kohler_shifts_the_deblurred_image_onto_the_frame(roll):
    """On a circularly moved texture the registration peak is exact: the deblurred image (not the frame) is
    moved back by minus the roll."""
    frame = np.clip(np.round(ndimage.gaussian_filter(np.random.default_rng(7).random((43, 50, 3)) * 255,
                                                     (1, 1, 0))), 0, 255).astype(np.uint8)
    deblurred = np.clip(np.round(0.9 * np.roll(frame, roll, axis=(0, 1)).astype(float)), 0, 255).astype(np.uint8)
    result = kohler_score(deblurred, [frame])
    assert result["shift"] == (-roll[0], -roll[1])
    assert result["psnr"] > 35  # the scale is fitted before the shift, so it is not quite 1 / 0.9


def test_kohler_cases_tell_the_roles_apart():
    """Where the intensity scale is not 1 and the image is shifted, scaling and shifting the frame instead
    of the deblurred image (and masking the other one) gives a different number: the cases above would
    catch swapped roles."""
    moved = {name: s for name, s in KOHLER_CASES.items() if s["scale"] != 1.0 and s["shift"] != (0, 0)}
    assert len(moved) >= 8
    for name, spec in moved.items():
        deblurred, frames = _kohler_case(**spec)
        official = _m_best(_m_eval_image(deblurred, frames[:1], "PSNR")[0])[0]
        assert abs(official - _swapped_roles_psnr(deblurred, frames[0])) > 0.05, name


@pytest.mark.parametrize(("size", "roll", "expected"), [
    ((48, 35), (24, 0), (-24, 0)),  # peak at k = N/2: the shift is k - N
    ((48, 35), (0, 17), (0, -17)),
    ((48, 35), (0, -17), (0, -18)),  # k = 17 = floor(35 / 2): wraps to 17 - 35
    ((31, 40), (-3, 5), (3, -5)),
])
def test_dft_register_wrap_rule(size, roll, expected):
    reference = np.random.default_rng(4).random(size)
    moving = np.roll(reference, roll, axis=(0, 1))
    assert dft_register(reference, moving) == expected
    assert _m_dftregistration(np.fft.fft2(reference), np.fft.fft2(moving)) == expected


def test_kohler_ms_ssim_is_mssim_index():
    """Including an inverted image, whose negative structure terms make MATLAB's MSSIM complex: its
    magnitude is what get_best_metric_value2's abs(max(...)) reports."""
    x = _m_preprocess(data.astronaut()[108:278, 128:295].astype(float))
    noisy = 0.8 * x + np.random.default_rng(0).normal(0, 10, x.shape)
    assert kohler_ms_ssim(x, noisy) == pytest.approx(_m_mssim_index(x, noisy), abs=1e-12)
    theirs = _m_mssim_index(x, 255 - x)
    assert isinstance(theirs, complex) and theirs.imag != 0
    assert kohler_ms_ssim(x, 255 - x) == pytest.approx(abs(theirs), abs=1e-12)


def test_kohler_ms_ssim_needs_161_pixels():
    deblurred, frames = _kohler_case(shape=(160, 200), scale=1.0, shift=(1, 1))
    result = kohler_score(deblurred, frames)
    assert math.isnan(result["ms_ssim_metrix"]) and result["best_frame_ms_ssim"] == -1
    assert math.isfinite(result["psnr"]) and 0 < result["ssim_metrix"] <= 1
    with pytest.raises(ValueError, match="161 pixels"):
        kohler_ms_ssim(np.zeros((160, 200)), np.zeros((160, 200)))


def test_kohler_score_refuses_bad_input():
    deblurred, frames = _kohler_case(shape=(32, 32), scale=1.0, shift=(0, 0))
    with pytest.raises(ValueError, match="at least one"):
        kohler_score(deblurred, [])
    with pytest.raises(ValueError, match="shapes differ"):
        kohler_score(deblurred, [frames[0][1:]])
    black = kohler_score(np.zeros_like(deblurred), frames)  # the scale is 0/0: NaN, as in MATLAB
    assert all(math.isnan(black[k]) for k in ("psnr", "ssim_metrix", "ms_ssim_metrix"))


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
