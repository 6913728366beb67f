"""NAFNet against the official code's facts: parameter counts of the GoPro configurations, key names and
shapes, the TLC local pool against a plain transcription of the official ``AvgPool2d`` (fast_imp off),
LayerNorm2d against the official forward, the [0, 1] range through the registry's restore, the PSNR loss,
and one step of the one training loop."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark import registry
from benchmark.registry import network_restore
from models.nafnet import LayerNorm2d, LocalAvgPool, NAFNet, PSNRLoss

GOPRO = {"enc_blk_nums": [1, 1, 1, 28], "middle_blk_num": 1, "dec_blk_nums": [1, 1, 1, 1]}
TINY = {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1], "train_size": 16}


@pytest.mark.parametrize(("width", "params", "tensors"), [(32, 17_111_907, 664), (64, 67_888_835, 664)])
def test_gopro_configurations_have_the_official_sizes(width, params, tensors):
    method = registry.get("nafnet")
    state = method.build(method.options({"width": width, **GOPRO})).state_dict()
    assert sum(v.numel() for v in state.values()) == params
    assert len(state) == tensors
    c = width
    expected = {"intro.weight": (c, 3, 3, 3), "ending.weight": (3, c, 3, 3), "downs.0.weight": (2 * c, c, 2, 2),
                "encoders.3.27.conv2.weight": (16 * c, 1, 3, 3), "encoders.3.27.sca.1.weight": (8 * c, 8 * c, 1, 1),
                "middle_blks.0.beta": (1, 16 * c, 1, 1), "ups.0.0.weight": (32 * c, 16 * c, 1, 1),
                "decoders.3.0.norm2.bias": (c,), "decoders.0.0.conv5.weight": (8 * c, 8 * c, 1, 1)}
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert "ups.0.0.bias" not in state


def official_avg_pool(x, kernel_size):
    """The official ``AvgPool2d.forward`` with fast_imp False and auto_pad True, transcribed."""
    if kernel_size[0] >= x.size(-2) and kernel_size[1] >= x.size(-1):
        return F.adaptive_avg_pool2d(x, 1)
    n, c, h, w = x.shape
    s = x.cumsum(dim=-1).cumsum_(dim=-2)
    s = F.pad(s, (1, 0, 1, 0))
    k1, k2 = min(h, kernel_size[0]), min(w, kernel_size[1])
    s1, s2, s3, s4 = s[:, :, :-k1, :-k2], s[:, :, :-k1, k2:], s[:, :, k1:, :-k2], s[:, :, k1:, k2:]
    out = (s4 + s1 - s2 - s3) / (k1 * k2)
    _h, _w = out.shape[2:]
    pad2d = ((w - _w) // 2, (w - _w + 1) // 2, (h - _h) // 2, (h - _h + 1) // 2)
    return F.pad(out, pad2d, mode="replicate")


@pytest.mark.parametrize(("shape", "kernel"), [((2, 3, 9, 14), (4, 6)), ((1, 2, 7, 12), (3, 3)),
                                               ((1, 2, 6, 13), (8, 5)), ((1, 1, 10, 5), (4, 9)),
                                               ((1, 2, 5, 6), (5, 6))])
def test_local_pool_matches_the_official_avgpool(shape, kernel):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=torch.float64)
    ours = LocalAvgPool(kernel)(x)
    official = official_avg_pool(x, kernel)
    assert ours.shape == official.shape
    torch.testing.assert_close(ours, official)
    if kernel[0] < shape[2] and kernel[1] < shape[3]:  # a genuinely local mean: a window at the centre
        i, j = shape[2] // 2, shape[3] // 2
        top, left = i - (kernel[0] - 1) // 2, j - (kernel[1] - 1) // 2
        assert ours.shape[-2:] == shape[-2:]
        window = x[..., top:top + kernel[0], left:left + kernel[1]].mean(dim=(-2, -1))
        torch.testing.assert_close(ours[..., i, j], window)


def test_local_pool_window_follows_the_official_conversion():
    """Official: a forward at train_size sets kernel = feature size x base / train size, base = 1.5 x train."""
    net = NAFNet(width=8, **GOPRO, local=True, train_size=256)
    pools = {name: m.kernel for name, m in net.named_modules() if isinstance(m, LocalAvgPool)}
    assert pools["encoders.0.0.sca.0"] == (384, 384)
    assert pools["encoders.3.5.sca.0"] == (48, 48)
    assert pools["middle_blks.0.sca.0"] == (24, 24)
    assert pools["decoders.0.0.sca.0"] == (48, 48)  # decoders run coarse to fine
    assert pools["decoders.3.0.sca.0"] == (384, 384)


def test_local_equals_global_up_to_the_training_size_and_differs_above():
    torch.manual_seed(0)
    local = NAFNet(**TINY, local=True).eval()
    plain = NAFNet(**TINY, local=False).eval()
    plain.load_state_dict(local.state_dict())
    for p in local.parameters():  # beta and gamma start at zero: make every branch count
        torch.nn.init.normal_(p, std=0.3)
    plain.load_state_dict(local.state_dict())
    with torch.no_grad():
        small = torch.rand(1, 3, 16, 16)
        torch.testing.assert_close(local(small), plain(small))
        large = torch.rand(1, 3, 40, 56)
        assert (local(large) - plain(large)).abs().max() > 1e-4


def test_layernorm2d_matches_the_official_forward():
    x = torch.randn(2, 5, 4, 3, generator=torch.Generator().manual_seed(1))
    norm = LayerNorm2d(5)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    mu = x.mean(1, keepdim=True)
    var = (x - mu).pow(2).mean(1, keepdim=True)
    official = norm.weight.view(1, 5, 1, 1) * ((x - mu) / (var + 1e-6).sqrt()) + norm.bias.view(1, 5, 1, 1)
    torch.testing.assert_close(norm(x), official)


def test_pads_internally_to_16_with_zeros_and_works_on_unit_range():
    net = NAFNet(**TINY).eval()
    assert net.padder_size == 4 and net.value_range == (0.0, 1.0)
    net16 = NAFNet(width=8, **GOPRO, local=False)
    assert net16.padder_size == 16
    with torch.no_grad():  # any size in, the same size out (padded inside, cropped back)
        x = torch.rand(1, 3, 13, 21)
        assert net(x).shape == x.shape
    # Through the registry's restore, uint8 -> [0, 1] -> uint8: a network returning its input is exact.
    identity = NAFNet(**TINY).eval()
    torch.nn.init.zeros_(identity.ending.weight)
    torch.nn.init.zeros_(identity.ending.bias)
    image = np.random.default_rng(0).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    assert np.array_equal(network_restore(identity, image, {}), image)
    seen = []
    identity.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    network_restore(identity, image, {})
    assert seen[0].min() >= 0 and math.isclose(seen[0].max().item(), image.max() / 255, rel_tol=1e-6)


def test_psnr_loss_is_minus_psnr_on_unit_range():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.full((2, 3, 4, 4), 0.1)
    b[1] = 0.01
    expected = (10 * math.log10(0.01) + 10 * math.log10(1e-4)) / 2
    assert math.isclose(PSNRLoss()(b, a).item(), expected, rel_tol=1e-5)


def test_one_step_of_the_training_loop(tmp_path):
    from benchmark.train import Trainer

    class Sampler:
        def __len__(self):
            return 2

        def state_dict(self):
            return {}

        def next_batch(self, n):
            g = torch.Generator().manual_seed(3)
            sharp = torch.rand(n, 3, 16, 16, generator=g) * 2 - 1
            return (sharp + 0.1 * torch.randn(n, 3, 16, 16, generator=g)).clamp(-1, 1), sharp

    method = registry.get("nafnet")
    settings = {"lr": 1e-3, "lr_final": 1e-7, "betas": [0.9, 0.9], "eps": 1e-8, "epochs_constant": 1,
                "epochs_decay": 0, "batch_size": 2, "crop": 16, "seed": 0}
    trainer = Trainer(method, method.options(TINY), settings, Sampler(), tmp_path, torch.device("cpu"))
    first = trainer.step()
    for _ in range(5):
        last = trainer.step()
    assert last["loss_content"] < first["loss_content"]


# -- a plain transcription of the official NAFNetLocal (NAFNet_arch.py, local_arch.py, fast_imp False) --
class OfficialAvgPool2d(torch.nn.Module):
    def __init__(self, base_size, train_size):
        super().__init__()
        self.kernel_size, self.base_size, self.train_size = None, base_size, train_size

    def forward(self, x):
        if self.kernel_size is None:  # sized by the first forward, the one the conversion runs at train_size
            self.kernel_size = [x.shape[2] * self.base_size[0] // self.train_size[-2],
                                x.shape[3] * self.base_size[1] // self.train_size[-1]]
        return official_avg_pool(x, self.kernel_size)


def official_block(block, x):
    def sg(t):
        a, b = t.chunk(2, dim=1)
        return a * b

    def norm(layer, t):
        mu = t.mean(1, keepdim=True)
        var = (t - mu).pow(2).mean(1, keepdim=True)
        return layer.weight.view(1, -1, 1, 1) * ((t - mu) / (var + 1e-6).sqrt()) + layer.bias.view(1, -1, 1, 1)

    inp = x
    x = sg(block.conv2(block.conv1(norm(block.norm1, x))))
    x = block.conv3(x * block.official_sca(x))
    y = inp + x * block.beta
    x = block.conv5(sg(block.conv4(norm(block.norm2, y))))
    return y + x * block.gamma


def official_forward(net, inp):
    _, _, h, w = inp.shape
    inp = F.pad(inp, (0, (-w) % net.padder_size, 0, (-h) % net.padder_size))
    x = net.intro(inp)
    encs = []
    for encoder, down in zip(net.encoders, net.downs, strict=True):
        for block in encoder:
            x = official_block(block, x)
        encs.append(x)
        x = down(x)
    for block in net.middle_blks:
        x = official_block(block, x)
    for decoder, up, skip in zip(net.decoders, net.ups, encs[::-1], strict=True):
        x = up(x) + skip
        for block in decoder:
            x = official_block(block, x)
    return (net.ending(x) + inp)[:, :, :h, :w]


def test_whole_network_matches_the_official_nafnetlocal_transcription():
    torch.manual_seed(0)
    options = {"width": 4, "enc_blk_nums": [1, 2], "middle_blk_num": 1, "dec_blk_nums": [2, 1], "train_size": 16}
    net = NAFNet(**options, local=True).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    # The official conversion: every global pool becomes an AvgPool2d(base 1.5 x train size), sized by a
    # forward at the training size.
    for block in (m for m in net.modules() if hasattr(m, "sca")):
        block.official_sca = torch.nn.Sequential(OfficialAvgPool2d((24, 24), (1, 3, 16, 16)), block.sca[1])
    with torch.no_grad():
        official_forward(net, torch.rand(1, 3, 16, 16))
        for shape in ((1, 3, 40, 56), (1, 3, 33, 19), (1, 3, 16, 16)):
            x = torch.rand(shape)
            torch.testing.assert_close(net(x), official_forward(net, x), rtol=1e-5, atol=1e-5)
