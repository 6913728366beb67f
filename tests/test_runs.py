"""The training runs a configuration asks for (benchmark/runs.py) and `deblurbench train --run`."""

from pathlib import Path

import yaml

from benchmark import registry, runs
from benchmark.cli import main

REPO = Path(__file__).resolve().parents[1]


def _cfg(**extra):
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg.update(extra)
    return cfg


def test_one_run_per_trained_method_and_seed_plus_the_sweep():
    trained = [m.name for m in registry.available() if m.kind == "trained"]
    plan = runs.plan(_cfg(seeds=[0, 2], fig5={"method": "msr2b", "k": [3, 9]}))
    assert set(plan) == set(trained) | {f"{m}-s2" for m in trained} | {"msr2b-k3"}
    assert plan["msr2b-s2"].seed == 2 and plan["msr2b"].seed == 0 and plan["msr2b-k3"].options == {"k": 3}
    assert set(runs.plan(_cfg())) == set(trained)  # no `seeds`: train.seed only, names unchanged
    assert runs.seed_runs("msr2b", _cfg(seeds=[0, 1])) == [(0, "msr2b"), (1, "msr2b-s1")]
    assert runs.seed_runs("wiener", _cfg(seeds=[0, 1])) == [(0, "wiener")]


def test_train_run_errors_are_one_line(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_cfg()))
    common = ["--data", str(tmp_path), "--cache", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main(["train", "--config", str(config), "--run", "nosuch", *common]) == 2
    err = capsys.readouterr().err
    assert "no run 'nosuch'" in err and "msr2b" in err and len(err.strip().splitlines()) == 1
    assert main(["train", *common]) == 2
    assert "--run NAME" in capsys.readouterr().err
