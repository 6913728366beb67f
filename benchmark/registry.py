"""The one registry of deblurring methods.

A method is one module under ``baselines/`` (or in an installed package that exposes it through
the ``deblurbench.methods`` entry-point group) which calls :func:`register` at import time. The
workflow, the tables, the figures, the timing and ``deblurbench methods`` ask this registry and
never keep a list of their own.

The registry and the built-in declarations import no torch: a network method names its network,
losses and loaders with :class:`Lazy` (they live in ``models/``), so jobs that run no network do not
pay for torch. A method file that imports torch itself works the same, only slower to list.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the registry itself never imports torch (see Lazy)
    import numpy as np
    import torch
    from torch import nn

ENTRY_POINT_GROUP = "deblurbench.methods"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

Options = Mapping[str, Any]
BatchPreparer = Callable[["torch.Tensor", "torch.Tensor", "torch.Generator"], tuple["torch.Tensor", "torch.Tensor"]]


@dataclass(frozen=True)
class Training:
    """What the one training loop (:mod:`benchmark.train`) needs to train a method's network.

    ``content_loss(options)`` builds a module called as ``loss(output, target) -> scalar``; the
    output may be a list of scales (coarse to fine). ``build_critic(options)`` builds the critic of
    an adversarial method (it may return ``None`` when the options ask for no adversary), or is
    ``None`` for a plain CNN. ``adversarial`` names the game: ``"wgan-gp"`` (critic loss with
    gradient penalty, generator loss -D(G(B))) or ``"bce"`` (the standard GAN on logits); the
    generator minimises ``content + adversarial_weight * adversarial``. ``prepare_batch(blurred,
    sharp, generator)`` turns a batch of crop pairs in [-1, 1] into the method's own ``(input,
    target)`` (a patch classifier draws its kernels there); ``None`` means ``(blurred, sharp)``.
    """

    content_loss: Callable[[Options], nn.Module]
    build_critic: Callable[[Options], nn.Module | None] | None = None
    adversarial: Literal["wgan-gp", "bce"] = "wgan-gp"
    adversarial_weight: float = 1.0
    prepare_batch: BatchPreparer | None = None

    def __post_init__(self) -> None:
        if self.adversarial not in ("wgan-gp", "bce"):
            raise ValueError(f"Training.adversarial must be 'wgan-gp' or 'bce', not {self.adversarial!r}")


@dataclass(frozen=True)
class Lazy:
    """A callable named ``"module:attribute"`` and imported on its first call.

    Method declarations name their networks, losses and weight loaders this way
    (``build=Lazy("models.nafnet:build")``), so that listing the methods (the workflow's parse, the
    tables, figures and report, a classical restore) never imports torch, which costs 3.5-4.5 s per
    job on 2 cores. Calling it calls the target with the same arguments.
    """

    target: str

    def __post_init__(self) -> None:
        module, sep, attribute = self.target.partition(":")
        if not (module and sep and attribute):
            raise ValueError(f"Lazy({self.target!r}): name the target as 'package.module:attribute'")

    def resolve(self) -> Callable[..., Any]:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)


# The weight initialisations of models/init.py (BASES x {"", "-zero-out", "-identity"}), as an option limit
# the torch-free declarations can state.
INIT_LIMIT = {"pattern": "^(normal-0\\.02|he|official)(-zero-out|-identity)?$"}

# The default ``restore`` of a network: :func:`benchmark.inference.network_restore`.
network_restore = Lazy("benchmark.inference:network_restore")


@dataclass(frozen=True)
class Method:
    """A registered method.

    ``kind`` is ``"trained"`` (``build`` and ``training`` are required; the workflow trains it) or
    ``"classical"`` (``restore`` is called with ``model=None``). ``restore(model, blurred, options)``
    takes and returns uint8 HxWx3. ``paper_row`` is the row label of the method in the paper's
    tables (``reports/paper_numbers.csv``); ``reference`` holds published numbers of a method
    beyond the paper, keyed like that file's columns. ``deviations`` say exactly how this
    implementation differs from the original; the report prints them beside the row.
    ``load_official(model, path)`` loads the original authors' released weights strictly.

    ``limits`` says which values each option may take beyond the kind of its default, as JSON-Schema
    keywords (``{"balance": {"exclusiveMinimum": 0}, "block": {"enum": [...]}}``; an option whose default is
    ``None`` names its type there). :meth:`options` checks them through :mod:`benchmark.config`, the path
    the profile and the training settings take too.
    ``notes(options)`` gives the lines the report's banner adds for this run's options (a departure
    from the original that a profile chooses, e.g. a smaller budget offline).
    """

    name: str
    display_name: str
    kind: Literal["trained", "classical"]
    summary: str
    restore: Callable[[nn.Module | None, np.ndarray, Options], np.ndarray] = network_restore
    build: Callable[[Options], nn.Module] | None = None
    training: Training | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    deviations: tuple[str, ...] = ()
    paper_row: str | None = None
    reference: Mapping[str, float] | None = None
    load_official: Callable[[nn.Module, Path], None] | None = None
    limits: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    notes: Callable[[Options], list[str]] | None = None

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValueError(f"method name {self.name!r}: use letters, digits, '.', '_' and '-', starting with a "
                             "letter or digit (it names files, workflow jobs and table rows)")
        undeclared = sorted(set(self.limits) - set(self.defaults))
        if undeclared:
            raise ValueError(f"method {self.name!r}: limits for options it does not have: {', '.join(undeclared)}")
        if self.kind not in ("trained", "classical"):
            raise ValueError(f"method {self.name!r}: kind must be 'trained' or 'classical', not {self.kind!r}")
        if self.kind == "trained" and (self.build is None or self.training is None):
            raise ValueError(f"method {self.name!r}: a trained method needs build and training")

    def options(self, overrides: Options | None = None) -> dict[str, Any]:
        """The method's defaults with ``overrides`` (from the configuration) on top.

        A key the method does not define, a value of another kind than its default (``"wide"`` for an
        integer width, ``2.0`` for a whole number), a number that is not finite, or a value outside the
        declared ``limits`` is a :class:`benchmark.config.ConfigError` (a ValueError) naming the key, the
        value and what is allowed.
        """
        from benchmark.config import check_options

        return check_options(self.name, self.defaults, self.limits, dict(overrides or {}))


_METHODS: dict[str, Method] = {}
_discovered = False


def register(method: Method) -> Method:
    """Add a method; a second method of the same name is an error, never a silent overwrite."""
    if method.name in _METHODS and _METHODS[method.name] is not method:
        raise ValueError(f"a method named {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def discover() -> None:
    """Import every module of ``baselines/`` and every entry point of the plug-in group, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import baselines

    for module in pkgutil.iter_modules(baselines.__path__):
        importlib.import_module(f"baselines.{module.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def configured_options(name: str, cfg: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Method ``name``'s options as a profile sets them under ``methods: {name: ...}`` (its ``train``
    overrides aside, they are training settings), with ``extra`` on top."""
    section = {k: v for k, v in cfg.get("methods", {}).get(name, {}).items() if k != "train"}
    return get(name).options({**section, **(extra or {})})


def get(name: str) -> Method:
    discover()
    try:
        return _METHODS[name]
    except KeyError:
        known = ", ".join(sorted(_METHODS)) or "none"
        raise KeyError(f"unknown method {name!r} (registered: {known})") from None


def available() -> list[Method]:
    """Every registered method, in registration order."""
    discover()
    return list(_METHODS.values())
