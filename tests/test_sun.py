"""Sun et al.: the kernel set, the CNN's shape, training examples, the MRF and the tile deconvolution."""

import numpy as np
import torch
from skimage import data

from benchmark import registry
from benchmark.deconv import blur
from benchmark.metrics import psnr
from models.sun import (
    CANDIDATES,
    KERNEL_BANK,
    KERNELS,
    SunCNN,
    deconvolve_tiles,
    motion_kernel,
    prepare_batch,
    restore,
    smooth_field,
)


def test_73_distinct_line_kernels_and_361_candidates():
    assert len(KERNELS) == 73 and len(CANDIDATES) == 361
    assert np.allclose(KERNEL_BANK.sum(axis=(1, 2)), 1)
    flat = KERNEL_BANK.reshape(73, -1)
    assert len({tuple(np.round(k, 6)) for k in flat}) == 73
    horizontal = motion_kernel(5, 0)
    assert np.count_nonzero(horizontal.sum(axis=1) > 1e-9) == 1  # a horizontal line lies in one row


def test_cnn_maps_patches_to_73_logits():
    model = SunCNN()
    assert model(torch.zeros(4, 3, 30, 30)).shape == (4, 73)
    assert 4.8e6 < sum(p.numel() for p in model.parameters()) < 5.0e6  # 4.9 M as the facts compute


def test_training_examples_are_deterministic_and_labelled():
    sharp = torch.rand(2, 3, 64, 64) * 2 - 1
    a = prepare_batch(sharp, sharp, torch.Generator().manual_seed(3))
    b = prepare_batch(sharp, sharp, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (32, 3, 30, 30) and int(a[1].min()) >= 0 and int(a[1].max()) < 73
    small = prepare_batch(sharp[..., :32, :32], sharp[..., :32, :32], torch.Generator().manual_seed(0))
    assert small[0].shape == (32, 3, 30, 30)


def test_the_cnn_fits_a_batch_of_training_examples():
    """Gradients reach every layer and the loss pairs patches with their labels: a fixed batch is fitted."""
    torch.manual_seed(0)
    model = SunCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    photo = torch.from_numpy(data.astronaut()[::4, ::4].copy()).permute(2, 0, 1).float()[None] / 127.5 - 1
    x, y = prepare_batch(None, photo[..., :64, :64], torch.Generator().manual_seed(0))
    start = torch.nn.functional.cross_entropy(model(x), y).item()
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * start


def test_mrf_removes_an_outlier_from_a_uniform_field():
    probs = np.full((5, 5, 361), 1e-3)
    probs[..., 40] = 0.6
    probs[2, 2, 40], probs[2, 2, 200] = 0.3, 0.6  # one cell prefers a very different motion
    probs /= probs.sum(-1, keepdims=True)
    field = smooth_field(probs, weight=0.05)
    assert (field == 40).all()
    assert smooth_field(probs, weight=0.0)[2, 2] == 200  # without the pairwise term it stays


def test_tile_deconvolution_with_the_true_kernel_improves_psnr():
    sharp = data.camera()[100:196, 150:246].astype(float) / 255
    sharp = np.repeat(sharp[..., None], 3, axis=2)
    n, a = 9, 30
    blurred = blur(sharp, motion_kernel(n, a))
    label = CANDIDATES.index((n, a))
    ys = xs = np.array([0, 33, 66])
    restored = deconvolve_tiles(blurred, np.full((3, 3), label), ys, xs, 64, {"lam": 3e-3, "irls_iterations": 3})
    as_uint8 = [np.clip(np.round(x * 255), 0, 255).astype(np.uint8) for x in (restored, blurred, sharp)]
    assert psnr(as_uint8[0], as_uint8[2]) > psnr(as_uint8[1], as_uint8[2]) + 1.0


def test_restore_keeps_the_shape_of_odd_sized_images():
    method = registry.get("sun")
    image = np.random.default_rng(0).integers(0, 256, (61, 47, 3), dtype=np.uint8)
    out = restore(SunCNN().eval(), image, method.options())
    assert out.shape == image.shape and out.dtype == np.uint8
