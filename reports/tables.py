"""Aggregate per-image scores, timings and training logs into the paper's tables (CSV).

Every number the report shows is written here as CSV first; the HTML only formats these files.
Table values are means over test images; differences come with a paired bootstrap 95% CI.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmark import registry, runs

HEADLINE_SSIM = "ssim_matlab"
NOT_IMPLEMENTED = "not yet implemented"


def paper_numbers() -> pd.DataFrame:
    """The paper's Table 1 and Table 2, as transcribed in ``reports/paper_numbers.csv``."""
    with resources.files("reports").joinpath("paper_numbers.csv").open() as f:
        return pd.read_csv(f)


def read_scores(results: Path, method: str, dataset: str) -> pd.DataFrame | None:
    path = results / "scores" / method / f"{dataset}.csv"
    return pd.read_csv(path) if path.exists() else None


def read_seed_scores(results: Path, method: str, dataset: str, cfg: Mapping[str, Any] | None) -> pd.DataFrame | None:
    """A method's per-image scores of every seed, with a ``seed`` column (runs named by benchmark/runs.py)."""
    if cfg is None:
        scores = read_scores(results, method, dataset)
        return None if scores is None else scores.assign(seed=0)
    frames = [s.assign(seed=seed) for seed, run in runs.seed_runs(method, cfg)
              if (s := read_scores(results, run, dataset)) is not None]
    return pd.concat(frames, ignore_index=True) if frames else None


def _seed_stats(scores: pd.DataFrame | None, column: str) -> tuple[float, float, int]:
    """(mean over seeds of the per-seed mean over images, standard deviation over seeds, seeds)."""
    if scores is None:
        return np.nan, np.nan, 0
    per_seed = scores.groupby("seed")[column].mean()
    return float(per_seed.mean()), float(per_seed.std(ddof=1)) if len(per_seed) > 1 else np.nan, len(per_seed)


def seed_values(results: Path, cfg: Mapping[str, Any] | None) -> pd.DataFrame:
    """Every method's per-seed means (the values behind Tables 1 and 2's mean and std cells)."""
    rows = []
    for m in registry.available():
        for dataset, ssim_col in (("gopro", HEADLINE_SSIM), ("kohler", "ssim")):
            scores = read_seed_scores(results, m.name, dataset, cfg)
            if scores is None:
                continue
            for seed, group in scores.groupby("seed"):
                rows.append({"method": m.name, "seed": seed, "dataset": dataset, "psnr": group.psnr.mean(),
                             "ssim": group[ssim_col].mean(), "images": len(group)})
    return pd.DataFrame(rows, columns=["method", "seed", "dataset", "psnr", "ssim", "images"])


def training_runs(results: Path) -> pd.DataFrame:
    """Each training run's method, seed, device and iterations, from its run.json."""
    rows = []
    for info in sorted((results / "train").glob("*/run.json")):
        r = json.loads(info.read_text())
        rows.append({"run": info.parent.name, "method": r.get("method"), "seed": r.get("settings", {}).get("seed"),
                     "device": r.get("device"), "device_id": r.get("device_id", ""),
                     "iterations": r.get("iterations"), "total_iterations": r.get("total_iterations")})
    return pd.DataFrame(rows, columns=["run", "method", "seed", "device", "device_id", "iterations",
                                       "total_iterations"])


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int, seed: int) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired images and its 95% percentile-bootstrap interval."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def _timing(results: Path, method: str) -> dict[str, Any]:
    path = results / "timing" / f"{method}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _metric_cells(scores: pd.DataFrame | None, prefix: str, ssim_col: str) -> dict[str, Any]:
    """``<prefix>_psnr`` / ``_ssim``: mean over seeds; ``_std``: standard deviation over seeds (NaN for one)."""
    out: dict[str, Any] = {}
    for metric, column in (("psnr", "psnr"), ("ssim", ssim_col)):
        mean, std, n = _seed_stats(scores, column)
        out[f"{prefix}_{metric}"], out[f"{prefix}_{metric}_std"] = mean, std
    out["seeds"] = max(out.get("seeds", 0), n)
    return out


def table2(results: Path, cfg: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per registered method, plus the paper's rows that have no implementation yet."""
    paper = paper_numbers().query("table == 'table2'")
    rows = []
    for m in registry.available():
        gopro = read_seed_scores(results, m.name, "gopro", cfg)
        kohler = read_seed_scores(results, m.name, "kohler", cfg)
        t = _timing(results, m.name)
        published = paper[paper.method == m.name].set_index("metric")["value"].to_dict() or dict(m.reference or {})
        row = {"method": m.name, "row": m.display_name, "kind": m.kind, "status": "reproduced",
               **_metric_cells(gopro, "gopro", HEADLINE_SSIM), **_metric_cells(kohler, "kohler", "ssim"),
               "time_s": t.get("median_s", np.nan), "time_size": f"{t.get('width')}x{t.get('height')}" if t else "",
               "images_gopro": len(gopro[gopro.seed == gopro.seed.iloc[0]]) if gopro is not None else 0,
               "images_kohler": len(kohler[kohler.seed == kohler.seed.iloc[0]]) if kohler is not None else 0}
        for key, value in published.items():
            row[f"paper_{key}"] = value
        rows.append(row)
    for method, group in paper.groupby("method", sort=False):
        if method not in {r["method"] for r in rows}:
            row = {"method": method, "row": group.row.iloc[0], "kind": "", "status": NOT_IMPLEMENTED}
            row |= {f"paper_{k}": v for k, v in group.set_index("metric")["value"].items()}
            rows.append(row)
    order = list(dict.fromkeys(paper.method))  # the paper's rows in the paper's order, then the rest
    rows.sort(key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))
    frame = pd.DataFrame(rows)
    for metric in ("gopro_psnr", "gopro_ssim", "kohler_psnr", "kohler_ssim", "time_s"):
        if f"paper_{metric}" not in frame:
            frame[f"paper_{metric}"] = np.nan
        frame[f"delta_{metric}"] = frame[metric] - frame[f"paper_{metric}"] if metric in frame else np.nan
    return frame


def table1(results: Path, cfg: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The block ablation: ResNet, Res2Net and MSR2B generators on the GOPRO test split."""
    paper = paper_numbers().query("table == 'table1'")
    rows = []
    for method, group in paper.groupby("method", sort=False):
        published = group.set_index("metric")["value"]
        scores = read_seed_scores(results, method, "gopro", cfg)
        rows.append({"method": method, "row": group.row.iloc[0],
                     "status": "reproduced" if scores is not None else NOT_IMPLEMENTED,
                     **_metric_cells(scores, "gopro", HEADLINE_SSIM),
                     "paper_gopro_psnr": published["gopro_psnr"], "paper_gopro_ssim": published["gopro_ssim"]})
    frame = pd.DataFrame(rows)
    for metric in ("gopro_psnr", "gopro_ssim"):
        frame[f"delta_{metric}"] = frame[metric] - frame[f"paper_{metric}"]
    return frame


def differences(results: Path, base: str, others: list[str], dataset: str, n: int, seed: int,
                cfg: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """``base`` minus each other method, per metric, with a paired bootstrap 95% CI over images.

    With several seeds, an image of seed s of ``base`` is paired with the same image of seed s of the
    other method (a classical method, which has no seed, pairs with every seed)."""
    rows = []
    a = read_seed_scores(results, base, dataset, cfg)
    ssim_col = HEADLINE_SSIM if dataset.startswith("gopro") else "ssim"
    for other in others:
        b = read_seed_scores(results, other, dataset, cfg)
        if a is None or b is None:
            continue
        seeded = registry.get(other).kind == "trained" and registry.get(base).kind == "trained"
        merged = a.merge(b.drop(columns="seed") if not seeded else b, on=["seed", "image"] if seeded else "image",
                         suffixes=("_a", "_b"))
        for metric in ("psnr", ssim_col):
            mean, low, high = paired_bootstrap(merged[f"{metric}_a"], merged[f"{metric}_b"], n, seed)
            rows.append({"dataset": dataset, "a": base, "b": other, "metric": metric, "difference": mean,
                         "ci_low": low, "ci_high": high, "images": len(merged)})
    return pd.DataFrame(rows, columns=["dataset", "a", "b", "metric", "difference", "ci_low", "ci_high", "images"])


def metric_protocol(results: Path) -> pd.DataFrame:
    """Table 2's GOPRO columns under every PSNR / SSIM variant and each GOPRO blur folder."""
    rows = []
    for m in registry.available():
        for dataset, folder in (("gopro", "blur"), ("gopro_gamma", "blur_gamma")):
            scores = read_scores(results, m.name, dataset)
            if scores is None:
                continue
            numeric = scores.drop(columns=[c for c in ("method", "image") if c in scores]).mean()
            rows.append({"method": m.name, "row": m.display_name, "input": folder, "images": len(scores),
                         **numeric.to_dict()})
    return pd.DataFrame(rows)


def complexity(results: Path) -> pd.DataFrame:
    rows = []
    for m in registry.available():
        t = _timing(results, m.name)
        if t:
            rows.append({"method": m.name, "row": m.display_name, **t})
    return pd.DataFrame(rows)


def fig5(results: Path, cfg: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curves: run, k, epoch, psnr) and (trade-off: k, params, final psnr) for the k sweep."""
    method = registry.get(cfg["fig5"]["method"])
    default_k = method.defaults.get("k")
    curves, tradeoff = [], []
    for k in cfg["fig5"]["k"]:
        run = method.name if k == default_k else f"{method.name}-k{k}"
        val, info = results / "train" / run / "val.csv", results / "train" / run / "run.json"
        if not val.exists():
            continue
        v = pd.read_csv(val)
        curves.append(v.assign(run=run, k=k))
        params = None
        if info.exists():
            options = json.loads(info.read_text())["options"]
            params = sum(p.numel() for p in method.build(options).parameters())
        tradeoff.append({"run": run, "k": k, "params": params, "psnr": v.psnr.iloc[-1] if len(v) else np.nan})
    return (pd.concat(curves) if curves else pd.DataFrame(columns=["run", "k", "epoch", "psnr"]),
            pd.DataFrame(tradeoff))


def write_tables(results: Path, config: Path, out: Path) -> None:
    cfg = yaml.safe_load(Path(config).read_text())
    out.mkdir(parents=True, exist_ok=True)
    n, seed = cfg["report"]["bootstrap"], cfg["report"]["seed"]
    main = cfg["fig5"]["method"]
    others = [m.name for m in registry.available() if m.name != main]
    curves, tradeoff = fig5(results, cfg)
    products = {
        "table1.csv": table1(results, cfg),
        "table2.csv": table2(results, cfg),
        "table1_differences.csv": differences(results, main, ["resnet", "res2net"], "gopro", n, seed, cfg),
        "table2_differences.csv": pd.concat([differences(results, main, others, d, n, seed, cfg)
                                             for d in ("gopro", "kohler")]),
        "seed_values.csv": seed_values(results, cfg),
        "training_runs.csv": training_runs(results),
        "metric_protocol.csv": metric_protocol(results),
        "complexity.csv": complexity(results),
        "fig5a.csv": curves,
        "fig5b.csv": tradeoff,
    }
    for name, frame in products.items():
        tmp = out / f".{name}.tmp"
        frame.to_csv(tmp, index=False, float_format="%.6g")
        tmp.replace(out / name)
