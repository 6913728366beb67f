"""The paper profile's authors'-weights rows end to end: seeded files in their releases' own layouts
(DeepDeblur's zipped ``GOPRO_L1`` experiment folder and NAFNet's ``{'params': ...}`` width 32, at their real
architectures; every layout also loads through `deblurbench deblur` in test_official_weights.py) served
with the miniature GOPRO_Large and Köhler archives from 127.0.0.1, then fetch weights -> restore -> score
-> time through `snakemake` (rules/weights.smk) and `deblurbench tables` / `report`. The
retrained rows' training is left out (the paper-miniature test runs it), and so are CW-SSIM and the
other two releases, to keep this test to a dozen jobs."""

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from miniature import Server, kohler_archives, trainable_gopro_zip
from scored import write_scores
from workflow_run import snakemake

from benchmark import registry
from benchmark.cli import main
from benchmark.releases import RELEASES


def seeded_release(name: str, seed: int) -> bytes:
    """Random weights of the release's architecture, in the file layout the authors published."""
    rel = RELEASES[name]
    method = registry.get(rel.method)
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g) * 0.01 for k, v in method.build(method.options(rel.options))
             .state_dict().items()}
    buf = io.BytesIO()
    if rel.method == "deblurgan":
        torch.save(state, buf)
        return buf.getvalue()
    if rel.method == "nafnet":
        torch.save({"params": state}, buf)
        return buf.getvalue()
    torch.save({"G": state}, buf)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("GOPRO_L1/models/model-1000.pt", buf.getvalue())
        z.writestr("GOPRO_L1/config.txt", "n_scales: 3\n")
    return out.getvalue()


@pytest.mark.slow
def test_paper_report_holds_the_authors_weights_and_nafnet_rows(tmp_path):
    server = Server()
    server.files["/gopro/GOPRO_Large.zip"] = trainable_gopro_zip()
    kohler = kohler_archives()
    for name, data in kohler.items():
        server.files[f"/kohler/{name}"] = data
    releases = ["deepdeblur", "nafnet-32"]
    files = {name: seeded_release(name, seed) for seed, name in enumerate(releases)}
    for name, data in files.items():
        server.files[f"/weights/{RELEASES[name].filename}"] = data
    server.truncate_once.add("/weights/NAFNet-GoPro-width32.pth")  # the larger transfer breaks off once
    overrides = {
        "profile": "paper", "device": "cpu", "threads": 1,
        "timing": {"width": 64, "height": 48, "warmup": 0, "runs": 10, "classical_width": 48,
                   "classical_height": 32, "exclusive": False},
        "data": {"validation_images": 1,
                 "gopro": {"root": "data/GOPRO_Large", "mirrors": [server.url + "/gopro/GOPRO_Large.zip"],
                           "verify": "structure"},
                 "kohler": {"root": "data/kohler", "mirrors": [server.url + "/kohler"], "verify": "structure",
                            "md5": {k: hashlib.md5(v).hexdigest() for k, v in kohler.items()}},
                 "hide": None, "realblur": None},  # served in tests/test_paper_miniature.py
        "report": {"cw_ssim": False},
        "evaluation": {"shard_size": {"default": 10_000}},  # one shard each (the miniature holds a few images)
        "weights": {"root": "weights", "releases": releases,
                    "mirrors": {n: [f"{server.url}/weights/{RELEASES[n].filename}"] for n in releases}},
    }
    (tmp_path / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    results = tmp_path / "results/paper"
    targets = [f"results/paper/releases/{kind}/{n}" for n in releases for kind in ("scores", "timing")]
    targets = [t + ".json" if "/timing/" in t else t + "/shard-001-of-001" for t in targets]
    try:
        run = snakemake(tmp_path, *targets, "--cores", "2", "--configfile", str(tmp_path / "overrides.yaml"))
    finally:
        server.close()
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in (results / "logs").glob("*.log")
                     if "rror" in p.read_text())
    assert run.returncode == 0, f"{run.stderr[-3000:]}\n{logs}"

    # Fetched once each (the NAFNet file resumed), hashes locked after the strict load, safetensors cached.
    lock = json.loads((tmp_path / "weights/checksums.lock.json").read_text())
    assert lock == {RELEASES[n].filename: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    resumed = [r for p, r in server.requests if p == "/weights/NAFNet-GoPro-width32.pth"]
    assert len(resumed) == 2 and resumed[1].startswith("bytes=")
    assert all((tmp_path / f"weights/{n}.safetensors").exists() for n in releases)

    # No figures: with no retrained runs, Fig. 5 has nothing to draw (the report renders without them).
    for command, out in (("tables", "tables"), ("report", "report/index.html")):
        assert main([command, "--config", str(results / "config.yaml"), "--results", str(results),
                     "--out", str(results / out)]) == 0, command
    table2 = pd.read_csv(results / "report/table2.csv").set_index("method")
    authors = table2[table2.weights == "authors"]
    assert sorted(authors.index) == ["authors:deepdeblur", "authors:nafnet-32"]
    assert authors[["gopro_psnr", "gopro_ssim", "kohler_psnr", "time_s"]].notna().all().all()
    assert table2.loc["authors:nafnet-32", "published_gopro_psnr"] == pytest.approx(32.8705)
    assert table2.loc["authors:deepdeblur", "published_gopro_ssim"] == pytest.approx(0.9018)
    assert "NAFNet README" in table2.loc["authors:nafnet-32", "published_source"]
    assert table2.loc["nafnet", "weights"] == "retrained"
    order = list(table2.index)
    assert order.index("authors:deepdeblur") == order.index("deepdeblur") + 1  # beside the retrained row
    assert order.index("authors:nafnet-32") == order.index("nafnet") + 1
    complexity = pd.read_csv(results / "report/complexity.csv").set_index("method")
    assert complexity.loc["authors:nafnet-32", "params"] == 17_111_907
    assert complexity.loc["authors:nafnet-32", "macs"] > 0
    html = (results / "report/index.html").read_text()
    assert "Chen et al. (NAFNet), nafnet-32 — authors&#39; weights" in html and "32.87" in html
    assert "not fetched in this profile" not in html


def test_paper_profile_fetches_restores_scores_and_times_every_release(tmp_path):
    # (The smoke profile lists none: its whole DAG runs in test_workflow.py.)
    out = snakemake(tmp_path, "-n", "--config", "profile=paper")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", text, re.M)}
    paper = Path(__file__).resolve().parents[1] / "config" / "paper.yaml"
    listed = yaml.safe_load(paper.read_text())["weights"]["releases"]
    for rule in ("fetch_weights", "time_release"):
        assert counts.get(rule, 0) == len(listed), rule
    shards = re.findall(r"results/paper/releases/scores/([\w-]+)/shard-\d{3}-of-\d{3}", text)
    assert set(shards) == set(listed) and counts["restore_release"] == counts["score_release"] == len(set(
        re.findall(r"results/paper/releases/scores/[\w-]+/shard-\d{3}-of-\d{3}", text))) > len(listed)


def test_table2_puts_each_release_beside_its_retrained_row_with_its_published_numbers(tmp_path):
    from reports.tables import complexity, table2

    def scored(base, name, psnr):
        write_scores(base / "scores" / name, {
            "gopro": pd.DataFrame({"image": ["a", "b"], "psnr": [psnr, psnr + 2], "ssim_matlab": [0.5, 0.7]}),
            "kohler": pd.DataFrame({"image": ["a"], "psnr": [psnr - 1], "ssim_metrix": [0.4],
                                    "ms_ssim_metrix": [0.45]})})
        (base / "timing").mkdir(exist_ok=True)
        (base / "timing" / f"{name}.json").write_text(json.dumps({"median_s": 0.5, "width": 64, "height": 48,
                                                                  "params": 7, "macs": 9}))

    scored(tmp_path, "deblurgan", 20.0)
    scored(tmp_path, "nafnet", 21.0)
    scored(tmp_path / "releases", "deblurgan", 22.0)
    scored(tmp_path / "releases", "nafnet-64", 30.0)
    frame = table2(tmp_path).set_index("method")
    order = list(frame.index)
    assert order.index("authors:deblurgan") == order.index("deblurgan") + 1
    assert order.index("authors:nafnet-64") == order.index("nafnet") + 1
    assert "authors:nafnet-32" not in frame.index  # not scored: no row
    row = frame.loc["authors:nafnet-64"]
    assert (row.gopro_psnr, row.gopro_ssim, row.kohler_psnr, row.time_s) == (31.0, 0.6, 29.0, 0.5)
    assert row.weights == "authors" and row.row == "Chen et al. (NAFNet), nafnet-64 — authors' weights"
    assert (row.published_gopro_psnr, row.published_gopro_ssim) == (33.7103, 0.9668)
    assert frame.loc["authors:deblurgan", "row"] == "Kupyn et al. [19] — authors' weights"
    assert frame.loc["deblurgan", "paper_gopro_psnr"] == 28.70 and frame.loc["deblurgan", "weights"] == "retrained"
    assert frame.loc["deepdeblur", "published_gopro_psnr"] == 29.08  # unscored rows still carry their own numbers
    listed = list(complexity(tmp_path).method)
    assert set(listed[:2]) == {"deblurgan", "nafnet"} and listed[2:] == ["authors:deblurgan", "authors:nafnet-64"]
