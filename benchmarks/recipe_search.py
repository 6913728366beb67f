"""How far does a method's network get on the embedded GOPRO-like data under a given recipe? (a measurement)

    python benchmarks/recipe_search.py --method msr2b --profile config/quick.yaml \\
        --train '{"lr": 1e-3, "warmup_iterations": 20, "epochs_constant": 30, "epochs_decay": 10}' --threads 1

Synthesises the profile's data (``data.synthetic``, or ``--data`` to override it) into ``--work`` once,
then trains the method through the one training loop (:meth:`benchmark.train.Trainer.run`, so warm-up,
schedule, health checks and validation are the product's), with the profile's ``train`` section, the
method's defaults and the profile's per-method section merged as ``deblurbench train`` merges them, plus
``--options`` / ``--train`` on top (where a profile's ``methods: {name: {..., train: {...}}}`` puts
them). Prints the validation PSNR on ``--val`` test images every
``val_every`` epochs against the blurred input's, the wall time, and the final health line; writes it
all as one JSON line to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmark.data import CropSampler, build_crop_cache, gopro_pairs, read_image, spread_over_scenes
from benchmark.metrics import psnr
from benchmark.synthetic import synthesise_gopro, synthetic_shake
from benchmark.train import Trainer, method_setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True)
    parser.add_argument("--profile", type=Path, default=Path("config/quick.yaml"))
    parser.add_argument("--options", type=json.loads, default={}, help="method options (JSON)")
    parser.add_argument("--train", type=json.loads, default={}, help="train settings on top (JSON)")
    parser.add_argument("--data", type=json.loads, default={}, help="data.synthetic settings on top (JSON)")
    parser.add_argument("--val", type=int, default=16, help="test images scored at each validation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recipe_search"))
    parser.add_argument("--out", type=Path, default=None, help="append the result as a JSON line here")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    profile = yaml.safe_load(args.profile.read_text())
    s = {**profile["data"]["synthetic"], **args.data}
    key = "_".join(f"{k}{s[k]}" for k in sorted(s))
    data, cache = args.work / f"data_{key}", args.work / f"cache_{key}"
    if not data.exists():
        synthesise_gopro(data, seed=s["seed"], train_pairs=s["train_pairs"], test_pairs=s["test_pairs"],
                         size=s["size"], n_subframes=s["n_subframes"], **synthetic_shake(s))
    if not cache.exists():
        build_crop_cache(gopro_pairs(data, "train"), cache)
    test = [(read_image(p.blurred), read_image(p.sharp))
            for p in spread_over_scenes(gopro_pairs(data, "test"), args.val)]
    baseline = float(np.mean([psnr(b, t) for b, t in test]))

    # --train goes where a profile's per-method section puts it, so it wins over the method's defaults
    method, options, settings = method_setup(args.method, profile, {**args.options, "train": args.train})
    settings |= {"quiet": True, "log_every": settings.get("log_every", 10), "checkpoint_every": 10**9,
                 "keep_checkpoint": False}
    sampler = CropSampler(cache, settings["crop"], settings["seed"])
    out_dir = args.work / "runs" / f"{args.method}_{int(time.time() * 1000)}"
    trainer = Trainer(method, options, settings, sampler, out_dir, torch.device("cpu"), validation=test)
    started = time.perf_counter()
    trainer.run()
    wall = time.perf_counter() - started
    val = [(int(r["iteration"]), float(r["psnr"])) for r in _rows(out_dir / "val.csv")]
    health = trainer.final_health or {}
    result = {"tag": args.tag, "method": args.method, "options": args.options, "train": args.train, "data": args.data,
              "baseline": baseline, "val": val, "final": val[-1][1] if val else None,
              "gain": val[-1][1] - baseline if val else None, "iterations": trainer.iteration,
              "wall_s": wall, "s_per_it": wall / max(trainer.iteration, 1), "threads": args.threads,
              "health": {k: health.get(k) for k in ("residual_rms", "changed", "dead_relu", "dead_relu_max", "line")}}
    print(f"{args.tag} {args.method} {json.dumps(args.options)} {json.dumps(args.train)}: blurred {baseline:.2f} dB; "
          + ", ".join(f"it {i}: {p:.2f} ({p - baseline:+.2f})" for i, p in val)
          + f"; {trainer.iteration} it in {wall:.0f} s ({wall / max(trainer.iteration, 1):.2f} s/it)"
          + (f"; {health['line']}" if health.get("line") else ""), flush=True)
    if args.out:
        with args.out.open("a") as f:
            f.write(json.dumps(result) + "\n")


def _rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as f:
        return list(csv.DictReader(f))


if __name__ == "__main__":
    main()
