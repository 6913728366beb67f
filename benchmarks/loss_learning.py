"""How fast does the generator gain PSNR on the synthetic GOPRO-like data, per loss? (a diagnosis, not a test)

    python benchmarks/loss_learning.py --loss l1      --seconds 180
    python benchmarks/loss_learning.py --loss perceptual --seconds 180
    python benchmarks/loss_learning.py --loss gan     --seconds 300     # the paper's WGAN-GP + 100 x VGG

Synthesises the embedded GOPRO-like set (96 training pairs, 8 test pairs of 128x128, seed 2023)
into ``--work``, trains a fresh generator with Adam (1e-4, betas 0.5/0.999) on random crops for a
wall-clock budget, and prints the mean PSNR on the test pairs every ``--every`` seconds beside
the blurred input's. Each iteration is one step of the project's training loop
(:meth:`benchmark.train.Trainer.step`) with the quick profile's ``train`` settings: ``gan`` is the
registered method as it is (5 critic steps of WGAN-GP on the batch, mu 10, then -mean D + lambda x
perceptual); ``perceptual`` drops the critic; ``l1`` also swaps the content loss for plain L1 (not
the paper's; the reference for "does this generator learn at all").
The perceptual network is VGG19 ``features[:15]`` with ``--vgg random`` (fixed-seed He
initialisation, the offline profiles' documented deviation) or ``imagenet`` (needs the file);
``--zero-mean-conv1`` (an experiment, not a product option) removes the mean of each conv1_1 kernel
so that the random features cannot see flat colour.

Each evaluation also prints what the generator changes: the RMS of (restored - blurred input) in
grey levels, and of its low-pass part (Gaussian, sigma 3 px). Sharpening is a high-frequency change;
a large low-pass part is drift of brightness or colour.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.ndimage import gaussian_filter
from torch import nn

from benchmark import registry
from benchmark.data import CropSampler, build_crop_cache, gopro_pairs, read_image
from benchmark.metrics import psnr
from benchmark.registry import network_restore
from benchmark.synthetic import synthesise_gopro
from benchmark.train import Trainer, train_settings

QUICK = Path(__file__).resolve().parents[1] / "config" / "quick.yaml"


def method_for(block: str, loss: str) -> registry.Method:
    """The registered GAN method for ``block``, with its training cut down to ``loss``."""
    method = registry.get(block)
    if loss == "gan":
        return method
    training = dataclasses.replace(method.training, build_critic=None)
    if loss == "l1":
        training = dataclasses.replace(training, content_loss=lambda options: nn.L1Loss())
    return dataclasses.replace(method, training=training)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loss", choices=("l1", "perceptual", "gan"), required=True)
    parser.add_argument("--block", default="msr2b", choices=("msr2b", "res2net", "resnet"))
    parser.add_argument("--seconds", type=float, default=180.0, help="training wall-clock budget")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between evaluations")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--max-translation", type=float, default=4.0, help="synthetic blur strength (px)")
    parser.add_argument("--vgg", default="random", choices=("random", "imagenet"))
    parser.add_argument("--raw-vgg-input", action="store_true",
                        help="feed VGG [-1, 1] unnormalised (DeblurGAN) instead of ImageNet-normalised")
    parser.add_argument("--zero-mean-conv1", action="store_true",
                        help="experiment: zero-mean conv1_1 kernels in the random VGG19")
    parser.add_argument("--gp-reduction", choices=("sum", "mean"), default=None,
                        help="D(x) in the gradient penalty: the patch map's sum or mean (default: the quick profile's)")
    parser.add_argument("--critic-batches", choices=("same", "fresh"), default=None,
                        help="critic steps on the generator's batch or on fresh ones (default: the quick profile's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("results/benchmarks/loss_learning"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = args.work / f"data_t{args.max_translation:g}"
    if not data.exists():
        synthesise_gopro(data, seed=2023, train_pairs=96, test_pairs=8, size=128,
                         max_translation_px=args.max_translation)
    cache = args.work / f"cache_t{args.max_translation:g}"
    if not cache.exists():
        build_crop_cache(gopro_pairs(data, "train"), cache)
    test = [(read_image(p.blurred), read_image(p.sharp)) for p in gopro_pairs(data, "test")]
    baseline = float(np.mean([psnr(b, s) for b, s in test]))

    method = method_for(args.block, args.loss)
    settings = train_settings(yaml.safe_load(QUICK.read_text())["train"], method, {
        "crop": args.crop, "batch_size": args.batch_size, "perceptual_weights": args.vgg,
        "perceptual_normalize": not args.raw_vgg_input,
        **{k: v for k, v in (("gp_reduction", args.gp_reduction), ("critic_batches", args.critic_batches)) if v}})
    options = method.options()
    sampler = CropSampler(cache, settings["crop"], settings["seed"])
    trainer = Trainer(method, options, settings, sampler, args.work / "run", torch.device("cpu"))  # never checkpoints
    if args.zero_mean_conv1:
        conv1 = trainer.content_loss.perceptual.features[0]
        with torch.no_grad():
            conv1.weight -= conv1.weight.mean(dim=(2, 3), keepdim=True)

    def evaluate() -> str:
        trainer.generator.eval()
        with torch.no_grad():
            restored = [network_restore(trainer.generator, b, options) for b, _ in test]
        trainer.generator.train()
        score = float(np.mean([psnr(r, s) for r, (_, s) in zip(restored, test, strict=True)]))
        change = [r.astype(np.float64) - b for r, (b, _) in zip(restored, test, strict=True)]
        rms = np.mean([np.sqrt(np.mean(d**2)) for d in change])
        low = np.mean([np.sqrt(np.mean(gaussian_filter(d, (3, 3, 0)) ** 2)) for d in change])
        return f"{score:.2f} dB ({score - baseline:+.2f}); change vs input: rms {rms:.2f}, low-pass {low:.2f}"

    print(f"{args.loss}, {args.block}, crop {args.crop}, batch {args.batch_size}, "
          f"gp_reduction {settings['gp_reduction']}, critic_batches {settings['critic_batches']}, "
          f"blur {args.max_translation:g} px: blurred input {baseline:.2f} dB", flush=True)
    start, next_eval = time.perf_counter(), args.every
    while time.perf_counter() - start < args.seconds:
        trainer.step()
        trainer.iteration += 1
        elapsed = time.perf_counter() - start
        if elapsed >= next_eval:
            print(f"  {elapsed:5.0f} s, iteration {trainer.iteration}: {evaluate()}", flush=True)
            next_eval += args.every
    print(f"  end, iteration {trainer.iteration}: {evaluate()}", flush=True)


if __name__ == "__main__":
    main()
