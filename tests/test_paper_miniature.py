"""The paper profile end to end on real-layout data: miniature GOPRO_Large and Köhler archives served from
127.0.0.1, then fetch -> prepare -> crop cache -> train -> restore -> score -> time -> report through the
`snakemake` command line with ``profile=paper``.

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
from miniature import Server, kohler_archives, trainable_gopro_zip
from test_workflow import snakemake

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
    "fig5": {"k": [3, 9]},
    "timing": {"width": 64, "height": 48, "warmup": 0, "runs": 10, "classical_width": 48,
               "classical_height": 32, "exclusive": False},
    "report": {"bootstrap": 200, "figure_images": 1},
    "weights": {"releases": []},  # the authors' releases: tests/test_paper_releases.py serves them
}


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    server = Server()
    gopro = trainable_gopro_zip()
    server.files["/gopro/GOPRO_Large.zip"] = gopro
    server.truncate_once.add("/gopro/GOPRO_Large.zip")  # the first transfer breaks off half-way
    kohler = kohler_archives()
    for name, data in kohler.items():
        server.files[f"/kohler/{name}"] = data
    workdir = tmp_path_factory.mktemp("paper")
    overrides = {
        "profile": "paper",
        **SIZES,
        "data": {"validation_images": 1,
                 "gopro": {"root": "data/GOPRO_Large", "mirrors": [server.url + "/gopro/GOPRO_Large.zip"],
                           "verify": "structure"},
                 "kohler": {"root": "data/kohler", "mirrors": [server.url + "/kohler"], "verify": "structure",
                            "md5": {k: hashlib.md5(v).hexdigest() for k, v in kohler.items()}}},
    }
    (workdir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    try:
        result = snakemake(workdir, "--cores", "2", "--configfile", str(workdir / "overrides.yaml"))
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
def test_paper_report_has_every_row_from_the_real_layout(paper_run):
    workdir, _, _ = paper_run
    report = workdir / "results/paper/report"
    table1 = pd.read_csv(report / "table1.csv")
    assert len(table1) == 4 and table1.gopro_psnr.notna().all()  # the blurred input, then the three blocks
    table2 = pd.read_csv(report / "table2.csv").set_index("method")
    reproduced = table2[table2.status == "reproduced"]
    assert reproduced[["gopro_psnr", "kohler_psnr", "time_s"]].notna().all().all()
    audit = pd.read_csv(report / "metric_protocol.csv")
    assert {"blur", "blur_gamma"} <= set(audit.input) and audit.filter(like="cw_ssim").notna().all().all()
    fig5 = pd.read_csv(workdir / "results/paper/tables/fig5b.csv")
    assert sorted(fig5.k) == [3, 9]
    html = (report / "index.html").read_text()
    assert "paper" in html and "GOPRO_Large" in html
