"""The training runs a configuration asks for, by name: one per trained method and seed, plus the
Fig. 5 sweep over k. The Snakefile makes one job per run; ``deblurbench train --config FILE --run RUN``
reads its run here; the tables find the per-seed runs here. One place decides the names.

Names: ``<method>`` for the profile's base seed (``train.seed``), ``<method>-s<seed>`` for the others
(``seeds: [0, 1, 2]`` gives ``msr2b``, ``msr2b-s1``, ``msr2b-s2``), ``<method>-k<k>`` for a Fig. 5 run
(base seed only: the figure is one curve per k).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmark import registry


@dataclass(frozen=True)
class Run:
    name: str
    method: str
    seed: int
    options: dict[str, Any] = field(default_factory=dict)  # overrides of the method's configured options


def seeds(cfg: Mapping[str, Any]) -> list[int]:
    """The seeds every trained method runs with (``seeds``; default: the single ``train.seed``)."""
    return list(cfg.get("seeds") or [cfg["train"]["seed"]])


def run_name(method: str, seed: int, cfg: Mapping[str, Any]) -> str:
    return method if seed == cfg["train"]["seed"] else f"{method}-s{seed}"


def plan(cfg: Mapping[str, Any]) -> dict[str, Run]:
    """Every training run, by name, in a stable order."""
    base = cfg["train"]["seed"]
    out: dict[str, Run] = {}
    for m in registry.available():
        if m.kind != "trained":
            continue
        for seed in seeds(cfg):
            name = run_name(m.name, seed, cfg)
            out[name] = Run(name, m.name, seed)
    sweep = sweep_method(cfg)
    for k in cfg["fig5"]["k"]:
        if k != sweep.defaults.get("k"):
            name = f"{sweep.name}-k{k}"
            out[name] = Run(name, sweep.name, base, {"k": k})
    return out


def sweep_method(cfg: Mapping[str, Any]) -> registry.Method:
    """The method Fig. 5 sweeps over k (``fig5.method``): a registered trained method with an option ``k``.
    Anything else is a ValueError naming the key and the methods it may be."""
    name = cfg["fig5"]["method"]
    methods = registry.available()
    fits = [m.name for m in methods if m.kind == "trained" and "k" in m.defaults]
    method = next((m for m in methods if m.name == name), None)
    if method is None or method.name not in fits:
        what = ("not a registered method" if method is None else
                f"a {method.kind} method" + (" without an option k" if method.kind == "trained" else ""))
        raise ValueError(f"config key fig5.method = {name!r}: {what}; Fig. 5 sweeps the blocks k of a trained "
                         f"method (one of {', '.join(fits)})")
    return method


def seed_runs(method: str, cfg: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(seed, run name) of a method's per-seed runs; a classical method has one, under its own name."""
    if registry.get(method).kind != "trained":
        return [(cfg["train"]["seed"], method)]
    return [(seed, run_name(method, seed, cfg)) for seed in seeds(cfg)]
