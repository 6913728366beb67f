"""Inference timing (issue 11 section 3): median of timed runs after warm-up, and the complexity table's
ratio to DeblurGAN beside the paper's 0.45 s / 0.85 s."""

import json

import pytest
import torch

from benchmark import registry
from benchmark.timing import median_seconds, time_method


def test_median_seconds_runs_warmup_then_times_each_run():
    calls = []
    samples = median_seconds(lambda: calls.append(1), warmup=3, runs=10, device=torch.device("cpu"))
    assert len(calls) == 13 and len(samples) == 10 and all(s >= 0 for s in samples)
    with pytest.raises(ValueError, match="runs >= 1"):
        median_seconds(lambda: None, warmup=0, runs=0, device=torch.device("cpu"))


def test_time_method_on_cpu_has_an_empty_bf16_column():
    method = registry.get("msr2b")
    options = method.options({"k": 1, "width": 8})
    result = time_method(method, method.build(options), options, width=32, height=24, warmup=0, runs=10,
                         device=torch.device("cpu"))
    assert result["median_s_bf16"] is None and result["clock"] == "wall" and result["runs"] == 10
    assert result["min_s"] <= result["median_s"] <= result["max_s"] and result["macs"] > 0


def test_complexity_shows_the_ratio_to_deblurgan_beside_the_papers(tmp_path):
    from reports.tables import complexity

    (tmp_path / "timing").mkdir()
    for name, seconds in (("msr2b", 0.3), ("deblurgan", 0.6), ("pan", 12.0)):
        (tmp_path / "timing" / f"{name}.json").write_text(json.dumps({"method": name, "median_s": seconds}))
    table = complexity(tmp_path).set_index("method")
    assert table.loc["msr2b", "vs_deblurgan"] == pytest.approx(0.5)
    assert table.loc["msr2b", "paper_time_s"] == 0.45
    assert table.loc["msr2b", "paper_vs_deblurgan"] == pytest.approx(0.45 / 0.85)
    assert table.loc["pan", "vs_deblurgan"] == pytest.approx(20.0)
