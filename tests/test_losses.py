"""The conventions the paper leaves open, each a named option (issue 14 part 2): the gradient penalty's
D(x), the perceptual loss's reduction, the critic's batches, a method's own batch and crop, and the
validation images. Each test shows that the two settings differ, against a plain transcription."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from benchmark import registry
from benchmark.data import Pair, spread_over_scenes
from benchmark.train import Trainer, method_setup, train_settings
from models.losses import PerceptualLoss, critic_loss, gradient_penalty

REPO = Path(__file__).resolve().parents[1]


def _critic() -> nn.Module:
    """A small non-linear patch critic: a 4x4 stride-2 conv, LeakyReLU, a 3x3 conv to one channel."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 4, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, 1, 1))


def _transcribed_gp(critic, real, fake, alpha, per_patch_weight):
    """WGAN-GP as DeblurGAN writes it: autograd.grad(outputs=D(x_hat), grad_outputs=ones * w), the norm
    over all of a sample's dimensions; w = 1 differentiates the map's sum, w = 1 / P its mean."""
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out, x_hat, grad_outputs=torch.full_like(out, per_patch_weight),
                                  create_graph=True)
    norms = grad.reshape(grad.shape[0], -1).norm(2, dim=1)
    return ((norms - 1) ** 2).mean()


def test_gradient_penalty_sum_and_mean_match_their_transcriptions_and_differ():
    critic = _critic()
    torch.manual_seed(0)
    real, fake = torch.rand(2, 3, 16, 12) * 2 - 1, torch.rand(2, 3, 16, 12) * 2 - 1
    patches = critic(real[:1]).numel()  # 8 x 6 = 48
    results = {}
    for reduction, weight in (("sum", 1.0), ("mean", 1.0 / patches)):
        torch.manual_seed(5)
        ours = gradient_penalty(critic, real, fake, reduction)
        torch.manual_seed(5)
        alpha = torch.rand(2, 1, 1, 1)
        assert ours.item() == pytest.approx(_transcribed_gp(critic, real, fake, alpha, weight).item(), rel=1e-6)
        results[reduction] = ours.item()
    # the sum's gradient is 48 times the mean's, so the penalties (norm - 1)^2 differ
    assert results["sum"] != pytest.approx(results["mean"], rel=0.1)


def test_critic_loss_passes_the_reduction_on():
    critic = _critic()
    real, fake = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    stats = {}
    for reduction in ("sum", "mean"):
        torch.manual_seed(1)
        _, stats[reduction] = critic_loss(critic, real, fake, 10.0, gp_reduction=reduction)
    # The stats are 0-d tensors: compare them as floats (pytest 9.2's approx no longer takes a 0-d tensor).
    assert float(stats["sum"]["wasserstein_estimate"]) == float(stats["mean"]["wasserstein_estimate"])
    assert float(stats["sum"]["gradient_penalty"]) != pytest.approx(float(stats["mean"]["gradient_penalty"]), rel=0.1)
    with pytest.raises(ValueError, match="gp_reduction"):
        gradient_penalty(critic, real, fake, "max")


def test_perceptual_reductions_are_mse_and_eq12_and_differ_by_the_channel_count():
    torch.manual_seed(0)
    restored, sharp = torch.rand(1, 3, 24, 20) * 2 - 1, torch.rand(1, 3, 24, 20) * 2 - 1
    chw = PerceptualLoss("random", seed=0, reduction="chw")
    hw = PerceptualLoss("random", seed=0, reduction="hw")
    features = chw.features
    a, b = features(chw._prepare(restored)), features(chw._prepare(sharp))
    assert a.shape[1] == 256  # conv3_3
    # MSE: 1/(C W H) sum; Eq. 12: 1/(W H) sum over positions of the squared distance of feature vectors
    mse = float(((a - b) ** 2).sum() / a.numel())
    eq12 = float(sum(((a[0, :, y, x] - b[0, :, y, x]) ** 2).sum() for y in range(a.shape[2])
                     for x in range(a.shape[3])) / (a.shape[2] * a.shape[3]))
    assert chw(restored, sharp).item() == pytest.approx(mse, rel=1e-5)
    assert hw(restored, sharp).item() == pytest.approx(eq12, rel=1e-5)
    assert hw(restored, sharp).item() == pytest.approx(256 * chw(restored, sharp).item(), rel=1e-5)
    with pytest.raises(ValueError, match="perceptual_reduction"):
        PerceptualLoss("random", reduction="sum")


def test_the_weighted_perceptual_loss_reads_its_reduction_from_the_settings():
    content = registry.get("msr2b").training.content_loss
    base = {"content_weight": 100.0, "perceptual_weights": "random", "perceptual_normalize": True}
    assert content(base).perceptual.reduction == "chw"
    assert content({**base, "perceptual_reduction": "hw"}).perceptual.reduction == "hw"


class _CountingSampler:
    """Random crops, numbered: each batch's images are filled so that the test can tell which it saw."""

    def __init__(self, crop: int) -> None:
        self.crop, self.calls = crop, 0
        self.generator = torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return 4

    def state_dict(self) -> dict:
        return {}

    def next_batch(self, batch_size: int):
        self.calls += 1
        blurred = torch.rand(batch_size, 3, self.crop, self.crop, generator=self.generator) * 2 - 1
        sharp = torch.rand(batch_size, 3, self.crop, self.crop, generator=self.generator) * 2 - 1
        return blurred, sharp


def _trainer(tmp_path, critic_batches: str) -> Trainer:
    method = registry.get("msr2b")
    settings = {"seed": 0, "epochs_constant": 1, "epochs_decay": 0, "lr": 1e-4, "lr_final": 1e-7,
                "betas": [0.5, 0.999], "eps": 1e-8, "n_critic": 3, "gp_weight": 10.0, "content_weight": 100.0,
                "perceptual_weights": "random", "perceptual_normalize": True, "batch_size": 1, "crop": 32,
                "gp_reduction": "sum", "perceptual_reduction": "chw", "critic_batches": critic_batches,
                "prefetch": False}  # no batch cut ahead: the test counts the batches each step draws
    return Trainer(method, method.options({"k": 1, "width": 8}), settings, _CountingSampler(32),
                   tmp_path / critic_batches, torch.device("cpu"))


def test_fresh_critic_batches_draw_one_batch_per_critic_step(tmp_path):
    same, fresh = _trainer(tmp_path, "same"), _trainer(tmp_path, "fresh")
    assert all(torch.equal(a, b) for a, b in zip(same.critic.state_dict().values(),
                                                 fresh.critic.state_dict().values(), strict=True))
    same.step()
    fresh.step()
    assert same.sampler.calls == 1  # DeblurGAN: the critic steps and the generator step share one batch
    assert fresh.sampler.calls == 3 + 1  # WGAN-GP's loop: n_critic batches, then one for the generator
    differs = [not torch.equal(a, b) for a, b in zip(same.critic.state_dict().values(),
                                                     fresh.critic.state_dict().values(), strict=True)]
    assert any(differs)


def test_a_methods_own_batch_and_crop_survive_unless_the_profile_overrides_them():
    deepdeblur = registry.get("deepdeblur")
    profile_train = {"lr": 1e-4, "batch_size": 1, "crop": 64, "epochs_constant": 1}
    settings = train_settings(profile_train, deepdeblur, None)
    assert (settings["batch_size"], settings["crop"]) == (16, 256)  # DeepDeblur's own, not the profile's
    assert train_settings(profile_train, deepdeblur, {"crop": 64})["crop"] == 64  # overridden on purpose
    assert train_settings(profile_train, registry.get("msr2b"), None)["batch_size"] == 1  # no own batch size

    quick = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())
    used = {name: method_setup(name, quick, None)[2] for name in ("msr2b", "deblurgan", "deepdeblur")}
    assert {n: (s["batch_size"], s["crop"]) for n, s in used.items()} == {
        "msr2b": (8, 64), "deblurgan": (8, 64), "deepdeblur": (8, 64)}


def test_deblurgan_keeps_its_official_conventions_whatever_the_profile_sets():
    profile_train = {"gp_reduction": "mean", "perceptual_reduction": "hw", "critic_batches": "fresh"}
    assert {k: train_settings(profile_train, registry.get("deblurgan"), None)[k] for k in profile_train} == {
        "gp_reduction": "sum", "perceptual_reduction": "chw", "critic_batches": "same"}
    assert train_settings(profile_train, registry.get("msr2b"), None) == profile_train


def _pairs(sizes: dict[str, int]) -> list[Pair]:
    return [Pair(seq, f"{i:06d}.png", Path(seq) / "blur" / f"{i:06d}.png", Path(seq) / "sharp" / f"{i:06d}.png")
            for seq, n in sizes.items() for i in range(n)]


def test_validation_images_come_evenly_from_every_scene():
    pairs = _pairs({"GOPR0384_11_00": 100, "GOPR0384_11_05": 80, "GOPR0385_11_01": 3})
    chosen = spread_over_scenes(pairs, 7)
    assert [p.seq for p in pairs[:7]] == ["GOPR0384_11_00"] * 7  # what taking the first 7 would do
    assert [p.seq for p in chosen].count("GOPR0384_11_00") == 3
    assert [p.seq for p in chosen].count("GOPR0384_11_05") == 2
    assert [p.seq for p in chosen].count("GOPR0385_11_01") == 2
    # within a scene, spread over its frames: 3 of 100 -> frames 16, 50, 83
    assert [int(p.name[:6]) for p in chosen if p.seq == "GOPR0384_11_00"] == [16, 50, 83]
    # a small scene gives what it has, the others take up the rest
    many = spread_over_scenes(pairs, 20)
    assert len(many) == len(set(many)) == 20 and [p.seq for p in many].count("GOPR0385_11_01") == 3
    assert spread_over_scenes(pairs, 1000) == pairs and spread_over_scenes(pairs, 0) == []
    assert np.all(np.diff([int(p.name[:6]) for p in many if p.seq == "GOPR0384_11_05"]) > 0)
