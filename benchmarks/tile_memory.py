"""Peak memory and time of `deblur`'s network restore of a large photo, whole or in tiles (docs/measurements.md).

    python benchmarks/tile_memory.py tiled   # deblur's default: 512 px tiles, 64 px of context
    python benchmarks/tile_memory.py whole   # --tile 0

One process per mode (the peak resident memory of a process only grows). MSR2B at its paper size with
its initial weights (memory does not depend on their values), one CPU thread, a 1600x1200 random image.
"""

import argparse
import resource
import time

import numpy as np
import torch

from benchmark import registry
from benchmark.inference import for_inference, network_restore, restore_tiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("tiled", "whole"),
                        help="tiles of 512 px (deblur's default) or the whole image")
    parser.add_argument("--size", type=int, nargs=2, default=(1600, 1200), metavar=("W", "H"), help="image size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    method = registry.get("msr2b")
    options = method.options()
    model = for_inference(method.build(options))
    image = np.random.default_rng(0).integers(0, 256, (args.size[1], args.size[0], 3), dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    if args.mode == "whole":
        network_restore(model, image, options)
    else:
        restore_tiled(network_restore, model, image, options, tile=512, overlap=64)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = time.perf_counter() - started
    print(f"{args.mode}: peak RSS {peak:.0f} MB (before the image {before:.0f} MB), {seconds:.1f} s")


if __name__ == "__main__":
    main()
