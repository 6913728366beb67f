"""The official protocols of HIDE (MATLAB psnr/ssim on RGB uint8) and RealBlur (evaluation_RealBlur_ecc.py),
against plain transcriptions written here, on cases that tell a swapped argument, a missing mask or a wrong
crop apart from the right reading; known shifts and homographies are recovered."""

import math

import cv2
import numpy as np
import pytest
from skimage import data as photos
from skimage.metrics import structural_similarity

from benchmark.metrics import hide_score, psnr, realblur_align, realblur_score, ssim


def official_realblur(deblurred_u8, gt_u8, *, mask=True, pad=5, ssim_mask=True):
    """rimchang/RealBlur evaluation_RealBlur_ecc.py, image_align + compute_psnr + the SSIM of
    evaluation_folder, line by line. scikit-image 0.17.2 (which the script requires) computed SSIM in
    float64 whatever its input; later releases keep float32, so the aligned images are cast here.
    ``mask``/``pad``/``ssim_mask`` switch the steps off, to show that the cases below depend on them."""
    deblurred = deblurred_u8.astype("float32") / 255
    gt = gt_u8.astype("float32") / 255
    z, x = deblurred, gt
    c = np.ones_like(z)
    zs = (np.sum(x * z) / np.sum(z * z)) * z
    warp_matrix = np.eye(3, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 0)
    (cc, warp_matrix) = cv2.findTransformECC(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.cvtColor(zs, cv2.COLOR_RGB2GRAY),
                                             warp_matrix, cv2.MOTION_HOMOGRAPHY, criteria, inputMask=None,
                                             gaussFiltSize=5)
    target_shape = x.shape
    zr = cv2.warpPerspective(zs, warp_matrix, (target_shape[1], target_shape[0]),
                             flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    cr = cv2.warpPerspective(np.ones_like(zs, dtype="float32"), warp_matrix, (target_shape[1], target_shape[0]),
                             flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=0)
    if not mask:
        cr = c
    zr = zr * cr
    xr = x * cr
    err = np.sum((xr - zr) ** 2, dtype=np.float64) / np.sum(cr)
    value_psnr = 10 * np.log10((1 ** 2) / err)
    _, ssim_map = structural_similarity(xr.astype(np.float64), zr.astype(np.float64), channel_axis=-1,
                                        gaussian_weights=True, use_sample_covariance=False, data_range=1.0, full=True)
    if ssim_mask:
        ssim_map = ssim_map * cr
    cropped = ssim_map[pad:-pad, pad:-pad, :] if pad else ssim_map
    crop_cr = cr[pad:-pad, pad:-pad, :] if pad else cr
    value_ssim = np.mean(cropped.sum(axis=0).sum(axis=0) / crop_cr.sum(axis=0).sum(axis=0))
    return value_psnr, value_ssim, warp_matrix


def _photo(h=120, w=136):
    return np.ascontiguousarray(photos.astronaut()[100:100 + h, 150:150 + w])


def _warped(image, matrix):
    """``image`` seen through ``matrix``: out(p) = image(matrix^-1 p), reflected at the border."""
    return cv2.warpPerspective(image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REFLECT)


def _degrade(image, gain, noise, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(np.round(gain * image + rng.normal(0, noise, image.shape)), 0, 255).astype(np.uint8)


# A shift with a projective part, a rotation by 1 degree and a pure translation: each moves content off the
# border, so the mask and the crop matter.
ANGLE = math.radians(1.0)
CASES = {
    "homography": np.array([[1.0, 0.012, 3.5], [0.006, 1.0, -2.5], [2e-5, 1e-5, 1.0]], np.float32),
    "rotation": np.array([[math.cos(ANGLE), -math.sin(ANGLE), 2.0], [math.sin(ANGLE), math.cos(ANGLE), 1.0],
                          [0, 0, 1]], np.float32),
    "shift": np.array([[1, 0, 4.0], [0, 1, -3.0], [0, 0, 1]], np.float32),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_realblur_score_is_the_official_script(case):
    gt = _photo()
    restored = _degrade(_warped(gt, CASES[case]), gain=0.8, noise=3.0)
    ours = realblur_score(restored, gt)
    value_psnr, value_ssim, warp = official_realblur(restored, gt)
    assert ours["ecc_converged"]
    assert ours["psnr"] == pytest.approx(value_psnr, abs=1e-9)
    assert ours["ssim"] == pytest.approx(value_ssim, abs=1e-9)
    assert np.allclose(np.reshape(ours["warp"], (3, 3)), warp)


@pytest.mark.parametrize("case", sorted(CASES))
def test_known_warps_are_recovered(case):
    gt = _photo()
    restored = _warped(gt, CASES[case])
    aligned = realblur_align(restored, gt)
    assert aligned["converged"]
    h, w = gt.shape[:2]
    points = np.array([[x, y, 1.0] for x in (10, w / 2, w - 11) for y in (10, h / 2, h - 11)]).T

    def moved(matrix):
        p = np.asarray(matrix, np.float64) @ points
        return p[:2] / p[2]

    # within a quarter pixel over the frame (10 px in from its border, which the warp filled by reflection)
    assert np.abs(moved(aligned["warp"]) - moved(CASES[case])).max() < 0.25
    assert aligned["scale"] == pytest.approx(1.0, abs=0.05)  # fitted before the alignment, as the script does
    # only the pixels the warped image covers count: the mask is 0 where it left the frame
    assert 0 < aligned["cr"].mean() < 1 and set(np.unique(aligned["cr"])) == {0.0, 1.0}
    assert realblur_score(restored, gt)["psnr"] > psnr(restored, gt) + 10  # the alignment undid the warp


def test_the_cases_tell_a_swapped_argument_a_missing_mask_and_a_wrong_crop_apart():
    gt = _photo()
    # a warp of 8-9 px: the invalid border outgrows the 5-pixel crop, so the mask changes the SSIM too
    large = np.array([[1, 0.01, 9], [0.005, 1, -8], [2e-5, 1e-5, 1]], np.float32)
    restored = _degrade(_warped(gt, large), gain=0.6, noise=4.0)
    ours = realblur_score(restored, gt)
    right = official_realblur(restored, gt)
    swapped = official_realblur(gt, restored)  # reference and restored exchanged
    assert abs(swapped[0] - right[0]) > 1.0 and abs(ours["psnr"] - swapped[0]) > 1.0
    no_mask = official_realblur(restored, gt, mask=False)
    assert abs(no_mask[0] - right[0]) > 1.0 and abs(no_mask[1] - right[1]) > 1e-2
    for wrong in (official_realblur(restored, gt, pad=0), official_realblur(restored, gt, pad=6),
                  official_realblur(restored, gt, ssim_mask=False)):
        assert abs(wrong[1] - right[1]) > 1e-4 and abs(ours["ssim"] - wrong[1]) > 1e-4
    assert ours["psnr"] == pytest.approx(right[0], abs=1e-9) and ours["ssim"] == pytest.approx(right[1], abs=1e-9)


def test_intensity_scaling_forgives_a_global_gain():
    gt = _photo()
    darker = np.round(gt * 0.5).astype(np.uint8)
    assert realblur_score(darker, gt)["psnr"] > 40 > psnr(darker, gt)
    assert realblur_score(darker, gt)["scale"] == pytest.approx(2.0, rel=0.01)


def test_ecc_failure_falls_back_to_the_identity_and_is_recorded():
    gt = _photo()
    negative = 255 - gt  # a negative image: the correlation can only fall, ECC gives up
    with pytest.raises(cv2.error):
        official_realblur(negative, gt)  # the official script stops here; the image must not vanish from the mean
    scores = realblur_score(negative, gt)
    assert scores["ecc_converged"] is False and np.reshape(scores["warp"], (3, 3)).tolist() == np.eye(3).tolist()
    z, x = negative.astype(np.float32) / 255, gt.astype(np.float32) / 255
    zs = (np.sum(x * z) / np.sum(z * z)) * z  # identity warp, full mask: plain masked-PSNR of the scaled image
    expected = 10 * np.log10(1 / (np.sum((x - zs) ** 2, dtype=np.float64) / x.size))
    assert math.isfinite(scores["psnr"]) and scores["psnr"] == pytest.approx(expected, abs=1e-9)


def test_identical_images_score_near_perfect():
    gt = _photo()
    scores = realblur_score(gt, gt)  # ECC ends a hair off the identity, so the cubic resampling is not exact
    assert scores["psnr"] > 100 and scores["ssim"] == pytest.approx(1.0, abs=1e-9)
    assert scores["psnr"] == pytest.approx(official_realblur(gt, gt)[0], abs=1e-6)


def test_realblur_refuses_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        realblur_score(_photo(), _photo(100, 100))
    with pytest.raises(ValueError, match="uint8"):
        realblur_score(_photo().astype(np.float32), _photo())


def test_hide_score_is_matlab_psnr_and_3d_ssim_on_rgb():
    gt = _photo()
    restored = _degrade(_warped(gt, CASES["shift"]), gain=0.9, noise=5.0)
    scores = hide_score(restored, gt)
    mse = np.mean((restored.astype(np.float64) - gt.astype(np.float64)) ** 2)  # MATLAB psnr: all values, peak 255
    assert scores["psnr"] == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-12)
    assert scores["ssim_matlab"] == ssim(restored, gt, "matlab")
    # no border crop, no Y channel, no alignment: shifting the image costs, unlike RealBlur
    assert scores["ssim_matlab"] != pytest.approx(ssim(restored, gt, "wang"), abs=1e-3)
    assert scores["psnr"] < realblur_score(restored, gt)["psnr"] - 5
