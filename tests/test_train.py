"""The training loop: the schedule, and a killed run that resumes to exactly the same weights."""

import os
import signal
import subprocess
import time

import pytest
import torch
from training_run import same_weights as _same
from training_run import train_cmd as _train_cmd

from benchmark import registry
from benchmark.train import PROFILE_KEYS, Schedule, load_checkpoint, train_settings


def test_schedule_is_constant_then_linear_to_the_final_lr():
    s = Schedule(lr=1e-4, lr_final=1e-7, epochs_constant=200, epochs_decay=100)
    assert s.epochs == 300
    assert s.lr_at(0) == s.lr_at(199) == 1e-4
    assert s.lr_at(299) == pytest.approx(1e-7)
    assert s.lr_at(249) == pytest.approx(1e-4 + (1e-7 - 1e-4) * 50 / 100)
    lrs = [s.lr_at(e) for e in range(300)]
    assert all(a >= b for a, b in zip(lrs[:-1], lrs[1:], strict=True))


def test_profile_keys_win_over_method_defaults_and_overrides_win_over_both():
    method = registry.get("msr2b")
    fake = type(method)(**{**method.__dict__, "defaults": {**method.defaults, "lr": 5e-5, "epochs_constant": 150}})
    settings = train_settings({"lr": 1e-4, "epochs_constant": 2}, fake, None)
    assert settings["lr"] == 5e-5 and settings["epochs_constant"] == 2 and "epochs_constant" in PROFILE_KEYS
    assert train_settings({"lr": 1e-4}, fake, {"lr": 3e-4})["lr"] == 3e-4


def test_killed_run_resumes_to_identical_weights(tiny_gopro, tiny_cache, straight, tmp_path):
    interrupted = tmp_path / "interrupted"
    reference = torch.load(straight / "model.pt", weights_only=True)

    # Kill the second run (SIGKILL: no clean-up) once it has written a mid-run checkpoint.
    proc = subprocess.Popen(_train_cmd(tiny_gopro, tiny_cache, interrupted), start_new_session=True)
    checkpoint = interrupted / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run never wrote a checkpoint"
    killed_at = load_checkpoint(checkpoint)["iteration"]
    assert killed_at < 16, "the run finished before it could be killed: make it longer"
    assert not (interrupted / "model.pt").exists()

    subprocess.run(_train_cmd(tiny_gopro, tiny_cache, interrupted, "--resume"), check=True)
    assert _same(torch.load(interrupted / "model.pt", weights_only=True), reference)
    for log in ("log.csv", "val.csv"):  # the resumed run's logs read as one run, loss for loss
        assert (interrupted / log).read_text() == (straight / log).read_text()


def test_stop_after_then_resume_matches_and_reports_progress(tiny_gopro, tiny_cache, straight, tmp_path):
    split = tmp_path / "split"
    out = subprocess.run(_train_cmd(tiny_gopro, tiny_cache, split, "--stop-after", "3"), check=True,
                         capture_output=True, text=True).stdout
    assert "stopped after 3 of 16 iterations" in out
    subprocess.run(_train_cmd(tiny_gopro, tiny_cache, split, "--resume"), check=True)
    reference = torch.load(straight / "model.pt", weights_only=True)
    assert _same(torch.load(split / "model.pt", weights_only=True), reference)
    assert (split / "log.csv").read_text() == (straight / "log.csv").read_text()


class _Pairs:
    """A sampler of fixed random 256x256 crop pairs (what DeepDeblur's discriminator needs)."""

    def __init__(self, n=2):
        g = torch.Generator().manual_seed(0)
        self.sharp = torch.rand(n, 3, 256, 256, generator=g) * 2 - 1
        self.blurred = (self.sharp + torch.roll(self.sharp, 3, -1)) / 2

    def __len__(self):
        return len(self.sharp)

    def next_batch(self, batch_size):
        return self.blurred[:batch_size], self.sharp[:batch_size]

    def state_dict(self):
        return {}


def test_deepdeblur_paper_loss_trains_the_release_discriminator_with_bce(tmp_path):
    from benchmark.train import Trainer
    from models.deepdeblur import Discriminator

    method = registry.get("deepdeblur")
    options = method.options({"loss": "mse+adv", "features": 8, "blocks": 1})
    settings = train_settings({"seed": 0, "epochs_constant": 1, "epochs_decay": 0, "lr": 1e-4, "lr_final": 1e-7,
                               "betas": [0.5, 0.999], "eps": 1e-8, "n_critic": 5, "batch_size": 1, "crop": 256},
                              method, None)
    assert settings["n_critic"] == 1  # the release's gan_k
    trainer = Trainer(method, options, settings, _Pairs(), tmp_path, torch.device("cpu"))
    assert isinstance(trainer.critic, Discriminator)
    assert trainer.critic(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 1, 1)
    critic_before = [p.detach().clone() for p in trainer.critic.parameters()]
    stats = trainer.step()
    assert stats["gradient_penalty"] == "" and stats["loss_critic"] > 0 and stats["loss_adversarial"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, trainer.critic.parameters(), strict=True))
    with pytest.raises(ValueError, match="at least 256x256"):
        trainer.critic(torch.zeros(1, 3, 128, 128))
    # The default (the release's L1) trains without a discriminator.
    plain = Trainer(method, method.options({"features": 8, "blocks": 1}), settings, _Pairs(), tmp_path / "l1",
                    torch.device("cpu"))
    assert plain.critic is None and "loss_adversarial" not in plain.step()


def test_deepdeblur_content_losses_follow_the_release_and_the_paper():
    from models.deepdeblur import MultiScaleContent, pyramid

    sharp = torch.rand(1, 3, 16, 16) * 2 - 1
    outputs = [t + 0.1 for t in pyramid(sharp, 3)[::-1]]  # coarse to fine, each off by 0.1 on [-1, 1]
    l1 = MultiScaleContent({"loss": "l1"})(outputs, sharp)
    mse = MultiScaleContent({"loss": "mse+adv"})(outputs, sharp)
    assert l1.item() == pytest.approx(0.1)
    assert mse.item() == pytest.approx(0.05**2 / 2)  # 0.1 on [-1, 1] is 0.05 on [0, 1]; 1/(2K) sum_k
    with pytest.raises(ValueError, match="loss: 'mse'"):
        MultiScaleContent({"loss": "mse"})
