"""Sun et al. against their released code: cases computed once by the official MATLAB/C files in GNU
Octave (``tests/sun_reference.py``, command in ``tests/data/sun/README.md``) and stored in
``tests/data/sun/reference.npz``."""

from pathlib import Path

import numpy as np
import pytest
import torch
from sun_reference import base_labels, reference_gmm

from models.sun_deconv import GMM, MotionBlur, deconvolve
from models.sun_mrf import candidate_ranks, extended_labels, full_field, mrf_labels, node_grid, valid_region

REFERENCE = Path(__file__).parent / "data" / "sun" / "reference.npz"


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(REFERENCE))


def test_blur_operator_and_its_adjoint_match_motionBlurConv_and_its_mirror(ref):
    blur = MotionBlur(ref["operator_mag"], ref["operator_ori"])
    kx = blur(torch.from_numpy(ref["operator_x"])).numpy()
    kty = blur.T(torch.from_numpy(ref["operator_y"])).numpy()
    assert np.abs(kx - ref["operator_Kx"]).max() < 1e-9
    assert np.abs(kty - ref["operator_KTy"]).max() < 1e-9


def test_deconvolution_matches_fast_deconv_nonUniform_gmmprior(ref):
    weights, covs, means = reference_gmm()
    restored = deconvolve(ref["deconv_blurred"], ref["deconv_mag"], ref["deconv_ori"],
                          GMM(weights, covs, means, "reference"))
    assert np.abs(restored - ref["deconv_restored"]).max() * 255 < 0.5
    # not trivially so: the official result is far from its input
    assert np.abs(ref["deconv_blurred"] - ref["deconv_restored"]).max() * 255 > 20


def test_label_extension_and_order_match_Deblur_CNN_motion(ref):
    labels, reorder = extended_labels(base_labels()[:2].T)
    assert np.array_equal(labels, ref["mrf_out_kernel_labels_ext"][:2].T)
    assert np.array_equal(reorder + 1, ref["mrf_out_reorder"].ravel())
    assert np.array_equal(candidate_ranks() + 1, ref["mrf_out_labelSet"].ravel())


def test_mrf_labels_and_upsampled_field_match_Deblur_CNN_motion(ref):
    labels, reorder = extended_labels(base_labels()[:2].T)
    region = valid_region(ref["mrf_valid"])
    assert region == tuple(int(ref[f"mrf_out_{k}"].item()) - 1 for k in ("x_s", "x_e", "y_s", "y_e"))
    rows, cols = node_grid(region)
    assert np.array_equal(rows, ref["mrf_node_r"]) and np.array_equal(cols, ref["mrf_node_c"])
    probs = ref["mrf_probs"].reshape(365, len(rows), len(cols))[reorder]
    nodes = mrf_labels(torch.from_numpy(probs), labels).numpy()
    assert np.array_equal(nodes + 1, ref["mrf_out_idimg"])
    assert len(np.unique(nodes)) > 5  # the case exercises the pairwise term, not one label everywhere
    mag, ori = full_field(nodes, labels, region, ref["mrf_valid"].shape)
    assert np.array_equal(mag, ref["mrf_out_mlhmag_full"]) and np.array_equal(ori, ref["mrf_out_mlhori_full"])
