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

PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pandas", "scikit-image", "pyiqa", "snakemake", "jinja2",
            "matplotlib")
STAGES = ("synthesise", "fetch", "prepare", "crop_cache", "train", "restore", "score", "time", "tables", "figures")

# The paper's protocol (section 4.2 and SPEC section 4) against which a profile's deviations are listed.
PAPER_TRAIN = {"epochs_constant": 200, "epochs_decay": 100, "lr": 1e-4, "lr_final": 1e-7, "batch_size": 1,
               "crop": 256, "n_critic": 5, "gp_weight": 10.0, "content_weight": 100.0}


def profile_deviations(cfg: Mapping[str, Any]) -> list[str]:
    """Every way this run departs from the paper's protocol, worded for the report's banner."""
    out = []
    if cfg["data"]["source"] == "synthetic":
        s = cfg["data"]["synthetic"]
        out.append(f"Data: synthetic camera shake from photos bundled with scikit-image and matplotlib "
                   f"({s['train_pairs']} training pairs of {s['size']}x{s['size']}, {s['test_pairs']} GOPRO-like "
                   f"test pairs, Köhler-like set of {s['kohler_paths']} paths x held-out photos at "
                   f"{s['kohler_size']}x{s['kohler_size']}) instead of GOPRO (2103/1111 pairs, 1280x720) and "
                   f"Köhler (48 images).")
    t = cfg["train"]
    for key, paper in PAPER_TRAIN.items():
        if not math.isclose(float(t[key]), float(paper)):
            out.append(f"Training: {key} = {t[key]} (paper: {paper}).")
    if t["perceptual_weights"] == "random":
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
    if not tm.get("exclusive", True):
        out.append("Timing: timing jobs ran on one core beside other jobs (timing.exclusive: false), so the times "
                   "include contention.")
    return out


def reproduction_notes(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """SPEC section 4's readings of what the paper leaves open, with the values used in this run."""
    t, main = cfg["train"], registry.get(cfg["fig5"]["method"])
    options = main.options(cfg["methods"].get(main.name, {}))
    return [
        ("Generator body", f"k = {options['k']} {options['block'].upper()} blocks of 256 channels, group width "
                           f"w = {options['width']}; no normalisation (the paper removes IN)."),
        ("MSR2B W0", f"{options['w0']}: the paper never defines W0; the identity bypass W0 = P is the default "
                     "reading (option: W0 = t1)."),
        ("Local skip fusion", "the k block outputs are concatenated and fused by a 1x1 conv to 256 channels + ReLU."),
        ("Generator tail", "two 3x3 stride-2 transposed convs + ReLU, then a 1x1 conv with no activation "
                           "(a ReLU there would forbid negative residuals); output = clamp(blurred + residual)."),
        ("Initialisation", "conv weights N(0, 0.02), biases 0 (DeblurGAN lineage; the paper is silent)."),
        ("Critic", "70x70 PatchGAN: C64-C128-C256 (stride 2), C512 (stride 1), 1-channel conv; IN after C128+, "
                   "LeakyReLU 0.2; 30x30 map for 256x256 input. The paper's 'four stride-2 layers' contradicts its "
                   "own 30x30 output; the output size is followed. The critic sees the image alone."),
        ("Losses", f"L_G = -mean D(G(B)) + {t['content_weight']} x L_pers; L_D = mean D(G(B)) - mean D(S) + "
                   f"{t['gp_weight']} x GP (one alpha per sample, gradient norm over the whole sample)."),
        ("Perceptual loss", f"MSE of VGG19 features[:15] (conv3_3 before ReLU), weights = {t['perceptual_weights']}, "
                            f"ImageNet-normalised input = {t['perceptual_normalize']}."),
        ("Critic steps", f"{t['n_critic']} critic steps per generator step (DeblurGAN; the paper is silent)."),
        ("Optimiser", f"Adam lr {t['lr']}, betas {tuple(t['betas'])}, eps {t['eps']} for both networks."),
        ("Schedule", f"{t['epochs_constant']} epochs constant + {t['epochs_decay']} epochs linear decay to "
                     f"{t['lr_final']}; one epoch = one random {t['crop']}x{t['crop']} crop of each training pair; "
                     f"batch {t['batch_size']}; random flips {'on' if t.get('random_flip') else 'off'}."),
        ("GOPRO input", f"`{cfg['data']['blur_folder']}` folder (linear CRF average by default)."),
        ("Fig. 5", f"k in {cfg['fig5']['k']}; (a) PSNR on {cfg['data']['validation_images']} test images every "
                   f"{t['val_every']} epoch(s), (b) the last of those values against parameter count."),
        ("Metrics", "restored images quantised to uint8 (round, clip) before scoring; PSNR on RGB, peak 255, mean "
                    "over images; the headline SSIM is the `matlab` variant, the others are in the metric protocol "
                    "table; Köhler: intensity scaling, integer DFT registration, masked shift, luma, best frame."),
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


def _cells(row: Mapping[str, Any], metric: str, digits: int) -> dict[str, str]:
    paper, ours, delta = row.get(f"paper_{metric}"), row.get(metric), row.get(f"delta_{metric}")
    sign = "" if delta is None or (isinstance(delta, float) and math.isnan(delta)) else ("+" if delta >= 0 else "")
    std = row.get(f"{metric}_std")  # over seeds, when the profile has several (reports/tables.py)
    spread = "" if std is None or (isinstance(std, float) and math.isnan(std)) else f" ± {_fmt(std, digits)}"
    return {"paper": _fmt(paper, digits), "ours": _fmt(ours, digits) + spread, "delta": sign + _fmt(delta, digits)}


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists() or path.stat().st_size == 0:
        return []
    frame = pd.read_csv(path)
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def render_report(results: Path, config: Path, out: Path) -> None:
    results, out = Path(results), Path(out)
    cfg = yaml.safe_load(Path(config).read_text())
    tables, figures = results / "tables", results / "figures"
    out.parent.mkdir(parents=True, exist_ok=True)
    for csv_file in tables.glob("*.csv"):
        shutil.copyfile(csv_file, out.parent / csv_file.name)

    table1 = [{**r, "psnr": _cells(r, "gopro_psnr", 2), "ssim": _cells(r, "gopro_ssim", 3)}
              for r in _records(tables / "table1.csv")]
    table2 = [{**r, **{m: _cells(r, m, 3 if "ssim" in m else 2)
                       for m in ("gopro_psnr", "gopro_ssim", "kohler_psnr", "kohler_ssim", "time_s")}}
              for r in _records(tables / "table2.csv")]
    timing = _records(tables / "complexity.csv")
    hardware = {k: timing[0][k] for k in ("device", "cpu", "gpu") if timing and timing[0].get(k)}
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
        "deviations": profile_deviations(cfg),
        "notes": reproduction_notes(cfg),
        "table1": table1,
        "table1_diff": _records(tables / "table1_differences.csv"),
        "table2": table2,
        "table2_diff": _records(tables / "table2_differences.csv"),
        "protocol": _records(tables / "metric_protocol.csv"),
        "complexity": timing,
        "methods": methods,
        "images": {p.stem: _embed(p) for p in sorted(figures.glob("*.png"))},
        "csvs": sorted(p.name for p in tables.glob("*.csv")),
        "fmt": _fmt,
    }
    env = jinja2.Environment(loader=jinja2.PackageLoader("reports", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    html = env.get_template("report.html").render(**context)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
