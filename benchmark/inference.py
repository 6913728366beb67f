"""Running a network on one image: uint8 in, uint8 out, as ``restore``, ``deblur``, ``time`` and the
training loop's validation all do it.

The registry names :func:`network_restore` lazily (``registry.network_restore``), so that listing the
methods never imports torch; this module is where torch comes in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad an NCHW tensor on the bottom/right so both sides are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 HxWx3 -> float 1x3xHxW in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float()
    return t / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float 1x3xHxW in [-1, 1] -> uint8 HxWx3, rounded and clipped as a PNG writer would."""
    x = ((x[0].detach().float().cpu().permute(1, 2, 0) + 1.0) * 127.5).round().clamp(0, 255)
    return x.to(torch.uint8).numpy()


@torch.no_grad()
def network_restore(model: nn.Module, image: np.ndarray, options: Mapping[str, Any]) -> np.ndarray:
    """Restore with an image-to-image network mapping [-1, 1] to [-1, 1].

    Sides are reflect-padded to the network's ``size_multiple`` (attribute, default 1) and cropped
    back; a network that returns a list of scales is read at its last (finest) output. A network
    whose ``value_range`` attribute is another interval (NAFNet's ``(0, 1)``) gets its input mapped
    onto that interval and its output mapped back.
    """
    device = next(model.parameters()).device
    x, (h, w) = pad_to_multiple(to_tensor(image, device), getattr(model, "size_multiple", 1))
    value_range = getattr(model, "value_range", None)
    if value_range is not None:
        low, high = value_range
        x = low + (x + 1) * ((high - low) / 2)
    y = model(x)
    if isinstance(y, list | tuple):
        y = y[-1]
    y = y[..., :h, :w]
    if not bool(torch.isfinite(y).all()):
        raise ValueError("the network's output holds NaN or Inf values; refusing to write a meaningless image "
                         "(check the weights)")
    if value_range is not None:
        y = (y - low) * (2 / (high - low)) - 1
    return to_uint8(y.clamp(-1, 1))


def for_inference(model: nn.Module) -> nn.Module:
    """A network as ``restore``, ``deblur`` and ``time`` run it: eval mode, channels_last weights (the
    convolutions then run in NHWC; on the CPU, MSR2B and DeblurGAN at 640x368 ran 1.6-1.7x faster,
    docs/measurements.md)."""
    return model.eval().to(memory_format=torch.channels_last)


# Tiled inference (``deblurbench deblur``): a large photo is restored in tiles so that memory stays bounded.
TILE_ALIGN = 32  # tile origins on multiples of this: every network's stride-2 grids then line up with the whole image's


def tile_spans(length: int, tile: int) -> list[tuple[int, int]]:
    """[start, end) of the cores of the tiles along one side: ``tile`` long, the last one shorter."""
    return [(start, min(start + tile, length)) for start in range(0, length, tile)]


def restore_tiled(restore: Callable[[Any, np.ndarray, Mapping[str, Any]], np.ndarray], model: Any,
                  image: np.ndarray, options: Mapping[str, Any], *, tile: int, overlap: int,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``restore(model, image, options)`` one tile at a time, so memory grows with the tile, not the image.

    The image is cut into cores of ``tile`` x ``tile`` pixels; each core is restored with ``overlap`` pixels of
    its surroundings on every side (the network sees the context it would see in the whole image) and only
    the core is kept. Tile origins lie on multiples of :data:`TILE_ALIGN` (and of the network's
    ``size_multiple``), so the networks' downsampling grids match the whole image's. Where ``overlap`` covers
    the network's receptive field the result equals the untiled one; beyond it a pixel near a seam sees a
    little less context. An image that fits in one tile with its overlap is restored whole.
    ``progress(done, total)`` is called after each tile."""
    h, w = image.shape[:2]
    align = math.lcm(TILE_ALIGN, getattr(model, "size_multiple", 1) or 1)
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile {tile} and overlap {overlap}: the tile must be at least 1 pixel, the overlap >= 0")
    tile = max(align, tile // align * align)
    if h <= tile + 2 * overlap and w <= tile + 2 * overlap:
        result = restore(model, image, options)
        if progress is not None:
            progress(1, 1)
        return result
    out = np.empty_like(image)
    cores = [(ys, xs) for ys in tile_spans(h, tile) for xs in tile_spans(w, tile)]
    for done, ((y0, y1), (x0, x1)) in enumerate(cores, start=1):
        top, left = max(0, y0 - overlap) // align * align, max(0, x0 - overlap) // align * align
        bottom, right = min(h, y1 + overlap), min(w, x1 + overlap)
        piece = restore(model, np.ascontiguousarray(image[top:bottom, left:right]), options)
        out[y0:y1, x0:x1] = piece[y0 - top:y1 - top, x0 - left:x1 - left]
        if progress is not None:
            progress(done, len(cores))
    return out


def whole_image_statistic(model: nn.Module) -> str | None:
    """Why a network cannot be restored in tiles (its output at a pixel depends on the whole image), or None:
    InstanceNorm normalises with the image's own statistics, a global average pool pools over all of it."""
    for module in model.modules():
        if isinstance(module, nn.InstanceNorm2d | nn.InstanceNorm1d) and not module.track_running_stats:
            return "it normalises with statistics of the whole image (InstanceNorm)"
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return "it pools over the whole image (global average pooling)"
    return None
