"""Aggregate per-image scores, timings and training logs into the paper's tables (CSV).

Every number the report shows is written here as CSV first; the HTML only formats these files.
Table values are means over test images; differences come with a paired bootstrap 95% CI.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmark import registry, runs
from benchmark.evaluate import generalisation_sets, read_set_scores
from benchmark.files import write_csv

HEADLINE_SSIM = "ssim_matlab"
KOHLER_SSIM = "ssim_metrix"  # Table 2's Köhler SSIM: metrix_mux 'SSIM'; 'MSSIM' is in the metric protocol table
KOHLER_MS_SSIM = "ms_ssim_metrix"
NOT_IMPLEMENTED = "not yet implemented"
INPUT = "blurred"  # the identity method: the blurred input scored as if it were a result
# The paper's training length: 300 epochs of one 256x256 crop of each of GOPRO's 2103 training pairs, batch 1.
PAPER_ITERATIONS = 300 * 2103
SCORED = ("gopro_psnr", "gopro_ssim", "kohler_psnr", "kohler_ssim")
# The SSIM each test set's own protocol reports: MATLAB's 3-D SSIM on GOPRO and HIDE, metrix_mux on Köhler,
# RealBlur's masked per-channel SSIM after its ECC alignment (benchmark/evaluate.py TEST_SETS).
SSIM_COLUMN = {"gopro": HEADLINE_SSIM, "gopro_gamma": HEADLINE_SSIM, "kohler": KOHLER_SSIM, "hide": HEADLINE_SSIM,
               "realblur-j": "ssim", "realblur-r": "ssim"}
GENERALISATION_SETS = ("gopro", "hide", "realblur-j", "realblur-r")
GENERALISATION_COLUMNS = ["method", "row", "weights", "testset", "psnr", "ssim", "images", "published_psnr",
                          "published_ssim", "published_source"]
PAPER_TIME_SIZE = "1280x720"  # the size of the paper's inference times (720p GOPRO frames)


def paper_numbers() -> pd.DataFrame:
    """The paper's Table 1 and Table 2, as transcribed in ``reports/paper_numbers.csv``."""
    with resources.files("reports").joinpath("paper_numbers.csv").open() as f:
        return pd.read_csv(f)


def read_scores(results: Path, method: str, dataset: str) -> pd.DataFrame | None:
    """A method's per-image scores on one test set: the union of its score shards, checked to hold every
    image exactly once (benchmark/evaluate.py); None when it was not scored on that set."""
    return read_set_scores(results / "scores" / method, dataset)


def read_kohler_scores(results: Path, method: str) -> pd.DataFrame | None:
    scores = read_scores(results, method, "kohler")
    if scores is not None and KOHLER_SSIM not in scores:
        raise ValueError(f"{results / 'scores' / method}: its Köhler scores have no {KOHLER_SSIM} column; they "
                         "were scored before Köhler's protocol was corrected, rerun them (snakemake -R score)")
    return scores


def read_seed_scores(results: Path, method: str, dataset: str, cfg: Mapping[str, Any] | None) -> pd.DataFrame | None:
    """A method's per-image scores of every seed, with a ``seed`` column (runs named by benchmark/runs.py)."""
    read = read_kohler_scores if dataset == "kohler" else partial(read_scores, dataset=dataset)
    if cfg is None:
        scores = read(results, method)
        return None if scores is None else scores.assign(seed=0)
    frames = [s.assign(seed=seed) for seed, run in runs.seed_runs(method, cfg)
              if (s := read(results, run)) is not None]
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
        for dataset, ssim_col in (("gopro", HEADLINE_SSIM), ("kohler", KOHLER_SSIM)):
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


def training_progress(results: Path) -> pd.DataFrame:
    """How far each trained network got, from its ``run.json``: iterations run against its own schedule
    and against the paper's 630,900, with the batch, crop and loss conventions it used, and the training
    loop's one line when the network ended as the identity (collapsed, or not yet moved: ``health``)."""
    rows = []
    for info_path in sorted((results / "train").glob("*/run.json")):
        info = json.loads(info_path.read_text())
        settings = info.get("settings", {})
        batch = int(settings.get("batch_size", 1))
        iterations = int(info.get("iterations", 0))
        crops = crops_seen(iterations, batch, info.get("training_pairs"))
        rows.append({"run": info_path.parent.name, "method": info.get("method", info_path.parent.name),
                     "iterations": iterations, "total_iterations": info.get("total_iterations"),
                     "batch_size": batch, "crop": settings.get("crop"), "crops_seen": crops,
                     "paper_iterations": PAPER_ITERATIONS, "fraction_of_paper": crops / PAPER_ITERATIONS,
                     **{k: settings.get(k, "") for k in ("gp_reduction", "perceptual_reduction", "critic_batches")},
                     "health": (info.get("health") or {}).get("line") or ""})
    return pd.DataFrame(rows, columns=["run", "method", "iterations", "total_iterations", "batch_size", "crop",
                                       "crops_seen", "paper_iterations", "fraction_of_paper", "gp_reduction",
                                       "perceptual_reduction", "critic_batches", "health"])


def crops_seen(iterations: int, batch: int, pairs: int | None) -> int:
    """Training crops behind ``iterations`` batches: a batch never spans two epochs, so the last batch of
    an epoch is short when ``batch`` does not divide the number of pairs (unknown: every batch full)."""
    if not pairs:
        return iterations * batch
    per_epoch = math.ceil(pairs / batch)
    return iterations // per_epoch * pairs + min(iterations % per_epoch * batch, pairs)


def _iterations(progress: pd.DataFrame, method: str) -> float:
    row = progress[progress.run == method]
    return float(row.iterations.iloc[0]) if len(row) else np.nan


def mark_below_input(frame: pd.DataFrame) -> pd.DataFrame:
    """``below_input_<metric>``: True where a method scores below the blurred input's row on that metric."""
    reference = frame[frame.method == INPUT]
    for metric in SCORED:
        if metric not in frame:
            continue
        base = reference[metric].iloc[0] if len(reference) else np.nan
        frame[f"below_input_{metric}"] = (frame[metric] < base) & (frame.method != INPUT)
    return frame


def _timing(results: Path, method: str) -> dict[str, Any]:
    path = results / "timing" / f"{method}.json"
    return json.loads(path.read_text()) if path.exists() else {}


RELEASE_PREFIX = "authors:"


def _measured(results: Path, name: str) -> dict[str, Any]:
    """Table 2's measured columns of one scored product under ``results`` (scores/NAME, timing/NAME.json)."""
    gopro, kohler, t = read_scores(results, name, "gopro"), read_kohler_scores(results, name), _timing(results, name)
    return {"gopro_psnr": gopro.psnr.mean() if gopro is not None else np.nan,
            "gopro_ssim": gopro[HEADLINE_SSIM].mean() if gopro is not None else np.nan,
            "kohler_psnr": kohler.psnr.mean() if kohler is not None else np.nan,
            "kohler_ssim": kohler[KOHLER_SSIM].mean() if kohler is not None else np.nan,
            "time_s": t.get("median_s", np.nan), "time_size": f"{t.get('width')}x{t.get('height')}" if t else "",
            "images_gopro": len(gopro) if gopro is not None else 0,
            "images_kohler": len(kohler) if kohler is not None else 0}


def release_rows(results: Path) -> list[dict[str, Any]]:
    """One row per authors' release scored under ``results/releases/`` (rules/weights.smk)."""
    from benchmark.releases import RELEASES

    rows = []
    for name, rel in RELEASES.items():
        if not (results / "releases" / "scores" / name).is_dir():
            continue
        method = registry.get(rel.method)
        label = f"{method.display_name}, {name}" if name != rel.method else method.display_name
        rows.append({"method": RELEASE_PREFIX + name, "row": f"{label} — authors' weights", "kind": method.kind,
                     "status": "reproduced", "weights": "authors", "base": rel.method,
                     **_measured(results / "releases", name)})
    return rows


def _metric_cells(scores: pd.DataFrame | None, prefix: str, ssim_col: str) -> dict[str, Any]:
    """``<prefix>_psnr`` / ``_ssim``: mean over seeds; ``_std``: standard deviation over seeds (NaN for one)."""
    out: dict[str, Any] = {}
    for metric, column in (("psnr", "psnr"), ("ssim", ssim_col)):
        mean, std, n = _seed_stats(scores, column)
        out[f"{prefix}_{metric}"], out[f"{prefix}_{metric}_std"] = mean, std
    out["seeds"] = max(out.get("seeds", 0), n)
    return out


def table2(results: Path, cfg: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per registered method (retrained by this suite), an "authors' weights" row beside it for
    each of its released models that was scored, the paper's rows that have no implementation yet, and
    each row's own publication's GOPRO numbers (``published_*``, with their source). The time's delta
    against the paper is given only where it was measured at the paper's size (1280x720)."""
    numbers = paper_numbers()
    paper = numbers.query("table == 'table2'")
    published = numbers.query("table == 'published'")
    progress = training_progress(results)
    rows = []
    for m in registry.available():
        gopro = read_seed_scores(results, m.name, "gopro", cfg)
        kohler = read_seed_scores(results, m.name, "kohler", cfg)
        t = _timing(results, m.name)
        reported = paper[paper.method == m.name].set_index("metric")["value"].to_dict() or dict(m.reference or {})
        row = {"method": m.name, "row": m.display_name, "kind": m.kind, "status": "reproduced",
               "weights": "retrained" if m.kind == "trained" else "", "base": m.name,
               **_metric_cells(gopro, "gopro", HEADLINE_SSIM), **_metric_cells(kohler, "kohler", KOHLER_SSIM),
               "time_s": t.get("median_s", np.nan), "time_size": f"{t.get('width')}x{t.get('height')}" if t else "",
               "images_gopro": len(gopro[gopro.seed == gopro.seed.iloc[0]]) if gopro is not None else 0,
               "images_kohler": len(kohler[kohler.seed == kohler.seed.iloc[0]]) if kohler is not None else 0,
               "iterations": _iterations(progress, m.name) if m.kind == "trained" else np.nan}
        for key, value in reported.items():
            row[f"paper_{key}"] = value
        rows.append(row)
    rows += release_rows(results)
    for method, group in paper.groupby("method", sort=False):
        if method not in {r["method"] for r in rows}:
            row = {"method": method, "row": group.row.iloc[0], "kind": "", "status": NOT_IMPLEMENTED, "base": method}
            row |= {f"paper_{k}": v for k, v in group.set_index("metric")["value"].items()}
            rows.append(row)
    for row in rows:
        own = published[published.method == row["method"]]
        for metric, value in own.set_index("metric")["value"].items():
            row[f"published_{metric}"] = value
        row["published_source"] = "; ".join(dict.fromkeys(own.source)) if len(own) else ""
    order = list(dict.fromkeys(paper.method))  # the paper's rows in the paper's order, then the rest
    position = {r["method"]: i for i, r in enumerate(rows)}
    rows.sort(key=lambda r: (order.index(r["base"]) if r["base"] in order else len(order),
                             position[r["base"]] if r["base"] in position else 0, r.get("weights") == "authors",
                             r["method"]))
    frame = pd.DataFrame(rows)
    for metric in ("gopro_psnr", "gopro_ssim", "kohler_psnr", "kohler_ssim", "time_s"):
        if f"paper_{metric}" not in frame:
            frame[f"paper_{metric}"] = np.nan
        frame[f"delta_{metric}"] = frame[metric] - frame[f"paper_{metric}"] if metric in frame else np.nan
    for metric in ("gopro_psnr", "gopro_ssim"):
        if f"published_{metric}" not in frame:
            frame[f"published_{metric}"] = np.nan
    if "time_size" in frame:
        frame.loc[frame.time_size != PAPER_TIME_SIZE, "delta_time_s"] = np.nan
    return mark_below_input(frame)


def table1(results: Path, cfg: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The block ablation: ResNet, Res2Net and MSR2B generators on the GOPRO test split, after the
    blurred input's row (the floor a result must clear)."""
    paper = paper_numbers().query("table == 'table1'")
    progress = training_progress(results)
    blurred = read_scores(results, INPUT, "gopro")
    rows = [{"method": INPUT, "row": "Blurred input (no restoration)",
             "status": "reproduced" if blurred is not None else NOT_IMPLEMENTED,
             "gopro_psnr": blurred.psnr.mean() if blurred is not None else np.nan,
             "gopro_ssim": blurred[HEADLINE_SSIM].mean() if blurred is not None else np.nan,
             "paper_gopro_psnr": np.nan, "paper_gopro_ssim": np.nan, "iterations": np.nan}]
    for method, group in paper.groupby("method", sort=False):
        published = group.set_index("metric")["value"]
        scores = read_seed_scores(results, method, "gopro", cfg)
        rows.append({"method": method, "row": group.row.iloc[0],
                     "status": "reproduced" if scores is not None else NOT_IMPLEMENTED,
                     **_metric_cells(scores, "gopro", HEADLINE_SSIM),
                     "paper_gopro_psnr": published["gopro_psnr"], "paper_gopro_ssim": published["gopro_ssim"],
                     "iterations": _iterations(progress, method)})
    frame = pd.DataFrame(rows)
    for metric in ("gopro_psnr", "gopro_ssim"):
        frame[f"delta_{metric}"] = frame[metric] - frame[f"paper_{metric}"]
    return mark_below_input(frame)


def differences(results: Path, base: str, others: list[str], dataset: str, n: int, seed: int,
                cfg: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """``base`` minus each other method, per metric, with a paired bootstrap 95% CI over images.

    With several seeds, an image of seed s of ``base`` is paired with the same image of seed s of the
    other method (a classical method, which has no seed, pairs with every seed)."""
    rows = []
    a = read_seed_scores(results, base, dataset, cfg)
    ssim_col = SSIM_COLUMN[dataset]
    for other in others:
        release = other.startswith(RELEASE_PREFIX)  # an authors' release: one set of weights, no seeds
        b = (read_scores(results / "releases", other.removeprefix(RELEASE_PREFIX), dataset) if release
             else read_seed_scores(results, other, dataset, cfg))
        if a is None or b is None:
            continue
        if release:
            b = b.assign(seed=0)
        seeded = not release and registry.get(other).kind == "trained" and registry.get(base).kind == "trained"
        merged = a.merge(b.drop(columns="seed") if not seeded else b, on=["seed", "image"] if seeded else "image",
                         suffixes=("_a", "_b"))
        for metric in ("psnr", ssim_col):
            mean, low, high = paired_bootstrap(merged[f"{metric}_a"], merged[f"{metric}_b"], n, seed)
            rows.append({"dataset": dataset, "a": base, "b": other, "metric": metric, "difference": mean,
                         "ci_low": low, "ci_high": high, "images": len(merged)})
    return pd.DataFrame(rows, columns=["dataset", "a", "b", "metric", "difference", "ci_low", "ci_high", "images"])


def generalisation_numbers() -> pd.DataFrame:
    """Published GOPRO, HIDE and RealBlur numbers of GOPRO-trained models, with their sources
    (``reports/generalisation_numbers.csv``)."""
    with resources.files("reports").joinpath("generalisation_numbers.csv").open() as f:
        return pd.read_csv(f)


def generalisation(results: Path, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """Beyond the paper (SPEC section 10): every evaluated method and authors' release on GOPRO and on each
    generalisation set the profile scores, PSNR and each set's own SSIM (mean over seeds), with the published
    number of the same model where one exists and its source. Empty when the profile scores no such set."""
    if not generalisation_sets(cfg):
        return pd.DataFrame(columns=GENERALISATION_COLUMNS)
    published = generalisation_numbers().set_index(["method", "testset"])
    names = [(m.name, m.display_name, "retrained" if m.kind == "trained" else "") for m in registry.available()]
    names += [(r["method"], r["row"], "authors") for r in release_rows(results)]
    rows: list[dict[str, Any]] = []
    for name, label, weights in names:
        for testset in ("gopro", *generalisation_sets(cfg)):
            release = name.startswith(RELEASE_PREFIX)
            scores = (read_scores(results / "releases", name.removeprefix(RELEASE_PREFIX), testset) if release
                      else read_seed_scores(results, name, testset, cfg))
            if scores is None:
                continue
            if release:
                scores = scores.assign(seed=0)
            psnr, _, _ = _seed_stats(scores, "psnr")
            ssim, _, _ = _seed_stats(scores, SSIM_COLUMN[testset])
            key = (name.removeprefix(RELEASE_PREFIX), testset)
            own = published.loc[key] if key in published.index else None
            rows.append({"method": name, "row": label, "weights": weights, "testset": testset, "psnr": psnr,
                         "ssim": ssim, "images": int((scores.seed == scores.seed.iloc[0]).sum()),
                         "published_psnr": own["psnr"] if own is not None else np.nan,
                         "published_ssim": own["ssim"] if own is not None else np.nan,
                         "published_source": own["source"] if own is not None else ""})
    return pd.DataFrame(rows, columns=GENERALISATION_COLUMNS)


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
    for r in release_rows(results):
        scores = read_scores(results / "releases", r["method"].removeprefix(RELEASE_PREFIX), "gopro")
        if scores is not None:
            numeric = scores.drop(columns=[c for c in ("method", "image") if c in scores]).mean()
            rows.append({"method": r["method"], "row": r["row"], "input": "blur", "images": len(scores),
                         **numeric.to_dict()})
    return pd.DataFrame(rows)


def kohler_protocol(results: Path) -> pd.DataFrame:
    """Table 2's Köhler columns with both of the benchmark's SSIMs: metrix_mux 'SSIM' and 'MSSIM'."""
    rows = []
    for m in registry.available():
        scores = read_kohler_scores(results, m.name)
        if scores is not None:
            rows.append({"method": m.name, "row": m.display_name, "images": len(scores), "psnr": scores.psnr.mean(),
                         KOHLER_SSIM: scores[KOHLER_SSIM].mean(), KOHLER_MS_SSIM: scores[KOHLER_MS_SSIM].mean()})
    return pd.DataFrame(rows, columns=["method", "row", "images", "psnr", KOHLER_SSIM, KOHLER_MS_SSIM])


def complexity(results: Path) -> pd.DataFrame:
    """Parameters, MACs and times per method; each time also as a ratio to DeblurGAN's, beside the
    paper's time and its ratio (MSR2B / DeblurGAN: 0.45 s / 0.85 s = 0.53 in Table 2): hardware
    cancels out of a ratio, so it compares across machines where the seconds do not."""
    paper = paper_numbers().query("table == 'table2' and metric == 'time_s'").set_index("method")["value"]
    reference = _timing(results, "deblurgan").get("median_s")
    rows = []
    for m in registry.available():
        t = _timing(results, m.name)
        if t:
            published = paper.get(m.name, np.nan)
            rows.append({"method": m.name, "row": m.display_name, **t,
                         "vs_deblurgan": t["median_s"] / reference if reference else np.nan,
                         "paper_time_s": published, "paper_vs_deblurgan": published / paper.get("deblurgan", np.nan)})
    for r in release_rows(results):
        t = _timing(results / "releases", r["method"].removeprefix(RELEASE_PREFIX))
        if t:
            rows.append({**t, "method": r["method"], "row": r["row"],
                         "vs_deblurgan": t["median_s"] / reference if reference else np.nan})
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
        if info.exists():  # counted by `deblurbench train`; built again only for a record older than that
            record = json.loads(info.read_text())
            params = record.get("params") or sum(p.numel() for p in method.build(record["options"]).parameters())
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
        "generalisation.csv": generalisation(results, cfg),
        "generalisation_differences.csv": pd.concat(
            [differences(results, main, others + [r["method"] for r in release_rows(results)], d, n, seed, cfg)
             for d in (GENERALISATION_SETS if generalisation_sets(cfg) else ())]
            or [differences(results, main, [], "gopro", n, seed, cfg)]),
        "seed_values.csv": seed_values(results, cfg),
        "training_runs.csv": training_runs(results),
        "metric_protocol.csv": metric_protocol(results),
        "kohler_protocol.csv": kohler_protocol(results),
        "complexity.csv": complexity(results),
        "training.csv": training_progress(results),
        "fig5a.csv": curves,
        "fig5b.csv": tradeoff,
    }
    for name, frame in products.items():
        tmp = out / f".{name}.tmp"
        write_csv(frame, tmp, float_format="%.6g")  # names are text to a spreadsheet, never formulas
        tmp.replace(out / name)
