"""The prepared GPU check (issue 11 section 4): at most 8 minutes on one H100, nothing downloaded.

    python benchmarks/gpu_check.py                 # on a CUDA machine: JSON + Markdown in results/gpu_check/
    python benchmarks/gpu_check.py --compile       # also the torch.compile'd step (compilation adds minutes:
                                                   # outside the 8-minute budget of the default run)
    python benchmarks/gpu_check.py --tiny          # the same code paths on the CPU at toy sizes (< 1 min)

1. Training: msr2b, res2net, resnet, deblurgan and deepdeblur at the paper profile's crop, batch,
   losses and critic steps, for a fixed number of seconds each, fp32 and bf16 (and compiled with
   ``--compile``), through the project's one training loop (``benchmark.train.Trainer``, via
   ``benchmark.plan.probe``): ms per iteration, iterations per second, peak memory. The paper
   profile's other runs (Sun et al., the Fig. 5 k sweep) are timed too, at the profile's precision.
2. Inference: 1280x720, every image-to-image network, fp32 and bf16 (``benchmark.timing``).
3. The paper profile's cost: every training's hours and the trainings' wall time on 1, 8, 64 GPUs.
4. The GAN learning check: MSR2B with the paper's losses on synthetic camera shake at 256x256 for
   3 minutes, the validation PSNR against the blurred input's at fixed iteration counts (ImageNet
   VGG19 when its file is in the torch hub folder, otherwise random features, and the JSON says which).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from benchmark import registry  # noqa: E402
from benchmark.inference import for_inference  # noqa: E402
from benchmark.plan import estimate, format_plan, probe, timed_jobs, training_jobs  # noqa: E402
from benchmark.timing import hardware, time_method  # noqa: E402

NETWORKS = ("msr2b", "res2net", "resnet", "deblurgan", "deepdeblur", "nafnet")
# (iteration counts at which the GAN check reads PSNR; it stops at whichever its time runs out)
GAN_CHECKPOINTS = (25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600)

FULL = {"train_seconds": 10.0, "other_seconds": 5.0, "width": 1280, "height": 720, "warmup": 3, "runs": 10,
        "gan_seconds": 180.0, "gan_size": 256, "gan_pairs": (24, 4)}
# --tiny: the same calls at toy sizes, so that a CPU test covers every path of this script.
TINY = {"train_seconds": 0.01, "other_seconds": 0.01, "width": 64, "height": 48, "warmup": 0, "runs": 10,
        "gan_seconds": 2.0, "gan_size": 32, "gan_pairs": (2, 1)}
TINY_OPTIONS = {"msr2b": {"k": 1, "width": 8}, "res2net": {"k": 1, "width": 8}, "resnet": {"k": 1, "width": 8},
                "deblurgan": {"ngf": 8, "n_blocks": 1}, "deepdeblur": {"features": 8, "blocks": 1},
                "nafnet": {"width": 8, "enc_blk_nums": [1, 1, 1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1, 1, 1]},
                "sun": {}}


def profile_config(tiny: bool) -> dict[str, Any]:
    """The paper profile; ``tiny`` shrinks crops, batches, networks and the k sweep to toy sizes."""
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    if tiny:
        cfg["train"] |= {"crop": 32, "batch_size": 1, "n_critic": 1}
        # a method's own crop (DeblurGAN's, DeepDeblur's, NAFNet's 256) survives the profile's: cut it too
        cfg["methods"] = {name: {**TINY_OPTIONS[name], "train": {"crop": 32}} for name in TINY_OPTIONS}
        cfg["methods"]["deepdeblur"]["train"]["batch_size"] = 2
        cfg["fig5"]["k"] = [9]  # no sweep runs: msr2b-kN would run msr2b's code paths again
    return cfg


def check_training(jobs: list, device: torch.device, sizes: dict, workdir: Path, compile: bool,
                   profile_precision: str, tiny: bool) -> list[dict[str, Any]]:
    rows = []
    size = 32 if tiny else None
    for job in jobs:
        variants = [("fp32", False), ("bf16", False)] if job.method in NETWORKS and job.run == job.method else []
        if compile and variants:
            variants += [("fp32", True), ("bf16", True)]
        if not variants:  # the profile's other runs: only what the plan needs
            variants = [(profile_precision, False)]
        seconds = sizes["train_seconds"] if job.run in NETWORKS else sizes["other_seconds"]
        for precision, compiled in variants:
            try:
                row = probe(job, device, seconds, workdir, precision=precision, compile=compiled, data_size=size,
                            warmup_iterations=1 if tiny else 2)
            except torch.cuda.OutOfMemoryError as err:
                row = {"run": job.run, "method": job.method, "precision": precision,
                       "compiled": "asked" if compiled else "none", "error": f"out of memory: {err}"}
                torch.cuda.empty_cache()
            rows.append(row)
            shown = f"{row['ms_per_iteration']:.1f} ms/it" if "ms_per_iteration" in row else row["error"]
            print(f"train {job.run:12s} {precision} {'compiled' if compiled else 'eager':8s} {shown}", flush=True)
    return rows


def check_inference(cfg: dict, device: torch.device, sizes: dict) -> list[dict[str, Any]]:
    rows = []
    for name in NETWORKS:
        method = registry.get(name)
        options = registry.configured_options(name, cfg)
        model = for_inference(method.build(options).to(device))
        result = time_method(method, model, options, width=sizes["width"], height=sizes["height"],
                             warmup=sizes["warmup"], runs=sizes["runs"], device=device, bf16=True)
        rows.append({k: result[k] for k in ("method", "width", "height", "runs", "median_s", "median_s_bf16",
                                            "params", "macs", "clock")})
        print(f"infer {name:12s} fp32 {result['median_s']:.4f} s  bf16 {result['median_s_bf16']:.4f} s", flush=True)
        del model
    return rows


def gan_learning_check(device: torch.device, sizes: dict, workdir: Path, tiny: bool) -> dict[str, Any]:
    """MSR2B, the paper's losses and settings, synthetic data at ``gan_size``: PSNR at fixed iterations."""
    from benchmark.data import CropSampler, build_crop_cache, gopro_pairs, read_image
    from benchmark.metrics import psnr
    from benchmark.synthetic import synthesise_gopro
    from benchmark.train import Trainer, train_settings
    from models.losses import vgg19_weights_path

    size = sizes["gan_size"]
    root = workdir / "gan-data"
    train_n, test_n = sizes["gan_pairs"]
    synthesise_gopro(root, seed=2023, train_pairs=train_n, test_pairs=test_n, size=size, n_subframes=9)
    cache = build_crop_cache(gopro_pairs(root, "train"), workdir / "gan-cache")
    validation = [(read_image(p.blurred), read_image(p.sharp)) for p in gopro_pairs(root, "test")]
    cfg = profile_config(tiny)
    method = registry.get("msr2b")
    options = registry.configured_options("msr2b", cfg)
    weights = "imagenet" if vgg19_weights_path().is_file() else "random"
    settings = train_settings(cfg["train"], method, None) | {
        "crop": size, "batch_size": 1, "perceptual_weights": weights, "quiet": True, "epochs_constant": 10**6,
        "epochs_decay": 0, "log_every": 10**9, "checkpoint_every": 10**9, "val_every": 10**9}
    sampler = CropSampler(cache, crop=size, seed=settings["seed"])
    trainer = Trainer(method, options, settings, sampler, workdir / "gan-run", device, validation=validation)
    series = [{"iteration": 0, "seconds": 0.0, "psnr": trainer.validate()}]
    for count in GAN_CHECKPOINTS:
        left = sizes["gan_seconds"] - trainer.wall_seconds
        if left <= 0:
            break
        trainer.run(resume=trainer.iteration > 0, stop_after=count, time_limit=left)
        series.append({"iteration": trainer.iteration, "seconds": trainer.wall_seconds, "psnr": trainer.validate()})
        print(f"gan iteration {trainer.iteration:6d} {trainer.wall_seconds:6.1f} s PSNR {series[-1]['psnr']:.2f} dB",
              flush=True)
    return {"size": size, "train_pairs": train_n, "test_pairs": test_n, "perceptual_weights": weights,
            "precision": trainer.speed["precision"], "input_psnr": float(np.mean([psnr(b, s) for b, s in validation])),
            "series": series}


def markdown(record: dict[str, Any]) -> str:
    hw = record["hardware"]
    lines = [f"# GPU check, {record['date']}", "",
             f"Device: {hw.get('gpu') or hw['cpu']} ({hw['device']}), torch {hw['torch']}"
             + (" — **--tiny: toy sizes on the CPU, the numbers mean nothing**" if record["tiny"] else ""), "",
             "## Training (the one training loop, paper crop and batch)", "",
             "| run | precision | compiled | crop | batch | ms / iteration | it / s | peak memory (MiB) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for t in record["training"]:
        if "error" in t:
            lines.append(f"| {t['run']} | {t['precision']} | {t['compiled']} | | | {t['error']} | | |")
            continue
        lines.append(f"| {t['run']} | {t['precision']} | {t['compiled']} | {t['crop']} | {t['batch_size']} | "
                     f"{t['ms_per_iteration']:.1f} | {t['iterations_per_second']:.2f} | {t['peak_memory_mb']:.0f} |")
    lines += ["", f"## Inference at {record['inference'][0]['width']}x{record['inference'][0]['height']}", "",
              "| network | fp32 (s) | bf16 (s) | ÷ DeblurGAN fp32 | ÷ DeblurGAN bf16 |", "|---|---:|---:|---:|---:|"]
    ref = {r["method"]: r for r in record["inference"]}["deblurgan"]
    for r in record["inference"]:
        lines.append(f"| {r['method']} | {r['median_s']:.4f} | {r['median_s_bf16']:.4f} | "
                     f"{r['median_s'] / ref['median_s']:.2f} | {r['median_s_bf16'] / ref['median_s_bf16']:.2f} |")
    lines += ["", "Paper (Table 2, Titan X): MSR2B 0.45 s, DeblurGAN 0.85 s, ratio 0.53.", "",
              "## Paper profile estimate", "", format_plan("paper", record["estimate"], "this check"), "",
              "With bf16 where measured:", "", format_plan("paper", record["estimate_bf16"], "this check, bf16"), ""]
    if record["gan"] is None:
        return "\n".join(lines) + "\n"
    lines += ["## GAN learning check (MSR2B, paper losses, synthetic data)", "",
              f"{record['gan']['size']}x{record['gan']['size']}, VGG19 {record['gan']['perceptual_weights']}, "
              f"{record['gan']['precision']}; the blurred input scores {record['gan']['input_psnr']:.2f} dB.", "",
              "| iteration | seconds | PSNR (dB) | vs input (dB) |", "|---:|---:|---:|---:|"]
    for p in record["gan"]["series"]:
        lines.append(f"| {p['iteration']} | {p['seconds']:.0f} | {p['psnr']:.2f} | "
                     f"{p['psnr'] - record['gan']['input_psnr']:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes on the CPU: the same code paths in < 1 min")
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd training step")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "gpu_check", help="folder for JSON + Markdown")
    parser.add_argument("--skip-gan", action="store_true", help="leave out the 3-minute GAN learning check")
    args = parser.parse_args(argv)

    if args.tiny:
        device, sizes = torch.device("cpu"), TINY
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --tiny for the CPU code-path check", file=sys.stderr)
        return 2
    else:
        device, sizes = torch.device("cuda"), FULL
    started = time.perf_counter()
    cfg = profile_config(args.tiny)
    jobs = training_jobs(cfg)
    precision = cfg["train"].get("precision", "fp32")
    record: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "tiny": args.tiny,
                              "hardware": hardware(device), "sizes": {k: list(v) if isinstance(v, tuple) else v
                                                                      for k, v in sizes.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        record["training"] = check_training(timed_jobs(jobs), device, sizes, work, args.compile, precision, args.tiny)
        record["inference"] = check_inference(cfg, device, sizes)
        times = {t["run"]: t["ms_per_iteration"] for t in record["training"]
                 if t.get("precision") == precision and t.get("compiled") == "none" and "ms_per_iteration" in t}
        record["estimate"] = estimate(jobs, times)
        record["estimate_bf16"] = estimate(jobs, {**times, **{
            t["run"]: t["ms_per_iteration"] for t in record["training"]
            if t.get("precision") == "bf16" and t.get("compiled") == "none" and "ms_per_iteration" in t}})
        record["gan"] = None if args.skip_gan else gan_learning_check(device, sizes, work, args.tiny)
    record["seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"gpu_check-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}{'-tiny' if args.tiny else ''}"
    json_path = stem.with_suffix(".json")
    tmp_path = json_path.with_name(json_path.name + ".tmp")
    tmp_path.write_text(json.dumps(record, indent=2))
    tmp_path.replace(json_path)
    stem.with_suffix(".md").write_text(markdown(record))
    print(f"gpu_check: {record['seconds']:.0f} s -> {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
