"""The fast training step (issue 11): bf16 autocast, channels_last, device-resident statistics, batches
fed ahead, torch.compile with a fallback. Checked on the CPU; the CUDA-only parts are the same code."""

import math
import warnings
from pathlib import Path

import pytest
import torch

import benchmark.train as train
from benchmark import registry
from benchmark.data import CropSampler
from benchmark.train import BatchFeeder, Trainer, speed_settings, to_channels_last, train_settings

SETTINGS = {"seed": 0, "epochs_constant": 2, "epochs_decay": 0, "lr": 1e-4, "lr_final": 1e-7, "betas": [0.5, 0.999],
            "eps": 1e-8, "n_critic": 2, "gp_weight": 10.0, "content_weight": 100.0, "perceptual_weights": "random",
            "perceptual_normalize": True, "batch_size": 1, "crop": 32, "val_every": 1, "log_every": 4,
            "checkpoint_every": 100, "quiet": True}
REPO = Path(__file__).resolve().parents[1]


def _trainer(cache, out, method="msr2b", options=None, **settings):
    m = registry.get(method)
    s = train_settings(SETTINGS | settings, m, None)
    return Trainer(m, m.options(options or {"k": 1, "width": 8}), s, CropSampler(cache, crop=s["crop"], seed=0),
                   out, torch.device("cpu"))


def test_bf16_step_losses_agree_with_fp32(tiny_cache, tmp_path):
    """One step from the same weights and batch: every loss within 5% (relative) of fp32. bf16 keeps
    8 mantissa bits (~0.4% per rounding), the differences add up over ~15 conv layers, and the gradient
    penalty (||g|| - 1)^2 more than doubles the relative error of the norm ||g||. lr is tiny so
    that the critic update before the generator's loss (Adam's first step is lr * sign(g), which turns a
    rounding difference into a whole step) does not stand in for the precision of the passes."""
    fp32 = _trainer(tiny_cache, tmp_path / "a", options={"k": 3, "width": 8}, lr=1e-9).step()
    t = _trainer(tiny_cache, tmp_path / "b", options={"k": 3, "width": 8}, lr=1e-9, precision="bf16")
    before = [p.detach().clone() for p in t.critic.parameters()]
    bf16 = t.step()
    assert fp32.keys() == bf16.keys()
    for name in fp32:
        assert bf16[name].dtype == torch.float32  # losses reduced in fp32
        assert bf16[name].item() == pytest.approx(fp32[name].item(), rel=5e-2, abs=1e-3), name
    assert fp32["gradient_penalty"].item() > 0  # the double backward ran and trained the critic
    # every conv weight moved (a bias before an InstanceNorm gets no gradient)
    changed = [not torch.equal(a, b) for a, b in zip(before, t.critic.parameters(), strict=True) if a.dim() > 1]
    assert all(changed) and all(torch.isfinite(p).all() for p in t.critic.parameters())


@pytest.mark.parametrize("name, options, size", [
    ("msr2b", {"k": 2, "width": 8}, 32), ("res2net", {"k": 1, "width": 8}, 32), ("resnet", {"k": 1, "width": 8}, 32),
    ("deblurgan", {"ngf": 8, "n_blocks": 1}, 32), ("deepdeblur", {"features": 8, "blocks": 1}, 32)])
def test_channels_last_outputs_equal_contiguous(name, options, size):
    method = registry.get(name)
    torch.manual_seed(0)
    model = method.build(method.options(options)).eval()
    x = torch.rand(1, 3, size, size) * 2 - 1
    with torch.no_grad():
        plain = model(x)
        model.to(memory_format=torch.channels_last)
        fast = model(to_channels_last(x))
    for a, b in zip(plain if isinstance(plain, list) else [plain], fast if isinstance(fast, list) else [fast],
                    strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_channels_last_critic_and_vgg_equal_contiguous():
    from models.critic import PatchCritic
    from models.losses import vgg19_head

    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    for net in (PatchCritic(), vgg19_head()):
        with torch.no_grad():
            plain = net(x)
            fast = net.to(memory_format=torch.channels_last)(to_channels_last(x))
        assert torch.allclose(plain, fast, atol=1e-5, rtol=0)


def test_speed_settings_cuda_only_parts_are_off_on_the_cpu():
    speed = speed_settings({"precision": "bf16", "channels_last": True}, torch.device("cpu"))
    assert speed["precision"] == "bf16" and not speed["channels_last"] and not speed["tf32"]
    assert speed_settings({}, torch.device("cuda"))["channels_last"]
    with pytest.raises(ValueError, match="precision"):
        speed_settings({"precision": "fp16"}, torch.device("cpu"))


def test_loop_reads_the_device_only_every_log_every_iterations(tiny_cache, tmp_path, monkeypatch):
    """Every read of a tensor's value from the project's code is counted: only the loop's one read per
    log_every (4) iterations remains, 2 in 8 iterations (beside the health check's one read where the
    run validates, which already waits for the device)."""
    import inspect

    reads, strays = [], []
    real_read = train._read
    monkeypatch.setattr(train, "_read", lambda tensors: reads.append(inspect.stack()[1].function) or real_read(tensors))

    def spy(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            import inspect

            caller = inspect.stack()[1].filename
            if caller.startswith(str(REPO)) and not caller.endswith("test_train_speed.py") \
                    and inspect.stack()[1].function != "_read":
                strays.append((name, caller, inspect.stack()[1].lineno))
            return original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, wrapper)

    t = _trainer(tiny_cache, tmp_path)
    for name in ("item", "tolist", "__bool__", "__float__", "cpu", "numpy"):
        spy(name)
    t.run()
    loop = [f for f in reads if f != "network_health"]
    assert t.iteration == 8 and len(loop) == 2 and strays == []
    assert reads.count("network_health") <= 8 // t.settings["val_every"] + 1  # at validations and the end


def test_non_finite_loss_names_the_iteration_range(tiny_cache, tmp_path, monkeypatch):
    t = _trainer(tiny_cache, tmp_path)
    step, calls = t.step, []

    def poisoned():
        stats = step()
        calls.append(1)
        return stats | {"loss_content": torch.tensor(math.nan)} if len(calls) == 6 else stats
    monkeypatch.setattr(t, "step", poisoned)
    with pytest.raises(FloatingPointError, match="between iterations 5 and 8"):
        t.run()


def test_prefetching_feeder_yields_the_synchronous_sequence(tiny_cache):
    """Same crops, flips and generator draws in the same order, epochs crossed with a short last batch;
    the state a checkpoint takes is the one before the first batch not yet handed out."""
    def feeder(ahead):
        sampler = CropSampler(tiny_cache, crop=16, seed=3, random_flip=True)
        gen = torch.Generator().manual_seed(1)

        def produce():
            blurred, sharp = sampler.next_batch(3)
            return blurred + torch.rand(1, generator=gen), sharp
        return BatchFeeder(produce, lambda: (sampler.state_dict(), gen.get_state()), torch.device("cpu"), ahead)

    sync, ahead = feeder(False), feeder(True)
    for _ in range(7):
        state = sync.state()
        assert ahead.state()[0] == state[0] and torch.equal(ahead.state()[1], state[1])
        for a, b in zip(sync.next(), ahead.next(), strict=True):
            assert torch.equal(a, b)
    ahead.close()


def test_resume_with_prefetch_is_bit_exact(tiny_cache, tmp_path):
    straight = _trainer(tiny_cache, tmp_path / "straight", prefetch=True)
    straight.run()
    split = _trainer(tiny_cache, tmp_path / "split", prefetch=True, checkpoint_every=3)
    split.run(stop_after=4)
    again = _trainer(tiny_cache, tmp_path / "split", prefetch=True, checkpoint_every=3)
    again.run(resume=True)
    assert again.resumed_from == 4
    for a, b in zip(straight.generator.state_dict().values(), again.generator.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert (tmp_path / "split" / "log.csv").read_text() == (tmp_path / "straight" / "log.csv").read_text()


class _Broken(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        raise RuntimeError("no compiler here\nsecond line")


def test_compile_falls_back_with_one_warning_and_undoes_its_probe(tiny_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", _Broken)
    eager = _trainer(tiny_cache, tmp_path / "eager")
    eager.run()
    t = _trainer(tiny_cache, tmp_path / "compiled", compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t.run()
    assert len(caught) == 1 and "no compiler here" in str(caught[0].message)
    assert t.speed["compiled"] == "none"
    assert (tmp_path / "compiled" / "log.csv").read_text() == (tmp_path / "eager" / "log.csv").read_text()
