"""The one training loop: an adversarial game (critic steps, then a generator step; WGAN-GP or BCE) or a plain CNN.

Read top to bottom: schedule, critic step, generator step, validation, checkpoint, loop. A method
says what it needs through :class:`benchmark.registry.Training`; everything numeric comes from the
configuration (``train`` section merged with the method's own defaults and overrides).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

# How a run's settings are made and checked lives in benchmark.config (no torch); imported from here too.
from benchmark.config import PROFILE_KEYS, method_setup, train_settings  # noqa: F401
from benchmark.files import FULL, sweep_stale, temporary_sibling, write_text_atomic
from benchmark.registry import Method, network_restore
from benchmark.weights import UnreadableWeights, torch_file
from models.losses import bce_discriminator_loss, bce_generator_loss, critic_loss, generator_adversarial_loss

LOG_FIELDS = ("iteration", "epoch", "lr", "loss_critic", "gradient_penalty", "loss_adversarial", "loss_content",
              "grad_norm", "residual_rms", "dead_relu", "dead_relu_max")
# The output "rounds to the input" when fewer than this share of its uint8 values differ from the input's.
IDENTITY_CHANGED = 1e-3
# A network whose output is clipped to 0 or 255 on this much more of its values than the input is has diverged
# into the output clamp, which passes no gradient there (a reduced-profile ResNet seed: 4.5 dB, 99.96% changed).
SATURATED_CLIPPED = 0.25


@dataclass(frozen=True)
class Schedule:
    """lr constant for ``epochs_constant`` epochs, then linear decay to ``lr_final`` over ``epochs_decay``;
    the first ``warmup`` iterations ramp linearly up to it (``warmup_iterations``; the paper has none)."""

    lr: float
    lr_final: float
    epochs_constant: int
    epochs_decay: int
    warmup: int = 0

    @property
    def epochs(self) -> int:
        return self.epochs_constant + self.epochs_decay

    def lr_at(self, epoch: int, iteration: int | None = None) -> float:
        """Learning rate during ``epoch`` (0-based) at ``iteration`` (0-based); the last decay epoch runs
        at ``lr_final``; iteration i < ``warmup`` runs at (i + 1) / ``warmup`` of that."""
        lr = self.lr
        if epoch >= self.epochs_constant and self.epochs_decay > 0:
            done = min(epoch - self.epochs_constant + 1, self.epochs_decay) / self.epochs_decay
            lr = self.lr + (self.lr_final - self.lr) * done
        if iteration is not None and iteration < self.warmup:
            lr *= (iteration + 1) / self.warmup
        return lr


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device on this machine")
    return torch.device(name)


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
    """torch.save to a temporary name in the same folder (``.NAME.tmp-PID``; those of killed runs are swept
    first), then rename: no half-written file. A failure is one OSError saying what went wrong: the folder
    removed under the run (by another process or by hand), a full disk (with its free space), or what the
    system said."""
    sweep_stale(path)
    tmp = temporary_sibling(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a failed write (a full disk) as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else (str(err).splitlines() or [""])[0]
        reason = reason or type(err).__name__
        if not path.parent.is_dir():
            raise OSError(errno.ESTALE, f"cannot write {path}: its folder {path.parent} was removed while this "
                          "command ran (by another process or by hand); nothing was saved there, run again",
                          str(path)) from err
        code = err.errno if isinstance(err, OSError) and err.errno else errno.EIO
        if isinstance(err, OSError) and code not in FULL:  # not the disk's fault: say what the system said
            raise OSError(code, f"cannot write {path} ({reason})", str(path)) from err
        free = shutil.disk_usage(path.parent).free / 1e6
        raise OSError(code, f"cannot write {path} ({reason}); the disk holding {path.parent} has {free:.0f} MB "
                      "free: free space, then resume", str(path)) from err


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by this module, safely (tensors and plain containers only)."""
    return torch_file(path, path, map_location)


# Settings that change how fast or how visibly a run goes, not what it computes: a checkpoint
# resumes across a change of these. Everything else in the settings defines the run.
NON_DEFINING_KEYS = frozenset({"quiet", "log_every", "checkpoint_every", "extend", "channels_last",
                               "cudnn_benchmark", "compile", "prefetch", "fused_adam", "keep_checkpoint"})
SCHEDULE_KEYS = ("epochs_constant", "epochs_decay")


def data_identity(sampler: Any) -> dict[str, Any]:
    """What identifies the training data: each pair's sequence, name, source folder and size, and a
    digest of every pair's pixels as the run reads them (the crop cache). One changed pixel anywhere is
    another run. SHA-256 of GOPRO's 2103 pairs (11.6 GB) takes about 10 s, once per call of ``train``."""
    cache = getattr(sampler, "cache", None)
    if cache is None:  # a sampler without a crop cache (tests): its length is all we know
        return {"pairs": len(sampler)}
    entries = [(e["seq"], e["name"], Path(e["blurred"]).parent.name, e["height"], e["width"])
               for e in cache.entries]
    digest = hashlib.sha256()
    for index in range(len(cache)):
        digest.update(np.ascontiguousarray(cache.pair(index)))
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


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the values that differ between two run definitions."""
    names = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            names += differences(a, b, f"{prefix}{key}.")
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            names.append(f"{prefix}{key}")
    return names


class ResumeRefused(ValueError):
    """A checkpoint that would be lost by starting over, and was not asked to be continued."""


def lengthens(state: Mapping[str, Any], definition: Mapping[str, Any]) -> bool:
    """Whether ``state`` (a checkpoint) is of the run ``definition`` describes, with a shorter schedule."""
    return "definition" in state and _is_lengthening(json.loads(state["definition"]), definition)


def _is_lengthening(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Only the schedule's epochs changed, none of them downwards."""
    changed = differences(old, new)
    keys = {f"settings.{k}" for k in SCHEDULE_KEYS}
    return bool(changed) and set(changed) <= keys and all(
        new["settings"].get(k, 0) >= old["settings"].get(k, 0) for k in SCHEDULE_KEYS)


# The speed settings and their defaults (config/schema.yaml): named in run.json's "speed" record.
SPEED_DEFAULTS: dict[str, Any] = {"precision": "fp32", "tf32": True, "channels_last": True,
                                  "cudnn_benchmark": True, "fused_adam": True, "prefetch": True,
                                  "compile": False}


def speed_settings(settings: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """The speed settings in effect on ``device``: the CUDA-only ones read false elsewhere."""
    speed = {k: settings.get(k, v) for k, v in SPEED_DEFAULTS.items()}
    if speed["precision"] not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', not {speed['precision']!r}")
    if device.type != "cuda":
        speed |= {"tf32": False, "channels_last": False, "cudnn_benchmark": False}
    if torch.are_deterministic_algorithms_enabled():
        speed["cudnn_benchmark"] = False  # benchmark mode may pick non-deterministic kernels
    return speed


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _read(tensors: Sequence[torch.Tensor]) -> list[float]:
    """The loop's one read of device values back to the host: a single transfer for all of them."""
    return torch.stack([t.detach().float().reshape(()) for t in tensors]).tolist()


def network_health(net: torch.nn.Module, inputs: torch.Tensor,
                   value_range: tuple[float, float] = (-1.0, 1.0)) -> dict[str, Any]:
    """Has ``net`` collapsed to the identity? One forward pass on ``inputs`` (eval mode, no gradient).

    ``residual_rms``: RMS of output - input in grey levels (0-255); ``changed``: the share of uint8
    output values (rounded as a restore rounds them) that differ from the input's; ``dead``: per
    ``nn.ReLU`` layer, the share of its channels that output zero at every position of every image.
    ``clipped`` / ``input_clipped``: the share of output / input values that round to 0 or 255; ``saturated``:
    the output's exceeds the input's by :data:`SATURATED_CLIPPED` (diverged into the clamp).
    ``identity``: the output rounds to the input (``changed`` < :data:`IDENTITY_CHANGED`);
    ``collapsed``: that, and some ReLU layer is dead through and through, so no gradient reaches the
    layers before it and the network stays the identity (functional ReLUs inside blocks are not seen)."""
    alive: dict[str, torch.Tensor] = {}

    def recorder(name: str) -> Any:
        def record(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
            live = (output.detach() > 0).transpose(0, 1).flatten(1).any(dim=1)  # per channel
            alive[name] = alive[name] | live if name in alive and alive[name].shape == live.shape else live
        return record

    handles = [m.register_forward_hook(recorder(n)) for n, m in net.named_modules() if isinstance(m, torch.nn.ReLU)]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            output = net(inputs)
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    output = (output[-1] if isinstance(output, list | tuple) else output).float()
    low, high = value_range
    scale = 255.0 / (high - low)

    def quantised(x: torch.Tensor) -> torch.Tensor:
        return torch.round((x.float() - low) * scale).clamp(0, 255)

    def clipped(x: torch.Tensor) -> torch.Tensor:  # the share of values a restore rounds to 0 or 255
        q = quantised(x)
        return ((q == 0) | (q == 255)).float().mean()

    names = list(alive)  # one read from the device for everything (the training loop's rule)
    changed, rms, out_clipped, in_clipped, *live_shares = _read(
        [(quantised(output) != quantised(inputs)).float().mean(),
         ((output.clamp(low, high) - inputs.float()) * scale).pow(2).mean().sqrt(),
         clipped(output), clipped(inputs), *(alive[n].float().mean() for n in names)])
    dead = {name: 1.0 - share for name, share in zip(names, live_shares, strict=True)}
    dead_layers = [name for name, fraction in dead.items() if fraction == 1.0]
    units = sum(len(live) for live in alive.values())
    identity = changed < IDENTITY_CHANGED
    return {"residual_rms": rms, "changed": changed, "identity": identity, "collapsed": identity and bool(dead_layers),
            "clipped": out_clipped, "input_clipped": in_clipped,
            "saturated": out_clipped - in_clipped > SATURATED_CLIPPED,
            "dead": dead, "dead_layers": dead_layers,
            "dead_relu": sum(dead[n] * len(alive[n]) for n in alive) / units if units else 0.0,
            "dead_relu_max": max(dead.values(), default=0.0)}


def health_line(run: str, iteration: int, health: Mapping[str, Any]) -> str | None:
    """One line when a network is (still) the identity, collapsed (dead ReLUs) or not yet moved, or has diverged
    into the output clamp (saturated); else None."""
    if health.get("saturated"):
        return (f"{run}: saturated at iteration {iteration}: {100 * health['clipped']:.1f}% of its output values "
                f"are clipped to 0 or 255 (the input's: {100 * health['input_clipped']:.1f}%; residual RMS "
                f"{health['residual_rms']:.3g} grey levels), where the output clamp passes no gradient: the run "
                "diverged (a lower learning rate may keep it from doing so)")
    if not health["identity"]:
        return None
    rounds = (f"its output rounds to the input on {100 * (1 - health['changed']):.2f}% of pixel values "
              f"(residual RMS {health['residual_rms']:.2g} grey levels)")
    if health["collapsed"]:
        layers = ", ".join(health["dead_layers"])
        return (f"{run}: collapsed to the identity at iteration {iteration}: {rounds} and every ReLU of {layers} "
                "is dead, so no gradient reaches the layers before it")
    return (f"{run}: still the identity at iteration {iteration}: {rounds}; its ReLUs are alive, so it has not "
            "learned to leave the input yet")


class BatchFeeder:
    """Batches on the device, in the sampler's order, the next one prepared while the current step runs.

    ``produce()`` cuts the next batch on the host (the sampler, then the method's ``prepare_batch``);
    ``state()`` is what a checkpoint needs to continue from the batch about to be produced. With
    ``ahead`` a background thread produces batch n+1 (into pinned memory on CUDA) while the caller
    trains on batch n; the calls to ``produce`` happen in the same order either way, so the crops are
    the same. :meth:`state` returns the state before the first batch not yet handed out, so a
    checkpoint never skips the batch waiting in the queue."""

    def __init__(self, produce: Any, state: Any, device: torch.device, ahead: bool) -> None:
        self._produce, self._state, self.device, self.ahead = produce, state, device, ahead
        self._pending: Any = None  # a Future (ahead) or a ready batch
        self._pending_state: Any = None
        self._pool: Any = None  # the producer thread, started on first use (again after close)

    def _host_batch(self) -> tuple[torch.Tensor, ...]:
        batch = self._produce()
        if self.device.type == "cuda":
            batch = tuple(t.pin_memory() for t in batch)
        return batch

    def _fill(self) -> None:
        if self._pending is None:
            self._pending_state = self._state()
            if self.ahead and self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-feeder")
            self._pending = self._pool.submit(self._host_batch) if self.ahead else self._host_batch()

    def peek_host(self) -> tuple[torch.Tensor, ...]:
        """The next batch on the host, without handing it out."""
        self._fill()
        return self._pending.result() if self.ahead else self._pending

    def next(self) -> tuple[torch.Tensor, ...]:
        batch = self.peek_host()
        self._pending = None
        if self.ahead:
            self._fill()  # the next batch is cut while the caller computes on this one
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def state(self) -> Any:
        """The producer's state before the first batch not yet handed out."""
        return self._pending_state if self._pending is not None else self._state()

    def reset(self) -> None:
        """Drop a prepared batch (before the producer's state is set from a checkpoint)."""
        if self._pending is not None and self.ahead:
            self._pending.result()
        self._pending = None

    def close(self) -> None:
        """Stop the producer thread; a batch already prepared stays for the next :meth:`next`."""
        if self._pool is not None:
            if self._pending is not None:
                self._pending.result()
            self._pool.shutdown()
            self._pool = None


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
                                 settings["epochs_decay"], settings.get("warmup_iterations", 0))
        self.iters_per_epoch = math.ceil(len(sampler) / settings["batch_size"])
        self.total_iters = self.schedule.epochs * self.iters_per_epoch
        self.speed = speed_settings(self.settings, device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = self.speed["cudnn_benchmark"]
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.speed["tf32"]

        torch.manual_seed(settings["seed"])
        np.random.seed(settings["seed"])
        random.seed(settings["seed"])
        self.batch_generator = torch.Generator().manual_seed(settings["seed"])
        self.generator = method.build(self.options).to(device)
        self.content_loss = method.training.content_loss({**self.options, **self.settings}).to(device)
        self.critic = self.opt_d = None
        # n_critic 0: no critic and no adversarial term (the offline profiles' content-only recipe)
        if method.training.build_critic is not None and settings.get("n_critic", 1) > 0:
            self.critic = method.training.build_critic(self.options)
        if self.critic is not None:
            self.critic = self.critic.to(device)
        if self.speed["channels_last"]:
            for net in (self.generator, self.content_loss, self.critic):
                if net is not None:
                    net.to(memory_format=torch.channels_last)
        self.opt_g = self._adam(self.generator.parameters())
        if self.critic is not None:
            self.opt_d = self._adam(self.critic.parameters())
        # What runs the forward passes: the modules themselves, or their torch.compile'd versions.
        self._g, self._d = self.generator, self.critic
        self.feeder = BatchFeeder(self._produce_batch, self._producer_state, device, self.speed["prefetch"])
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
        self.last_input: torch.Tensor | None = None  # the last batch's input: the health check's probe
        self.final_health: dict[str, Any] | None = None  # network_health at the end of run(), with its line

    def _adam(self, params) -> torch.optim.Adam:
        s = self.settings
        fused = self.speed["fused_adam"] and self.device.type in ("cuda", "cpu")
        return torch.optim.Adam(params, lr=s["lr"], betas=tuple(s["betas"]), eps=s["eps"],
                                **({"fused": True} if fused else {"foreach": True}))

    def autocast(self) -> Any:
        """bf16 autocast for the forward passes of generator, critic and VGG19 when ``precision: bf16``."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.speed["precision"] == "bf16")

    def _critic_fp32(self, x: torch.Tensor) -> torch.Tensor:
        """The critic's scores in fp32, so every loss built on them is reduced in fp32."""
        return self._d(to_channels_last(x) if self.speed["channels_last"] else x).float()

    # -- one step of each kind ------------------------------------------------------------------
    def _produce_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        blurred, sharp = self.sampler.next_batch(self.settings["batch_size"])
        prepare = self.method.training.prepare_batch
        if prepare is not None:
            blurred, sharp = prepare(blurred, sharp, self.batch_generator)
        return blurred, sharp

    def _producer_state(self) -> tuple[dict[str, Any], torch.Tensor]:
        return self.sampler.state_dict(), self.batch_generator.get_state()

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``(input, target)`` batch on the device."""
        blurred, sharp = self.feeder.next()
        if self.speed["channels_last"]:
            blurred, sharp = to_channels_last(blurred), to_channels_last(sharp)
        return blurred, sharp

    def critic_step(self, sharp: torch.Tensor, restored: torch.Tensor) -> dict[str, Any]:
        with self.autocast():
            if self.method.training.adversarial == "wgan-gp":
                loss, stats = critic_loss(self._critic_fp32, sharp, restored.detach(), self.settings["gp_weight"],
                                          self.settings.get("gp_reduction", "sum"))
            else:
                loss, stats = bce_discriminator_loss(self._critic_fp32, sharp, restored)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return {"loss_critic": loss.detach(), "gradient_penalty": stats.get("gradient_penalty", "")}

    def generator_step(self, output: torch.Tensor | list[torch.Tensor], finest: torch.Tensor,
                       sharp: torch.Tensor) -> dict[str, Any]:
        with self.autocast():
            content = self.content_loss(output, sharp).float()
            loss = content
            stats = {"loss_content": content.detach()}
            if self.critic is not None:
                for p in self.critic.parameters():
                    p.requires_grad_(False)
                training = self.method.training
                gan_loss = generator_adversarial_loss if training.adversarial == "wgan-gp" else bce_generator_loss
                adversarial = gan_loss(self._critic_fp32, finest)
                for p in self.critic.parameters():
                    p.requires_grad_(True)
                loss = content + training.adversarial_weight * adversarial
                stats["loss_adversarial"] = adversarial.detach()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        # the generator's global gradient norm (log.csv: a spike of 100x its usual size precedes the collapses and
        # divergences of docs/measurements.md); a 0-d tensor on the device, read with the losses
        stats["grad_norm"] = torch.nn.utils.get_total_norm(
            [p.grad for p in self.generator.parameters() if p.grad is not None], foreach=True)
        self.opt_g.step()
        return stats

    def _generate(self, blurred: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The generator's output (fp32, as the losses see it) and its finest scale (what the critic judges)."""
        with self.autocast():
            output = self._g(blurred)
        # under bf16 the generator's outputs are cast back
        output = [o.float() for o in output] if isinstance(output, list | tuple) else output.float()
        return output, output[-1] if isinstance(output, list) else output

    def step(self) -> dict[str, Any]:
        """One iteration. ``critic_batches: same`` (DeblurGAN): one batch and one generator forward pass,
        ``n_critic`` critic updates on that restored batch, then one generator update on it. ``fresh``
        (WGAN-GP's Algorithm 1): each critic update on a batch of its own, restored without gradients,
        then the generator update on one more batch. The statistics stay on the device (0-d tensors;
        "" where a loss does not apply): nothing here waits for the device."""
        fresh = self.critic is not None and self.settings.get("critic_batches", "same") == "fresh"
        stats: dict[str, Any] = {}
        if fresh:
            for _ in range(self.settings["n_critic"]):
                blurred, sharp = self.batch()
                with torch.no_grad():
                    _, finest = self._generate(blurred)
                stats = self.critic_step(sharp, finest)
        blurred, sharp = self.batch()
        self.last_input = blurred
        output, finest = self._generate(blurred)
        if self.critic is not None and not fresh:
            for _ in range(self.settings["n_critic"]):
                stats = self.critic_step(sharp, finest)
        return stats | self.generator_step(output, finest, sharp)

    def set_lr(self, epoch: int) -> float:
        lr = self.schedule.lr_at(epoch, self.iteration)
        for opt in (self.opt_g, self.opt_d):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = lr
        return lr

    # -- compilation ----------------------------------------------------------------------------
    def compile(self) -> str:
        """``torch.compile`` the generator and the critic (``compile: true``), each checked by one
        probe step whose effects are undone; a part that fails to compile runs eagerly, with one
        warning line. Returns what runs compiled ("generator+critic", "generator" or "none")."""
        import copy

        nets = [n for n in (self.generator, self.critic) if n is not None]
        opts = [o for o in (self.opt_g, self.opt_d) if o is not None]
        host = self.feeder.peek_host()  # first: cutting it draws from the batch generator
        saved = ([copy.deepcopy(n.state_dict()) for n in nets], [copy.deepcopy(o.state_dict()) for o in opts],
                 _rng_state(self.batch_generator))
        probe = tuple(t.to(self.device) for t in host)
        tries = [(True, True), (True, False)] if self.critic is not None else [(True, False)]
        error = None
        for compile_g, compile_d in tries:
            self._g = torch.compile(self.generator) if compile_g else self.generator
            self._d = torch.compile(self.critic) if compile_d else self.critic
            try:
                self._probe_step(probe)
                error = None
                break
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
                error = error or err
            finally:
                for n, state in zip(nets, saved[0], strict=True):
                    n.load_state_dict(state)
                for o, state in zip(opts, saved[1], strict=True):
                    o.load_state_dict(state)
                    o.zero_grad(set_to_none=True)
                _set_rng_state(saved[2], self.batch_generator)
        else:
            self._g, self._d = self.generator, self.critic
        compiled = "+".join(name for name, net, used in (("generator", self.generator, self._g),
                                                          ("critic", self.critic, self._d))
                            if net is not None and used is not net) or "none"
        if error is not None:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warnings.warn(f"compile: true, but torch.compile failed ({type(error).__name__}: {message[:200]}); "
                          f"compiled: {compiled}, the rest runs eagerly", stacklevel=2)
        return compiled

    def _probe_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        feeder = self.feeder
        self.feeder = _Fixed(batch)
        try:
            _read(list(v for v in self.step().values() if isinstance(v, torch.Tensor)))
        finally:
            self.feeder = feeder

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> float | None:
        """Mean PSNR of the method's restore on the validation images (image-to-image methods)."""
        if not self.validation or self.method.restore is not network_restore:
            return None
        self.generator.eval()
        values = [self._psnr(network_restore(self.generator, b, self.options), s) for b, s in self.validation]
        self.generator.train()
        return float(np.mean(values))

    def health(self) -> dict[str, Any] | None:
        """:func:`network_health` on the last training batch (else the first validation image) for an
        image-to-image network; ``None`` for a method whose network is no restorer (Sun et al.'s CNN)."""
        if self.method.restore is not network_restore:
            return None
        value_range = getattr(self.generator, "value_range", (-1.0, 1.0))
        probe = self.last_input
        if probe is None and self.validation:
            blurred = torch.from_numpy(np.ascontiguousarray(self.validation[0][0])).permute(2, 0, 1)[None].float()
            low, high = value_range
            probe = (blurred / 255.0 * (high - low) + low).to(self.device)
        return None if probe is None else network_health(self.generator, probe, value_range)

    # -- checkpoints ----------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        sampler_state, batch_rng = self.feeder.state()  # before the batch waiting in the feeder
        rng = _rng_state(self.batch_generator)
        rng["batch"] = batch_rng
        state = {
            "iteration": self.iteration,
            "wall_seconds": self.wall_seconds,
            "generator": self.generator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "rng": rng,
            "sampler": sampler_state,
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
        return f"it was written with other settings ({', '.join(differences(old, self.definition))} changed)"

    def read_checkpoint(self) -> dict[str, Any] | None:
        """The run folder's checkpoint, or None when there is none. One that cannot be read (cut short by a
        crash or a full disk) is set aside as ``checkpoint.pt.unreadable`` (replacing an older one), and this
        is said in one line: it would otherwise stop every later resume until deleted by hand."""
        if not self.checkpoint_path.exists():
            return None
        try:
            return load_checkpoint(self.checkpoint_path, self.device)
        except UnreadableWeights as err:
            aside = self.checkpoint_path.with_name(self.checkpoint_path.name + ".unreadable")
            os.replace(self.checkpoint_path, aside)
            reason = str(err).removeprefix(f"{self.checkpoint_path}: ")
            self.restart_reason = f"it cannot be read ({reason}); set aside as {aside.name}"
            print(f"train {self.method.name}: not resuming {self.checkpoint_path}: {self.restart_reason}; "
                  "restarting from scratch", flush=True)
            return None

    def checkpoint_to_resume(self, extend: bool) -> dict[str, Any] | None:
        """The checkpoint to continue, or None to start from scratch (saying why in one line).

        It is continued when it belongs to this run (same :attr:`run_hash`) or, with ``extend``, to this run
        with a lengthened schedule. A lengthened schedule without ``extend`` is a :class:`ResumeRefused`: the
        checkpoint holds a finished or longer-trained run that starting over would destroy. Any other
        checkpoint (other settings, options or data) is left to be replaced by this run's first one."""
        state = self.read_checkpoint()
        if state is None:
            return None
        self.restart_reason = self.resumable(state, extend)
        if self.restart_reason is None:
            return state
        if not extend and lengthens(state, self.definition):
            raise ResumeRefused(f"{self.checkpoint_path}: not resuming: {self.restart_reason}; to start over "
                                "instead, delete it (deblurbench train --force does)")
        print(f"train {self.method.name}: not resuming {self.checkpoint_path}: {self.restart_reason}; "
              "restarting from scratch", flush=True)
        return None

    def resume(self, state: Mapping[str, Any] | None = None) -> None:
        state = state if state is not None else load_checkpoint(self.checkpoint_path, self.device)
        self.feeder.reset()
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
    def run(self, resume: bool = False, stop_after: int | None = None, extend: bool = False,
            time_limit: float | None = None) -> Path:
        """Train to the end of the schedule (or ``stop_after`` iterations, or the iteration during which
        ``time_limit`` seconds of this call have passed); returns the weights file.

        ``resume`` continues the run folder's checkpoint as :meth:`checkpoint_to_resume` decides.

        The loss values stay on the device; they are read back (one transfer) only every
        ``log_every`` iterations and at checkpoints, where a non-finite value stops the run naming
        the iterations it happened between.

        A Trainer that has already trained in this process continues from memory with ``resume``."""
        call_started = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.iteration > 0 and not resume:
            raise RuntimeError("this Trainer has trained already: run(resume=True) continues it")
        in_memory = self.iteration > 0
        state = self.checkpoint_to_resume(extend) if resume and not in_memory else None
        if state is not None:
            self.resume(state)
        elif in_memory:
            self.resumed_from = self.iteration
        else:
            (self.out_dir / "model.pt").unlink(missing_ok=True)
            for name in ("log.csv", "val.csv"):
                (self.out_dir / name).unlink(missing_ok=True)
        if self.speed["compile"] and "compiled" not in self.speed and self.iteration < self.total_iters:
            self.speed["compiled"] = self.compile()
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
        checked = self.iteration  # the last iteration whose losses were read and found finite
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        try:
            while self.iteration < end:
                epoch = self.iteration // self.iters_per_epoch
                lr = self.set_lr(epoch)
                stats = self.step()
                self.iteration += 1
                if time_limit is not None and time.perf_counter() - call_started >= time_limit:
                    end = self.iteration
                values = {k: v for k, v in stats.items() if isinstance(v, torch.Tensor)}
                finite = finite & torch.isfinite(torch.stack(list(values.values()))).all()
                log_now = self.iteration % s["log_every"] == 0 or self.iteration == end
                checkpoint_now = self.iteration % s["checkpoint_every"] == 0 or self.iteration == end
                if self.iteration == self.total_iters and not s.get("keep_checkpoint", True):
                    checkpoint_now = False  # finished: model.pt is written below and no resume state is kept
                if log_now or checkpoint_now:
                    *numbers, all_finite = _read([*values.values(), finite])
                    if not all_finite:
                        raise FloatingPointError(
                            f"training {self.method.name}: non-finite loss between iterations {checked + 1} and "
                            f"{self.iteration}; at {self.iteration}: {dict(zip(values, numbers, strict=True))}")
                    checked = self.iteration
                    if log_now:
                        row = stats | dict(zip(values, numbers, strict=True))
                        health = self.health()
                        if health is not None:
                            row |= {k: health[k] for k in ("residual_rms", "dead_relu", "dead_relu_max")}
                        log.write({"iteration": self.iteration, "epoch": epoch, "lr": lr, **row})
                        bar.set_postfix({k.replace("loss_", ""): f"{v:.3g}" for k, v in row.items() if v != ""})
                finished_epoch = self.iteration % self.iters_per_epoch == 0
                if finished_epoch and (epoch + 1) % s["val_every"] == 0 and self.validation:
                    val_log.write({"iteration": self.iteration, "epoch": epoch + 1, "psnr": self.validate()})
                self.wall_seconds = time.perf_counter() - started
                if checkpoint_now:
                    self.save_checkpoint()
                bar.update(1)
        finally:
            self.feeder.close()
            bar.close()
        self.iterations_run = self.iteration - (self.resumed_from or 0)
        self.final_health = self.health()
        if self.final_health is not None:
            self.final_health["line"] = health_line(self.out_dir.name, self.iteration, self.final_health)
            if self.final_health["line"]:
                print(f"train {self.final_health['line']}", flush=True)
        weights = self.out_dir / "model.pt"
        if self.iteration >= self.total_iters:
            save_atomic(self.generator.state_dict(), weights)
            if not s.get("keep_checkpoint", True):  # a finished run needs no resume state (100 MB for MSR2B)
                self.checkpoint_path.unlink(missing_ok=True)
        return weights


class _Fixed:
    """A feeder that hands out one given batch (the compile probe's)."""

    def __init__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.batch = batch

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch


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


def write_run_info(path: Path, info: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(info, indent=2, sort_keys=True, default=str))

