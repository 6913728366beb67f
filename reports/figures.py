"""Draw Fig. 5 (a, b), the training curves and the visual comparisons of Figs. 6-8 (PNG)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from benchmark import registry  # noqa: E402
from benchmark.data import gopro_pairs, kohler_items, read_image, spread_over_scenes  # noqa: E402

DPI = 90
# Panels per row of a comparison figure, and inches per panel: at 90 dpi six panels are about 1000 px wide, so
# the figure is not scaled down in a 1180 px page and its wrapped labels never run into each other.
PANELS_PER_ROW = 6
PANEL_INCHES = 1.85
LABEL_CHARS = 20


def _save(fig: plt.Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def draw_fig5(tables: Path, out: Path) -> None:
    curves, tradeoff = pd.read_csv(tables / "fig5a.csv"), pd.read_csv(tables / "fig5b.csv")
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for k, group in curves.groupby("k"):
        ax.plot(group.epoch, group.psnr, marker="o", ms=3, label=f"k = {k}")
    ax.set(xlabel="epoch", ylabel="PSNR on the test split (dB)", title="Fig. 5(a): PSNR during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, out / "fig5a.png")

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.plot(tradeoff.params / 1e6, tradeoff.psnr, marker="o")
    for _, r in tradeoff.iterrows():
        ax.annotate(f"k={r.k}", (r.params / 1e6, r.psnr), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel="generator parameters (millions)", ylabel="final PSNR on the test split (dB)",
           title="Fig. 5(b): performance vs parameters")
    ax.grid(alpha=0.3)
    _save(fig, out / "fig5b.png")


def draw_training_curves(results: Path, out: Path) -> list[str]:
    """One figure per trained run: losses against iterations, validation PSNR against epochs."""
    names = []
    for run_dir in sorted(p for p in (results / "train").glob("*") if (p / "log.csv").exists()):
        log = pd.read_csv(run_dir / "log.csv")
        val = pd.read_csv(run_dir / "val.csv") if (run_dir / "val.csv").exists() else pd.DataFrame()
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.0))
        for column in ("loss_critic", "loss_adversarial", "loss_content"):
            if column in log and log[column].notna().any():
                axes[0].plot(log.iteration, log[column], label=column.replace("loss_", ""), lw=1)
        axes[0].set(xlabel="generator iteration", ylabel="loss", title=f"{run_dir.name}: losses")
        axes[0].legend(fontsize=8)
        axes[0].grid(alpha=0.3)
        if len(val) and val.psnr.notna().any():
            axes[1].plot(val.epoch, val.psnr, marker="o", ms=3)
        axes[1].set(xlabel="epoch", ylabel="PSNR (dB)", title=f"{run_dir.name}: validation PSNR")
        axes[1].grid(alpha=0.3)
        _save(fig, out / f"curves_{run_dir.name}.png")
        names.append(run_dir.name)
    return names


def zoom_box(sharp: np.ndarray, size: int) -> tuple[int, int, int]:
    """The square window with the most gradient energy: where blur and restoration differ most."""
    gray = sharp.astype(float).mean(axis=2)
    energy = np.hypot(*np.gradient(gray))
    size = min(size, *gray.shape)
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    return int(y), int(x), size


def panel_label(display_name: str) -> str:
    """A figure label: the row's name up to its explanation (a stand-in's label explains itself in the
    tables), wrapped to :data:`LABEL_CHARS` per line."""
    return textwrap.fill(display_name.partition(":")[0].strip(), LABEL_CHARS)


def draw_comparison(panels: Sequence[tuple[str, np.ndarray]], box: tuple[int, int, int], title: str,
                    path: Path) -> None:
    """Each panel's whole image (zoom window outlined) above the window at full resolution, at most
    :data:`PANELS_PER_ROW` panels side by side; more panels continue on further pairs of rows."""
    y, x, s = box
    cols = min(len(panels), PANELS_PER_ROW)
    pairs = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(2 * pairs, cols, figsize=(PANEL_INCHES * cols, 3.9 * pairs), squeeze=False,
                             layout="constrained")  # room for two-line labels between the pairs of rows
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (label, image) in enumerate(panels):
        top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        top.imshow(image)
        top.add_patch(plt.Rectangle((x, y), s, s, fill=False, ec="yellow", lw=1.2))
        top.set_title(label, fontsize=9)
        bottom.imshow(image[y:y + s, x:x + s], interpolation="nearest")
        for ax in (top, bottom):
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def draw_visuals(results: Path, cfg: dict, out: Path) -> list[str]:
    """Figs. 6-8: blurred input, each method's result and the sharp image, with zoomed crops."""
    data = results / "data" if cfg["data"]["source"] == "synthetic" else None
    gopro_root = data / "gopro" if data else Path(cfg["data"]["gopro"]["root"])
    kohler_root = data / "kohler" if data else Path(cfg["data"]["kohler"]["root"])
    n = cfg["report"]["figure_images"]
    available = {m.name: panel_label(m.display_name) for m in registry.available()}
    figures = {
        "fig6": ("gopro", ["resnet", "res2net", "msr2b"], "Fig. 6: residual blocks on the GOPRO test split"),
        "fig7": ("gopro", ["deepdeblur", "deblurgan", "msr2b"], "Fig. 7: comparison on the GOPRO test split"),
        "fig8": ("kohler", ["deepdeblur", "deblurgan", "msr2b"], "Fig. 8: comparison on the Köhler test set"),
        "all_methods": ("gopro", list(available), "Every registered method on the GOPRO test split"),
    }
    pairs = spread_over_scenes(gopro_pairs(gopro_root, "test", cfg["data"]["blur_folder"]), n)
    kohler = kohler_items(kohler_root)[:n]
    written = []
    for name, (dataset, methods, title) in figures.items():
        methods = [m for m in methods if (results / "restored" / m / dataset).exists()]
        items = ([(p.blurred, p.sharp, Path(p.seq) / p.blurred.name) for p in pairs] if dataset == "gopro" else
                 [(k.blurred, k.frames[len(k.frames) // 2], Path(k.blurred.name)) for k in kohler])
        for i, (blurred_path, sharp_path, rel) in enumerate(items):
            sharp = read_image(sharp_path)
            panels = [("blurred input", read_image(blurred_path))]
            panels += [(available[m], read_image(results / "restored" / m / dataset / rel)) for m in methods]
            panels.append(("sharp" if dataset == "gopro" else "sharp (middle frame)", sharp))
            draw_comparison(panels, zoom_box(sharp, max(24, min(sharp.shape[:2]) // 3)),
                            f"{title} ({rel})", out / f"{name}_{i}.png")
            written.append(f"{name}_{i}")
    return written


def write_figures(results: Path, config: Path, out: Path) -> None:
    cfg = yaml.safe_load(Path(config).read_text())
    out.mkdir(parents=True, exist_ok=True)
    draw_fig5(results / "tables", out)
    draw_training_curves(results, out)
    draw_visuals(results, cfg, out)
