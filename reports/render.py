"""Render the one self-contained HTML report (images embedded) with every CSV copied beside it."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import math
import platform
import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import jinja2
import yaml

from benchmark import registry
from benchmark.files import read_csv
from reports.numbers import base_decimals, column_decimals, interval, number, short_name
from reports.tables import HEADLINE_SSIM, INPUT, KOHLER_SSIM, PAPER_ITERATIONS, paper_numbers

PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pandas", "scikit-image", "pyiqa", "snakemake", "jinja2",
            "matplotlib")
STAGES = ("synthesise", "fetch", "prepare", "crop_cache", "train", "restore", "score", "time", "tables", "figures")

# The paper's protocol (section 4.2 and SPEC section 4) against which a profile's deviations are listed.
PAPER_TRAIN = {"epochs_constant": 200, "epochs_decay": 100, "lr": 1e-4, "lr_final": 1e-7, "batch_size": 1,
               "crop": 256, "n_critic": 5, "gp_weight": 10.0, "content_weight": 100.0, "warmup_iterations": 0}
# Settings whose per-method value is the profile's business, listed once for the profile, not per method.
PROFILE_SETTINGS = frozenset({"epochs_constant", "epochs_decay", "seed", "val_every", "log_every", "checkpoint_every",
                              "perceptual_weights", "keep_checkpoint"})


def _why(cfg: Mapping[str, Any], key: str) -> str:
    """The profile's reason for departing on ``key`` (its ``departures`` section), as the end of a line."""
    reason = cfg.get("departures", {}).get(key, "").rstrip(".")
    return f": {reason}." if reason else "."


def method_departures(cfg: Mapping[str, Any], explained: frozenset[str] = frozenset()) -> list[str]:
    """Each option or training setting that this profile sets, for some trained method, away from the
    method's own (its declaration's defaults: the authors' recipe, or this suite's reading of the paper),
    one line per setting naming every method it touches, with the profile's reason unless ``explained``."""
    changes: dict[str, list[str]] = {}
    for m in registry.available():
        if m.kind != "trained":
            continue
        section = cfg.get("methods", {}).get(m.name, {})
        train = {k: v for k, v in section.get("train", {}).items() if k not in PROFILE_SETTINGS}
        name = m.display_name.split(":")[0]
        # a method that words its own options' departures (Method.notes) has them in its notes instead
        options = [] if m.notes is not None else [(k, v) for k, v in section.items() if k != "train"]
        for key, value in [*options, *train.items()]:
            own, whose = (m.defaults[key], "its own") if key in m.defaults else (cfg["train"].get(key), "the profile's")
            if own != value:
                changes.setdefault(key, []).append(f"{name} {value} ({whose}: {own})")
    return [f"{key}: " + ", ".join(uses) + (_why(cfg, key) if key not in explained else ".")
            for key, uses in changes.items()]


def profile_deviations(cfg: Mapping[str, Any]) -> list[str]:
    """Every way this run departs from the paper's protocol, worded for the report's banner: the profile's
    settings against the paper's, each with the profile's reason (``departures``) where it gives one, then
    each method's own departures (:func:`method_departures`)."""
    out, explained = [], set()
    if cfg["data"]["source"] == "synthetic":
        s = cfg["data"]["synthetic"]
        out.append(f"Data: synthetic camera shake from photos bundled with scikit-image and matplotlib "
                   f"({s['train_pairs']} training pairs of {s['size']}x{s['size']}, {s['test_pairs']} GOPRO-like "
                   f"test pairs, Köhler-like set of {s['kohler_paths']} paths x held-out photos at "
                   f"{s['kohler_size']}x{s['kohler_size']}) instead of GOPRO (2103/1111 pairs, 1280x720) and "
                   f"Köhler (48 images).")
        if s.get("generalisation_pairs", 0) > 0:
            out.append(f"Generalisation sets: stand-ins of {s['generalisation_pairs']} pairs each in HIDE's and "
                       "RealBlur-J/-R's layouts, made by the synthetic generator from the held-out photos at other "
                       "places (HIDE-like: a 1.5x stronger shake; RealBlur-like: over-exposure, noise, JPEG for -J, "
                       "linear values for -R, and a reference misaligned by up to 0.75 px and 10% darker), not HIDE "
                       "(2,025 pairs) or RealBlur (980 pairs each); their numbers test the pipeline, not the models.")
    t = cfg["train"]
    for key, paper in PAPER_TRAIN.items():
        if not math.isclose(float(t.get(key, paper)), float(paper)):
            out.append(f"Training: {key} = {t[key]} (paper: {paper})" + _why(cfg, key))
            explained.add(key)
    if t.get("content", "perceptual") != "perceptual":
        out.append(f"Content term: content = {t['content']} instead of the paper's VGG19 perceptual loss"
                   + _why(cfg, "content"))
        explained.add("content")
    if t["perceptual_weights"] == "random" and t.get("content", "perceptual") == "perceptual":
        out.append("Perceptual loss: VGG19 with a fixed-seed random initialisation, because the ImageNet "
                   "weights cannot be downloaded in this profile; the loss is then a random-feature loss.")
    if cfg["data"]["blur_folder"] != "blur":
        out.append(f"GOPRO input folder: {cfg['data']['blur_folder']} (the suite's default reading is `blur`).")
    if list(cfg["fig5"]["k"]) != [1, 3, 5, 7, 9, 11]:
        out.append(f"Fig. 5: k in {cfg['fig5']['k']} (paper: 1, 3, 5, 7, 9, 11).")
    tm = cfg["timing"]
    out.append(f"Timing: measured on this run's hardware (the paper used an Intel i7-6900K CPU and an NVIDIA "
               f"Titan X); classical methods timed at {tm['classical_width']}x{tm['classical_height']}"
               + (" instead of 1280x720." if (tm["classical_width"], tm["classical_height"]) != (1280, 720) else "."))
    if (tm["width"], tm["height"]) != (1280, 720):
        out.append(f"Timing: networks timed at {tm['width']}x{tm['height']} instead of 1280x720.")
    if not cfg.get("weights", {}).get("releases"):
        out.append("Authors' released weights: not fetched in this profile (offline, or none listed under "
                   "weights.releases), so Table 2 has no authors'-weights rows (DeblurGAN, DeepDeblur) and no "
                   "NAFNet-32/64 release rows; the paper profile scores them.")
    if not tm.get("exclusive", True):
        out.append("Timing: timing jobs ran on one core beside other jobs (timing.exclusive: false), so the times "
                   "include contention.")
    if t.get("gp_reduction", "sum") == "sum" and t.get("n_critic", 5) > 0:
        out.append("Gradient penalty: on the gradient of the critic map's sum (DeblurGAN's code, "
                   "gp_reduction: sum), not of the patch average that the paper calls D; see the reproduction notes.")
    if t.get("perceptual_reduction", "chw") == "chw" and t.get("content", "perceptual") == "perceptual":
        out.append(f"Perceptual loss: MSE over C x H x W (perceptual_reduction: chw), not Eq. 12's 1/(W x H); "
                   f"lambda = {t['content_weight']:g} here is lambda = {t['content_weight'] / 256:.3g} in Eq. 12's "
                   "scale (256 channels at conv3_3).")
    for method in registry.available():  # what a method's options in this profile change (its notes)
        if method.notes is not None:
            out.extend(method.notes(registry.configured_options(method.name, cfg)))
    return out + method_departures(cfg, frozenset(explained))


def pipeline_note(cfg: Mapping[str, Any]) -> str | None:
    """The first line under the title when the run cannot test the paper's numbers (quick, smoke)."""
    reasons = []
    if cfg["data"]["source"] == "synthetic":
        reasons.append("synthetic data instead of GOPRO and Köhler")
    epochs = cfg["train"]["epochs_constant"] + cfg["train"]["epochs_decay"]
    if epochs < PAPER_TRAIN["epochs_constant"] + PAPER_TRAIN["epochs_decay"]:
        reasons.append(f"{epochs} training epoch{'s' if epochs != 1 else ''} instead of 300")
    if not reasons:
        return None
    return (f"The numbers in this report test the pipeline, not the paper ({'; '.join(reasons)}): "
            "they show that every step runs, not whether the paper's results reproduce.")


def percent(fraction: float) -> str:
    """100% or 42% for a large share, two significant digits (0.0032%) for a small one."""
    value = 100 * fraction
    return f"{value:.0f}%" if value >= 10 else f"{value:.2g}%"


def training_lines(progress: list[Mapping[str, Any]]) -> list[str]:
    """The banner's account of how far each network trained, against the paper's 630,900 iterations."""
    if not progress:
        return []
    parts = [f"{r['run']} {int(r['iterations']):,} iteration{'' if int(r['iterations']) == 1 else 's'} of batch "
             f"{int(r['batch_size'])} "
             f"({percent(float(r['fraction_of_paper']))})" for r in progress]
    health = [f"Training health: {r['health']}." for r in progress if r.get("health")]
    return [f"Training length: the paper trains each network for {PAPER_ITERATIONS:,} iterations (300 epochs of "
            f"2103 GOPRO crops, batch 1); this run trained " + ", ".join(parts) + " (percentages count crops seen)."
            ] + health


def _options(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A method's options as this run's configuration sets them (its ``train`` overrides aside)."""
    return registry.configured_options(name, cfg)


def reproduction_notes(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """SPEC section 4's readings of what the paper leaves open, with the values used in this run."""
    t, main = cfg["train"], registry.get(cfg["fig5"]["method"])
    options = _options(cfg, main.name)
    gp, pr, cb = t.get("gp_reduction", "sum"), t.get("perceptual_reduction", "chw"), t.get("critic_batches", "same")
    return [
        ("Generator body", f"k = {options['k']} {options['block'].upper()} blocks of 256 channels, group width "
                           f"w = {options['width']}; no normalisation (the paper removes IN)."),
        ("MSR2B W0", f"{options['w0']}: the paper never defines W0; the identity bypass W0 = P is the default "
                     "reading (option: W0 = t1)."),
        ("Local skip fusion", "the k block outputs are concatenated and fused by a 1x1 conv to 256 channels + ReLU."),
        ("Generator tail", "two 3x3 stride-2 transposed convs + ReLU, then a 1x1 conv with no activation "
                           "(a ReLU there would forbid negative residuals); output = clamp(blurred + residual)."),
        ("Initialisation", f"init = {options['init']} (the paper is silent). DeblurGAN's N(0, 0.02) was made for a "
                           "network with InstanceNorm after every conv; in this one, which has none, it starts the "
                           "residual at about 0.01 grey levels (it rounds to the input) and leaves 3x more dead ReLU "
                           "channels than He-normal after 200 iterations at the paper's settings shrunk to a CPU "
                           "(11% against 3.6%; no init collapsed there). He-normal alone grows the activations block "
                           "by block to several hundred; he-identity (He-normal, each block's last conv and the "
                           "output conv zero) starts at the identity with the head's activation size, so it is the "
                           "paper profile's default (measurement: docs/measurements.md)."),
        ("Critic", "70x70 PatchGAN: C64-C128-C256 (stride 2), C512 (stride 1), 1-channel conv; IN after C128+, "
                   "LeakyReLU 0.2; 30x30 map for 256x256 input. The paper's 'four stride-2 layers' contradicts its "
                   "own 30x30 output; the output size is followed. The critic sees the image alone."),
        ("Losses", f"L_G = -mean D(G(B)) + {t['content_weight']} x L_pers; L_D = mean D(G(B)) - mean D(S) + "
                   f"{t['gp_weight']} x GP (one alpha per sample, gradient norm over the whole sample)."),
        ("Part B's last ReLU", "Part B's output is ReLU(K_b([W0, W1, W2])); Eq. 7 has no ReLU after K_b. The suite "
                               "keeps it (SPEC section 4), reading the paper's 'each convolutional layer is followed "
                               "by a ReLU'; it is not a configuration option."),
        ("Gradient penalty D(x)", f"gp_reduction = {gp}. The paper defines D as the average over the "
                                  "critic's patches; DeblurGAN's code differentiates the map's sum, P times larger "
                                  "for P patches (900 at 256x256), which pins the patch average's gradient norm to "
                                  "1/P instead of 1 and so weakens the adversarial term against lambda x L_pers by "
                                  "up to P. Default sum: mu = 10 and lambda = 100 are DeblurGAN's values, tuned "
                                  "under its sum, and the paper copies them without code of its own; mean is the "
                                  "literal reading (option gp_reduction: mean)."),
        ("Perceptual loss", f"VGG19 features[:15] (conv3_3 before ReLU), weights = {t['perceptual_weights']}, "
                            f"ImageNet-normalised input = {t['perceptual_normalize']}; perceptual_reduction = "
                            f"{pr}: chw is the MSE over C x H x W (DeblurGAN's nn.MSELoss), hw "
                            "is Eq. 12's 1/(W x H) sum, 256 times larger at conv3_3. Under chw, lambda = "
                            f"{t['content_weight']:g} is Eq. 12's lambda = {t['content_weight'] / 256:.3g}; Eq. 12 "
                            f"with lambda = {t['content_weight']:g} is lambda = {256 * t['content_weight']:g} under "
                            "chw. Default chw, for the same reason as the penalty's sum."),
        ("Critic steps", f"{t['n_critic']} critic steps per generator step (DeblurGAN; the paper is silent); "
                         f"critic_batches = {cb}: same = every critic step on the generator step's "
                         "batch (DeblurGAN's loop, the default), fresh = each critic step on a batch of its own "
                         "and the generator step on one more (WGAN-GP's Algorithm 1). DeblurGAN's row keeps its "
                         "official sum / chw / same whatever this profile sets."),
        ("Optimiser", f"Adam lr {t['lr']}, betas {tuple(t['betas'])}, eps {t['eps']} for both networks."),
        ("Schedule", f"{t['epochs_constant']} epochs constant + {t['epochs_decay']} epochs linear decay to "
                     f"{t['lr_final']}; one epoch = one random {t['crop']}x{t['crop']} crop of each training pair; "
                     f"batch {t['batch_size']}; random flips {'on' if t.get('random_flip') else 'off'}."),
        ("GOPRO input", f"`{cfg['data']['blur_folder']}` folder (linear CRF average by default)."),
        ("NAFNet test-time pooling", "option local = "
         f"{_options(cfg, 'nafnet')['local']} for the retrained NAFNet and "
         "true for the authors' releases (the official GoPro test's NAFNetLocal: channel-attention means over "
         "1.5 x the training size around each pixel, TLC); local = false is plain NAFNet's global pool."),
        ("Fig. 5", f"k in {cfg['fig5']['k']}; (a) PSNR on {cfg['data']['validation_images']} test images every "
                   f"{t['val_every']} epoch(s), taken evenly from every test scene (the scenes take turns, each "
                   "share spread over the scene's frames; the first images of the split would all be one scene), "
                   "(b) the last of those values against parameter count."),
        ("Batch and crop", f"the profile's batch {t['batch_size']} and crop {t['crop']} unless a method brings its "
                           "own (DeepDeblur: 16 / 256) or the profile overrides it under methods; what each run "
                           "used is in the training table."),
        ("Metrics", "restored images quantised to uint8 (round, clip) before scoring; PSNR on RGB, peak 255, mean "
                    "over images; the headline SSIM is the `matlab` variant, the others are in the metric protocol "
                    "table; Köhler as eval_image.m: the deblurred image scaled by least squares onto each frame, "
                    "integer DFT registration, the deblurred image shifted with zero fill, the frame masked, luma, "
                    "best frame per metric; SSIM = metrix_mux 'SSIM', MS-SSIM = metrix_mux 'MSSIM'."),
    ]


def _embed(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _git_commit(root: Path) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["python"] = platform.python_version()
    return found


def stage_times(results: Path) -> list[tuple[str, float, int]]:
    """(stage, summed wall seconds, jobs) from Snakemake's per-job benchmark files."""
    totals: dict[str, list[float]] = {}
    for tsv in sorted((results / "benchmarks").glob("*.tsv")):
        stage = next((s for s in STAGES if tsv.stem == s or tsv.stem.startswith(s + "_")), tsv.stem)
        with tsv.open() as f:
            seconds = [float(r["s"]) for r in csv.DictReader(f, delimiter="\t")]
        totals.setdefault(stage, []).extend(seconds)
    return [(s, sum(v), len(v)) for s, v in totals.items()]


def dataset_record(results: Path, cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What data the run used, with a checksum a reader can compare."""
    if cfg["data"]["source"] == "synthetic":
        digest = hashlib.sha256()
        files = sorted(p for p in (results / "data").rglob("*.png"))
        for p in files:
            digest.update(p.relative_to(results / "data").as_posix().encode())
            digest.update(p.read_bytes())
        return [("synthetic camera shake", f"{len(files)} PNG files, SHA-256 of the tree {digest.hexdigest()[:16]}…")]
    rows = []
    for name in ("gopro", "kohler"):
        record = results / "data" / f"{name}.fetched.json"
        text = json.loads(record.read_text()) if record.exists() else {}
        rows.append((name, json.dumps(text.get("checksums", text))[:300] or "not recorded"))
    return rows


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return number(value, digits)
    return str(value)


def paper_comparable(cfg: Mapping[str, Any]) -> bool:
    """A difference to the paper's numbers means something only on the paper's data (GOPRO and Köhler)."""
    return cfg["data"]["source"] != "synthetic"


def _cells(row: Mapping[str, Any], metric: str, digits: int, comparable: bool) -> dict[str, Any]:
    """A table cell: this run's value (± the std over seeds), the paper's, and the difference to the paper,
    which is left out (``delta`` empty) where the data are not the paper's."""
    paper, ours, delta = row.get(f"paper_{metric}"), row.get(metric), row.get(f"delta_{metric}")
    std = row.get(f"{metric}_std")  # over seeds, when the profile has several (reports/tables.py)
    spread = "" if std is None or (isinstance(std, float) and math.isnan(std)) else f" ± {_fmt(std, digits)}"
    paper_digits = (0 if paper is not None and paper >= 100 else 2) if "time" in metric else base_decimals(metric)
    return {"paper": _fmt(paper, paper_digits),
            "ours": _fmt(ours, digits) + spread,
            "delta": number(delta, digits, sign=True) if comparable and delta is not None else "",
            "below": bool(row.get(f"below_input_{metric}"))}


def _column_digits(rows: list[Mapping[str, Any]], metric: str, base: int) -> int:
    """Decimals for a column: enough that a value differing from the blurred input's prints differently."""
    reference = next((r.get(metric) for r in rows if r.get("method") == INPUT), None)
    return column_decimals([r.get(metric) for r in rows], reference, base)


def _iterations(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{int(value):,}"


def _records(path: Path) -> list[dict[str, Any]]:
    """A table's rows; none for a missing file or one that holds no columns (an empty table: no timings yet)."""
    if not path.exists() or not path.read_text().strip():
        return []
    frame = read_csv(path)
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def display_names() -> dict[str, str]:
    """Method name -> the row label of the tables (the input: "Blurred input")."""
    return {m.name: m.display_name for m in registry.available()}


def difference_rows(diffs: list[Mapping[str, Any]], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The paired differences with display names and as many decimals as their intervals need."""
    rows = []
    for d in diffs:
        estimate, ci = interval(d["difference"], d["ci_low"], d["ci_high"], base_decimals(d["metric"]))
        rows.append({**d, "a_name": names.get(d["a"], d["a"]), "b_name": names.get(d["b"], d["b"]),
                     "estimate": estimate, "ci": ci, "verdict": _verdict(d)})
    return rows


def _verdict(d: Mapping[str, Any]) -> str:
    """better / worse where the 95% interval excludes zero, else unresolved."""
    if d["ci_low"] is None or d["ci_high"] is None:
        return "unresolved"
    return "better" if d["ci_low"] > 0 else "worse" if d["ci_high"] < 0 else "unresolved"


HEADLINE_COLUMNS = (("gopro", "psnr", "GOPRO PSNR (dB)"), ("gopro", HEADLINE_SSIM, "GOPRO SSIM"),
                    ("kohler", "psnr", "Köhler PSNR (dB)"), ("kohler", KOHLER_SSIM, "Köhler SSIM"))


def key_comparisons(diffs: list[Mapping[str, Any]], cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The headline's rows: the main model against the blurred input, the ResNet / Res2Net blocks and each
    method of the paper's Table 2, per test set and metric, with the paper's own difference where this
    run's data are the paper's."""
    main = cfg["fig5"]["method"]
    names = display_names()
    numbers = paper_numbers()
    paper = {(r.table, r.method, r.metric): r.value for r in numbers.itertuples()}
    table2_methods = [m for m in dict.fromkeys(numbers.query("table == 'table2'").method) if m != main]
    found = {(d["dataset"], d["b"], d["metric"]): d for d in difference_rows(diffs, names) if d["a"] == main}
    rows = []
    for other in (INPUT, "resnet", "res2net", *table2_methods):
        cells = []
        for dataset, metric, _ in HEADLINE_COLUMNS:
            d = found.get((dataset, other, metric))
            key = f"{dataset}_{'psnr' if metric == 'psnr' else 'ssim'}"
            table = "table1" if other in ("resnet", "res2net") else "table2"
            ours_paper, theirs_paper = paper.get((table, main, key)), paper.get((table, other, key))
            paper_diff = (number(ours_paper - theirs_paper, base_decimals(metric), sign=True)
                          if paper_comparable(cfg) and ours_paper is not None and theirs_paper is not None else "")
            cells.append(None if d is None else {**d, "paper": paper_diff})
        if any(cells):
            rows.append({"method": other, "label": short_name(names.get(other, other)), "cells": cells,
                         "images": max(c["images"] for c in cells if c)})
    return rows


def what_ran(cfg: Mapping[str, Any], table2: list[Mapping[str, Any]], progress: list[Mapping[str, Any]],
             stages: list[tuple[str, float, int]], hardware: Mapping[str, str]) -> list[str]:
    """The headline's account of the run: data, methods, training length, hardware, time."""
    scored = [r for r in table2 if r.get("status") == "reproduced" and r.get("method") != INPUT]
    gopro = max((int(r.get("images_gopro") or 0) for r in scored), default=0)
    kohler = max((int(r.get("images_kohler") or 0) for r in scored), default=0)
    if cfg["data"]["source"] == "synthetic":
        s = cfg["data"]["synthetic"]
        data = (f"Synthetic camera shake (profile {cfg['profile']}): {s['train_pairs']} training pairs of "
                f"{s['size']}x{s['size']} px, {gopro} GOPRO-like test images and {kohler} Köhler-like ones at "
                f"{s['kohler_size']}x{s['kohler_size']} px.")
    else:
        data = f"GOPRO ({gopro} test pairs) and Köhler ({kohler} blurred images), profile {cfg['profile']}."
    trained = [r for r in scored if r.get("kind") == "trained"]
    lines = [data, f"{len(scored)} methods restored and scored ({len(trained)} trained networks, "
                   f"{len(scored) - len(trained)} classical), each against the blurred input itself."]
    if progress:
        iterations = sorted(int(r["iterations"]) for r in progress)
        share = max(float(r["fraction_of_paper"]) for r in progress)
        lines.append(f"Training: {iterations[0]:,}–{iterations[-1]:,} iterations per network ({percent(share)} "
                     f"of the paper's {PAPER_ITERATIONS:,} at most), {len(progress)} runs.")
    seconds = sum(t for _, t, _ in stages)
    device = hardware.get("gpu") or hardware.get("cpu") or hardware.get("device", "")
    lines.append(f"Hardware: {device}; {seconds / 60:.1f} minutes of job time in all." if stages
                 else f"Hardware: {device}.")
    return lines


def what_it_shows(cfg: Mapping[str, Any], comparisons: list[Mapping[str, Any]],
                  progress: list[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(what the key comparisons can show, what they cannot), worded from this run's own numbers."""
    main = display_names().get(cfg["fig5"]["method"], cfg["fig5"]["method"])
    images = max((c["images"] for c in comparisons), default=0)
    can = [f"Whether {main}, as trained in this run, restores these {images} test images better or worse than "
           "each method: a cell is green (better) or red (worse) only where its paired bootstrap 95% interval "
           "over images excludes zero; grey cells are not resolved."]
    cannot = []
    if not paper_comparable(cfg):
        can.append("That every step of the pipeline runs, from data to report.")
        cannot.append("Whether the paper's numbers hold: the data are synthetic, not GOPRO and Köhler, so no "
                      "difference to the paper's numbers is computed (they are shown greyed, for reference).")
    elif comparisons:
        can.append("How far this run is from the paper: the paper's own difference stands under each cell.")
    if progress:
        share = max(float(r["fraction_of_paper"]) for r in progress)
        if share < 0.5:
            cannot.append(f"Which architecture is better: the networks trained at most {percent(share)} of the paper's "
                          "schedule, so the comparisons rank how fast each method starts, not where it ends.")
    seeds = cfg.get("seeds") or [cfg["train"].get("seed", 0)]
    if len(seeds) < 2:
        cannot.append("Seed-to-seed spread: each network was trained once; the intervals cover the variation "
                      "between images only.")
    if 0 < images < 30:
        cannot.append(f"Small effects: with {images} test images the intervals are wide.")
    base = next((c for c in comparisons if c["method"] == INPUT), None)
    if base and base["cells"][0] and base["cells"][0]["verdict"] != "better":
        d = base["cells"][0]
        cannot.append(f"Anything about {main}'s architecture from this run: it did not improve on the blurred "
                      f"input (PSNR {d['estimate']} dB, 95% interval {d['ci']}), so its comparisons measure a "
                      "network that has not learned to deblur yet.")
    return can, cannot


def comparison_figures(figures: Path) -> list[dict[str, Any]]:
    """The visual comparisons of ``comparisons.json`` (reports/figures.py), with each panel's pixel size."""
    path = figures / "comparisons.json"
    if not path.exists():
        return []
    from PIL import Image

    out = []
    for c in json.loads(path.read_text()):
        panels = []
        for p in c["panels"]:
            with Image.open(figures / f"{p['whole']}.png") as whole, Image.open(figures / f"{p['crop']}.png") as crop:
                panels.append({**p, "whole_size": whole.size, "crop_size": crop.size})
        out.append({**c, "panels": panels})
    return out


TESTSET_NAMES = {"gopro": "GOPRO", "hide": "HIDE", "realblur-j": "RealBlur-J", "realblur-r": "RealBlur-R"}


def generalisation_table(rows: list[Mapping[str, Any]], diffs: list[Mapping[str, Any]], main: str,
                         synthetic: bool) -> dict[str, Any] | None:
    """The generalisation table (beyond the paper): a row per method, a cell per test set with PSNR and the set's
    own SSIM, the published number of the same model where one exists, and the main model minus the method
    with its paired 95% interval. None when the profile scores no generalisation set."""
    if not rows:
        return None
    sets = list(dict.fromkeys(r["testset"] for r in rows))
    d_psnr = _column_digits([{"psnr": r["psnr"]} for r in rows], "psnr", 2)
    paired = {(d["b"], d["dataset"]): d for d in diffs if d["metric"] == "psnr"}
    table: dict[str, dict[str, Any]] = {}
    for r in rows:
        row = table.setdefault(r["method"], {"row": short_name(r["row"]), "weights": r["weights"], "cells": {}})
        d = paired.get((r["method"], r["testset"]))
        estimate, ci = interval(d["difference"], d["ci_low"], d["ci_high"], 2) if d else ("", "")
        row["cells"][r["testset"]] = {
            "psnr": number(r["psnr"], d_psnr), "ssim": number(r["ssim"], 3),
            "published": (f"{number(r['published_psnr'], 2)} / {number(r['published_ssim'], 3)}"
                          if _fmt(r.get("published_psnr")) != "–" else ""),
            "diff": f"{estimate} {ci}" if d and r["method"] != main else "",
            "verdict": _verdict(d) if d and r["method"] != main else ""}
    sources = sorted({r["published_source"] for r in rows if r.get("published_source")})
    return {"sets": [(t, TESTSET_NAMES.get(t, t)) for t in sets], "rows": list(table.values()), "sources": sources,
            "synthetic": synthetic}


def hardware_of(timing: list[dict[str, Any]]) -> dict[str, str]:
    """What the times were measured on: the networks' device (and GPU), and a line saying so when the
    classical methods were timed elsewhere (always on the CPU, by the wall clock)."""
    networks = [t for t in timing if t.get("torch")]
    first = (networks or timing or [{}])[0]
    hardware = {k: first[k] for k in ("device", "cpu", "gpu") if first.get(k)}
    if networks and len(networks) < len(timing) and first.get("device") != "cpu":
        hardware["classical methods"] = "timed on the CPU (wall clock)"
    return hardware


def render_report(results: Path, config: Path, out: Path) -> None:
    results, out = Path(results), Path(out)
    cfg = yaml.safe_load(Path(config).read_text())
    tables, figures = results / "tables", results / "figures"
    out.parent.mkdir(parents=True, exist_ok=True)
    for csv_file in tables.glob("*.csv"):
        shutil.copyfile(csv_file, out.parent / csv_file.name)

    comparable = paper_comparable(cfg)
    t1_rows, t2_rows = _records(tables / "table1.csv"), _records(tables / "table2.csv")
    d1 = {m: _column_digits(t1_rows, m, base_decimals(m)) for m in ("gopro_psnr", "gopro_ssim")}
    table1 = [{**r, "psnr": _cells(r, "gopro_psnr", d1["gopro_psnr"], comparable),
               "ssim": _cells(r, "gopro_ssim", d1["gopro_ssim"], comparable),
               "trained": _iterations(r.get("iterations"))} for r in t1_rows]
    d2 = {m: _column_digits(t2_rows, m, base_decimals(m)) for m in ("gopro_psnr", "gopro_ssim", "kohler_psnr",
                                                                    "kohler_ssim")} | {"time_s": 2}
    table2 = [{**r, **{m: _cells(r, m, d2[m], comparable or m == "time_s") for m in d2},
               "published": {"psnr": _fmt(r.get("published_gopro_psnr"), 2),
                             "ssim": _fmt(r.get("published_gopro_ssim"), 4), "source": r.get("published_source") or ""},
               "trained": _iterations(r.get("iterations"))} for r in t2_rows]
    progress = _records(tables / "training.csv")
    timing = _records(tables / "complexity.csv")
    hardware = hardware_of(timing)
    stages = stage_times(results)
    names = display_names()
    diffs = _records(tables / "table2_differences.csv")
    comparisons = key_comparisons(diffs, cfg)
    can, cannot = what_it_shows(cfg, comparisons, progress)
    methods = [{"name": m.name, "display_name": m.display_name, "kind": m.kind, "summary": m.summary,
                "deviations": list(m.deviations)} for m in registry.available()]
    config_text = Path(config).read_text()
    context = {
        "profile": cfg["profile"],
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(Path(__file__).resolve().parents[1]),
        "config_hash": hashlib.sha256(config_text.encode()).hexdigest()[:16],
        "config_text": config_text,
        "versions": _versions(),
        "hardware": hardware,
        "stages": stages,
        "datasets": dataset_record(results, cfg),
        "pipeline_note": pipeline_note(cfg),
        "comparable": comparable,
        "main_name": short_name(names.get(cfg["fig5"]["method"], cfg["fig5"]["method"])),
        "what_ran": what_ran(cfg, t2_rows, progress, stages, hardware),
        "key": comparisons,
        "key_columns": [c[2] for c in HEADLINE_COLUMNS],
        "can": can,
        "cannot": cannot,
        "deviations": training_lines(progress) + profile_deviations(cfg),
        "training": [{**r, "name": short_name(names.get(r["method"], r["method"]))} for r in progress],
        "paper_iterations": PAPER_ITERATIONS,
        "validation_images": cfg["data"]["validation_images"],
        "notes": reproduction_notes(cfg),
        "table1": table1,
        "table1_diff": difference_rows(_records(tables / "table1_differences.csv"), names),
        "table2": table2,
        "table2_diff": difference_rows(diffs, names),
        "protocol": _records(tables / "metric_protocol.csv"),
        "kohler_protocol": _records(tables / "kohler_protocol.csv"),
        "complexity": timing,
        "generalisation": generalisation_table(_records(tables / "generalisation.csv"),
                                               _records(tables / "generalisation_differences.csv"),
                                               cfg["fig5"]["method"], cfg["data"]["source"] == "synthetic"),
        "methods": methods,
        "images": {p.stem: _embed(p) for p in sorted(figures.glob("*.png"))},
        "comparisons": comparison_figures(figures),
        "csvs": sorted(p.name for p in tables.glob("*.csv")),
        "fmt": _fmt,
        "percent": percent,
    }
    env = jinja2.Environment(loader=jinja2.PackageLoader("reports", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    html = env.get_template("report.html").render(**context)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
