"""The training loop's health check (issue 18): a network that collapsed to the identity is detected and said
in one line, in the log, run.json and the report; plus the recipe settings the offline profiles use (warm-up,
no critic, no kept checkpoint)."""

import json

import pytest
import torch
from torch import nn

from benchmark import registry
from benchmark.train import Schedule, Trainer, health_line, network_health, train_settings

TINY = {"seed": 0, "epochs_constant": 1, "epochs_decay": 0, "lr": 1e-3, "lr_final": 1e-7, "betas": [0.9, 0.999],
        "eps": 1e-8, "n_critic": 0, "gp_weight": 10.0, "content_weight": 1.0, "content": "l1",
        "perceptual_weights": "random", "perceptual_normalize": True, "batch_size": 2, "crop": 32,
        "val_every": 1, "log_every": 1, "checkpoint_every": 100, "quiet": True}


class Residual(nn.Module):
    """input + conv(ReLU(conv(input))): the smallest network with a ReLU layer on the residual's path."""

    def __init__(self, bias: float, out_weight: float) -> None:
        super().__init__()
        self.inner, self.relu, self.out = nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 3, 1)
        with torch.no_grad():
            self.inner.weight.fill_(0.1)
            self.inner.bias.fill_(bias)
            self.out.weight.fill_(out_weight)
            self.out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.relu(self.inner(x)))


def test_health_tells_collapsed_from_not_yet_moved_from_learning():
    x = torch.randint(0, 256, (2, 3, 8, 8), generator=torch.Generator().manual_seed(0)) / 127.5 - 1  # an image
    dead = network_health(Residual(bias=-10.0, out_weight=0.5), x)  # ReLUs dead: the output is its bias, 0
    assert dead["identity"] and dead["collapsed"] and dead["dead_layers"] == ["relu"] and dead["dead_relu"] == 1.0
    assert dead["residual_rms"] == 0.0 and dead["changed"] == 0.0
    still = network_health(Residual(bias=1.0, out_weight=0.0), x)  # alive, but the output conv is zero
    assert still["identity"] and not still["collapsed"] and still["dead_relu"] == 0.0
    moving = network_health(Residual(bias=1.0, out_weight=0.05), x)
    assert not moving["identity"] and moving["residual_rms"] > 20
    # a residual below half a grey level rounds away: the identity, as the restored PNG would show
    tiny = network_health(Residual(bias=1.0, out_weight=1e-4), x)
    assert tiny["identity"] and 0 < tiny["residual_rms"] < 0.5
    line = health_line("msr2b-s1", 83, dead)
    assert line.startswith("msr2b-s1: collapsed to the identity at iteration 83")
    assert "relu" in line and "\n" not in line
    assert health_line("msr2b", 5, still).startswith("msr2b: still the identity at iteration 5")
    assert health_line("msr2b", 5, moving) is None and not moving["saturated"]
    # diverged into the output clamp (as a reduced-profile ResNet seed did: 4.5 dB): white everywhere
    blown = network_health(Residual(bias=1.0, out_weight=1.0), x)
    assert blown["saturated"] and blown["clipped"] == 1.0 and blown["input_clipped"] < 0.02
    assert health_line("resnet", 360, blown).startswith("resnet: saturated at iteration 360: 100.0% of its output")


def test_a_collapsed_training_is_said_in_the_log_and_its_health_record(tiny_cache, tmp_path, capsys):
    from benchmark.data import CropSampler

    method = registry.get("msr2b")
    options = method.options({"k": 1, "width": 8, "init": "he-identity"})
    settings = train_settings(TINY, method, None)
    trainer = Trainer(method, options, settings, CropSampler(tiny_cache, 32, 0), tmp_path / "run", torch.device("cpu"))
    with torch.no_grad():  # kill the tail's last ReLU layer: nothing reaches the (zero) output conv any more
        trainer.generator.tail[2].bias.fill_(-1e3)
    trainer.run()
    health = trainer.final_health
    assert health["collapsed"] and "tail.3" in health["dead_layers"]
    assert "run: collapsed to the identity at iteration 2" in capsys.readouterr().out
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert "residual_rms" in log[0] and log[-1].split(",")[-1] == "1.0"  # dead_relu_max of the last row


def test_the_cli_writes_the_health_record_into_run_json(tiny_gopro, tiny_cache, tmp_path):
    from benchmark.cli import main

    out = tmp_path / "msr2b"
    assert main(["train", "--method", "msr2b", "--method-config", '{"k": 1, "width": 8}', "--train",
                 json.dumps({k: v for k, v in TINY.items() if k != "quiet"} | {"keep_checkpoint": False}),
                 "--data", str(tiny_gopro), "--cache", str(tiny_cache),
                 "--validation-images", "0", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert set(info["health"]) >= {"residual_rms", "changed", "dead_relu", "dead", "collapsed", "line"}
    assert not info["health"]["collapsed"]
    # keep_checkpoint: false leaves the weights and no resume state behind
    assert (out / "model.pt").exists() and not (out / "checkpoint.pt").exists()


def test_warmup_ramps_the_learning_rate_then_the_schedule_takes_over():
    s = Schedule(lr=1e-3, lr_final=0.0, epochs_constant=2, epochs_decay=2, warmup=4)
    assert [s.lr_at(0, i) for i in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    assert s.lr_at(2, 10) == pytest.approx(5e-4) and s.lr_at(3, 12) == 0.0
    assert Schedule(1e-3, 0.0, 1, 0).lr_at(0, 0) == 1e-3  # no warm-up: the paper's


def test_no_critic_steps_means_no_critic_and_no_adversarial_term(tiny_cache, tmp_path):
    from benchmark.data import CropSampler

    method = registry.get("msr2b")
    settings = train_settings(TINY, method, None)
    trainer = Trainer(method, method.options({"k": 1, "width": 8}), settings, CropSampler(tiny_cache, 32, 0),
                      tmp_path, torch.device("cpu"))
    assert trainer.critic is None and set(trainer.step()) == {"loss_content", "grad_norm"}
