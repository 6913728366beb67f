"""Which initialisation lets the paper's generator learn? Dead ReLUs and residual size per init (issue 18, item 1).

    python benchmarks/init_measurement.py --iterations 300 --every 25 --out docs/init_measurement.json

Trains the paper's MSR2B generator with the paper's settings shrunk to what a CPU allows: the paper
profile's ``train`` section (Adam lr 1e-4, betas 0.5 / 0.999, batch 1, WGAN-GP with 5 critic steps,
mu 10, lambda 100 x perceptual), but ``--crop`` crops instead of 256 and, because the ImageNet VGG19
cannot be downloaded here, its fixed-seed random-feature stand-in; on the embedded GOPRO-like data of
``--profile``. One run per ``--inits`` scheme, same seed, same batches, through the one training loop
(:class:`benchmark.train.Trainer`). Every ``--every`` iterations it records, on the last training batch,
:func:`benchmark.train.network_health`: the residual's RMS (grey levels), the share of output values
that differ from the input's once rounded, and per ReLU layer the share of channels that are dead
(zero at every pixel of the batch). Prints a table and writes every record as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from benchmark.data import CropSampler, build_crop_cache, gopro_pairs
from benchmark.synthetic import synthesise_gopro, synthetic_shake
from benchmark.train import Trainer, method_setup

TAIL = ("tail.1", "tail.3")  # the two ReLUs of the generator's tail: the last ones before the output conv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inits", nargs="+", default=["normal-0.02", "he", "he-zero-out"])
    parser.add_argument("--block", default="msr2b")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="default: the paper profile's (1e-4)")
    parser.add_argument("--paper", type=Path, default=Path("config/paper.yaml"))
    parser.add_argument("--profile", type=Path, default=Path("config/quick.yaml"), help="whose embedded data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/init_measurement"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    s = yaml.safe_load(args.profile.read_text())["data"]["synthetic"]
    data, cache = args.work / "data", args.work / "cache"
    if not data.exists():
        synthesise_gopro(data, seed=s["seed"], train_pairs=s["train_pairs"], test_pairs=s["test_pairs"],
                         size=s["size"], n_subframes=s["n_subframes"], **synthetic_shake(s))
    if not cache.exists():
        build_crop_cache(gopro_pairs(data, "train"), cache)

    paper = yaml.safe_load(args.paper.read_text())
    records = []
    for init in args.inits:
        train = {"crop": args.crop, "perceptual_weights": "random", "log_every": args.every,
                 "checkpoint_every": 10**9, "keep_checkpoint": False, "quiet": True,
                 "epochs_constant": 10**6, "epochs_decay": 0,  # a long constant-lr schedule, cut by stop_after
                 **({"lr": args.lr} if args.lr else {})}
        method, options, settings = method_setup(args.block, paper, {"init": init, "train": train})
        sampler = CropSampler(cache, settings["crop"], settings["seed"])
        trainer = Trainer(method, options, settings, sampler, args.work / "runs" / init, torch.device("cpu"))
        started = time.perf_counter()
        series = [_record(trainer, 0)]  # iteration 0: the first batch, before any step
        for stop in range(args.every, args.iterations + 1, args.every):
            trainer.run(resume=trainer.iteration > 0, stop_after=stop)
            series.append(_record(trainer, stop))
            last = series[-1]
            tail = ", ".join(f"{100 * last['dead'].get(t, 0):.0f}%" for t in TAIL)
            print(f"{init:>12} it {stop:4d}: residual RMS {last['residual_rms']:.3g} grey levels, changed "
                  f"{100 * last['changed']:.1f}%, dead ReLU channels {100 * last['dead_relu']:.1f}% (tail {tail}), "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        records.append({"init": init, "block": args.block, "lr": settings["lr"], "batch_size": settings["batch_size"],
                        "crop": settings["crop"], "n_critic": settings["n_critic"], "series": series,
                        "seconds": time.perf_counter() - started, "line": (trainer.final_health or {}).get("line")})
        if args.out:  # after each init, so a long measurement keeps what it has
            args.out.write_text(json.dumps(records, indent=1))
    _table(records)


def _record(trainer: Trainer, iteration: int) -> dict:
    if trainer.last_input is None:  # before the first step: probe the first batch without handing it out
        trainer.last_input = trainer.feeder.peek_host()[0].to(trainer.device)
    health = trainer.health()
    return {"iteration": iteration, **{k: health[k] for k in ("residual_rms", "changed", "dead_relu",
                                                              "dead_relu_max", "identity", "collapsed", "dead")}}


def _table(records: list[dict]) -> None:
    print("\n| init | iteration | residual RMS (grey levels) | output values changed | dead ReLU channels (all) "
          "| dead: tail.1 / tail.3 | collapsed |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in records:
        for row in r["series"]:
            tail = " / ".join(f"{100 * row['dead'].get(t, 0):.0f}%" for t in TAIL)
            print(f"| {r['init']} | {row['iteration']} | {row['residual_rms']:.3g} | {100 * row['changed']:.1f}% | "
                  f"{100 * row['dead_relu']:.1f}% | {tail} | {'yes' if row['collapsed'] else 'no'} |")


if __name__ == "__main__":
    main()
