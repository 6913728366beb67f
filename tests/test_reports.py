"""reports/: the paired bootstrap, Table 1 / Table 2 from hand-written score CSVs, the deviation banner
from a hand-written configuration, and a rendered report that says what its numbers are."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scored import write_scores

from reports import render, tables

REPO = Path(__file__).resolve().parents[1]


# -- the paired bootstrap ---------------------------------------------------------------------------------
def test_bootstrap_of_a_constant_difference_is_that_difference():
    a = np.array([30.0, 28.5, 31.25, 29.0])
    mean, low, high = tables.paired_bootstrap(a, a - 0.75, n=500, seed=0)
    assert mean == low == high == pytest.approx(0.75)
    assert tables.paired_bootstrap(a - 0.75, a, n=500, seed=0)[0] == pytest.approx(-0.75)  # a - b, not b - a


def test_bootstrap_of_two_images_has_the_exact_interval():
    # differences 0 and 1: a resample of two draws has mean 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5th percentile is 0 and the 97.5th is 1
    mean, low, high = tables.paired_bootstrap(np.array([5.0, 6.0]), np.array([5.0, 5.0]), n=4000, seed=1)
    assert (mean, low, high) == (0.5, 0.0, 1.0)


def test_bootstrap_interval_matches_the_normal_approximation():
    # 400 differences of +-1 (mean 0, sd 1): the mean's bootstrap sd is 1/20, so the interval is about +-0.098
    diff = np.tile([1.0, -1.0], 200)
    mean, low, high = tables.paired_bootstrap(diff, np.zeros_like(diff), n=20000, seed=2)
    assert mean == 0.0
    assert low == pytest.approx(-1.96 / 20, abs=0.006) and high == pytest.approx(1.96 / 20, abs=0.006)


# -- Table 1 and Table 2 from hand-written scores ---------------------------------------------------------
def _scores(results: Path, method: str, psnr: list[float], ssim: list[float]) -> None:
    write_scores(results / "scores" / method, {"gopro": pd.DataFrame({
        "method": method, "image": [f"GOPR0384_11_00/{i:06d}.png" for i in range(len(psnr))],
        "psnr": psnr, "psnr_y": psnr, "ssim_matlab": ssim, "ssim_wang": ssim, "ssim_y": ssim})})


def _run(results: Path, run: str, iterations: int, batch: int, crop: int, **settings) -> None:
    folder = results / "train" / run
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({
        "method": run, "iterations": iterations, "total_iterations": iterations,
        "settings": {"batch_size": batch, "crop": crop, **settings}}))


def _timing(results: Path, method: str, width: int, height: int, median: float) -> None:
    (results / "timing").mkdir(parents=True, exist_ok=True)
    (results / "timing" / f"{method}.json").write_text(json.dumps(
        {"method": method, "width": width, "height": height, "runs": 10, "warmup": 1, "median_s": median,
         "params": 1000, "macs": 2e9, "device": "cpu", "cpu": "a hand-written CPU"}))


@pytest.fixture()
def results(tmp_path) -> Path:
    r = tmp_path / "results"
    _scores(r, "blurred", [26.0, 24.0], [0.80, 0.70])
    _scores(r, "msr2b", [27.0, 26.0], [0.85, 0.75])    # 26.5 dB: above the input
    _scores(r, "resnet", [25.0, 24.0], [0.79, 0.69])   # 24.5 dB: below the input
    _scores(r, "res2net", [26.0, 25.0], [0.80, 0.70])  # 25.5 dB, SSIM equal to the input's: not below
    _scores(r, "deepdeblur", [28.0, 27.0], [0.9, 0.8])
    for run, iterations, batch in (("msr2b", 120, 1), ("resnet", 120, 1), ("res2net", 60, 1), ("deepdeblur", 8, 16)):
        _run(r, run, iterations, batch, 64, gp_reduction="sum", perceptual_reduction="chw", critic_batches="same")
    _timing(r, "msr2b", 1280, 720, 0.5)
    _timing(r, "deepdeblur", 192, 108, 0.25)
    return r


def test_table1_has_the_blurred_input_first_and_marks_results_below_it(results):
    t1 = tables.table1(results).set_index("method")
    assert list(t1.index) == ["blurred", "resnet", "res2net", "msr2b"]
    assert t1.loc["blurred", "gopro_psnr"] == 25.0 and t1.loc["msr2b", "gopro_psnr"] == 26.5
    assert t1.loc["msr2b", "gopro_ssim"] == pytest.approx(0.80)
    assert t1.loc["msr2b", "delta_gopro_psnr"] == pytest.approx(26.5 - 29.13)  # paper's Table 1: 29.13 dB
    assert t1.below_input_gopro_psnr.to_dict() == {"blurred": False, "resnet": True, "res2net": False,
                                                   "msr2b": False}
    assert t1.below_input_gopro_ssim.to_dict() == {"blurred": False, "resnet": True, "res2net": False,
                                                   "msr2b": False}
    assert t1.loc["msr2b", "iterations"] == 120 and t1.loc["res2net", "iterations"] == 60
    assert np.isnan(t1.loc["blurred", "iterations"])


def test_table2_aggregates_marks_and_compares_times_only_at_the_papers_size(results):
    t2 = tables.table2(results).set_index("method")
    assert t2.loc["deepdeblur", "gopro_psnr"] == 27.5 and t2.loc["deepdeblur", "images_gopro"] == 2
    assert t2.loc["deepdeblur", "delta_gopro_psnr"] == pytest.approx(27.5 - 28.93)
    assert not t2.loc["deepdeblur", "below_input_gopro_psnr"] and t2.loc["resnet", "below_input_gopro_psnr"]
    assert t2.loc["deepdeblur", "iterations"] == 8 and np.isnan(t2.loc["blurred", "iterations"])
    # Ours timed at 1280x720: a difference to the paper's 0.45 s; DeepDeblur timed at 192x108: none
    assert t2.loc["msr2b", "delta_time_s"] == pytest.approx(0.5 - 0.45)
    assert t2.loc["deepdeblur", "time_size"] == "192x108" and np.isnan(t2.loc["deepdeblur", "delta_time_s"])
    assert np.isnan(t2.loc["pan", "gopro_psnr"])  # no scores written: no number invented


def test_crops_seen_count_the_short_last_batch_of_each_epoch():
    assert tables.crops_seen(7, 16, 12) == 7 * 12  # 12 pairs in batches of 16: one short batch per epoch
    assert tables.crops_seen(5, 4, 10) == 10 + 4 + 4  # batches of 4, 4, 2 per epoch: one epoch, two batches
    assert tables.crops_seen(5, 4, None) == 20


def test_training_progress_counts_crops_against_the_papers_iterations(results):
    progress = tables.training_progress(results).set_index("run")
    assert tables.PAPER_ITERATIONS == 630_900
    assert progress.loc["deepdeblur", "crops_seen"] == 8 * 16
    assert progress.loc["msr2b", "fraction_of_paper"] == pytest.approx(120 / 630_900)
    line = render.training_lines(progress.reset_index().to_dict("records"))[0]
    assert "630,900" in line and "deepdeblur 8 iterations of batch 16" in line
    assert [render.percent(f) for f in (1.0, 0.5, 120 / 630_900)] == ["100%", "50%", "0.019%"]


# -- the banner and the first line, from hand-written configurations -------------------------------------
def _config(**train) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    cfg["train"].update(train)
    return cfg


def test_the_paper_profile_banner_lists_only_the_loss_conventions():
    cfg = _config()
    banner = render.profile_deviations(cfg)
    # timing hardware, gradient penalty on the sum, perceptual MSE; then the retrained NAFNet's own departures
    assert len(banner) == 5 and all(line.endswith("(its own: 64).") for line in banner[3:])
    assert banner[3].startswith("width: Chen et al. (NAFNet) 32") and banner[4].startswith("batch_size:")
    assert any("gp_reduction: sum" in line for line in banner)
    assert any("perceptual_reduction: chw" in line and "0.391" in line for line in banner)
    assert render.pipeline_note(cfg) is None


def test_the_banner_names_each_departure_of_a_hand_written_configuration():
    cfg = _config(epochs_constant=2, epochs_decay=1, crop=64, gp_reduction="mean", perceptual_reduction="hw")
    cfg["data"] = {"source": "synthetic", "blur_folder": "blur_gamma", "validation_images": 4,
                   "synthetic": {"seed": 1, "train_pairs": 12, "test_pairs": 8, "size": 96, "n_subframes": 9,
                                 "kohler_size": 64, "kohler_paths": 4}}
    banner = render.profile_deviations(cfg)
    assert any(line.startswith("Data: synthetic") and "12 training pairs" in line for line in banner)
    assert "Training: epochs_constant = 2 (paper: 200)." in banner
    assert "Training: crop = 64 (paper: 256)." in banner
    assert any("blur_gamma" in line for line in banner)
    assert not any("gp_reduction" in line or "perceptual_reduction" in line for line in banner)  # the paper's own
    note = render.pipeline_note(cfg)
    assert note.startswith("The numbers in this report test the pipeline, not the paper")
    assert "synthetic data" in note and "3 training epochs instead of 300" in note


def test_the_reproduction_notes_give_each_conventions_value():
    notes = dict(render.reproduction_notes(_config(gp_reduction="mean", critic_batches="fresh")))
    assert notes["Gradient penalty D(x)"].startswith("gp_reduction = mean.")
    assert "perceptual_reduction = chw" in notes["Perceptual loss"] and "25600" in notes["Perceptual loss"]
    assert "critic_batches = fresh" in notes["Critic steps"]
    assert "Eq. 7 has no ReLU after K_b" in notes["Part B's last ReLU"]
    assert "evenly from every test scene" in notes["Fig. 5"]
    assert "DeepDeblur: 16 / 256" in notes["Batch and crop"]


# -- the rendered report ----------------------------------------------------------------------------------
def test_the_report_opens_with_the_pipeline_line_and_shows_the_blurred_input_row(results, tmp_path):
    config = tmp_path / "config.yaml"
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config.write_text(yaml.safe_dump(cfg))
    tables.write_tables(results, config, results / "tables")
    out = tmp_path / "report" / "index.html"
    render.render_report(results, config, out)
    html = out.read_text()
    body = html[html.index("<h1>"):]
    # The headline box comes first, opening with the line that says what the numbers can test.
    first = re.search(r"</h1>\s*<section class=\"headline\" id=\"headline\">\s*<p class=\"pipeline\">([^<]*)</p>",
                      body)
    assert first and first.group(1).startswith("The numbers in this report test the pipeline, not the paper")
    headline = body[:body.index('id="deviations"')]
    assert "What ran" in headline and "Key comparisons" in headline and "What this can and cannot show" in headline
    key = headline[headline.index('<table class="key">'):headline.index("</table>")]
    # Ours minus the input (+1.5 dB on both images), ResNet (+2 dB) and Res2Net (+1 dB), and Nah et al. (-1 dB)
    assert re.search(r"Blurred input</td>\s*<td class=\"better\"[^>]*><span class=\"v\">\+1\.50</span>", key)
    assert re.search(r"Nah et al\. \[14\]</td>\s*<td class=\"worse\"[^>]*><span class=\"v\">−1\.00</span>", key)
    assert "deepdeblur" not in key and "paper" not in key  # display names; no paper difference on synthetic data
    table1 = body[body.index('id="table1"'):body.index('id="table2"')]
    assert "Blurred input (no restoration)" in table1
    assert table1.count("below-mark below") == 2  # ResNet's PSNR and SSIM
    assert "<th>Δ</th>" not in table1 and 'class="paper na"' in table1  # the paper's numbers greyed, no Δ
    assert "Ours (MSR2B) − ResNet blocks" in table1
    assert "Training length: the paper trains each network for 630,900 iterations" in body
    assert (tmp_path / "report" / "training.csv").exists()
    assert "gp_reduction = sum" in body and "critic_batches = same" in body


def test_the_hardware_line_names_the_networks_device_and_where_classical_methods_ran():
    pan = {"method": "pan", "device": "cpu", "cpu": "EPYC", "torch": ""}
    net = {"method": "msr2b", "device": "cuda", "cpu": "EPYC", "gpu": "NVIDIA H100", "torch": "2.14.1"}
    assert render.hardware_of([pan, net]) == {"device": "cuda", "cpu": "EPYC", "gpu": "NVIDIA H100",
                                              "classical methods": "timed on the CPU (wall clock)"}
    assert render.hardware_of([pan, {**net, "device": "cpu", "gpu": ""}]) == {"device": "cpu", "cpu": "EPYC"}
    assert render.hardware_of([pan]) == {"device": "cpu", "cpu": "EPYC"}
    assert render.hardware_of([]) == {}


def test_the_paper_data_get_differences_to_the_paper(results, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text((REPO / "config" / "paper.yaml").read_text())
    tables.write_tables(results, config, results / "tables")
    render.render_report(results, config, tmp_path / "index.html")
    body = (tmp_path / "index.html").read_text()
    table1 = body[body.index('id="table1"'):body.index('id="table2"')]
    assert "<th>Δ</th>" in table1 and "−2.63" in table1  # 26.50 - 29.13 dB
    key = body[body.index('<table class="key">'):]
    assert "paper +1.02" in key[:key.index("</table>")]  # MSR2B - ResNet in the paper's Table 1


# -- numbers with the decimals their intervals need ---------------------------------------------------------
def test_an_interval_that_excludes_zero_never_prints_as_zero():
    from reports.numbers import column_decimals, interval, number

    assert interval(-0.00036, -0.00073, -0.000055, 3) == ("−0.0004", "[−0.0007, −0.0001]")
    assert interval(18.662, 16.1106, 20.6896, 2) == ("+18.66", "[+16.11, +20.69]")
    assert interval(-0.0174, -0.053, 0.0136, 2) == ("−0.02", "[−0.05, +0.01]")  # covers zero: base decimals
    assert number(-0.0001, 3) == "0.000" and number(float("nan"), 2) == "–"  # never "-0.000"
    assert interval(None, None, None, 2) == ("–", "[–, –]")  # no images paired: nothing invented
    assert column_decimals([0.953947, 0.953902, 0.953585], 0.953947, 3) == 5  # 0.95390 vs 0.95395
    assert column_decimals([31.2353, 31.2247], 31.2353, 2) == 2


# -- figures: a dB axis, never blank, the differences chart ---------------------------------------------------
def test_figures_use_a_plain_db_axis_and_say_why_when_empty(results, tmp_path):
    import matplotlib.pyplot as plt

    from reports import figures

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [28.7938, 28.7931, 28.7931])
    figures.db_axis(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert ax.yaxis.get_offset_text().get_text() == "" and all(t.startswith("28.79") for t in labels if t)
    plt.close(fig)
    assert figures.span_note([28.7938, 28.7931]) == " (all within 0.0007 dB)"

    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    empty = tmp_path / "tables"
    empty.mkdir()
    pd.DataFrame(columns=["run", "k", "epoch", "psnr"]).to_csv(empty / "fig5a.csv", index=False)
    pd.DataFrame(columns=["run", "k", "params", "psnr"]).to_csv(empty / "fig5b.csv", index=False)
    drawn = []
    real_text = plt.Axes.text
    plt.Axes.text = lambda self, *a, **k: drawn.append(a[2]) or real_text(self, *a, **k)
    try:
        figures.draw_fig5(empty, tmp_path, cfg)
    finally:
        plt.Axes.text = real_text
    assert len(drawn) == 2 and all(text.startswith("nothing to plot") for text in drawn)

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    tables.write_tables(results, config, results / "tables")
    assert figures.draw_differences(results / "tables", tmp_path, cfg) == ["differences_gopro"]


def test_comparison_panels_are_pixel_exact(tmp_path):
    from PIL import Image

    from reports import figures

    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    box = figures.zoom_box(sharp, 24)
    record = figures.draw_comparison([("blurred input", sharp), ("sharp", sharp)], box, tmp_path, "c")
    y, x, size = box
    crop = np.asarray(Image.open(tmp_path / "c_p0_crop.png"))
    factor = record["factor"]
    assert factor == 192 // 24 and crop.shape == (24 * factor, 24 * factor, 3)
    assert np.array_equal(crop[::factor, ::factor], sharp[y:y + 24, x:x + 24])  # nearest neighbour, integer factor
    assert np.array_equal(crop[factor - 1::factor, factor - 1::factor], sharp[y:y + 24, x:x + 24])
    whole = np.asarray(Image.open(tmp_path / "c_p0_whole.png"))
    assert whole.shape == (120, 160, 3) and record["whole_scale"] == "×2"
    assert [p["label"] for p in record["panels"]] == ["blurred input", "sharp"]


def test_each_offline_departure_is_named_with_the_profiles_reason():
    cfg = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())
    banner = render.profile_deviations(cfg)
    content = next(line for line in banner if line.startswith("Content term: content = l1"))
    assert content.endswith(cfg["departures"]["content"] + ".")
    assert any(line.startswith("Training: n_critic = 0 (paper: 5): a WGAN-GP critic") for line in banner)
    assert any(line.startswith("Training: warmup_iterations = 20 (paper: 0): ") for line in banner)
    init = next(line for line in banner if line.startswith("init: "))
    assert "Kupyn et al. [19] normal-0.02-zero-out (its own: normal-0.02)" in init and "identity" in init
    # no critic, no perceptual term: their conventions are not listed as departures
    assert not any("gp_reduction" in line or "perceptual_reduction" in line for line in banner)
    progress = [{"run": "msr2b", "iterations": 83, "batch_size": 1, "fraction_of_paper": 1e-4,
                 "health": "msr2b: collapsed to the identity at iteration 83: ..."}]
    assert render.training_lines(progress)[-1] == ("Training health: msr2b: collapsed to the identity at iteration 83: "
                                                   "....")
