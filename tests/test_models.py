"""The paper's networks and losses (models/): shapes, the MSR2B wiring, parameter counts by hand,
the gradient penalty against hand computations, and the perceptual loss's offline behaviour."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import init
from models.critic import PatchCritic
from models.generator import MSR2B, Generator, Res2NetBlock, ResNetBlock, count_parameters
from models.losses import (
    VGG19_FILE,
    PerceptualLoss,
    critic_loss,
    generator_adversarial_loss,
    gradient_penalty,
)


def conv_params(c_in: int, c_out: int, kernel: int) -> int:
    return c_in * c_out * kernel * kernel + c_out


# -- generator ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", ["msr2b", "res2net", "resnet"])
def test_generator_keeps_odd_sizes_and_range(block):
    torch.manual_seed(0)
    net = Generator(block, k=2, init="he")
    blurred = torch.rand(1, 3, 37, 53) * 2 - 1
    with torch.no_grad():
        out = net(blurred)
    assert out.shape == blurred.shape
    assert out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, blurred)  # the residual is not trivially zero


def test_generator_defaults_keep_shape_including_tiny_inputs():
    torch.manual_seed(0)
    net = Generator()  # msr2b, k = 9, w = 32
    assert len(net.blocks) == 9 and all(isinstance(b, MSR2B) for b in net.blocks)
    with torch.no_grad():
        for shape in [(2, 3, 37, 53), (1, 3, 3, 5), (1, 3, 32, 16)]:
            assert net(torch.rand(*shape) * 2 - 1).shape == shape


def test_padding_is_bottom_right_and_cropped_back():
    # forward(x) must equal the top-left crop of forward(reflect_pad(x)): same residual, same place.
    torch.manual_seed(1)
    net = Generator("res2net", k=1, init="he")
    blurred = torch.rand(1, 3, 37, 53) * 2 - 1
    padded = F.pad(blurred, (0, 3, 0, 3), mode="reflect")
    with torch.no_grad():
        torch.testing.assert_close(net(blurred), net(padded)[..., :37, :53])


def test_global_skip_and_clamp():
    net = Generator("resnet", k=1)
    nn.init.zeros_(net.tail[-1].weight)
    nn.init.zeros_(net.tail[-1].bias)
    blurred = torch.rand(1, 3, 12, 20) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(blurred), blurred)  # zero residual: the blurred image itself
        net.tail[-1].bias.fill_(5.0)
        assert torch.equal(net(blurred), torch.ones_like(blurred))  # clamped to [-1, 1]


def test_generator_has_no_normalisation_and_normal_002_is_deblurgans():
    torch.manual_seed(0)
    net = Generator("resnet", k=3, init="normal-0.02")
    norms = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)
    assert not any(isinstance(m, norms) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in convs)
    big = torch.cat([m.weight.flatten() for m in convs])
    assert abs(big.mean().item()) < 1e-3 and abs(big.std().item() - 0.02) < 5e-4
    assert net.fusion[0].in_channels == 3 * 256 and net.fusion[0].kernel_size == (1, 1)


def test_he_normal_uses_the_inputs_that_reach_one_output():
    # Transcription: std = sqrt(2 / fan_in); a conv's fan_in = in_channels * k * k; a stride-2 transposed conv's
    # output pixel sees only every other input position in each direction: in_channels * k * k / 4.
    torch.manual_seed(0)
    net = Generator("msr2b", k=2, init="he")
    layers = {"head.2": (net.head[2], 64 * 3 * 3), "fusion.0": (net.fusion[0], 2 * 256),
              "tail.0": (net.tail[0], 256 * 3 * 3 / 4), "tail.2": (net.tail[2], 128 * 3 * 3 / 4),
              "Kb": (net.blocks[0].Kb, 9 * 32)}
    for name, (layer, fan) in layers.items():
        expected = math.sqrt(2 / fan)
        assert abs(layer.weight.std().item() / expected - 1) < 0.05, name
        assert torch.count_nonzero(layer.bias) == 0, name
    assert init.fan_in(nn.ConvTranspose2d(256, 128, 3, stride=2)) == 576  # not torch's 128 * 9 = 1152


@pytest.mark.parametrize("block", ["msr2b", "res2net", "resnet"])
def test_identity_inits_start_at_the_input_with_live_activations(block):
    torch.manual_seed(0)
    blurred = torch.rand(2, 3, 32, 32) * 2 - 1
    zero_out = Generator(block, k=3, init="he-zero-out")
    identity = Generator(block, k=3, init="he-identity")
    with torch.no_grad():
        assert torch.equal(zero_out(blurred), blurred) and torch.equal(identity(blurred), blurred)
        assert all(torch.count_nonzero(b.branch_end.weight) > 0 for b in zero_out.blocks)
        assert all(torch.count_nonzero(b.branch_end.weight) == 0 for b in identity.blocks)
        # identity blocks keep the head's scale; He blocks without normalisation grow it block by block
        head = identity.head(blurred)
        x_he, x_id = zero_out.head(blurred), head
        for b_he, b_id in zip(zero_out.blocks, identity.blocks, strict=True):
            x_he, x_id = b_he(x_he), b_id(x_id)
        assert torch.equal(x_id, head)
        assert x_he.pow(2).mean().sqrt() > 3 * zero_out.head(blurred).pow(2).mean().sqrt()


def test_every_networks_zero_output_init_starts_at_the_input():
    from models.deblurgan import DeblurGANGenerator
    from models.deepdeblur import MSResNet
    from models.nafnet import NAFNet

    torch.manual_seed(0)
    blurred = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(DeblurGANGenerator(16, 2, init="normal-0.02-zero-out").eval()(blurred), blurred)
        unit = (blurred + 1) / 2
        assert torch.equal(NAFNet(8, [1, 1], 1, [1, 1], local=False, init="official-zero-out")(unit), unit)
        outputs = MSResNet(3, 8, 2, 5, init="official-identity")(blurred)
        torch.testing.assert_close(outputs[-1], blurred, atol=1e-6, rtol=0)
        assert [o.shape[-1] for o in outputs] == [8, 16, 32]
        # the official inits do not: that is what the offline profiles change
        assert (DeblurGANGenerator(16, 2).eval()(blurred) - blurred).abs().mean() > 0.05
        assert (MSResNet(3, 8, 2, 5)(blurred)[-1] - blurred).abs().mean() > 0.05


def test_init_schemes_are_checked():
    from models.deepdeblur import MSResNet

    with pytest.raises(ValueError, match="not one of"):
        Generator("msr2b", k=1, init="xavier")
    with pytest.raises(ValueError, match="not input \\+ residual"):
        MSResNet(3, 8, 1, 5, init="official-zero-out")
    with pytest.raises(ValueError, match="no residual branches"):
        init.initialise(nn.Sequential(nn.Conv2d(3, 3, 1)), "he-identity", output=nn.Conv2d(3, 3, 1))


def test_unknown_block_lists_valid_ones():
    with pytest.raises(ValueError, match="msr2b, res2net, resnet"):
        Generator("densenet", k=1)
    with pytest.raises(ValueError, match="identity"):
        MSR2B(w0="t5")


def test_parameter_counts_by_hand():
    counts = {block: count_parameters(Generator(block, k=9)) for block in ("msr2b", "res2net", "resnet")}
    print("parameters, k=9, w=32:", counts, "critic:", count_parameters(PatchCritic()))
    w, c = 32, 256
    head = conv_params(3, 64, 7) + conv_params(64, 128, 3) + conv_params(128, c, 3)
    fusion = conv_params(9 * c, c, 1)
    tail = conv_params(c, 128, 3) + conv_params(128, 64, 3) + conv_params(64, 3, 1)
    part_a = conv_params(c, 4 * w, 1) + 3 * conv_params(w, w, 3)
    msr2b = (part_a + conv_params(3 * w, 3 * w, 3) + conv_params(3 * w, 3 * w, 5)
             + conv_params(9 * w, 4 * w, 1) + conv_params(8 * w, c, 1))
    res2net = part_a + conv_params(4 * w, c, 1)
    resnet = 2 * conv_params(c, c, 3)
    shared = head + fusion + tail
    assert counts == {"msr2b": shared + 9 * msr2b, "res2net": shared + 9 * res2net,
                      "resnet": shared + 9 * resnet}
    assert counts["msr2b"] < counts["resnet"]  # the paper's claim that MSR2B saves parameters


# -- MSR2B wiring ------------------------------------------------------------------------------------

def small_block(w0: str = "identity") -> MSR2B:
    torch.manual_seed(3)
    block = MSR2B(channels=16, width=4, w0=w0)
    for m in block.modules():  # non-zero biases, so a missing bias would show
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.bias, -0.1, 0.1)
            nn.init.normal_(m.weight, 0.0, 0.3)
    return block


def test_part_a_follows_eq4():
    block = small_block()
    x = torch.randn(2, 16, 9, 11)
    t1, t2, t3, t4 = block.part_a(x)
    a = block.part_a
    s = F.relu(F.conv2d(x, a.bottleneck.weight, a.bottleneck.bias))
    s1, s2, s3, s4 = s[:, 0:4], s[:, 4:8], s[:, 8:12], s[:, 12:16]

    def h(layer, inp):
        return F.relu(F.conv2d(inp, layer.weight, layer.bias, padding=1))

    assert torch.equal(t1, s1)  # no conv on the first group
    torch.testing.assert_close(t2, h(a.H2, s2))
    torch.testing.assert_close(t3, h(a.H3, s3 + t2))
    torch.testing.assert_close(t4, h(a.H4, s4 + t3))


@pytest.mark.parametrize("w0", ["identity", "t1"])
def test_part_b_sees_t2_t3_t4_and_merge_sees_everything(w0):
    block = small_block(w0)
    w = 4
    assert block.K1.in_channels == block.K2.in_channels == 3 * w
    assert block.K1.kernel_size == (3, 3) and block.K2.kernel_size == (5, 5)
    assert block.Kb.in_channels == (9 * w if w0 == "identity" else 7 * w) and block.Kb.out_channels == 4 * w
    assert block.merge.in_channels == 8 * w and block.merge.out_channels == 16
    seen = {}
    for name in ("K1", "K2", "Kb", "merge"):
        getattr(block, name).register_forward_hook(
            lambda module, inputs, output, name=name: seen.__setitem__(name, (inputs[0], output)))
    x = torch.randn(2, 16, 9, 11)
    y = block(x)
    t1, t2, t3, t4 = block.part_a(x)
    P = torch.cat([t2, t3, t4], dim=1)
    assert torch.equal(seen["K1"][0], P) and torch.equal(seen["K2"][0], P)
    W0 = P if w0 == "identity" else t1
    W1, W2 = F.relu(seen["K1"][1]), F.relu(seen["K2"][1])
    assert torch.equal(seen["Kb"][0], torch.cat([W0, W1, W2], dim=1))
    part_b = F.relu(seen["Kb"][1])
    assert torch.equal(seen["merge"][0], torch.cat([t1, t2, t3, t4, part_b], dim=1))
    torch.testing.assert_close(y, x + seen["merge"][1])  # Eq. 8, no activation on Y


@pytest.mark.parametrize("block_cls", [MSR2B, Res2NetBlock, ResNetBlock])
def test_blocks_are_residual(block_cls):
    block = block_cls(channels=16) if block_cls is ResNetBlock else block_cls(channels=16, width=4)
    last = block.conv2 if block_cls is ResNetBlock else block.merge
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    x = torch.randn(1, 16, 6, 7)
    assert torch.equal(block(x), x)


# -- critic ------------------------------------------------------------------------------------------

def test_critic_gives_30x30_map_for_256():
    torch.manual_seed(0)
    critic = PatchCritic()
    with torch.no_grad():
        assert critic(torch.rand(1, 3, 256, 256) * 2 - 1).shape == (1, 1, 30, 30)
    norms = [m for m in critic.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 3 and not any(m.affine for m in norms)
    strides = [m.stride[0] for m in critic.modules() if isinstance(m, nn.Conv2d)]
    assert strides == [2, 2, 2, 1, 1]


def test_critic_patch_is_70x70():
    # InstanceNorm couples every pixel through its statistics, so measure the conv receptive field
    # with the norms taken out: the input region that one output cell's gradient reaches.
    critic = copy.deepcopy(PatchCritic())
    critic.model = nn.Sequential(*(nn.Identity() if isinstance(m, nn.InstanceNorm2d) else m
                                   for m in critic.model))
    image = torch.zeros(1, 3, 256, 256, requires_grad=True)
    critic(image)[0, 0, 15, 15].backward()
    rows, cols = np.nonzero(image.grad.abs().sum(dim=(0, 1)).numpy())
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


# -- WGAN-GP -----------------------------------------------------------------------------------------

class LinearCritic(nn.Module):
    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.a * x).flatten(1).sum(dim=1)


class SquareCritic(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x**2).flatten(1).sum(dim=1)


def test_gradient_penalty_linear_critic_is_exact():
    torch.manual_seed(0)
    a = torch.randn(3, 4, 5) * 0.2
    critic = LinearCritic(a.clone())
    real, fake = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    expected = (a.pow(2).sum().sqrt() - 1) ** 2  # the gradient is a everywhere, whatever alpha is
    torch.testing.assert_close(gradient_penalty(critic, real, fake), expected)


def test_gradient_penalty_square_critic_by_hand():
    torch.manual_seed(0)
    real = torch.randn(3, 2, 4, 4).double()
    fake = torch.randn(3, 2, 4, 4).double()
    torch.manual_seed(42)
    gp = gradient_penalty(SquareCritic(), real, fake)
    torch.manual_seed(42)
    alphas = torch.rand(3, dtype=torch.float64).numpy()  # alpha is drawn in the inputs dtype
    r, f = real.numpy(), fake.numpy()
    by_hand = 0.0
    for i, alpha in enumerate(alphas):
        x_hat = alpha * r[i] + (1 - alpha) * f[i]
        grad_norm = np.sqrt(np.sum((2 * x_hat) ** 2))  # d/dx sum(x^2) = 2x, norm over C, H, W together
        by_hand += (grad_norm - 1) ** 2 / len(alphas)
    assert gp.item() == pytest.approx(by_hand, rel=1e-12)


def test_gradient_penalty_draws_one_alpha_per_sample_from_the_global_rng():
    real, fake = torch.zeros(4, 3, 2, 2), torch.ones(4, 3, 2, 2)
    torch.manual_seed(5)
    gradient_penalty(SquareCritic(), real, fake)
    after = torch.rand(1)
    torch.manual_seed(5)
    torch.rand(4)
    assert torch.equal(torch.rand(1), after)


def test_critic_and_generator_losses_by_hand():
    torch.manual_seed(0)
    a = torch.randn(3, 4, 4) * 0.1
    critic = LinearCritic(a.clone())
    real = torch.randn(2, 3, 4, 4)
    fake = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss, stats = critic_loss(critic, real, fake, gp_weight=10.0)
    d_real, d_fake = (a * real).flatten(1).sum(1).mean(), (a * fake.detach()).flatten(1).sum(1).mean()
    gp = (a.pow(2).sum().sqrt() - 1) ** 2
    torch.testing.assert_close(loss, d_fake - d_real + 10.0 * gp)
    assert stats["gradient_penalty"] == pytest.approx(gp.item(), rel=1e-5)
    assert stats["wasserstein_estimate"] == pytest.approx((d_real - d_fake).item(), rel=1e-5, abs=1e-6)
    loss.backward()
    assert fake.grad is None  # fake is detached inside critic_loss
    assert critic.a.grad is not None
    torch.testing.assert_close(generator_adversarial_loss(critic, fake), -d_fake)


# -- perceptual loss ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_perceptual() -> PerceptualLoss:
    return PerceptualLoss("random", seed=0)


def test_perceptual_random_is_deterministic_and_leaves_the_global_rng(random_perceptual):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    again = PerceptualLoss("random", seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    first, second = random_perceptual.features.state_dict(), again.features.state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    other_seed = PerceptualLoss("random", seed=1).features[0].weight
    assert not torch.equal(other_seed, again.features[0].weight)


def test_perceptual_is_vgg19_up_to_conv3_3_frozen(random_perceptual):
    features = random_perceptual.features
    assert len(features) == 15 and isinstance(features[-1], nn.Conv2d)
    assert (features[-1].in_channels, features[-1].out_channels) == (256, 256)
    assert sum(isinstance(m, nn.MaxPool2d) for m in features) == 2
    assert not any(p.requires_grad for p in random_perceptual.parameters())
    random_perceptual.train()
    assert not features.training


def test_perceptual_values(random_perceptual):
    torch.manual_seed(0)
    sharp = torch.rand(1, 3, 24, 24) * 2 - 1
    restored = (sharp + 0.2 * torch.randn_like(sharp)).clamp(-1, 1).requires_grad_(True)
    kept = restored.detach().clone()
    assert random_perceptual(sharp, sharp).item() == 0.0
    loss = random_perceptual(restored, sharp)
    assert loss.item() > 0
    loss.backward()
    assert restored.grad is not None and restored.grad.abs().sum() > 0
    assert torch.equal(restored.detach(), kept)  # the in-place ReLUs inside VGG never touch the input

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    features = random_perceptual.features
    with torch.no_grad():
        f_restored = features(((kept + 1) / 2 - mean) / std)
        f_sharp = features(((sharp + 1) / 2 - mean) / std)
        assert f_sharp.min() < 0  # conv3_3 before its ReLU
        torch.testing.assert_close(loss.detach(), ((f_restored - f_sharp) ** 2).mean())
        raw = copy.copy(random_perceptual)  # the same VGG, fed [-1, 1] unchanged (DeblurGAN)
        raw.normalize = False
        torch.testing.assert_close(raw(kept, sharp), ((features(kept) - features(sharp)) ** 2).mean())


def test_perceptual_imagenet_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="deblurbench fetch vgg19") as err:
        PerceptualLoss("imagenet", cache_dir=tmp_path)
    assert str(tmp_path / VGG19_FILE) in str(err.value)
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in str(err.value)


def test_perceptual_imagenet_wrong_hash_names_the_file(tmp_path):
    (tmp_path / VGG19_FILE).write_bytes(b"not the VGG19 weights")
    with pytest.raises(ValueError, match="SHA-256") as err:
        PerceptualLoss("imagenet", cache_dir=tmp_path)
    assert str(tmp_path / VGG19_FILE) in str(err.value)


def test_perceptual_unknown_weights():
    with pytest.raises(ValueError, match="imagenet"):
        PerceptualLoss("places365")
