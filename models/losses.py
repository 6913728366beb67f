"""The paper's losses (section 3.3): WGAN-GP for the critic and the generator, and the perceptual loss.

L_D = mean D(G(B)) - mean D(S) + mu * GP;  L_G = -mean D(G(B)) + lambda * L_pers, where L_pers is the
MSE between VGG19 ``features[:15]`` (conv3_3 before its ReLU) of the sharp and restored images.

Two reductions the paper leaves to the reader are named options (SPEC section 4):
``gp_reduction`` (:data:`GP_REDUCTIONS`) and ``perceptual_reduction`` (:data:`PERCEPTUAL_REDUCTIONS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.files import file_digest

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
# torchvision itself checks only the 8-hex prefix in the file name; the full digest (574,673,361 bytes)
# is the one several independent published weight manifests agree on.
VGG19_SHA256 = "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
VGG19_LAYERS = 15  # features[:15] ends at conv3_3, before its ReLU
VGG19_CHANNELS = (64, 64, "M", 128, 128, "M", 256, 256, 256)  # torchvision's configuration "E", up to conv3_3


def vgg19_head() -> nn.Sequential:
    """torchvision's ``vgg19().features[:15]`` layer for layer (same indices, so its state dict keys fit),
    built here so that importing torchvision's whole model zoo is not needed."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG19_CHANNELS:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers[:VGG19_LAYERS])


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# What D(x) is when the gradient penalty differentiates it: ``sum`` of the critic's patch map
# (DeblurGAN's code, ``grad(outputs=D(x_hat), grad_outputs=ones)``) or its ``mean`` (the paper's D, "the
# average probability value of all the patches"). ``sum`` = P x ``mean`` for a map of P patches, so the
# penalty pins ||grad mean D|| to 1/P instead of 1 (P = 900 for a 256x256 crop).
GP_REDUCTIONS = ("sum", "mean")
# L_pers: ``chw`` = MSE, the mean over channels and pixels (DeblurGAN's nn.MSELoss); ``hw`` = Eq. 12,
# the squared feature-vector distance summed over channels and averaged over the W x H positions only.
# ``hw`` = C x ``chw`` (C = 256 at conv3_3): lambda under ``chw`` equals lambda / 256 under ``hw``.
PERCEPTUAL_REDUCTIONS = ("chw", "hw")


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     reduction: str = "sum") -> torch.Tensor:
    """WGAN-GP: mean over samples of (||grad D(x_hat)|| - 1)^2, one alpha per sample, the norm over all
    of a sample's dimensions, x_hat = alpha * real + (1 - alpha) * fake; D(x_hat) is the ``sum`` or the
    ``mean`` of each sample's patch map (:data:`GP_REDUCTIONS`)."""
    if reduction not in GP_REDUCTIONS:
        raise ValueError(f"gp_reduction must be one of {', '.join(GP_REDUCTIONS)}, not {reduction!r}")
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(x_hat).reshape(x_hat.shape[0], -1)  # a critic may give one value or a map per sample
    # samples are independent, so summing the per-sample values over the batch leaves each gradient alone
    per_sample = scores.sum(dim=1) if reduction == "sum" else scores.mean(dim=1)
    (grad,) = torch.autograd.grad(per_sample.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def critic_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                gp_weight: float, gp_reduction: str = "sum") -> tuple[torch.Tensor, dict[str, float]]:
    """mean D(fake) - mean D(real) + gp_weight * GP, with ``fake`` detached here.

    The stats hold the Wasserstein estimate mean D(real) - mean D(fake) and the unweighted penalty."""
    fake = fake.detach()
    wasserstein_estimate = critic(real).mean() - critic(fake).mean()
    gp = gradient_penalty(critic, real, fake, gp_reduction)
    loss = -wasserstein_estimate + gp_weight * gp
    return loss, {"wasserstein_estimate": wasserstein_estimate.detach(), "gradient_penalty": gp.detach()}


def generator_adversarial_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """-mean D(fake): gradients flow into ``fake`` (the caller freezes the critic's parameters)."""
    return -critic(fake).mean()


def bce_discriminator_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The standard GAN discriminator loss on logits: BCE(D(fake), 0) + BCE(D(real), 1), ``fake`` detached
    (DeepDeblur's adversarial term)."""
    d_fake, d_real = critic(fake.detach()), critic(real)
    loss = (F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
            + F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)))
    return loss, {}


def bce_generator_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """BCE(D(fake), 1) on logits: the non-saturating generator loss."""
    d_fake = critic(fake)
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


def vgg19_weights_path(cache_dir: Path | None = None) -> Path:
    """Where torchvision keeps ``vgg19-dcbb9e9d.pth`` (or ``cache_dir``)."""
    return Path(cache_dir or Path(torch.hub.get_dir()) / "checkpoints") / VGG19_FILE


def load_vgg19_features(weights: str, seed: int = 0, cache_dir: Path | None = None) -> nn.Sequential:
    """VGG19 ``features[:15]``, frozen and in eval mode.

    ``imagenet``: torchvision's ``vgg19-dcbb9e9d.pth`` from the torch hub checkpoint folder (or
    ``cache_dir``), SHA-256 checked, never downloaded. ``random``: He (fan_in) normal convolution weights
    drawn from a seeded, forked CPU generator, so the global RNG is left as it was. Random
    features are a deviation from the paper, for machines without the weights."""
    if weights == "imagenet":
        path = vgg19_weights_path(cache_dir)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: the ImageNet VGG19 weights are not there. Run `deblurbench fetch vgg19`, "
                f"or download {VGG19_URL} into {path.parent}, "
                "or use perceptual_weights: random (a deviation from the paper).")
        actual = file_digest(path)
        if actual != VGG19_SHA256:
            raise ValueError(f"{path}: SHA-256 {actual} is not the expected {VGG19_SHA256} "
                             "(a partial or corrupted download?); delete the file and fetch it again")
        features = vgg19_head()
        state = torch.load(path, map_location="cpu", weights_only=True)
        head = {f"{i}.{p}" for i in range(VGG19_LAYERS) for p in ("weight", "bias")}
        features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                                  if k.removeprefix("features.") in head})
    elif weights == "random":
        # The network is built on the CPU, so only the CPU generator is forked and seeded;
        # torch.manual_seed would also reseed (and so disturb) every CUDA generator.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            features = vgg19_head()
            # torchvision initialises VGG convs with fan_out scaling, which shrinks activations layer
            # by layer (conv3_3 features ~70x weaker than with fan_in): the perceptual term would then
            # vanish beside the adversarial one. He (fan_in) scaling keeps activation variance.
            for m in features:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
    else:
        raise ValueError(f"perceptual weights must be 'imagenet' or 'random', not {weights!r}")
    features = features.eval()
    for p in features.parameters():
        p.requires_grad_(False)
    return features


class PerceptualLoss(nn.Module):
    """MSE between VGG19 conv3_3 (pre-ReLU) features of the restored and the sharp image.

    Inputs are in [-1, 1]. ``normalize=True`` maps them to [0, 1] and applies ImageNet mean/std (what
    the torchvision weights expect); ``normalize=False`` feeds [-1, 1] unchanged, as DeblurGAN did.
    ``reduction`` is ``chw`` (MSE) or ``hw`` (Eq. 12, C times larger; :data:`PERCEPTUAL_REDUCTIONS`).
    The in-place ReLUs inside the slice never touch its output, which ends at a conv.
    """

    def __init__(self, weights: str = "imagenet", normalize: bool = True, seed: int = 0,
                 cache_dir: Path | None = None, reduction: str = "chw") -> None:
        super().__init__()
        if reduction not in PERCEPTUAL_REDUCTIONS:
            raise ValueError(f"perceptual_reduction must be one of {', '.join(PERCEPTUAL_REDUCTIONS)}, "
                             f"not {reduction!r}")
        self.features = load_vgg19_features(weights, seed, cache_dir)
        self.normalize, self.reduction = normalize, reduction
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.features.eval()  # a fixed feature extractor, whatever the surrounding mode
        return self

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2 - self.mean) / self.std if self.normalize else x

    def forward(self, restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(self._prepare(sharp))
        squared = (self.features(self._prepare(restored)) - target) ** 2
        return squared.mean() if self.reduction == "chw" else squared.sum(dim=1).mean()


CONTENT_TERMS = ("perceptual", "l1", "mse")


class WeightedContent(nn.Module):
    """``content_weight`` x the content term ``content`` (the paper's lambda x L_pers): the content term of
    MSR2B, its ablations and DeblurGAN.

    ``content``: ``perceptual`` (the paper's: MSE between VGG19 conv3_3 features, :class:`PerceptualLoss`)
    or a pixel loss on the [-1, 1] images, ``l1`` (mean absolute error) or ``mse`` (mean squared error, the
    loss PSNR measures): the offline profiles' departure, because without the ImageNet weights the
    perceptual term is a random-feature loss that is measured to pull PSNR below the blurred input
    (``docs/measurements.md``)."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__()
        self.weight = float(options["content_weight"])
        self.term = options.get("content", "perceptual")
        if self.term not in CONTENT_TERMS:
            raise ValueError(f"content must be one of {', '.join(CONTENT_TERMS)}, not {self.term!r}")
        self.perceptual = None
        if self.term == "perceptual":
            self.perceptual = PerceptualLoss(options["perceptual_weights"], normalize=options["perceptual_normalize"],
                                             reduction=options.get("perceptual_reduction", "chw"))

    def forward(self, restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        if self.term == "l1":
            return self.weight * F.l1_loss(restored, sharp)
        if self.term == "mse":
            return self.weight * F.mse_loss(restored, sharp)
        return self.weight * self.perceptual(restored, sharp)
