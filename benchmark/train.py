"""The one training loop: an adversarial game (critic steps, then a generator step; WGAN-GP or BCE) or a plain CNN.

Read top to bottom: schedule, critic step, generator step, validation, checkpoint, loop. A method
says what it needs through :class:`benchmark.registry.Training`; everything numeric comes from the
configuration (``train`` section merged with the method's own defaults and overrides).
"""

from __future__ import annotations

import csv
import hashlib
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


# Settings that change how fast or how visibly a run goes, not what it computes: a checkpoint
# resumes across a change of these. Everything else in the settings defines the run.
NON_DEFINING_KEYS = frozenset({"quiet", "log_every", "checkpoint_every", "extend", "channels_last",
                               "cudnn_benchmark", "compile", "prefetch", "fused_adam"})
SCHEDULE_KEYS = ("epochs_constant", "epochs_decay")


def data_identity(sampler: Any) -> dict[str, Any]:
    """What identifies the training data: each pair's sequence, name, source folder and size, and a
    digest of the first, middle and last pairs' pixels (a rebuilt cache of other images differs)."""
    cache = getattr(sampler, "cache", None)
    if cache is None:  # a sampler without a crop cache (tests): its length is all we know
        return {"pairs": len(sampler)}
    entries = [(e["seq"], e["name"], Path(e["blurred"]).parent.name, e["height"], e["width"])
               for e in cache.entries]
    digest = hashlib.sha256()
    for index in sorted({0, len(cache) // 2, len(cache) - 1}):
        digest.update(np.ascontiguousarray(cache.pair(index)).tobytes())
    return {"pairs": entries, "pixels": digest.hexdigest()}


def run_definition(method_name: str, options: Mapping[str, Any], settings: Mapping[str, Any],
                   data: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that defines a run's result: method, options, training settings (seed and schedule
    included), data identity. Its :func:`run_hash` ties a checkpoint to the run that wrote it."""
    return {"method": method_name, "options": dict(options), "data": dict(data),
            "settings": {k: v for k, v in settings.items() if k not in NON_DEFINING_KEYS}}


def run_hash(definition: Mapping[str, Any]) -> str:
    text = json.dumps(definition, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the values that differ between two run definitions."""
    names = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            names += _differences(a, b, f"{prefix}{key}.")
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            names.append(f"{prefix}{key}")
    return names


def _is_lengthening(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Only the schedule's epochs changed, none of them downwards."""
    changed = _differences(old, new)
    keys = {f"settings.{k}" for k in SCHEDULE_KEYS}
    return bool(changed) and set(changed) <= keys and all(
        new["settings"].get(k, 0) >= old["settings"].get(k, 0) for k in SCHEDULE_KEYS)


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
        self.iterations_run = 0
        self.wall_seconds = 0.0
        self.definition = run_definition(method.name, self.options, self.settings, data_identity(sampler))
        self.run_hash = run_hash(self.definition)
        # What this call did, for run.json: where it resumed from (None: from scratch), why an existing
        # checkpoint was not used, and the schedule extensions the run went through.
        self.resumed_from: int | None = None
        self.restart_reason: str | None = None
        self.extensions: list[dict[str, Any]] = []

    # -- one step of each kind ------------------------------------------------------------------
    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        blurred, sharp = self.sampler.next_batch(self.settings["batch_size"])
        prepare = self.method.training.prepare_batch
        if prepare is not None:
            blurred, sharp = prepare(blurred, sharp, self.batch_generator)
        return blurred.to(self.device), sharp.to(self.device)

    def critic_step(self, sharp: torch.Tensor, restored: torch.Tensor) -> dict[str, float]:
        if self.method.training.adversarial == "wgan-gp":
            loss, stats = critic_loss(self.critic, sharp, restored.detach(), self.settings["gp_weight"])
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
        """One iteration, as in DeblurGAN: one batch and one generator forward pass, ``n_critic``
        critic updates on that restored batch, then one generator update."""
        blurred, sharp = self.batch()
        output = self.generator(blurred)
        finest = output[-1] if isinstance(output, list | tuple) else output  # what the critic judges
        stats: dict[str, float] = {}
        if self.critic is not None:
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
            "run_hash": self.run_hash,
            "definition": json.dumps(self.definition, sort_keys=True, default=str),
            "extensions": json.dumps(self.extensions),
        }
        if self.critic is not None:
            state["critic"] = self.critic.state_dict()
            state["opt_d"] = self.opt_d.state_dict()
        save_atomic(state, self.checkpoint_path)

    def resumable(self, state: Mapping[str, Any], extend: bool) -> str | None:
        """``None`` when ``state`` continues this run; otherwise why it does not (one line)."""
        if state.get("run_hash") == self.run_hash:
            return None
        if "definition" not in state:
            return "it records no run hash (written by an older deblurbench)"
        old = json.loads(state["definition"])
        if _is_lengthening(old, self.definition):
            before = "+".join(str(old["settings"][k]) for k in SCHEDULE_KEYS)
            after = "+".join(str(self.settings[k]) for k in SCHEDULE_KEYS)
            if extend:
                return None
            return (f"the schedule was lengthened ({before} -> {after} epochs); continuing would mix two "
                    "schedules, so pass --extend (or train.extend: true) to continue it on purpose")
        return f"it was written with other settings ({', '.join(_differences(old, self.definition))} changed)"

    def resume(self, state: Mapping[str, Any] | None = None) -> None:
        state = state if state is not None else load_checkpoint(self.checkpoint_path, self.device)
        self.generator.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.opt_d.load_state_dict(state["opt_d"])
        self.sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"], self.batch_generator)
        self.iteration = state["iteration"]
        self.wall_seconds = state["wall_seconds"]
        self.resumed_from = self.iteration
        self.extensions = json.loads(state.get("extensions", "[]"))
        if state.get("run_hash") != self.run_hash:  # an extension the user asked for: recorded
            old = json.loads(state["definition"])["settings"]
            self.extensions.append({"iteration": self.iteration, "run_hash": state["run_hash"],
                                    **{k: old[k] for k in SCHEDULE_KEYS}})
        for name in ("log.csv", "val.csv"):
            _truncate_log(self.out_dir / name, self.iteration)

    # -- the loop -------------------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after: int | None = None, extend: bool = False) -> Path:
        """Train to the end of the schedule (or ``stop_after`` iterations); returns the weights file.

        ``resume`` continues the run folder's checkpoint when it belongs to this run (same
        :attr:`run_hash`), or, with ``extend``, to this run with a lengthened schedule; any other
        checkpoint is set aside and training restarts from scratch, saying why in one line."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = load_checkpoint(self.checkpoint_path, self.device) if resume and self.checkpoint_path.exists() else None
        if state is not None:
            self.restart_reason = self.resumable(state, extend)
            if self.restart_reason is not None:
                print(f"train {self.method.name}: not resuming {self.checkpoint_path}: {self.restart_reason}; "
                      "restarting from scratch", flush=True)
                state = None
        if state is not None:
            self.resume(state)
        else:
            (self.out_dir / "model.pt").unlink(missing_ok=True)
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
        self.iterations_run = self.iteration - (self.resumed_from or 0)
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


# How long, on what sizes and how observed a run is belongs to the profile (quick and smoke shrink every
# method alike; the paper profile sets each method's own schedule and batch under `methods:`); how a
# method trains (lr, betas, loss weights, critic steps) belongs to the method's defaults.
PROFILE_KEYS = frozenset({"epochs_constant", "epochs_decay", "batch_size", "crop", "seed", "val_every",
                          "log_every", "checkpoint_every", "perceptual_weights"})


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

