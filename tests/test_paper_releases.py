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
import zipfile

import pandas as pd
import pytest
import torch
import yaml
from miniature import Server, kohler_archives, trainable_gopro_zip
from test_workflow import snakemake

from benchmark import registry
from benchmark.cli import main
from benchmark.weights import RELEASES


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
                            "md5": {k: hashlib.md5(v).hexdigest() for k, v in kohler.items()}}},
        "report": {"cw_ssim": False},
        "weights": {"root": "weights", "releases": releases,
                    "mirrors": {n: [f"{server.url}/weights/{RELEASES[n].filename}"] for n in releases}},
    }
    (tmp_path / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    results = tmp_path / "results/paper"
    targets = [f"results/paper/releases/{kind}/{n}" for n in releases for kind in ("scores", "timing")]
    targets = [t + ".json" if "/timing/" in t else t for t in targets]
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
