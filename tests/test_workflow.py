"""The workflow through the `snakemake` command line: the smoke DAG end to end (with a plug-in
method installed as a separate package), reruns after configuration changes, seeds, a killed
training, the paper DAG as a dry run, `--lint`, shell-safe configuration values, and configuration
errors. No test here asserts a wall time."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from workflow_run import REPO, job_process, snakemake

from benchmark import registry
from reports.tables import INPUT, read_scores


def test_smoke_report_is_complete(smoke_run):
    results, _ = smoke_run
    html = (results / "report" / "index.html").read_text()
    table1 = pd.read_csv(results / "report" / "table1.csv")
    assert len(table1) == 4 and table1.gopro_psnr.notna().all() and table1.gopro_ssim.notna().all()
    assert list(table1.row) == ["Blurred input (no restoration)", "ResNet", "Res2Net", "MSR2B"]
    # Self-contained: every image is embedded, nothing is loaded from elsewhere.
    assert html.count('src="data:image/png;base64,') >= 5
    assert not re.search(r'src="(?!data:)', html)
    for name in ("Table 1", "Table 2", "Fig. 5", "Complexity", "Metric protocol", "Training curves",
                 "Reproduction notes", "Deviations from the paper"):
        assert name in html
    for csv in (results / "report").glob("*.csv"):
        pd.read_csv(csv)
    assert {"table1.csv", "table2.csv", "complexity.csv", "metric_protocol.csv", "kohler_protocol.csv"} <= {
        p.name for p in (results / "report").glob("*.csv")}
    kohler = read_scores(results, "msr2b", "kohler")  # each Köhler SSIM names which one it is
    assert {"psnr", "ssim_metrix", "ms_ssim_metrix"} <= set(kohler.columns) and "ssim" not in kohler


def test_every_registered_method_reaches_table2_including_the_plugin(smoke_run):
    results, _ = smoke_run
    table2 = pd.read_csv(results / "report" / "table2.csv").set_index("method")
    expected = {m.name for m in registry.available()} | {"unsharp"}
    assert expected <= set(table2.index)
    reproduced = table2[table2.status == "reproduced"]
    assert reproduced.loc[list(expected), ["gopro_psnr", "kohler_psnr", "time_s"]].notna().all().all()
    assert "Unsharp masking" in (results / "report" / "index.html").read_text()


def test_changing_one_method_reruns_only_its_jobs(smoke_run, plugin_env):
    results, _ = smoke_run
    out = snakemake(results.parent.parent, "-n", "--config", "profile=smoke", "methods={unsharp: {amount: 1.5}}",
                    env=plugin_env)
    assert out.returncode == 0, out.stderr
    jobs = re.findall(r"^rule (\w+):\n(?:.*\n)*?\s+wildcards: (.*)$", out.stdout + out.stderr, re.M)
    touched = {(rule, w.split(",")[0]) for rule, w in jobs}
    assert touched == {("restore", "method=unsharp"), ("score", "method=unsharp"), ("time", "method=unsharp")}
    assert len([r for r, _ in jobs if r == "restore"]) == 2  # the smoke profile's two shards
    text = out.stdout + out.stderr
    for rule in ("tables", "figures", "report"):
        assert re.search(rf"^rule {rule}:", text, re.M)
    assert not re.search(r"^rule (train|synthesise|crop_cache):", text, re.M)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (see .ci/run)")
def test_report_renders_in_headless_chromium(smoke_run, tmp_path):
    results, _ = smoke_run
    shot = tmp_path / "report.png"
    page = (results / "report" / "index.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2400"]
    run = subprocess.run(["chromium", *flags, f"--screenshot={shot}", page], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and "Table 2" in dom.stdout and "<table" in dom.stdout


def _created(workdir: Path) -> list[Path]:
    return [p for p in workdir.rglob("*") if ".snakemake" not in p.parts and not p.is_dir()]


def test_nested_overrides_are_typed_and_merged_and_parsing_writes_nothing(tmp_path):
    override = "train={epochs_constant: 3, lr: 2.0e-4}"
    out = snakemake(tmp_path, "-n", "--config", "profile=smoke", override)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _created(tmp_path) == []  # a dry run writes nothing, not even the resolved configuration
    out = snakemake(tmp_path, "--cores", "1", "--config", "profile=smoke", override, "--",
                    "results/smoke/data/synthetic.json")
    assert out.returncode == 0, out.stderr[-2000:]
    resolved = (tmp_path / "results" / "smoke" / "config.yaml").read_text()
    assert "epochs_constant: 3" in resolved and "lr: 0.0002" in resolved and "n_critic: 0" in resolved


LINT_ACCEPTED = {"Specify a conda environment or container for each rule."}  # justified in the Snakefile


def test_lint_is_clean_except_the_justified_finding(tmp_path):
    out = snakemake(tmp_path, "--lint", "--config", "profile=paper")
    text = out.stdout + out.stderr
    findings = set(re.findall(r"^    \* (.+?):?$", text, re.M))
    assert findings and findings <= LINT_ACCEPTED, text[-3000:]
    assert _created(tmp_path) == []


HOSTILE = "odd dir 'q' \"dq\" ;$(touch PWNED) `touch PWNED2`"


def test_configuration_values_never_run_in_a_shell(tmp_path):
    """Paths and URLs holding spaces, quotes, `;`, `$(...)` and backticks: the job works or fails
    cleanly, and nothing they spell is executed."""
    from miniature import gopro_zip

    sentinel = tmp_path / "EXECUTED"
    weird = tmp_path / HOSTILE
    weird.mkdir()
    (weird / "GOPRO_Large.zip").write_bytes(gopro_zip())
    overrides = {"profile": "smoke", "data": {"source": "real",
        "gopro": {"root": f"{HOSTILE}/GOPRO_Large", "archive": f"{HOSTILE}/GOPRO_Large.zip", "verify": "structure",
                  "mirrors": [f"http://127.0.0.1:9/x;touch {sentinel};#"]},
        "kohler": {"root": f"k;touch {sentinel};#", "archive": f"x.zip;touch {sentinel};#",
                   "mirrors": [f"http://127.0.0.1:9/$(touch {sentinel})"]}}}
    (tmp_path / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    ok = snakemake(tmp_path, "--cores", "1", "--configfile", str(tmp_path / "overrides.yaml"), "--",
                   "results/smoke/data/gopro.verified.txt")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert (weird / "GOPRO_Large" / "train").is_dir()
    bad = snakemake(tmp_path, "--cores", "1", "--configfile", str(tmp_path / "overrides.yaml"), "--",
                    "results/smoke/data/kohler.fetched.json")
    assert bad.returncode != 0
    log = (tmp_path / "results/smoke/logs/fetch_kohler.log").read_text()
    assert "x.zip;touch" in log and "Traceback" not in log
    assert not sentinel.exists()
    assert not list(tmp_path.rglob("PWNED*"))


def test_paper_profile_dry_run_lists_the_full_dag(tmp_path):
    out = snakemake(tmp_path, "-n", "--config", "profile=paper")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    trained = [m.name for m in registry.available() if m.kind == "trained"]
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", text, re.M)}
    assert counts["train"] == len(trained) + 5  # + the Fig. 5 sweep k in {1, 3, 5, 7, 11}
    # GOPRO, Köhler, HIDE, RealBlur (one archive, J and R) verified; + VGG19's weights and EPLL's GMM for Sun et al.
    assert counts["fetch"] == 6 and counts["prepare"] == 4
    assert counts["time"] == len(registry.available())
    # GOPRO's 1111 test images and Köhler's 48 in shards of evaluation.shard_size (the main model: also blur_gamma)
    sizes = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["evaluation"]["shard_size"]
    beyond = 2025 + 2 * 980  # HIDE, RealBlur-J and RealBlur-R
    expected = sum(-(-(1111 * (2 if m.name == "msr2b" else 1) + 48 + beyond) // sizes.get(m.name, sizes["default"]))
                   for m in registry.available())
    assert counts["restore"] == counts["score"] == expected > len(registry.available())
    shards = set(re.findall(r"results/paper/restored/pan/shard-(\d{3}-of-\d{3})\.json", text))
    assert len(shards) >= 2
    assert counts["report"] == 1


@pytest.mark.parametrize(("override", "named"), [
    ("train={lr: -1}", "lr"),
    ("train={n_critc: 5}", "n_critc"),
    ("device=tpu", "device"),
    ("methods={nosuchmethod: {k: 3}}", "nosuchmethod"),
    ("profile=nosuchprofile", "nosuchprofile"),
    # issue 20: a KeyError of Snakemake's, a classical method swept, 2.0 taken for a whole number
    ("fig5={method: msr3b}", "fig5.method = 'msr3b'"),
    ("data={source: real}", "lacks the key gopro"),
    ("fig5={method: pan}", "fig5.method = 'pan': a classical method"),
    ("seeds=[0, 2.0]", "seeds[1] = 2.0"),
])
def test_configuration_errors_stop_before_any_job(tmp_path, override, named):
    out = snakemake(tmp_path, "-n", "--config", override)
    assert out.returncode != 0
    assert named in out.stderr + out.stdout
    lines = [line for line in (out.stderr + out.stdout).splitlines() if line.strip()]
    assert len(lines) <= 10 and "KeyError" not in out.stderr, lines  # a few lines, never the whole schema
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.png"))


def _dry_run_jobs(workdir: Path, *config: str, env: dict | None = None) -> set[tuple[str, str]]:
    out = snakemake(workdir, "-n", "--config", "profile=smoke", *config, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    jobs = set()
    for block in re.split(r"\n(?=rule \w+:)", text):
        head = re.match(r"rule (\w+):", block)
        if head and head.group(1) != "all":
            wild = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            jobs.add((head.group(1), wild.group(1) if wild else ""))
    return jobs


def test_changed_report_and_timing_values_rerun_exactly_their_readers(smoke_run, plugin_env):
    results, workdir = smoke_run
    assert _dry_run_jobs(workdir, env=plugin_env) == set()  # the finished run is up to date
    after_bootstrap = _dry_run_jobs(workdir, "report={bootstrap: 300, seed: 0, figure_images: 1, cw_ssim: false}",
                                    env=plugin_env)
    assert after_bootstrap == {("tables", ""), ("figures", ""), ("report", "")}
    after_runs = _dry_run_jobs(workdir, "timing={runs: 11}", env=plugin_env)
    methods = {m.name for m in registry.available()} | {"unsharp"}
    assert after_runs == {("time", f"method={m}") for m in methods} | {("tables", ""), ("figures", ""),
                                                                        ("report", "")}


def test_seeds_give_mean_and_std_in_tables_1_and_2(smoke_run, plugin_env):
    """Last in this module: it adds the seed-1 runs to the shared smoke results."""
    results, workdir = smoke_run
    out = snakemake(workdir, "--cores", "2", "--config", "profile=smoke", "seeds=[0, 1]", env=plugin_env)
    assert out.returncode == 0, out.stderr[-3000:]
    trained = [m.name for m in registry.available() if m.kind == "trained"]
    for name in trained:
        assert (results / "train" / f"{name}-s1" / "model.pt").exists()
        assert json.loads((results / "train" / f"{name}-s1" / "run.json").read_text())["settings"]["seed"] == 1
    runs = pd.read_csv(results / "report" / "training_runs.csv")
    assert set(runs.run) >= set(trained) | {f"{n}-s1" for n in trained}
    seeds = pd.read_csv(results / "report" / "seed_values.csv")
    msr2b = seeds[(seeds.method == "msr2b") & (seeds.dataset == "gopro")].set_index("seed")
    assert sorted(msr2b.index) == [0, 1]
    table1 = pd.read_csv(results / "report" / "table1.csv").set_index("method")
    blocks = table1.drop(index=INPUT)  # the blurred input's row has no seeds
    assert (blocks.seeds == 2).all() and blocks.gopro_psnr_std.notna().all()
    assert table1.loc["msr2b", "gopro_psnr"] == pytest.approx(msr2b.psnr.mean(), abs=1e-4)
    assert table1.loc["msr2b", "gopro_psnr_std"] == pytest.approx(msr2b.psnr.std(ddof=1), abs=1e-4)
    table2 = pd.read_csv(results / "report" / "table2.csv").set_index("method")
    assert table2.loc[trained, "kohler_psnr_std"].notna().all()
    assert table2.loc["wiener", "seeds"] == 1 and pd.isna(table2.loc["wiener", "gopro_psnr_std"])
    html = (results / "report" / "index.html").read_text()
    start1, start2 = html.index('id="table1"'), html.index('id="table2"')
    table1_html, table2_html = html[start1:start2], html[start2:]
    assert re.search(r"\d+\.\d{2,} ± \d+\.\d{2,}", table1_html)  # decimals: enough to tell rows apart
    assert re.search(r"\d+\.\d{2,} ± \d+\.\d{2,}", table2_html)
    diffs = pd.read_csv(results / "report" / "table1_differences.csv")
    images = len(read_scores(results, "msr2b", "gopro"))
    assert (diffs.images == 2 * images).all()  # each image paired within each of the two seeds


def test_killed_training_resumes_to_the_same_weights(tmp_path):
    """SIGKILL a training job of a running workflow, rerun the workflow: bit-identical final weights."""
    config = ["--config", "profile=smoke", "train={epochs_constant: 4, checkpoint_every: 1, val_every: 100}"]
    target = ["--", "results/smoke/train/resnet/model.pt"]
    run_dir = tmp_path / "results/smoke/train/resnet"
    ref = snakemake(tmp_path, "--cores", "1", *config, *target)
    assert ref.returncode == 0, ref.stderr[-3000:]
    reference = torch.load(run_dir / "model.pt", weights_only=True)
    shutil.rmtree(run_dir)  # the same workflow again from the same data and cache, this time killed
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores",
           "1", *config, *target]
    workflow = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and workflow.poll() is None and time.monotonic() < deadline:
        if (run_dir / "checkpoint.pt").exists():
            victim = job_process(tmp_path, "train")
        time.sleep(0.05)
    assert victim is not None, "the training job finished or never started before it could be killed"
    os.kill(victim, signal.SIGKILL)
    assert workflow.wait(timeout=120) != 0
    assert not (run_dir / "model.pt").exists()
    assert 0 < torch.load(run_dir / "checkpoint.pt", weights_only=True)["iteration"] < 8  # killed mid-way
    again = snakemake(tmp_path, "--cores", "1", *config, *target)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = torch.load(run_dir / "model.pt", weights_only=True)
    assert reference.keys() == resumed.keys() and all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert json.loads((run_dir / "run.json").read_text())["iterations"] == 8


def test_a_successful_run_ends_by_naming_the_report(smoke_run):
    results, workdir = smoke_run
    said = (workdir / "snakemake.out").read_text().strip().splitlines()
    report = (results / "report" / "index.html").resolve()
    assert any(str(report) in line for line in said[-3:]), said[-3:]
