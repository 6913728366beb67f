"""CPU before/after, side by side in one run (issue 11 section 6; docs/measurements.md).

    python benchmarks/cpu_speed.py --base 8d576f1          # the revision to compare against

1. Inference: MSR2B and DeblurGAN (default options) on one WIDTHxHEIGHT image, contiguous (before)
   and channels_last (after, what ``deblurbench restore``/``time`` now use), interleaved, median of
   ``--runs``; the MSR2B / DeblurGAN ratio of each (the paper's: 0.45 / 0.85 = 0.53).
2. The training step: the quick profile's MSR2B (k=9, width 32, crop 64, 5 critic steps) through the
   training loop of ``--base`` (``benchmark/train.py`` as of that revision, run against today's models)
   and through today's loop, contiguous and channels_last, ``--iterations`` each, alternating.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import yaml  # noqa: E402

import benchmark.train as train  # noqa: E402
from benchmark import registry  # noqa: E402
from benchmark.timing import hardware, time_method  # noqa: E402


def old_train_module(revision: str, folder: Path):
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:benchmark/train.py"], check=True,
                            capture_output=True, text=True).stdout
    path = folder / "train_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("train_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_before"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def inference(width: int, height: int, runs: int) -> dict:
    device = torch.device("cpu")
    out = {}
    for layout in ("contiguous", "channels_last"):
        for name in ("msr2b", "deblurgan"):
            method = registry.get(name)
            options = method.options()
            model = method.build(options).eval()
            if layout == "channels_last":
                model = model.to(memory_format=torch.channels_last)
            r = time_method(method, model, options, width=width, height=height, warmup=1, runs=runs, device=device)
            out[f"{name}_{layout}"] = r["median_s"]
            print(f"infer {name} {layout}: {r['median_s']:.3f} s", flush=True)
    for layout in ("contiguous", "channels_last"):
        out[f"ratio_{layout}"] = out[f"msr2b_{layout}"] / out[f"deblurgan_{layout}"]
    return out


def training(revision: str, iterations: int, rounds: int, work: Path) -> dict:
    from benchmark.data import CropSampler, build_crop_cache, gopro_pairs
    from benchmark.synthetic import synthesise_gopro

    cfg = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())
    synthesise_gopro(work / "data", seed=0, train_pairs=12, test_pairs=1, size=96, n_subframes=9)
    cache = build_crop_cache(gopro_pairs(work / "data", "train"), work / "cache")
    method = registry.get("msr2b")
    options = method.options()
    settings = train.train_settings(cfg["train"], method, None) | {"quiet": True, "epochs_constant": 1000}
    before = old_train_module(revision, work)
    real_speed = train.speed_settings

    def variant(name: str):
        if name == "before":
            return before.Trainer
        channels_last = name == "after+channels_last"
        train.speed_settings = lambda s, d: real_speed(s, d) | {"channels_last": channels_last}
        return train.Trainer

    samples: dict[str, list[float]] = {"before": [], "after": [], "after+channels_last": []}
    for r in range(rounds):
        for name in samples:
            def build(name: str = name, out: Path = work / f"{name}-{r}"):
                return variant(name)(method, options, settings, CropSampler(cache, crop=settings["crop"], seed=0),
                                     out, torch.device("cpu"))
            build().run(stop_after=2)  # warm-up (oneDNN primitives, allocator), then both resume from disk
            trainer = build()
            started = time.perf_counter()
            trainer.run(resume=True, stop_after=2 + iterations)
            samples[name].append((time.perf_counter() - started) / iterations)
            train.speed_settings = real_speed
            print(f"train {name}: {1000 * samples[name][-1]:.0f} ms/iteration", flush=True)
    out = {f"{k}_ms": 1000 * statistics.median(v) for k, v in samples.items()}
    out["ratio_after"] = out["after_ms"] / out["before_ms"]
    out["ratio_after_channels_last"] = out["after+channels_last_ms"] / out["before_ms"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="git revision of the loop to compare against")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-inference", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(hardware(torch.device("cpu")), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"training": training(args.base, args.iterations, args.rounds, Path(tmp))}
    if not args.skip_inference:
        result["inference"] = inference(args.width, args.height, args.runs)
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
