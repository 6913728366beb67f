"""Pan et al. with and without outlier handling, on blurred photos with saturated highlights and noise
(issue 22; docs/measurements.md, section "Pan et al.: outlier handling").

    python benchmarks/pan_outliers.py                              # low light: the case the paper is about
    python benchmarks/pan_outliers.py --gain 1.3 --lights 4 --light 4    # bright: broad over-exposed regions

Each case is a crop of a held-out bundled photo (``benchmark.synthetic.TEST_PHOTOS``; the settings of
``baselines/pan.py`` were chosen on the training photos) whose gamma-encoded values are multiplied by an
exposure gain (0.4 by default: a dim scene) and given small bright lights (disks of radius 1-2.5 px, up to
``--light`` times white), convolved with a known camera-shake kernel (a translation-only path of
``benchmark.synthetic.CameraShake`` whose largest shift is drawn in [4, ``--max-shift``] px, rasterised with
bilinear weights), clipped to [0, 1] (saturation), given Gaussian noise of ``--noise`` and quantised to
uint8. The sharp target is the clipped sharp crop. The blur acts on the gamma-encoded values, so the
convolution model holds exactly except at the clipped pixels and for the noise: the two outliers the paper
is about.

Rows: ``old`` is the previous stand-in (Pan's L0 engine, Huber IRLS final step, its former defaults),
``new`` the current defaults (outlier engine, Cho et al.'s final step); the two mixed rows tell which half
brings what; ``true kernel`` deconvolves with the true kernel by Cho et al.'s step (an upper bound).
Kernel correlation: the largest normalised cross-correlation of the estimated and the true kernel over
shifts of up to 3 px. PSNR: RGB, full image, uint8 (``benchmark.metrics.psnr``).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage.color import rgb2gray  # noqa: E402

from baselines import pan  # noqa: E402
from benchmark import registry  # noqa: E402
from benchmark.deconv import irls_deconvolve, kernel_correlation, outlier_deconvolve  # noqa: E402
from benchmark.metrics import psnr  # noqa: E402
from benchmark.synthetic import TEST_PHOTOS, CameraShake, load_photo  # noqa: E402

# The previous stand-in's settings (main at 46e65d2): the L0 engine and the Huber IRLS final step.
OLD = {"kernel_engine": "l0", "final_deconv": "huber-irls", "final_lambda": 5e-3, "final_iterations": 6}


def camera_shake_kernel(rng: np.random.Generator, size: int, max_shift: float, subframes: int = 41) -> np.ndarray:
    """The kernel of a translation-only camera path: each sub-frame's shift splatted with bilinear weights."""
    shake = CameraShake(n_subframes=subframes, max_translation_px=max_shift, max_rotation_deg=0.0,
                        min_amplitude_fraction=0.6)
    path = shake.sample_path(rng)
    kernel = np.zeros((size, size))
    centre = size // 2
    for dx, dy in path.shifts_px:
        y, x = centre + dy, centre + dx
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        fy, fx = y - y0, x - x0
        for yy, xx, w in ((y0, x0, (1 - fy) * (1 - fx)), (y0, x0 + 1, (1 - fy) * fx),
                          (y0 + 1, x0, fy * (1 - fx)), (y0 + 1, x0 + 1, fy * fx)):
            kernel[yy, xx] += w
    return kernel / kernel.sum()


def make_case(photo: str, index: int, size: int, gain: float, lights: int, light: float, noise: float,
              max_shift: float, kernel_size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(blurred uint8, sharp uint8, true kernel) of one case; deterministic in its arguments."""
    rng = np.random.default_rng([seed, sum(map(ord, photo)), index])
    image = load_photo(photo)
    top = int(rng.integers(0, image.shape[0] - size + 1))
    left = int(rng.integers(0, image.shape[1] - size + 1))
    scene = image[top:top + size, left:left + size] / 255.0 * gain
    rows, cols = np.mgrid[:size, :size]
    for _ in range(lights):  # small bright lights: a disk of radius 1-2.5 px, `light` times white
        cy, cx, radius = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(1.0, 2.5)
        scene[(rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2] = light * rng.uniform(0.5, 1.0)
    kernel = camera_shake_kernel(rng, kernel_size, rng.uniform(min(4.0, max_shift), max_shift))
    blurred = np.stack([ndimage.convolve(scene[..., c], kernel, mode="reflect") for c in range(3)], axis=-1)
    blurred = np.clip(blurred, 0.0, 1.0) + noise * rng.standard_normal(blurred.shape)
    quantise = lambda v: np.round(np.clip(v, 0.0, 1.0) * 255).astype(np.uint8)  # noqa: E731
    return quantise(blurred), quantise(scene), kernel


def final_step(blurred: np.ndarray, kernel: np.ndarray, options: dict) -> np.ndarray:
    image = blurred / 255.0
    if options["final_deconv"] == "cho":
        out = outlier_deconvolve(image, kernel, lam=options["final_lambda"], sigma=options["outlier_sigma"],
                                 iterations=options["final_iterations"], cg_iterations=options["final_cg_iterations"],
                                 p=options["final_p"]).latent
    else:
        out = irls_deconvolve(image, kernel, lam=options["final_lambda"], iterations=options["final_iterations"],
                              p=options["final_p"], data_norm=options["final_data_norm"])
    return np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", nargs="+", default=list(TEST_PHOTOS))
    parser.add_argument("--crops", type=int, default=4, help="crops per photo")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--gain", type=float, default=0.4, help="exposure gain before clipping")
    parser.add_argument("--lights", type=int, default=12)
    parser.add_argument("--light", type=float, default=6.0, help="brightness of the lights, times white")
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--max-shift", type=float, default=9.0,
                        help="largest shift of the camera path from its middle, px (drawn in [4, this])")
    parser.add_argument("--true-kernel-size", type=int, default=25)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--options", default="{}", help="JSON overrides of the new row's options")
    parser.add_argument("--out", type=Path, help="CSV of every case")
    args = parser.parse_args(argv)
    import json

    method = registry.get("pan")
    new = method.options(json.loads(args.options))
    old = method.options(OLD)
    rows, started = [], time.perf_counter()
    for photo in args.photos:
        for index in range(args.crops):
            blurred, sharp, true_kernel = make_case(photo, index, args.size, args.gain, args.lights, args.light,
                                                    args.noise, args.max_shift, args.true_kernel_size, args.seed)
            gray = rgb2gray(blurred)
            size = pan.default_kernel_size(*gray.shape)
            row = {"photo": photo, "crop": index, "blurred_psnr": psnr(blurred, sharp),
                   "saturated_fraction": float(np.mean(blurred.max(axis=-1) >= 255))}
            kernels = {}
            for engine, options in (("old", old), ("new", new)):
                tic = time.perf_counter()
                kernels[engine] = pan.estimate_kernel(gray, size, {k: options[k] for k in pan.KERNEL_DEFAULTS
                                                                   if k != "kernel_size"})
                row[f"{engine}_kernel_s"] = time.perf_counter() - tic
                row[f"{engine}_correlation"] = kernel_correlation(true_kernel, kernels[engine])
            for label, engine, options in (("old", "old", old), ("new", "new", new),
                                           ("old_kernel_cho", "old", new), ("new_kernel_huber", "new", old)):
                row[f"{label}_psnr"] = psnr(final_step(blurred, kernels[engine], options), sharp)
            row["true_kernel_psnr"] = psnr(final_step(blurred, true_kernel, new), sharp)
            rows.append(row)
            print(f"{photo} #{index}: corr old {row['old_correlation']:.3f} new {row['new_correlation']:.3f}; "
                  f"PSNR blurred {row['blurred_psnr']:.2f} old {row['old_psnr']:.2f} new {row['new_psnr']:.2f} "
                  f"true-k {row['true_kernel_psnr']:.2f}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in rows)

    print(f"\n{len(rows)} cases of {args.size}x{args.size} ({', '.join(args.photos)}), noise {args.noise}, gain "
          f"{args.gain}, {args.lights} lights x{args.light}; mean saturated pixels "
          f"{100 * mean('saturated_fraction'):.1f} %; {time.perf_counter() - started:.0f} s\n")
    print("| kernel / final step | kernel correlation | PSNR (dB) | kernel s / image |")
    print("|---|---|---|---|")
    print(f"| blurred input | | {mean('blurred_psnr'):.2f} | |")
    print(f"| old: L0 engine / Huber IRLS | {mean('old_correlation'):.3f} | {mean('old_psnr'):.2f} | "
          f"{mean('old_kernel_s'):.2f} |")
    print(f"| new: outlier engine / Cho et al. | {mean('new_correlation'):.3f} | {mean('new_psnr'):.2f} | "
          f"{mean('new_kernel_s'):.2f} |")
    print(f"| L0 engine / Cho et al. | {mean('old_correlation'):.3f} | {mean('old_kernel_cho_psnr'):.2f} | |")
    print(f"| outlier engine / Huber IRLS | {mean('new_correlation'):.3f} | {mean('new_kernel_huber_psnr'):.2f} | |")
    print(f"| true kernel / Cho et al. | 1 | {mean('true_kernel_psnr'):.2f} | |")
    wins = sum(r["new_correlation"] > r["old_correlation"] for r in rows)
    print(f"\nnew kernel closer than old in {wins} of {len(rows)} cases; "
          f"new PSNR higher in {sum(r['new_psnr'] > r['old_psnr'] for r in rows)} of {len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
