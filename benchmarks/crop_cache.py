"""Throughput of the training crop pipeline: random aligned crop pairs per second through CropSampler.

    python benchmarks/crop_cache.py                       # 20 synthetic 1280x720 pairs in a temp dir
    python benchmarks/crop_cache.py --root GOPRO_Large    # a real GOPRO-layout tree (train split)

Builds the memory-mapped crop cache (timed), reads it once so the pages are cached, then draws
batches for ``--seconds`` and prints pairs per second (the target is >= 1000 /s at 256x256).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from benchmark.data import CropSampler, build_crop_cache, gopro_pairs, write_image
from benchmark.synthetic import PHOTOS, load_photo


def make_gopro_tree(root: Path, n_pairs: int, height: int, width: int, seed: int) -> None:
    """A GOPRO-layout train split of ``n_pairs`` photo-textured pairs (the blurred image is a box
    blur of the sharp one: the pixels only need to look like photos for PNG and the cache)."""
    rng = np.random.default_rng(seed)
    names = list(PHOTOS)
    for k in range(n_pairs):
        photo = load_photo(names[k % len(names)])
        tiled = np.pad(photo, ((0, 2 * height), (0, 2 * width), (0, 0)), mode="symmetric")
        top, left = rng.integers(0, tiled.shape[0] - height + 1), rng.integers(0, tiled.shape[1] - width + 1)
        sharp = np.ascontiguousarray(tiled[top:top + height, left:left + width])
        blurred = ndimage.uniform_filter(sharp, size=(9, 9, 1), mode="reflect")
        seq = root / "train" / f"SEQ{k // 10:02d}"
        write_image(seq / "sharp" / f"{k:06d}.png", sharp)
        write_image(seq / "blur" / f"{k:06d}.png", blurred)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="GOPRO-layout root (default: synthesise one in a temp dir)")
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--blur-folder", default="blur")
    parser.add_argument("--pairs", type=int, default=20, help="synthetic pairs when no --root is given")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1, help="batch size per next_batch call")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="crop_cache_bench.") as scratch:
        scratch = Path(scratch)
        root = args.root
        if root is None:
            root = scratch / "gopro"
            started = time.perf_counter()
            make_gopro_tree(root, args.pairs, 720, 1280, seed=0)
            print(f"synthesised {args.pairs} pairs of 1280x720 in {time.perf_counter() - started:.1f} s")
        pairs = gopro_pairs(root, args.split, args.blur_folder)
        started = time.perf_counter()
        cache = build_crop_cache(pairs, scratch / "cache")
        print(f"built the cache of {len(pairs)} pairs in {time.perf_counter() - started:.1f} s")

        sampler = CropSampler(cache, crop=args.crop, seed=0)
        for _ in range(len(sampler)):  # one epoch first, so the timed part reads from the page cache
            sampler.next_batch(1)
        drawn, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < args.seconds:
            blurred, _ = sampler.next_batch(args.batch)
            drawn += blurred.shape[0]
        print(f"{drawn / elapsed:.0f} crop pairs/s ({args.crop}x{args.crop}, batch {args.batch}, "
              f"{args.threads} torch thread(s), {drawn} pairs in {elapsed:.1f} s)")


if __name__ == "__main__":
    main()
