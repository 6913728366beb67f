"""Write ``inputs.mat``: the small cases that ``reference.m`` runs through the official MATLAB code.

Run from the repository root: ``python tests/data/pan_octave/make_inputs.py`` (see README.md).
Deterministic: the same file on every run.
"""

from pathlib import Path

import numpy as np
from scipy import io, ndimage
from skimage import data

HERE = Path(__file__).resolve().parent


def main() -> None:
    rng = np.random.default_rng(22)
    photo = data.astronaut()[180:201, 200:226] / 255.0  # 21x26 RGB: the face's edge and the dark suit
    # A 7x5 asymmetric kernel (more rows than columns, heavier at the top left): a transposed or flipped
    # kernel, or a centre off by one, changes the result.
    kernel_rgb = np.zeros((7, 5))
    kernel_rgb[[0, 1, 2, 3, 4, 5, 6], [0, 1, 1, 2, 3, 3, 4]] = [3, 2, 2, 1, 1, 1, 0.5]
    kernel_rgb /= kernel_rgb.sum()
    bright = np.clip(photo * 1.6, 0, None)  # exposure up: the face saturates after blurring
    blurred_rgb = np.stack([ndimage.convolve(bright[..., c], kernel_rgb, mode="reflect") for c in range(3)], -1)
    blurred_rgb = np.clip(blurred_rgb + 0.01 * rng.standard_normal(blurred_rgb.shape), 0.0, 1.0)
    hit = rng.random(blurred_rgb.shape[:2]) < 0.03  # salt-and-pepper pixels: outliers of another kind
    blurred_rgb[hit] = rng.choice([0.0, 1.0], size=(int(hit.sum()), 1))

    gray = data.camera()[100:119, 200:223] / 255.0  # 19x23
    kernel_gray = np.zeros((5, 6))  # even width: MATLAB's psf2otf centre is column 4 (1-based)
    kernel_gray[[1, 2, 2, 3, 4], [0, 1, 2, 4, 5]] = [1, 2, 3, 2, 1]
    kernel_gray /= kernel_gray.sum()
    blurred_gray = np.clip(ndimage.convolve(gray, kernel_gray, mode="reflect", origin=(0, -1)), 0.0, 1.0)

    io.savemat(HERE / "inputs.mat", {
        "blurred_rgb": blurred_rgb, "kernel_rgb": kernel_rgb,
        "blurred_gray": blurred_gray, "kernel_gray": kernel_gray,
        "wrap_in": rng.random((9, 12, 2)),
        "fft_lengths": np.arange(1, 301, dtype=np.float64),
        "rmap_in": data.camera()[300:317, 100:122] / 255.0,  # 17x22
        "shock_in": ndimage.gaussian_filter(data.camera()[200:215, 300:318] / 255.0, 1.0),  # 15x18
        "truck_in": data.camera()[::8, ::8] / 255.0,  # 64x64
    }, do_compression=True)


if __name__ == "__main__":
    main()
