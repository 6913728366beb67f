"""Sun et al. [10] (CVPR 2015): a CNN classifies 30x30 patches into 73 linear motion kernels, image
rotations refine the orientation to 6 degrees (361 candidates), an MRF smooths the motion field,
and a non-uniform deconvolution restores the image tile by tile.

CNN (the paper's): 96@7x7 conv + ReLU, 2x2 max-pool, 256@5x5 conv + ReLU, 2x2 max-pool, FC 1024 +
ReLU, FC 73. Kernels: uniform lines of length 1, 3, ..., 25 pixels at 0, 30, ..., 150 degrees
(length 1, the identity, once). Trained by the suite's one training loop as a classifier: each
training crop's sharp image is cut into patches blurred by randomly drawn kernels.
"""

from __future__ import annotations

from benchmark.registry import Lazy, Method, Training, register

register(Method(
    name="sun",
    # a stand-in for the deconvolution, and its label says so (issue 14)
    display_name="Sun et al. [10] stand-in: their patch CNN and MRF motion field, IRLS deconvolution instead of EPLL",
    kind="trained",
    summary="Sun et al. (CVPR 2015): a patch CNN over 73 linear motion kernels, extended to 361 by image "
            "rotations, an MRF-smoothed motion field and a tile-wise non-uniform deconvolution.",
    build=Lazy("models.sun:build"),
    training=Training(content_loss=Lazy("models.sun:PatchCrossEntropy"),
                      prepare_batch=Lazy("models.sun:prepare_batch")),
    restore=Lazy("models.sun:restore"),
    defaults={"stride": 12, "mrf_weight": 0.05, "tile": 64, "lam": 3e-3, "irls_iterations": 3,
              "lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "lr_final": 1e-5},
    limits={"stride": {"minimum": 1}, "mrf_weight": {"minimum": 0}, "tile": {"minimum": 8},
            "lam": {"exclusiveMinimum": 0}, "irls_iterations": {"minimum": 1}},
    deviations=(
        "Non-blind step: IRLS deconvolution with a hyper-Laplacian prior on overlapping tiles (one kernel per "
        "tile, blended) instead of the paper's EPLL patch prior with a per-pixel kernel field.",
        "MRF: iterated conditional modes on the patch grid (stride 12 pixels) rather than per pixel.",
        "Training data: patches of this profile's training crops blurred by the 73 kernels with Gaussian "
        "noise (sigma 0.005 on [0, 1]); the paper used other natural images. Adam replaces SGD.",
    ),
    paper_row="Sun et al. [10]",
))
