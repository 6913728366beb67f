"""The paper profile on real-layout data: miniature GOPRO_Large and Köhler archives served from 127.0.0.1,
then fetch -> prepare -> crop cache -> train -> restore -> score through the `snakemake` command line with
``profile=paper``, for the main model and one classical method. What only this test checks: the download
(resumed after a broken transfer), the checksum lock, the layout verification, the real archive layout,
CW-SSIM and the blur_gamma audit scored end to end. The rest of the DAG (every method, timing, tables,
figures, report) is the same code on the smoke profile (tests/test_workflow.py).

Overridden, and only these: sizes (epochs, crop, batch, k sweep, image counts, timing sizes, kernel size
of the classical methods, bootstrap resamples), where the data come from (the local mirrors, with the
miniature archives' MD5s, counts verified as structure only), ``device: cpu`` and ``threads`` (no GPU in
CI), and ``perceptual_weights: random`` (the ImageNet VGG19 file cannot be served with its real hash).
Every other code path is the paper profile's: real-data rules, the GOPRO lock file, Köhler's protocol,
CW-SSIM, the blur_gamma audit, DeblurGAN's and DeepDeblur's own schedules.
"""

import hashlib
import json

import pandas as pd
import pytest
import yaml
from miniature import Server, hide_zip, kohler_archives, realblur_tar, trainable_gopro_zip
from workflow_run import snakemake

from benchmark.cli import main
from benchmark.data import realblur_test_list
from reports.tables import read_scores

SIZES = {
    "device": "cpu",
    "threads": 1,
    "train": {"epochs_constant": 1, "epochs_decay": 1, "crop": 32, "val_every": 1, "log_every": 1,
              "perceptual_weights": "random"},
    # a method's own crop (DeblurGAN's and DeepDeblur's 256) survives the profile's: cut it here on purpose
    "methods": {"deblurgan": {"train": {"epochs_constant": 1, "epochs_decay": 1, "crop": 32}},
                "deepdeblur": {"train": {"batch_size": 2, "crop": 32}},
                "nafnet": {"width": 8, "enc_blk_nums": [1, 1, 1, 1], "train": {"batch_size": 2, "crop": 32}},
                **{m: {"kernel_size": 9} for m in ("pan", "wiener", "richardson-lucy")}},
    "weights": {"releases": []},  # the authors' releases: tests/test_paper_releases.py serves them
    # one shard per method: the shard counts come from the real sets' 1111 + 48 images, which the miniature
    # archives do not hold (sharding itself is tested on the smoke profile)
    "evaluation": {"shard_size": {"default": 10_000}},
}
TARGETS = ["results/paper/scores/msr2b/shard-001-of-001", "results/paper/scores/wiener/shard-001-of-001"]


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    server = Server()
    gopro = trainable_gopro_zip()
    server.files["/gopro/GOPRO_Large.zip"] = gopro
    server.truncate_once.add("/gopro/GOPRO_Large.zip")  # the first transfer breaks off half-way
    kohler = kohler_archives()
    for name, data in kohler.items():
        server.files[f"/kohler/{name}"] = data
    server.files["/hide/HIDE_dataset.zip"] = hide_zip(size=48)
    server.files["/realblur/RealBlur.tar.gz"] = realblur_tar(realblur_test_list()[:2], size=48)
    workdir = tmp_path_factory.mktemp("paper")
    overrides = {
        "profile": "paper",
        **SIZES,
        "data": {"validation_images": 1,
                 "gopro": {"root": "data/GOPRO_Large", "mirrors": [server.url + "/gopro/GOPRO_Large.zip"],
                           "verify": "structure"},
                 "kohler": {"root": "data/kohler", "mirrors": [server.url + "/kohler"], "verify": "structure",
                            "md5": {k: hashlib.md5(v).hexdigest() for k, v in kohler.items()}},
                 "hide": {"root": "data/HIDE", "mirrors": [server.url + "/hide/HIDE_dataset.zip"],
                          "verify": "structure"},
                 "realblur": {"root": "data/RealBlur", "mirrors": [server.url + "/realblur/RealBlur.tar.gz"],
                              "verify": "structure"}},
    }
    (workdir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    try:
        result = snakemake(workdir, "--cores", "2", "--configfile", str(workdir / "overrides.yaml"), "--", *TARGETS)
    finally:
        server.close()
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in (workdir / "results/paper/logs").glob("*.log")
                     if "rror" in p.read_text())
    assert result.returncode == 0, f"{result.stderr[-4000:]}\n{logs}"
    return workdir, server, hashlib.sha256(gopro).hexdigest()


@pytest.mark.slow
def test_fetch_resumes_records_and_verifies(paper_run):
    workdir, server, gopro_sha256 = paper_run
    gopro_requests = [r for p, r in server.requests if p == "/gopro/GOPRO_Large.zip"]
    assert len(gopro_requests) == 2 and gopro_requests[1].startswith("bytes=")  # resumed, not restarted
    lock = json.loads((workdir / "data/GOPRO_Large/checksums.lock.json").read_text())
    assert lock == {"GOPRO_Large.zip": gopro_sha256}
    record = json.loads((workdir / "results/paper/data/gopro.fetched.json").read_text())
    assert record["checksums"]["GOPRO_Large.zip"] == gopro_sha256
    assert "train pairs: 4" in (workdir / "results/paper/data/gopro.verified.txt").read_text()
    assert "blurry images: 4" in (workdir / "results/paper/data/kohler.verified.txt").read_text()


@pytest.mark.slow
def test_main_model_and_a_classical_method_scored_on_the_real_layout(paper_run):
    workdir, _, _ = paper_run
    results = workdir / "results/paper"
    for method in ("msr2b", "wiener"):
        gopro, kohler = read_scores(results, method, "gopro"), read_scores(results, method, "kohler")
        assert len(gopro) > 0 and gopro.psnr.notna().all() and gopro.cw_ssim.notna().all()
        assert set(gopro.image.str.split("/").str[0]) <= {"GOPR0384_11_00", "GOPR0396_11_00"}  # real sequences
        assert len(kohler) == 4 and kohler.psnr.notna().all()
    gamma = read_scores(results, "msr2b", "gopro_gamma")  # the metric audit's blur_gamma inputs
    assert len(gamma) == len(gopro) and gamma.cw_ssim.notna().all()
    for method in ("msr2b", "wiener"):  # beyond the paper: HIDE and RealBlur under their own protocols
        hide = read_scores(results, method, "hide")
        assert len(hide) == 4 and {"psnr", "ssim_matlab"} <= set(hide.columns) and hide.psnr.notna().all()
        for variant in ("realblur-j", "realblur-r"):
            realblur = read_scores(results, method, variant)
            assert len(realblur) == 2 and realblur.psnr.notna().all() and "ecc_converged" in realblur
            assert set(realblur.image.str.split("/").str[0]) <= {s for s, _ in realblur_test_list()[:2]}
    run = json.loads((workdir / "results/paper/train/msr2b/run.json").read_text())
    assert run["iterations"] == run["total_iterations"] > 0


@pytest.mark.slow
def test_the_report_has_the_generalisation_table_with_hide_and_realblur(paper_run):
    workdir, _, _ = paper_run
    results = workdir / "results/paper"
    for command, out in (("tables", "tables"), ("report", "report/index.html")):
        assert main([command, "--config", str(results / "config.yaml"), "--results", str(results),
                     "--out", str(results / out)]) == 0, command
    table = pd.read_csv(results / "report" / "generalisation.csv")
    for method in ("msr2b", "wiener"):
        assert set(table[table.method == method].testset) == {"gopro", "hide", "realblur-j", "realblur-r"}
    hide = table[(table.method == "msr2b") & (table.testset == "hide")].iloc[0]
    assert hide.images == 4 and hide.psnr == pytest.approx(read_scores(results, "msr2b", "hide").psnr.mean())
    diffs = pd.read_csv(results / "report" / "generalisation_differences.csv")
    assert {("wiener", "realblur-r", "psnr")} <= set(zip(diffs.b, diffs.dataset, diffs.metric, strict=True))
    html = (results / "report" / "index.html").read_text()
    assert "Beyond the paper — generalisation" in html and "stand-in sets" not in html
    for label in ("HIDE", "RealBlur-J", "RealBlur-R"):
        assert f"<th>{label}</th>" in html
