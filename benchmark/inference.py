"""Running a network on one image: uint8 in, uint8 out, as ``restore``, ``deblur``, ``time`` and the
training loop's validation all do it.

The registry names :func:`network_restore` lazily (``registry.network_restore``), so that listing the
methods never imports torch; this module is where torch comes in.
"""

from __future__ import annotations

from collections.abc import Mapping
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
