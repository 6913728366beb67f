"""How fast does the generator gain PSNR on the synthetic GOPRO-like data, per loss? (a diagnosis, not a test)

    python benchmarks/loss_learning.py --loss l1      --seconds 180
    python benchmarks/loss_learning.py --loss perceptual --seconds 180
    python benchmarks/loss_learning.py --loss gan     --seconds 300     # the paper's WGAN-GP + 100 x VGG

Synthesises the embedded GOPRO-like set (96 training pairs, 8 test pairs of 128x128, seed 2023)
into ``--work``, trains a fresh generator with Adam (1e-4, betas 0.5/0.999) on random crops for a
wall-clock budget, and prints the mean PSNR on the test pairs every ``--every`` seconds beside
the blurred input's. ``gan`` is the paper's game (5 critic steps of WGAN-GP, mu 10, then
-mean D + lambda x perceptual); ``perceptual`` is lambda x the perceptual term alone; ``l1`` is a
plain L1 content loss (not the paper's; the reference for "does this generator learn at all").
The perceptual network is VGG19 ``features[:15]`` with ``--vgg random`` (fixed-seed He
initialisation, the offline profiles' documented deviation) or ``imagenet`` (needs the file).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data import CropSampler, build_crop_cache, gopro_pairs, read_image
from benchmark.metrics import psnr
from benchmark.synthetic import synthesise_gopro
from models.critic import PatchCritic
from models.generator import Generator
from models.losses import PerceptualLoss, critic_loss, generator_adversarial_loss


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    return tensor[0].permute(1, 2, 0).add(1).mul(127.5).round().clamp(0, 255).byte().numpy()


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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("results/benchmarks/loss_learning"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = args.work / f"data_t{args.max_translation:g}"
    if not data.exists():
        synthesise_gopro(data, seed=2023, train_pairs=96, test_pairs=8, size=128,
                         max_translation_px=args.max_translation)
    cache = args.work / f"cache_t{args.max_translation:g}"
    if not cache.exists():
        build_crop_cache(gopro_pairs(data, "train"), cache)
    test = [(read_image(p.blurred), read_image(p.sharp)) for p in gopro_pairs(data, "test")]
    baseline = float(np.mean([psnr(b, s) for b, s in test]))

    generator = Generator(args.block, 9)
    adam = dict(lr=1e-4, betas=(0.5, 0.999), eps=1e-8)
    opt_g = torch.optim.Adam(generator.parameters(), **adam)
    perceptual = PerceptualLoss(args.vgg, normalize=not args.raw_vgg_input) if args.loss != "l1" else None
    critic = PatchCritic() if args.loss == "gan" else None
    opt_d = torch.optim.Adam(critic.parameters(), **adam) if critic else None
    sampler = CropSampler(cache, args.crop, seed=0)

    def evaluate() -> float:
        generator.eval()
        with torch.no_grad():
            score = float(np.mean([psnr(to_uint8(generator(to_tensor(b))), s) for b, s in test]))
        generator.train()
        return score

    print(f"{args.loss}, {args.block}, crop {args.crop}, batch {args.batch_size}, "
          f"blur {args.max_translation:g} px: blurred input {baseline:.2f} dB", flush=True)
    start, iteration, next_eval = time.perf_counter(), 0, args.every
    while time.perf_counter() - start < args.seconds:
        if critic is not None:
            for _ in range(5):
                blurred, sharp = sampler.next_batch(args.batch_size)
                with torch.no_grad():
                    fake = generator(blurred)
                loss_d, _ = critic_loss(critic, sharp, fake, 10.0)
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
            critic.requires_grad_(False)
        blurred, sharp = sampler.next_batch(args.batch_size)
        restored = generator(blurred)
        if args.loss == "l1":
            loss_g = F.l1_loss(restored, sharp)
        else:
            loss_g = 100.0 * perceptual(restored, sharp)
            if critic is not None:
                loss_g = loss_g + generator_adversarial_loss(critic, restored)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if critic is not None:
            critic.requires_grad_(True)
        iteration += 1
        elapsed = time.perf_counter() - start
        if elapsed >= next_eval:
            score = evaluate()
            print(f"  {elapsed:5.0f} s, iteration {iteration}: {score:.2f} dB ({score - baseline:+.2f})", flush=True)
            next_eval += args.every
    score = evaluate()
    print(f"  end, iteration {iteration}: {score:.2f} dB ({score - baseline:+.2f})", flush=True)


if __name__ == "__main__":
    main()
