"""Sun et al.'s patch CNN, its training examples and the restoration around it (motion field, MRF,
tile-wise deconvolution); the method, its options and deviations are declared in ``baselines/sun.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from benchmark.deconv import irls_deconvolve

PATCH = 30
KERNEL_SIZE = 25
LENGTHS = tuple(range(3, 26, 2))
ORIENTATIONS = tuple(range(0, 180, 30))
KERNELS: tuple[tuple[int, int], ...] = ((1, 0),) + tuple((n, a) for n in LENGTHS for a in ORIENTATIONS)
ROTATIONS = (0, 6, 12, 18, 24)  # the paper's image rotations: orientation step 30 / 5 = 6 degrees


def motion_kernel(length: int, angle_deg: float, size: int = KERNEL_SIZE) -> np.ndarray:
    """A uniform line of ``length`` pixels through the centre at ``angle_deg`` (counter-clockwise from
    the x axis, as seen on screen), anti-aliased by bilinear splatting of dense samples; sums to 1."""
    kernel = np.zeros((size + 1, size + 1))  # one spare row and column for the zero-weight end taps
    c = size // 2
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, max(8 * length, 1))
    a = np.deg2rad(angle_deg)
    x, y = c + t * np.cos(a), c - t * np.sin(a)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + dy, x0 + dx), w)
    kernel = kernel[:size, :size]
    return kernel / kernel.sum()


KERNEL_BANK = np.stack([motion_kernel(n, a) for n, a in KERNELS])


class SunCNN(nn.Module):
    def __init__(self, classes: int = len(KERNELS)) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 96, 7), nn.ReLU(True), nn.MaxPool2d(2),
                                      nn.Conv2d(96, 256, 5), nn.ReLU(True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(256 * 4 * 4, 1024), nn.ReLU(True),
                                        nn.Linear(1024, classes))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Patches in [-1, 1], N x 3 x 30 x 30 -> logits N x 73."""
        return self.classifier(self.features(patches))


class PatchCrossEntropy(nn.Module):
    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__()

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)


PATCHES_PER_CROP = 16
NOISE_STD = 0.01  # on the [-1, 1] scale


def prepare_batch(blurred: torch.Tensor, sharp: torch.Tensor, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Training examples from sharp crops: 30x30 patches blurred by random kernels of the 73 (the
    patch is cut from a region 24 pixels larger, so the blur never sees a border), plus noise."""
    region = PATCH + KERNEL_SIZE - 1
    n, _, h, w = sharp.shape
    if h < region or w < region:  # small crops (the smoke profile): mirror them out to one region
        ph, pw = max(region - h, 0), max(region - w, 0)
        sharp = F.pad(sharp, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect")
        h, w = sharp.shape[-2:]
    count = n * PATCHES_PER_CROP
    labels = torch.randint(0, len(KERNELS), (count,), generator=generator)
    source = torch.randint(0, n, (count,), generator=generator)
    tops = torch.randint(0, h - region + 1, (count,), generator=generator)
    lefts = torch.randint(0, w - region + 1, (count,), generator=generator)
    regions = torch.stack([sharp[s, :, t:t + region, left:left + region]
                           for s, t, left in zip(source.tolist(), tops.tolist(), lefts.tolist(), strict=True)])
    kernels = torch.from_numpy(KERNEL_BANK).float()[labels]  # count x 25 x 25
    # One kernel per patch: a grouped convolution over (patch, channel) pairs, 'valid' so 30x30 remain.
    weight = kernels.repeat_interleave(3, dim=0)[:, None].flip(-1, -2)
    patches = F.conv2d(regions.reshape(1, count * 3, region, region), weight, groups=count * 3)
    patches = patches.reshape(count, 3, PATCH, PATCH)
    patches = patches + NOISE_STD * torch.randn(patches.shape, generator=generator)
    return patches.clamp(-1, 1), labels


def _grid(size: int, stride: int) -> np.ndarray:
    last = size - PATCH
    return np.unique(np.append(np.arange(0, last + 1, stride), last))


def candidate_vectors() -> tuple[list[tuple[int, int]], np.ndarray]:
    """The 361 candidates (length, angle in 6-degree steps) and their motion vectors."""
    labels = [(1, 0)] + [(n, a) for n in LENGTHS for a in range(0, 180, 6)]
    vectors = np.array([(n * np.cos(np.deg2rad(a)), n * np.sin(np.deg2rad(a))) for n, a in labels])
    return labels, vectors


CANDIDATES, VECTORS = candidate_vectors()
_INDEX = {label: i for i, label in enumerate(CANDIDATES)}


@torch.no_grad()
def motion_probabilities(model: nn.Module, image: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """Per grid cell, probabilities over the 361 candidates: the CNN on patches of the image rotated by
    each of ROTATIONS; class (n, o) in an image rotated by r is the kernel (n, o - r) of the original."""
    h, w = image.shape[:2]
    ys, xs = _grid(h, stride), _grid(w, stride)
    centres = np.stack(np.meshgrid(ys + PATCH / 2, xs + PATCH / 2, indexing="ij"), -1).reshape(-1, 2)
    probs = np.zeros((len(centres), len(CANDIDATES)))
    device = next(model.parameters()).device
    half = PATCH // 2
    for r in ROTATIONS:
        rotated = ndimage.rotate(image, r, axes=(1, 0), reshape=False, order=1, mode="reflect") if r else image
        cy, cx = (h - 1) / 2, (w - 1) / 2
        a = np.deg2rad(r)
        # Where each patch centre lands after rotating the image counter-clockwise (on screen) by r.
        ry = cy + (centres[:, 0] - cy) * np.cos(a) - (centres[:, 1] - cx) * np.sin(a)
        rx = cx + (centres[:, 0] - cy) * np.sin(a) + (centres[:, 1] - cx) * np.cos(a)
        ry = np.clip(np.round(ry).astype(int), half, h - half)
        rx = np.clip(np.round(rx).astype(int), half, w - half)
        patches = np.stack([rotated[y - half:y + half, x - half:x + half] for y, x in zip(ry, rx, strict=True)])
        batch = torch.from_numpy(patches).float().permute(0, 3, 1, 2).to(device) * 2 - 1
        p = torch.softmax(model(batch), dim=1).cpu().numpy()
        for k, (n, o) in enumerate(KERNELS):
            label = (1, 0) if n == 1 else (n, (o - r) % 180)
            probs[:, _INDEX[label]] += p[:, k]
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.reshape(len(ys), len(xs), -1), ys, xs


def smooth_field(probs: np.ndarray, weight: float, sweeps: int = 10) -> np.ndarray:
    """MRF by iterated conditional modes on the patch grid, checkerboard updates. Unary: -log p;
    pairwise: weight x squared difference of motion vectors (a line's vector is defined up to sign,
    so the smaller of the two differences counts). Returns the label index per cell."""
    unary = -np.log(np.clip(probs, 1e-8, None))
    rows, cols, labels = unary.shape
    v = VECTORS
    dist = np.minimum(((v[:, None] - v[None]) ** 2).sum(-1), ((v[:, None] + v[None]) ** 2).sum(-1))
    state = unary.argmin(-1)
    parity = np.add.outer(np.arange(rows), np.arange(cols)) % 2
    for _ in range(sweeps):
        previous = state.copy()
        for colour in (0, 1):
            cost = unary.copy()
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                neighbour = np.full((rows, cols), -1)
                ys = slice(max(dy, 0), rows + min(dy, 0))
                yd = slice(max(-dy, 0), rows + min(-dy, 0))
                xs = slice(max(dx, 0), cols + min(dx, 0))
                xd = slice(max(-dx, 0), cols + min(-dx, 0))
                neighbour[yd, xd] = state[ys, xs]
                valid = neighbour >= 0
                cost[valid] += weight * dist[neighbour[valid]]
            update = parity == colour
            state[update] = cost[update].argmin(-1)
        if np.array_equal(state, previous):
            break
    return state


def deconvolve_tiles(image: np.ndarray, kernel_of: np.ndarray, ys: np.ndarray, xs: np.ndarray, tile: int,
                     options: Mapping[str, Any]) -> np.ndarray:
    """Non-uniform deconvolution: overlapping tiles (half overlap), each deconvolved with the kernel of
    its nearest grid cell, blended with separable triangular weights."""
    h, w = image.shape[:2]
    tile = min(tile, h, w)
    step = max(tile // 2, 1)
    out, total = np.zeros_like(image), np.zeros((h, w, 1))
    ramp = 1 - np.abs(np.linspace(-1, 1, tile + 2)[1:-1])
    window = (ramp[:, None] * ramp[None, :])[..., None] + 1e-6
    centres_y, centres_x = ys + PATCH / 2, xs + PATCH / 2
    for top in _positions(h, tile, step):
        for left in _positions(w, tile, step):
            cy, cx = top + tile / 2, left + tile / 2
            cell = kernel_of[np.abs(centres_y - cy).argmin(), np.abs(centres_x - cx).argmin()]
            n, a = CANDIDATES[cell]
            piece = image[top:top + tile, left:left + tile]
            if n > 1:
                piece = irls_deconvolve(piece, motion_kernel(n, a), lam=options["lam"],
                                        iterations=options["irls_iterations"])
            out[top:top + tile, left:left + tile] += window * piece
            total[top:top + tile, left:left + tile] += window
    return out / total


def _positions(size: int, tile: int, step: int) -> list[int]:
    return sorted(set(list(range(0, size - tile + 1, step)) + [size - tile]))


def restore(model: nn.Module, blurred: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    image = blurred.astype(np.float64) / 255.0
    if min(image.shape[:2]) < PATCH:
        return blurred.copy()  # smaller than one patch: no motion can be estimated
    probs, ys, xs = motion_probabilities(model, image.astype(np.float32), options["stride"])
    field = smooth_field(probs, options["mrf_weight"])
    restored = deconvolve_tiles(image, field, ys, xs, options["tile"], options)
    return np.clip(np.round(restored * 255), 0, 255).astype(np.uint8)


def build(options: Mapping[str, Any]) -> SunCNN:
    return SunCNN()
