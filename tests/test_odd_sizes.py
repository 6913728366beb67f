"""Every registered network restores RealBlur-like images whose sides are not multiples of its stride: the
input is reflect-padded on the bottom and right to the network's multiple and the output cropped back, as
MPRNet's and Restormer's test scripts do (research/generalisation-testsets.md §2); a network that pads itself
(NAFNet) is left to do so. Toy widths keep it fast."""

import numpy as np
import pytest
import torch

from benchmark import registry
from benchmark.inference import to_tensor, to_uint8

# Small settings for any option a network declares (applied where its defaults have the key).
TOY = {"width": 8, "k": 1, "ngf": 8, "n_blocks": 1, "features": 8, "blocks": 1, "enc_blk_nums": [1, 1],
       "dec_blk_nums": [1, 1], "middle_blk_num": 1, "train_size": 16, "tile": 32, "irls_iterations": 1}
# RealBlur's frames are about 680x773; at toy scale: one side odd, the other a multiple of 8 but not of 16.
SIZES = [(43, 56), (61, 39)]
NETWORKS = [m for m in registry.available() if m.kind == "trained"]


def _common_script_restore(model, image):
    """MPRNet test.py: pad to the next multiple (H = ((h + f) // f) * f, none where h is already one), reflect,
    run, crop back, clamp. Here with the network's own multiple f and value range."""
    factor = getattr(model, "size_multiple", 1)
    x = to_tensor(image)
    h, w = x.shape[2], x.shape[3]
    big_h, big_w = ((h + factor) // factor) * factor, ((w + factor) // factor) * factor
    pad_h = big_h - h if h % factor != 0 else 0
    pad_w = big_w - w if w % factor != 0 else 0
    x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), "reflect")
    low, high = getattr(model, "value_range", (-1, 1))  # NAFNet reads [0, 1]
    with torch.no_grad():
        y = model(low + (x + 1) * (high - low) / 2)
    if isinstance(y, list | tuple):
        y = y[-1]
    y = (y[:, :, :h, :w] - low) * 2 / (high - low) - 1
    return to_uint8(y.clamp(-1, 1))


def test_every_network_is_covered():
    assert {"msr2b", "res2net", "resnet", "deblurgan", "deepdeblur", "nafnet", "sun"} <= {m.name for m in NETWORKS}


@pytest.mark.parametrize("method", NETWORKS, ids=lambda m: m.name)
def test_odd_sizes_are_padded_and_cropped_back(method):
    torch.manual_seed(0)
    options = method.options({k: v for k, v in TOY.items() if k in method.defaults})
    model = method.build(options).eval()
    rng = np.random.default_rng(0)
    least = getattr(model, "min_side", 0)  # Sun et al.'s rotated patches need about 47 px: the same odd sides, larger
    for h, w in [(h + least, w + least) for h, w in SIZES] if least else SIZES:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        restored = method.restore(model, image, options)
        assert restored.shape == (h, w, 3) and restored.dtype == np.uint8, (method.name, h, w)
        if method.restore is registry.network_restore:
            multiple = getattr(model, "size_multiple", 1)
            assert multiple == 1 or h % multiple or w % multiple  # the case needs the padding
            np.testing.assert_array_equal(restored, _common_script_restore(model, image))
