"""Weight initialisation as a named convention (the ``init`` option of every trained network).

A scheme is a base, optionally followed by ``-zero-out`` or ``-identity``:

- ``normal-0.02``: conv and transposed-conv weights N(0, 0.02), biases 0: DeblurGAN's ``weights_init``
  (pix2pix lineage), where an InstanceNorm follows every conv and rescales whatever the init gives.
- ``he``: He-normal for ReLU networks, std = sqrt(2 / fan_in) with fan_in the inputs that reach one
  output value (a transposed conv of stride s reaches in_channels * k * k / s^2 of them), biases 0:
  activations keep their size layer after layer in a network without normalisation.
- ``official``: PyTorch's own default (kaiming-uniform with a = sqrt(5), uniform biases), which is
  what NAFNet's and DeepDeblur-PyTorch's official code use: neither initialises anything itself.

``-zero-out`` then sets the network's output conv (weights and bias) to zero. In a network whose
output is ``input + residual`` (the paper's generator, DeblurGAN, NAFNet) the untrained network is the
identity, so training starts at the blurred input's score instead of far below it, and the output
conv's gradient (the last features times the error) is not zero, so it moves on the first step.

``-identity`` zeroes the output conv and also the last conv of every residual branch (``x + F(x)``
blocks), so every block starts as the identity too: the "zero-init residual" practice (Goyal et al.
2017; Fixup, Zhang et al. 2019). Without normalisation, He-normal blocks each add their own variance
to ``x``: nine MSR2B blocks grow the activations from about 0.5 to several hundred (measured in
``docs/measurements.md``), so the first Adam step of a zeroed output conv moves the residual by tens of
grey levels; with identity blocks the activations keep the head's size. A branch's convs before its
zeroed end get gradients from the second step on, once that end has moved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

BASES = ("normal-0.02", "he", "official")
ZERO_OUT, IDENTITY = "-zero-out", "-identity"
SCHEMES = tuple(b + z for b in BASES for z in ("", ZERO_OUT, IDENTITY))


def fan_in(layer: nn.Conv2d | nn.ConvTranspose2d) -> float:
    """Inputs that reach one output value of ``layer`` (its weight and bias aside)."""
    kh, kw = layer.kernel_size
    if isinstance(layer, nn.ConvTranspose2d):
        sh, sw = layer.stride
        return layer.in_channels * kh * kw / (sh * sw)
    return layer.in_channels // layer.groups * kh * kw


def check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"init {scheme!r} is not one of {', '.join(SCHEMES)}")


def base_of(scheme: str) -> str:
    return scheme.removesuffix(ZERO_OUT).removesuffix(IDENTITY)


@torch.no_grad()
def initialise(net: nn.Module, scheme: str, output: nn.Module | None = None,
               branch_ends: Sequence[nn.Module] = ()) -> nn.Module:
    """Initialise every conv of ``net`` by ``scheme`` (module docstring); ``output`` is the conv that
    ``-zero-out`` and ``-identity`` zero (None for a network without a global skip, which zeroing would
    not make the identity), ``branch_ends`` the last convs of its residual branches, which ``-identity``
    also zeroes. Other parameters (norm layers, NAFNet's beta / gamma) keep their own init."""
    check_scheme(scheme)
    base = base_of(scheme)
    zero = [output] if scheme != base else []
    if scheme.endswith(IDENTITY):
        if not branch_ends:
            raise ValueError(f"init {scheme!r}: this network names no residual branches to start as the identity; "
                             f"use {base}{ZERO_OUT}")
        zero += list(branch_ends)
    if zero and output is None:
        raise ValueError(f"init {scheme!r}: this network's output is not input + residual, so a zero output "
                         f"conv would not start it at the identity; valid: {', '.join(BASES)}")
    for m in net.modules():
        if not isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            continue
        if base == "official":
            m.reset_parameters()
            continue
        std = 0.02 if base == "normal-0.02" else math.sqrt(2.0 / fan_in(m))
        nn.init.normal_(m.weight, 0.0, std)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    for module in zero:
        for p in module.parameters():
            p.zero_()
    return net
