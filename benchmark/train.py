"""The one training loop: an adversarial game (critic steps, then a generator step; WGAN-GP or BCE) or a plain CNN.

Read top to bottom: schedule, critic step, generator step, validation, checkpoint, loop. A method
says what it needs through :class:`benchmark.registry.Training`; everything numeric comes from the
configuration (``train`` section merged with the method's own defaults and overrides).
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmark.registry import Method, network_restore
from models.losses import bce_discriminator_loss, bce_generator_loss, critic_loss, generator_adversarial_loss

LOG_FIELDS = ("iteration", "epoch", "lr", "loss_critic", "gradient_penalty", "loss_adversarial", "loss_content")


@dataclass(frozen=True)
class Schedule:
    """lr constant for ``epochs_constant`` epochs, then linear decay to ``lr_final`` over ``epochs_decay``."""

    lr: float
    lr_final: float
    epochs_constant: int
    epochs_decay: int

    @property
    def epochs(self) -> int:
        return self.epochs_constant + self.epochs_decay

    def lr_at(self, epoch: int) -> float:
        """Learning rate during ``epoch`` (0-based); the last decay epoch runs at ``lr_final``."""
        if epoch < self.epochs_constant or self.epochs_decay == 0:
            return self.lr
        done = min(epoch - self.epochs_constant + 1, self.epochs_decay) / self.epochs_decay
        return self.lr + (self.lr_final - self.lr) * done


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device on this machine")
    return torch.device(name)


def _adam(params, settings: Mapping[str, Any]) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=settings["lr"], betas=tuple(settings["betas"]), eps=settings["eps"])


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "batch": generator.get_state(),
             # as a tensor and plain numbers, so the checkpoint loads with weights_only=True
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    generator.set_state(state["batch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary name in the same folder, then rename: no half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by this module, safely (tensors and plain containers only)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means the file is unusable
        raise ValueError(f"{path}: not a readable deblurbench checkpoint ({err})") from err


class Trainer:
    """Trains one method's network; :meth:`run` is the loop."""

    def __init__(self, method: Method, options: Mapping[str, Any], settings: Mapping[str, Any],
                 sampler: Any, out_dir: Path, device: torch.device,
                 validation: Sequence[tuple[np.ndarray, np.ndarray]] = ()) -> None:
        from benchmark.metrics import psnr

        assert method.training is not None and method.build is not None
        self.method, self.options, self.settings = method, dict(options), dict(settings)
        self.sampler, self.out_dir, self.device = sampler, Path(out_dir), device
        self.validation, self._psnr = validation, psnr
        self.schedule = Schedule(settings["lr"], settings["lr_final"], settings["epochs_constant"],
                                 settings["epochs_decay"])
        self.iters_per_epoch = math.ceil(len(sampler) / settings["batch_size"])
        self.total_iters = self.schedule.epochs * self.iters_per_epoch

        torch.manual_seed(settings["seed"])
        np.random.seed(settings["seed"])
        random.seed(settings["seed"])
        self.batch_generator = torch.Generator().manual_seed(settings["seed"])
        self.generator = method.build(self.options).to(device)
        self.content_loss = method.training.content_loss({**self.options, **self.settings}).to(device)
        self.opt_g = _adam(self.generator.parameters(), settings)
        self.critic = self.opt_d = None
        if method.training.build_critic is not None:
            self.critic = method.training.build_critic(self.options)
        if self.critic is not None:
            self.critic = self.critic.to(device)
            self.opt_d = _adam(self.critic.parameters(), settings)
        self.iteration = 0
        self.wall_seconds = 0.0

    # -- one step of each kind ------------------------------------------------------------------
    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        blurred, sharp = self.sampler.next_batch(self.settings["batch_size"])
        prepare = self.method.training.prepare_batch
        if prepare is not None:
            blurred, sharp = prepare(blurred, sharp, self.batch_generator)
        return blurred.to(self.device), sharp.to(self.device)

    def critic_step(self, sharp: torch.Tensor, restored: torch.Tensor) -> dict[str, float]:
        if self.method.training.adversarial == "wgan-gp":
            loss, stats = critic_loss(self.critic, sharp, restored.detach(), self.settings["gp_weight"],
                                      self.settings.get("gp_reduction", "sum"))
        else:
            loss, stats = bce_discriminator_loss(self.critic, sharp, restored)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return {"loss_critic": loss.item(), "gradient_penalty": stats.get("gradient_penalty", "")}

    def generator_step(self, output: torch.Tensor | list[torch.Tensor], finest: torch.Tensor,
                       sharp: torch.Tensor) -> dict[str, float]:
        content = self.content_loss(output, sharp)
        loss = content
        stats = {"loss_content": content.item()}
        if self.critic is not None:
            for p in self.critic.parameters():
                p.requires_grad_(False)
            training = self.method.training
            gan_loss = generator_adversarial_loss if training.adversarial == "wgan-gp" else bce_generator_loss
            adversarial = gan_loss(self.critic, finest)
            for p in self.critic.parameters():
                p.requires_grad_(True)
            loss = content + training.adversarial_weight * adversarial
            stats["loss_adversarial"] = adversarial.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return stats

    def step(self) -> dict[str, float]:
        """One iteration. ``critic_batches: same`` (DeblurGAN): one batch and one generator forward pass,
        ``n_critic`` critic updates on that restored batch, then one generator update on it. ``fresh``
        (WGAN-GP's Algorithm 1): each critic update on a batch of its own, restored without gradients,
        then the generator update on one more batch."""
        fresh = self.critic is not None and self.settings.get("critic_batches", "same") == "fresh"
        stats: dict[str, float] = {}
        if fresh:
            for _ in range(self.settings["n_critic"]):
                blurred, sharp = self.batch()
                with torch.no_grad():
                    output = self.generator(blurred)
                stats = self.critic_step(sharp, output[-1] if isinstance(output, list | tuple) else output)
        blurred, sharp = self.batch()
        output = self.generator(blurred)
        finest = output[-1] if isinstance(output, list | tuple) else output  # what the critic judges
        if self.critic is not None and not fresh:
            for _ in range(self.settings["n_critic"]):
                stats = self.critic_step(sharp, finest)
        return stats | self.generator_step(output, finest, sharp)

    def set_lr(self, epoch: int) -> float:
        lr = self.schedule.lr_at(epoch)
        for opt in (self.opt_g, self.opt_d):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = lr
        return lr

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> float | None:
        """Mean PSNR of the method's restore on the validation images (image-to-image methods)."""
        if not self.validation or self.method.restore is not network_restore:
            return None
        self.generator.eval()
        values = [self._psnr(network_restore(self.generator, b, self.options), s) for b, s in self.validation]
        self.generator.train()
        return float(np.mean(values))

    # -- checkpoints ----------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        state = {
            "iteration": self.iteration,
            "wall_seconds": self.wall_seconds,
            "generator": self.generator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "rng": _rng_state(self.batch_generator),
            "sampler": self.sampler.state_dict(),
        }
        if self.critic is not None:
            state["critic"] = self.critic.state_dict()
            state["opt_d"] = self.opt_d.state_dict()
        save_atomic(state, self.checkpoint_path)

    def resume(self) -> None:
        state = load_checkpoint(self.checkpoint_path, self.device)
        self.generator.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.opt_d.load_state_dict(state["opt_d"])
        self.sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"], self.batch_generator)
        self.iteration = state["iteration"]
        self.wall_seconds = state["wall_seconds"]
        for name in ("log.csv", "val.csv"):
            _truncate_log(self.out_dir / name, self.iteration)

    # -- the loop -------------------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after: int | None = None) -> Path:
        """Train to the end of the schedule (or ``stop_after`` iterations); returns the weights file."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume and self.checkpoint_path.exists():
            self.resume()
        else:
            for name in ("log.csv", "val.csv"):
                (self.out_dir / name).unlink(missing_ok=True)
        log = _CsvAppender(self.out_dir / "log.csv", LOG_FIELDS)
        val_log = _CsvAppender(self.out_dir / "val.csv", ("iteration", "epoch", "psnr"))
        s = self.settings
        end = self.total_iters if stop_after is None else min(self.total_iters, stop_after)
        self.generator.train()
        if self.iteration == 0 and self.validation:
            val_log.write({"iteration": 0, "epoch": 0, "psnr": self.validate()})
        bar = tqdm(total=end, initial=self.iteration, desc=f"train {self.method.name}", unit="it",
                   dynamic_ncols=True, disable=s.get("quiet", False))
        started = time.perf_counter() - self.wall_seconds
        while self.iteration < end:
            epoch = self.iteration // self.iters_per_epoch
            lr = self.set_lr(epoch)
            stats = self.step()
            self.iteration += 1
            if not all(math.isfinite(v) for v in stats.values()):
                raise FloatingPointError(f"training {self.method.name}: non-finite loss at iteration "
                                         f"{self.iteration}: {stats}")
            if self.iteration % s["log_every"] == 0 or self.iteration == end:
                log.write({"iteration": self.iteration, "epoch": epoch, "lr": lr, **stats})
                bar.set_postfix({k.replace("loss_", ""): f"{v:.3g}" for k, v in stats.items()})
            finished_epoch = self.iteration % self.iters_per_epoch == 0
            if finished_epoch and (epoch + 1) % s["val_every"] == 0 and self.validation:
                val_log.write({"iteration": self.iteration, "epoch": epoch + 1, "psnr": self.validate()})
            self.wall_seconds = time.perf_counter() - started
            if self.iteration % s["checkpoint_every"] == 0 or self.iteration == end:
                self.save_checkpoint()
            bar.update(1)
        bar.close()
        weights = self.out_dir / "model.pt"
        if self.iteration >= self.total_iters:
            save_atomic(self.generator.state_dict(), weights)
        return weights


class _CsvAppender:
    def __init__(self, path: Path, fields: Sequence[str]) -> None:
        self.path, self.fields = path, list(fields)
        if not path.exists():
            with path.open("w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()

    def write(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)


def _truncate_log(path: Path, iteration: int) -> None:
    """Drop rows written after the checkpoint we resume from, so the log reads as one run."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
        fields = rows[0].keys() if rows else None
    if fields is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(fields))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["iteration"]) <= iteration)
    os.replace(tmp, path)


# How long and how observed a run is belongs to the profile (quick and smoke shrink every method alike;
# the paper profile sets each method's own schedule under `methods:`); how a method trains (lr, betas,
# loss weights, critic steps, and its own batch size and crop, e.g. DeepDeblur's 16 / 256) belongs to the
# method's defaults. A profile whose images cannot hold a method's crop overrides it on purpose under
# `methods: {name: {train: ...}}`; run.json records, and the report shows, what each run used.
PROFILE_KEYS = frozenset({"epochs_constant", "epochs_decay", "seed", "val_every", "log_every", "checkpoint_every",
                          "perceptual_weights"})


def train_settings(train_cfg: Mapping[str, Any], method: Method, overrides: Mapping[str, Any] | None) -> dict:
    """The run's settings: the profile's ``train`` section; the method's defaults on top for the keys
    that describe how it trains (not :data:`PROFILE_KEYS`); then the profile's per-method overrides."""
    merged = dict(train_cfg)
    merged.update({k: v for k, v in method.defaults.items() if k in train_cfg and k not in PROFILE_KEYS})
    merged.update(overrides or {})
    return merged


def write_run_info(path: Path, info: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)

