"""`deblurbench plan` and benchmarks/gpu_check.py (issue 11 sections 4-5)."""

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from benchmark.plan import (
    estimate,
    estimate_evaluation,
    evaluation_jobs,
    evaluation_seconds,
    probe_restores,
    schedule_wall,
    timed_jobs,
    training_jobs,
)

REPO = Path(__file__).resolve().parents[1]


def _paper():
    return yaml.safe_load((REPO / "config" / "paper.yaml").read_text())


def test_paper_profile_jobs_are_the_dags_trainings():
    jobs = {j.run: j for j in training_jobs(_paper())}
    assert sorted(jobs) == sorted(["msr2b", "res2net", "resnet", "deblurgan", "deepdeblur", "nafnet", "sun", "msr2b-k1",
                                   "msr2b-k3", "msr2b-k5", "msr2b-k7", "msr2b-k11"])
    assert jobs["msr2b"].iterations == 300 * 2103 == 630_900
    assert jobs["deepdeblur"].iterations == 300 * 132  # batch 16: ceil(2103 / 16) iterations an epoch
    assert jobs["msr2b-k3"].options["k"] == 3 and jobs["deblurgan"].settings["epochs_constant"] == 150


def test_each_seed_is_a_training_of_its_own_timed_as_the_base_seed():
    """Seeds are separate trainings in the DAG (benchmark/runs.py), so they count in the plan; they train at
    the same speed, so only the base seed's run is probed and the others take its time."""
    jobs = {j.run: j for j in training_jobs(_paper() | {"seeds": [0, 2]})}
    assert {"msr2b", "msr2b-s2", "nafnet-s2"} <= set(jobs) and "msr2b-k3-s2" not in jobs
    assert jobs["msr2b-s2"].settings["seed"] == 2 and jobs["msr2b-s2"].timed_as == "msr2b"
    assert timed_jobs(list(jobs.values())) == [j for j in jobs.values() if not j.run.endswith("-s2")]
    row = {r["run"]: r for r in estimate(list(jobs.values()), {"msr2b": 25.0})["jobs"]}
    assert row["msr2b-s2"]["hours"] == row["msr2b"]["hours"] == pytest.approx(630_900 * 25 / 3.6e6)


def test_wall_time_places_the_longest_job_first_on_the_gpu_free_first():
    assert schedule_wall([5, 1, 1, 1, 1, 1], 1) == 10
    assert schedule_wall([5, 1, 1, 1, 1, 1], 2) == 5
    assert schedule_wall([3, 3, 2, 2, 2], 2) == 7  # greedy longest-first, not the optimum (6)
    assert schedule_wall([], 4) == 0


def test_estimate_and_plan_from_a_gpu_check_json(tmp_path, capsys):
    jobs = training_jobs(_paper())
    plan = estimate(jobs, {"msr2b": 25.0, "sun": 10.0})
    row = {r["run"]: r for r in plan["jobs"]}
    assert row["msr2b"]["hours"] == pytest.approx(630_900 * 25 / 3.6e6)  # 4.38 h
    assert "deblurgan" in plan["unmeasured"] and plan["wall_hours"]["8"] == pytest.approx(row["msr2b"]["hours"])

    record = {"hardware": {"device": "cuda", "gpu": "Test GPU", "cpu": "x"},
              "training": [{"run": j.run, "precision": "fp32", "compiled": "none", "ms_per_iteration": 20.0}
                           for j in jobs] + [{"run": "msr2b", "precision": "bf16", "compiled": "none",
                                              "ms_per_iteration": 1.0}]}
    (tmp_path / "gpu_check-1.json").write_text(json.dumps(record))
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(REPO / "config" / "paper.yaml"), "--gpu-check", str(tmp_path),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Test GPU" in printed and "| msr2b | 630,900 | 256 | 1 | 20.0 | 3.50 |" in printed
    assert "Evaluation plan of profile `paper`" in printed and "| pan | 5,144 | 129 x 40 | not measured |" in printed
    saved = json.loads(out.read_text())
    assert saved["wall_hours"]["1"] == pytest.approx(saved["gpu_hours"]) and not saved["unmeasured"]


def test_plan_refuses_a_file_that_is_not_a_profile(tmp_path, capsys):
    bad = tmp_path / "x.yaml"
    bad.write_text("train: {}\n")
    assert main(["plan", "--config", str(bad)]) == 2
    assert "not a profile" in capsys.readouterr().err


def test_gpu_check_tiny_runs_every_path_through_the_training_loop(tmp_path, monkeypatch):
    import benchmark.train as train

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    steps = []
    real_step = train.Trainer.step
    monkeypatch.setattr(train.Trainer, "step", lambda self: steps.append(self.method.name) or real_step(self))
    assert gpu_check.main(["--tiny", "--out", str(tmp_path)]) == 0
    record = json.loads(next(tmp_path.glob("gpu_check-*-tiny.json")).read_text())
    assert {"msr2b", "res2net", "resnet", "deblurgan", "deepdeblur", "sun"} <= set(steps)  # the one loop
    trained = {(t["run"], t["precision"]) for t in record["training"]}
    assert {(n, p) for n in gpu_check.NETWORKS for p in ("fp32", "bf16")} <= trained
    assert all(t["ms_per_iteration"] > 0 and t["peak_memory_mb"] > 0 for t in record["training"])
    assert [r["method"] for r in record["inference"]] == list(gpu_check.NETWORKS)
    assert all(r["median_s"] > 0 and r["median_s_bf16"] > 0 for r in record["inference"])
    walls = record["estimate"]["wall_hours"]
    assert walls["64"] <= walls["8"] <= walls["1"] == pytest.approx(record["estimate"]["gpu_hours"])
    series = record["gan"]["series"]
    assert series[0]["iteration"] == 0 and len(series) >= 2 and series[-1]["iteration"] > 0
    assert "GAN learning check" in next(tmp_path.glob("gpu_check-*-tiny.md")).read_text()


def test_plan_probes_this_machine_when_asked(tmp_path, capsys):
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(_tiny_smoke(tmp_path)))
    out = tmp_path / "plan.json"
    # The budget holds making the data, building the 8 networks and warming up: a few seconds of it each.
    assert main(["plan", "--config", str(path), "--probe-seconds", "16", "--device", "cpu", "--out", str(out)]) == 0
    assert "probe on this machine" in capsys.readouterr().out
    plan = json.loads(out.read_text())
    # A loaded machine may leave a job unmeasured within its share: then it says why.
    measured = [r for r in plan["jobs"] if r["ms_per_iteration"] is not None]
    assert measured and all(r["ms_per_iteration"] > 0 for r in measured)
    assert set(plan["unmeasured"]) <= set(plan.get("probe_notes", {}))
    assert [r["iterations"] for r in plan["jobs"]][0] == 2  # smoke: 1 epoch of 2 pairs, batch 1
    # the evaluation's half of the budget: what it measured is positive (the probe is tested on its own below)
    assert {r["name"] for r in plan["evaluation"]["jobs"]} >= {"msr2b", "pan", "blurred"}
    assert all(r["hours"] >= 0 for r in plan["evaluation"]["jobs"] if r["seconds_per_image"] is not None)
    assert main(["plan", "--config", str(path), "--probe-seconds", "0"]) == 0
    assert "not measured" in capsys.readouterr().out


def _tiny_smoke(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    small = {"msr2b": {"k": 1, "width": 8}, "res2net": {"k": 1, "width": 8}, "resnet": {"k": 1, "width": 8},
             "deblurgan": {"ngf": 8, "n_blocks": 1},
             "deepdeblur": {"features": 8, "blocks": 1, "train": {"batch_size": 2}}}
    for name, options in small.items():  # the profile's own crops stay
        section = cfg["methods"].get(name, {})
        cfg["methods"][name] = {**section, **options, "train": {**section.get("train", {}), **options.get("train", {})}}
    cfg["train"]["n_critic"] = 1
    cfg["fig5"]["k"] = [1]
    return cfg


def test_a_probe_is_stopped_at_the_end_of_its_budget_even_inside_an_iteration(tmp_path, monkeypatch):
    """An iteration that would take a minute (a paper-size step on a CPU) is cut at the end of its share of
    the budget, and every job left unmeasured says what it was doing; nothing raises."""
    import torch

    import benchmark.train as train
    from benchmark.plan import make_plan, probe, probe_times

    cfg = _tiny_smoke(tmp_path)
    nafnet = next(j for j in training_jobs(cfg) if j.run == "nafnet")  # no VGG19, no critic: built at once
    probe(nafnet, torch.device("cpu"), 0.1, tmp_path, warmup_iterations=1)  # the data and the imports, once
    monkeypatch.setattr(train.Trainer, "step", lambda self: time.sleep(60))
    times, notes = probe_times([nafnet], torch.device("cpu"), 8.0, tmp_path)
    assert times == {} and "in 1 warm-up iteration(s)" in notes["nafnet"], notes

    plan, source = make_plan(cfg, gpu_check=None, probe_seconds=1.5, device=torch.device("cpu"), workdir=tmp_path)
    reasons = plan["probe_notes"]
    assert set(reasons) == {j["run"] for j in plan["jobs"]} == set(plan["unmeasured"])
    assert all("share" in why or "before its turn" in why for why in reasons.values())
    assert "budget 1.5 s" in source


def test_plan_takes_a_profile_name_and_warns_before_probing_paper_sizes_on_a_cpu(capsys):
    import torch

    from benchmark.plan import paper_sizes_on_cpu

    assert main(["plan", "--config", "paper", "--probe-seconds", "0"]) == 0
    assert "| msr2b | 630,900 | 256 | 1 | not measured | – |" in capsys.readouterr().out
    jobs = training_jobs(_paper())
    warning = paper_sizes_on_cpu(jobs, torch.device("cpu"))
    assert "paper's sizes" in warning and "--gpu-check" in warning
    assert paper_sizes_on_cpu(jobs, torch.device("cuda")) is None
    assert paper_sizes_on_cpu(training_jobs(yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())),
                              torch.device("cpu")) is None
    assert main(["plan", "--config", "no-such-profile"]) == 2
    assert "profiles: paper, quick, reduced, smoke" in capsys.readouterr().err


# -- the evaluation ---------------------------------------------------------------------------------------
def test_evaluation_jobs_are_the_dags_evaluated_names_with_their_images_and_shards():
    jobs = {j.name: j for j in evaluation_jobs(_paper())}
    beyond = {"hide": 2025, "realblur-j": 980, "realblur-r": 980}  # the generalisation sets (SPEC section 10)
    assert jobs["msr2b"].images == {"gopro": 1111, "gopro_gamma": 1111, "kohler": 48} | beyond  # + blur_gamma
    assert jobs["pan"].images == {"gopro": 1111, "kohler": 48} | beyond and jobs["pan"].network is False
    assert (jobs["pan"].shards, jobs["pan"].shard_size) == (129, 40) and jobs["msr2b"].shards == 32
    releases = {n for n in jobs if n.startswith("authors:")}
    assert releases == {"authors:deblurgan", "authors:deepdeblur", "authors:nafnet-32", "authors:nafnet-64"}
    assert jobs["authors:nafnet-64"].options["width"] == 64 and jobs["authors:nafnet-64"].network


def test_evaluation_hours_scale_kohler_by_its_pixels_and_fill_the_nodes():
    cfg = _paper()
    del cfg["data"]["hide"], cfg["data"]["realblur"]  # GOPRO and Köhler only
    jobs = evaluation_jobs(cfg)
    seconds = {"pan": {"seconds": 100.0, "complete": True, "source": "probe", "device": "cpu"},
               "msr2b": {"seconds": 0.5, "complete": False, "source": "probe", "device": "cuda"}}
    plan = estimate_evaluation(cfg, jobs, seconds)
    row = {r["name"]: r for r in plan["jobs"]}
    pan_hours = (1111 * 100 + 48 * 100 * (800 * 800) / (1280 * 720)) / 3600  # Köhler's 800x800 by its pixels
    assert row["pan"]["hours"] == pytest.approx(pan_hours) and plan["cpu_hours"] == pytest.approx(pan_hours)
    assert row["pan"]["hours_per_shard"] == pytest.approx(pan_hours / 29)
    assert plan["gpu_hours"] == pytest.approx((2222 * 0.5 + 48 * 0.5 * 640_000 / 921_600) / 3600)
    assert plan["lower_bounds"] == ["msr2b"] and "wiener" in plan["unmeasured"]
    walls = plan["wall_hours"]
    assert walls["1"] == pytest.approx(plan["cpu_hours"] + plan["gpu_hours"])
    assert walls["64"] == pytest.approx(pan_hours / 29)  # every shard on a node of its own
    assert walls["64"] < walls["8"] < walls["1"]


def test_evaluation_seconds_come_from_the_profiles_timings_then_a_probe(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    jobs = [j for j in evaluation_jobs(cfg) if j.method in ("pan", "wiener", "blurred")]
    (tmp_path / "timing").mkdir()
    (tmp_path / "timing" / "pan.json").write_text(json.dumps({"median_s": 7.0, "width": 64, "height": 64}))
    (tmp_path / "timing" / "wiener.json").write_text(json.dumps({"median_s": 9.0, "width": 48, "height": 32}))
    seconds, unmeasured = evaluation_seconds(cfg, jobs, results=tmp_path, gpu_check=None, probe_seconds=0,
                                             device="cpu")
    assert seconds == {"pan": {"seconds": 7.0, "complete": True, "source": "timing", "device": "cpu"}}
    assert unmeasured == ["wiener", "blurred"]  # wiener was timed at another size than the test images'


def test_a_restore_probe_is_stopped_at_its_budget_and_gives_a_lower_bound():
    from benchmark import registry

    probes = [(m, registry.get(m).options(), "cpu") for m in ("blurred", "pan", "blurred")]
    result = probe_restores(probes, 1280, 720, budget=30.0)  # Pan at 720p takes minutes on a CPU
    seconds, complete = result["pan"]
    # stopped: a lower bound, or none when a busy machine had not even built it within its share
    assert complete is False and (seconds is None or seconds > 0)
    assert result["blurred"][1] is True and result["blurred"][0] >= 0  # the others finish (no wall time asserted)
