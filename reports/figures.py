"""Draw Fig. 5 (a, b), the training curves, the paired differences and the visual comparisons of Figs. 6-8.

Charts are PNGs drawn by matplotlib. A chart with nothing to plot says why inside its frame instead of
rendering blank. PSNR axes are in dB as they are (no offset such as "+2.8793e1"), and the caption says
which images a curve was measured on. The visual comparisons are written as pixel-exact PNG panels (the
whole image, then the zoom window repeated by an integer factor, nearest neighbour) listed in
``comparisons.json``; the report lays them out in HTML, so a browser never resamples a crop.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from benchmark import registry  # noqa: E402
from benchmark.data import gopro_pairs, kohler_items, read_image, spread_over_scenes, write_image  # noqa: E402
from reports.numbers import base_decimals, interval_decimals, number, short_name  # noqa: E402

DPI = 90
INPUT = "blurred"  # the identity method: the blurred input, shown once as the first panel
WHOLE_WIDTH = 192  # px: each panel's whole image (an integer multiple for a small image, resampled for a large one)
CROP_WIDTH = 192  # px at most: the zoom window, repeated by the largest integer factor that fits
GOOD, BAD, NEUTRAL = "#1a7f37", "#b42318", "#6b7280"


def _save(fig: plt.Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def _names() -> dict[str, str]:
    return {m.name: short_name(m.display_name) for m in registry.available()}


def db_axis(ax: plt.Axes, axis: str = "y") -> None:
    """Plain dB tick labels: matplotlib would write a flat curve's ticks as offsets from "+2.8793e1"."""
    ax.ticklabel_format(axis=axis, useOffset=False, style="plain")


def nothing_to_plot(ax: plt.Axes, why: str) -> None:
    """Say inside the frame why it is empty, rather than leave a blank chart."""
    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", wrap=True, fontsize=9,
            color=NEUTRAL)
    ax.set_xticks([])
    ax.set_yticks([])


def span_note(values: Sequence[float]) -> str:
    """" (spanning 0.0007 dB)" for a curve flat enough that its ticks need four decimals, else ""."""
    values = [v for v in values if not math.isnan(v)]
    if len(values) < 2:
        return ""
    span = max(values) - min(values)
    return f" (all within {span:.2g} dB)" if 0 < span < 0.05 else ""


def validation_label(cfg: Mapping[str, Any]) -> str:
    n = cfg["data"]["validation_images"]
    return f"PSNR on {n} validation image{'s' if n != 1 else ''} (dB)"


def draw_fig5(tables: Path, out: Path, cfg: Mapping[str, Any]) -> None:
    curves, tradeoff = pd.read_csv(tables / "fig5a.csv"), pd.read_csv(tables / "fig5b.csv")
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    points = curves.dropna(subset=["psnr"]) if len(curves) else curves
    for k, group in points.groupby("k"):
        ax.plot(group.epoch, group.psnr, marker="o", ms=3, label=f"k = {k}")
    if len(points):
        db_axis(ax)
        ax.legend(fontsize=8)
        ax.set(xlabel="epoch", ylabel=validation_label(cfg))
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    else:
        nothing_to_plot(ax, "nothing to plot: no run of the k sweep recorded a validation PSNR\n"
                            "(no val.csv under train/, or validation_images: 0)")
    ax.set_title("Fig. 5(a): validation PSNR during training" + span_note(list(points.psnr) if len(points) else []),
                 fontsize=10)
    ax.grid(alpha=0.3)
    _save(fig, out / "fig5a.png")

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    points = tradeoff.dropna(subset=["psnr", "params"]) if len(tradeoff) else tradeoff
    if len(points):
        ax.plot(points.params / 1e6, points.psnr, marker="o")
        for _, r in points.iterrows():
            ax.annotate(f"k={r.k}", (r.params / 1e6, r.psnr), textcoords="offset points", xytext=(4, 4), fontsize=8)
        db_axis(ax)
        ax.margins(x=0.12, y=0.12)
        ax.set(xlabel="generator parameters (millions)", ylabel="final " + validation_label(cfg))
    else:
        nothing_to_plot(ax, "nothing to plot: no run of the k sweep has a final validation PSNR")
    ax.set_title("Fig. 5(b): PSNR against parameters" + span_note(list(points.psnr) if len(points) else []),
                 fontsize=10)
    ax.grid(alpha=0.3)
    _save(fig, out / "fig5b.png")


def draw_training_curves(results: Path, out: Path, cfg: Mapping[str, Any]) -> list[str]:
    """One figure per trained run: losses against iterations, validation PSNR against epochs."""
    names, methods = [], _names()
    for run_dir in sorted(p for p in (results / "train").glob("*") if (p / "log.csv").exists()):
        info = run_dir / "run.json"
        method = json.loads(info.read_text()).get("method", run_dir.name) if info.exists() else run_dir.name
        title = f"{methods.get(method, method)} ({run_dir.name})"
        log = pd.read_csv(run_dir / "log.csv")
        val = pd.read_csv(run_dir / "val.csv") if (run_dir / "val.csv").exists() else pd.DataFrame()
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.0))
        drawn = False
        for column in ("loss_critic", "loss_adversarial", "loss_content"):
            if column in log and log[column].notna().any():
                series = log[["iteration", column]].dropna()
                axes[0].plot(series.iteration, series[column], label=column.replace("loss_", ""), lw=1,
                             marker="o" if len(series) < 30 else None, ms=3)
                drawn = True
        if drawn:
            axes[0].legend(fontsize=8)
            axes[0].set(xlabel="generator iteration", ylabel="loss")
        else:
            nothing_to_plot(axes[0], "no losses logged: the run stopped before its first log row\n"
                                     f"(every train.log_every = {cfg['train'].get('log_every')} iterations)")
        axes[0].set_title(f"{title}: losses ({len(log)} logged points)", fontsize=10)
        axes[0].grid(alpha=0.3)
        points = val.dropna(subset=["psnr"]) if len(val) and "psnr" in val else pd.DataFrame()
        if len(points):
            axes[1].plot(points.epoch, points.psnr, marker="o", ms=3)
            db_axis(axes[1])
            axes[1].set(xlabel="epoch", ylabel=validation_label(cfg))
            axes[1].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        else:
            nothing_to_plot(axes[1], "no validation PSNR: this network does not\noutput a deblurred image "
                                     "(it is scored\nafter its restoration instead)" if len(val) else
                                     "no validation PSNR recorded\n(validation_images: 0)")
        axes[1].set_title(f"{title}: validation PSNR" + span_note(list(points.psnr) if len(points) else []),
                          fontsize=10)
        axes[1].grid(alpha=0.3)
        _save(fig, out / f"curves_{run_dir.name}.png")
        names.append(run_dir.name)
    return names


def _difference_order(rows: pd.DataFrame) -> list[str]:
    """The blurred input first, then the block ablations, then every other method in registry order."""
    present = list(dict.fromkeys(rows.b))
    first = [m for m in (INPUT, "resnet", "res2net") if m in present]
    return first + [m for m in present if m not in first]


def draw_differences(tables: Path, out: Path, cfg: Mapping[str, Any]) -> list[str]:
    """One chart per test set: Ours minus each method, PSNR and SSIM, each with its paired bootstrap 95% CI;
    green where the interval lies above zero, red below, grey where it covers zero."""
    path = tables / "table2_differences.csv"
    frame = pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()
    names, written = _names(), []
    main = cfg["fig5"]["method"]
    for dataset, title in (("gopro", "GOPRO test set"), ("kohler", "Köhler test set")):
        rows = frame[frame.dataset == dataset] if len(frame) else frame
        if not len(rows):
            continue
        order = _difference_order(rows)
        metrics = list(dict.fromkeys(rows.metric))
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 0.9 + 0.32 * len(order)),
                                 squeeze=False, sharey=True)
        for ax, metric in zip(axes[0], metrics, strict=True):
            part = rows[rows.metric == metric].set_index("b")
            for y, method in enumerate(order):
                if method not in part.index:
                    continue
                r = part.loc[method]
                colour = GOOD if r.ci_low > 0 else BAD if r.ci_high < 0 else NEUTRAL
                ax.errorbar(r.difference, y, xerr=[[r.difference - r.ci_low], [r.ci_high - r.difference]], fmt="o",
                            color=colour, ms=4, capsize=3, lw=1.2)
                d = interval_decimals(r.difference, r.ci_low, r.ci_high, base_decimals(metric))
                ax.annotate(number(r.difference, d, sign=True), (r.ci_high, y), xytext=(4, 0),
                            textcoords="offset points", va="center", fontsize=7.5, color=colour)
            ax.axvline(0, color="black", lw=0.8)
            ax.set_yticks(range(len(order)), [names.get(m, m) for m in order], fontsize=8.5)
            ax.margins(x=0.25)
            unit = "PSNR (dB)" if metric == "psnr" else f"SSIM ({metric.removeprefix('ssim_')})"
            ax.set_xlabel(f"{names.get(main, main)} − method, {unit}", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
        axes[0, 0].invert_yaxis()  # the axes share y: once turns all of them, the first method on top
        images = int(rows.images.max())
        fig.suptitle(f"Paired differences on the {title} ({images} images), 95% bootstrap intervals: "
                     "right of 0 = ours better", fontsize=10)
        _save(fig, out / f"differences_{dataset}.png")
        written.append(f"differences_{dataset}")
    return written


def zoom_box(sharp: np.ndarray, size: int) -> tuple[int, int, int]:
    """The square window with the most gradient energy: where blur and restoration differ most."""
    gray = sharp.astype(float).mean(axis=2)
    energy = np.hypot(*np.gradient(gray))
    size = min(size, *gray.shape)
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    return int(y), int(x), size


def overview(image: np.ndarray, box: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    """The whole image at about :data:`WHOLE_WIDTH` px with the zoom window outlined in yellow, and how it
    was scaled: repeated by an integer factor when small, area-averaged when large."""
    h, w = image.shape[:2]
    if w <= WHOLE_WIDTH:
        factor = max(1, WHOLE_WIDTH // w)
        scaled, how = image.repeat(factor, 0).repeat(factor, 1), f"×{factor}" if factor > 1 else "native"
        s = float(factor)
    else:
        s = WHOLE_WIDTH / w
        size = (WHOLE_WIDTH, max(1, round(h * s)))
        scaled, how = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX)), f"÷{w / WHOLE_WIDTH:.1f}"
    scaled = scaled.copy()
    y, x, n = box
    top, left = int(y * s), int(x * s)
    bottom, right = min(scaled.shape[0], int((y + n) * s)) - 1, min(scaled.shape[1], int((x + n) * s)) - 1
    yellow = np.array([255, 214, 0], np.uint8)
    scaled[top:bottom + 1, [left, right]] = yellow
    scaled[[top, bottom], left:right + 1] = yellow
    return scaled, how


def crop_factor(size: int) -> int:
    """The integer factor the zoom window is repeated by (nearest neighbour), at most :data:`CROP_WIDTH` px."""
    return max(1, CROP_WIDTH // size)


def draw_comparison(panels: Sequence[tuple[str, np.ndarray]], box: tuple[int, int, int], out: Path,
                    stem: str) -> dict[str, Any]:
    """Write each panel's overview and zoom window as PNGs; their record for ``comparisons.json``."""
    y, x, size = box
    factor = crop_factor(size)
    record: dict[str, Any] = {"crop": size, "factor": factor, "panels": []}
    for i, (name, image) in enumerate(panels):
        whole, how = overview(image, box)
        crop = image[y:y + size, x:x + size].repeat(factor, 0).repeat(factor, 1)
        write_image(out / f"{stem}_p{i}_whole.png", whole)
        write_image(out / f"{stem}_p{i}_crop.png", crop)
        record["panels"].append({"label": name, "whole": f"{stem}_p{i}_whole", "crop": f"{stem}_p{i}_crop"})
        record["whole_scale"] = how
    return record


def draw_visuals(results: Path, cfg: Mapping[str, Any], out: Path) -> list[dict[str, Any]]:
    """Figs. 6-8 and every method at once: the blurred input and the sharp image side by side, then each
    method once, every panel with its zoom window at an integer scale."""
    data = results / "data" if cfg["data"]["source"] == "synthetic" else None
    gopro_root = data / "gopro" if data else Path(cfg["data"]["gopro"]["root"])
    kohler_root = data / "kohler" if data else Path(cfg["data"]["kohler"]["root"])
    n = cfg["report"]["figure_images"]
    names = _names()
    methods = [m for m in names if m != INPUT]
    figures = {
        "fig6": ("gopro", ["resnet", "res2net", "msr2b"], "Fig. 6: residual blocks, GOPRO test set"),
        "fig7": ("gopro", ["deepdeblur", "deblurgan", "msr2b"], "Fig. 7: comparison on the GOPRO test set"),
        "fig8": ("kohler", ["deepdeblur", "deblurgan", "msr2b"], "Fig. 8: comparison on the Köhler test set"),
        "all_methods": ("gopro", methods, "Every registered method on the GOPRO test set"),
    }
    pairs = spread_over_scenes(gopro_pairs(gopro_root, "test", cfg["data"]["blur_folder"]), n)
    kohler = kohler_items(kohler_root)[:n]
    written = []
    for name, (dataset, wanted, title) in figures.items():
        shown = [m for m in wanted if (results / "restored" / m / dataset).exists()]
        items = ([(p.blurred, p.sharp, Path(p.seq) / p.blurred.name) for p in pairs] if dataset == "gopro" else
                 [(k.blurred, k.frames[len(k.frames) // 2], Path(k.blurred.name)) for k in kohler])
        for i, (blurred_path, sharp_path, rel) in enumerate(items):
            sharp = read_image(sharp_path)
            panels = [("blurred input", read_image(blurred_path)),
                      ("sharp" if dataset == "gopro" else "sharp (middle frame)", sharp)]
            panels += [(names[m], read_image(results / "restored" / m / dataset / rel)) for m in shown]
            stem = f"{name}_{i}"
            record = draw_comparison(panels, zoom_box(sharp, max(24, min(sharp.shape[:2]) // 3)), out, stem)
            written.append({"name": stem, "figure": name, "title": title, "image": rel.as_posix(), **record})
    return written


def write_figures(results: Path, config: Path, out: Path) -> None:
    cfg = yaml.safe_load(Path(config).read_text())
    out.mkdir(parents=True, exist_ok=True)
    draw_fig5(results / "tables", out, cfg)
    draw_training_curves(results, out, cfg)
    draw_differences(results / "tables", out, cfg)
    comparisons = draw_visuals(results, cfg, out)
    tmp = out / ".comparisons.json.tmp"
    tmp.write_text(json.dumps(comparisons, indent=1))
    tmp.replace(out / "comparisons.json")
