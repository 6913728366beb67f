"""Sun et al. [10] (CVPR 2015), as their released MATLAB/C code computes it (``Deblur_CNN_motion.m``,
``fast_deconv_nonUniform_gmmprior.m``, ``motionBlurConv.cc``; checked against it in GNU Octave, see
``tests/test_sun_reference.py``):

1. a CNN (96@7x7, pool, 256@5x5, pool, 1024, 73) classifies 34x34 patches, taken every 6 pixels
   from the image rotated by 0, 6, ..., 24 degrees, into 73 line blurs (length 1, 3, ..., 25 at 0,
   30, ..., 150 degrees), 361 labels in all; each patch's probabilities are spread over its window
   with a Gaussian weight;
2. an MRF on every third pixel (50 candidate labels per node, unary = -probability, pairwise =
   ||100 (m_p - m_q)||^2, min-sum belief propagation, 15 iterations, damping 0.5) picks the labels,
   enlarged to every pixel by nearest neighbour;
3. the image is deconvolved with that per-pixel line-kernel field as one global problem per colour
   channel: an 8x8 zero-mean patch GMM prior (EPLL), lambda 1.5e5, beta 50 x (1, 2, 4, 8, 16), each
   step solved by conjugate gradients (tolerance 1e-5, at most 300 iterations) and clipped to [0, 1].

The CNN is trained by the suite's one training loop as a classifier of patches of the training crops,
each blurred by the deconvolution's own kernel of a randomly drawn label; the released MatConvNet
model (``net-epoch-600.mat`` with ``kernels.mat``) loads as the "authors' weights" row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmark.registry import Lazy, Method, Training, register

# The released code's values (fast_deconv_nonUniform_gmmprior.m and the demo's maxIter_in = 5).
CODE = {"patch_stride": 6, "mrf_step": 3, "lam": 1.5e5, "deconv_betas": [50.0, 100.0, 200.0, 400.0, 800.0],
        "cg_tol": 1e-5, "cg_max_iter": 300}


def restore(model: Any, blurred: Any, options: Mapping[str, Any]) -> Any:
    """The whole method on one uint8 image, with the patch prior its options name."""
    from benchmark.epll import gmm_for
    from models.sun import restore as sun_restore

    return sun_restore(model, blurred, options, gmm_for(options))


def option_notes(options: Mapping[str, Any]) -> list[str]:
    """How this run's options depart from the released code, for the report's banner."""
    lines = []
    if options["gmm"] == "embedded":
        lines.append(f"Sun et al.: the patch prior is a {options['gmm_components']}-component zero-mean GMM fitted "
                     f"here on {options['gmm_patches']} 8x8 patches of the embedded training photos (gmm: embedded), "
                     "not EPLL's published 200-component model, which this profile cannot download.")
    names = {"patch_stride": "CNN patch stride", "mrf_step": "MRF node spacing", "lam": "lambda",
             "deconv_betas": "betas", "cg_tol": "CG tolerance", "cg_max_iter": "CG iteration cap"}
    changed = [f"{names[k]} {options[k]} (code: {v})" for k, v in CODE.items()
               if (list(options[k]) if isinstance(v, list) else options[k]) != v]
    if changed:
        lines.append("Sun et al.: to fit this profile's time budget, " + "; ".join(changed) + ".")
    return lines


register(Method(
    name="sun",
    display_name="Sun et al. [10]",
    kind="trained",
    summary="Sun et al. (CVPR 2015): a patch CNN over 73 linear motion blurs, extended to 361 by image "
            "rotations, an MRF-smoothed per-pixel motion field and the global non-uniform EPLL deconvolution, "
            "as their released code computes them.",
    build=Lazy("models.sun:build"),
    training=Training(content_loss=Lazy("models.sun:PatchCrossEntropy"),
                      prepare_batch=Lazy("models.sun:prepare_batch")),
    restore=restore,
    # gmm: the published model needs a download, which only the paper profile makes (gmm: epll there);
    # every other profile gets the fitted one without having to say so, and the banner names it.
    defaults={**CODE, "gmm": "embedded", "gmm_file": "weights/epllcode.zip", "gmm_components": 20,
              "gmm_patches": 10000, "gmm_iterations": 15, "gmm_seed": 0,
              "lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "lr_final": 1e-5},
    limits={"patch_stride": {"minimum": 1}, "mrf_step": {"minimum": 1}, "lam": {"exclusiveMinimum": 0},
            "deconv_betas": {"minItems": 1, "items": {"type": "number", "exclusiveMinimum": 0}},
            "cg_tol": {"exclusiveMinimum": 0}, "cg_max_iter": {"minimum": 1}, "gmm": {"enum": ["embedded", "epll"]},
            "gmm_components": {"minimum": 1}, "gmm_patches": {"minimum": 64}, "gmm_iterations": {"minimum": 1},
            "lr": {"exclusiveMinimum": 0}, "lr_final": {"minimum": 0}, "eps": {"exclusiveMinimum": 0},
            "betas": {"minItems": 2, "maxItems": 2, "items": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}}},
    deviations=(
        "The CNN is retrained by this suite (the released MatConvNet model is scored as its own row where it is "
        "given as a file): patches of the training crops blurred by the deconvolution's own line kernels of "
        "uniformly drawn labels, Gaussian noise of sigma 0.005 on [0, 1], cross-entropy with Adam; Sun et al. "
        "trained on other natural images with MatConvNet's SGD.",
        "MATLAB's imrotate is reproduced from its tformarray path (bilinear, 'loose' box, zeros outside, rounded "
        "to uint8); the Intel (IPP) path MATLAB takes for uint8 images was not available to compare.",
        "The per-pixel confidences are accumulated in double precision (MATLAB: single), so near-equal "
        "probabilities may rank differently in the MRF's candidate lists.",
        "The conjugate-gradient solve stands in for MATLAB's bicg on the code's symmetric positive definite "
        "system (the two coincide there); the reference cases were computed with a textbook BiCG because "
        "Octave's own bicg stops early on this system.",
    ),
    paper_row="Sun et al. [10]",
    load_official=Lazy("models.sun:load_matconvnet"),
    notes=option_notes,
))
