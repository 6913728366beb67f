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
import pandas as pd
import yaml

from benchmark import registry
from reports.tables import PAPER_ITERATIONS

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
        for key, value in [*((k, v) for k, v in section.items() if k != "train"), *train.items()]:
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
        return f"{value:.{digits}f}"
    return str(value)


def _cells(row: Mapping[str, Any], metric: str, digits: int) -> dict[str, Any]:
    paper, ours, delta = row.get(f"paper_{metric}"), row.get(metric), row.get(f"delta_{metric}")
    sign = "" if delta is None or (isinstance(delta, float) and math.isnan(delta)) else ("+" if delta >= 0 else "")
    std = row.get(f"{metric}_std")  # over seeds, when the profile has several (reports/tables.py)
    spread = "" if std is None or (isinstance(std, float) and math.isnan(std)) else f" ± {_fmt(std, digits)}"
    return {"paper": _fmt(paper, digits), "ours": _fmt(ours, digits) + spread, "delta": sign + _fmt(delta, digits),
            "below": bool(row.get(f"below_input_{metric}"))}


def _iterations(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{int(value):,}"


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists() or path.stat().st_size == 0:
        return []
    frame = pd.read_csv(path)
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


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

    table1 = [{**r, "psnr": _cells(r, "gopro_psnr", 2), "ssim": _cells(r, "gopro_ssim", 3),
               "trained": _iterations(r.get("iterations"))} for r in _records(tables / "table1.csv")]
    table2 = [{**r, **{m: _cells(r, m, 3 if "ssim" in m else 2)
                       for m in ("gopro_psnr", "gopro_ssim", "kohler_psnr", "kohler_ssim", "time_s")},
               "published": {"psnr": _fmt(r.get("published_gopro_psnr"), 2),
                             "ssim": _fmt(r.get("published_gopro_ssim"), 4), "source": r.get("published_source") or ""},
               "trained": _iterations(r.get("iterations"))} for r in _records(tables / "table2.csv")]
    progress = _records(tables / "training.csv")
    timing = _records(tables / "complexity.csv")
    hardware = hardware_of(timing)
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
        "stages": stage_times(results),
        "datasets": dataset_record(results, cfg),
        "pipeline_note": pipeline_note(cfg),
        "deviations": training_lines(progress) + profile_deviations(cfg),
        "training": progress,
        "paper_iterations": PAPER_ITERATIONS,
        "notes": reproduction_notes(cfg),
        "table1": table1,
        "table1_diff": _records(tables / "table1_differences.csv"),
        "table2": table2,
        "table2_diff": _records(tables / "table2_differences.csv"),
        "protocol": _records(tables / "metric_protocol.csv"),
        "kohler_protocol": _records(tables / "kohler_protocol.csv"),
        "complexity": timing,
        "methods": methods,
        "images": {p.stem: _embed(p) for p in sorted(figures.glob("*.png"))},
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
