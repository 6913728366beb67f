"""A checkpoint belongs to the run that wrote it (issue 10, defect 1): a changed configuration restarts
from scratch, a lengthened schedule continues only when asked, and run.json says what happened."""

import json

import torch

from benchmark.cli import main

TRAIN = {"seed": 0, "epochs_constant": 2, "epochs_decay": 0, "lr": 1e-4, "lr_final": 1e-7, "betas": [0.5, 0.999],
         "eps": 1e-8, "n_critic": 1, "gp_weight": 10.0, "content_weight": 100.0, "perceptual_weights": "random",
         "perceptual_normalize": True, "batch_size": 1, "crop": 32, "val_every": 1, "log_every": 1,
         "checkpoint_every": 2}


def _train(data, cache, out, capsys, *extra, **train):
    argv = ["train", "--method", "msr2b", "--method-config", '{"k": 1, "width": 8}',
            "--train", json.dumps(TRAIN | train), "--data", str(data), "--cache", str(cache),
            "--validation-images", "0", "--out", str(out), "--device", "cpu", "--quiet", *extra]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    return printed, json.loads((out / "run.json").read_text()), torch.load(out / "model.pt", weights_only=True)


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_changed_settings_restart_from_scratch(tiny_gopro, tiny_cache, tmp_path, capsys):
    out = tmp_path / "run"
    _, first, old = _train(tiny_gopro, tiny_cache, out, capsys)
    assert first["iterations_run"] == 8 and first["resumed_from"] is None and first["run_hash"]
    # The defect: resuming a finished run with another lr ran 0 iterations and wrote the old weights.
    printed, info, new = _train(tiny_gopro, tiny_cache, out, capsys, "--resume", lr=5e-4)
    assert printed.count("restarting from scratch") == 1 and "lr" in printed
    assert info["iterations_run"] == 8 and info["resumed_from"] is None
    assert info["settings"]["lr"] == 5e-4 and info["run_hash"] != first["run_hash"]
    assert not _same(old, new)
    _, fresh, reference = _train(tiny_gopro, tiny_cache, tmp_path / "fresh", capsys, lr=5e-4)
    assert _same(new, reference) and fresh["run_hash"] == info["run_hash"]
    # The same settings resume (a finished run: nothing left to do) and say so in run.json.
    _, again, same = _train(tiny_gopro, tiny_cache, out, capsys, "--resume", lr=5e-4)
    assert again["iterations_run"] == 0 and again["resumed_from"] == 8 and _same(same, new)


def test_lengthened_schedule_continues_only_when_asked(tiny_gopro, tiny_cache, tmp_path, capsys):
    out = tmp_path / "run"
    _, first, _ = _train(tiny_gopro, tiny_cache, out, capsys)
    printed, info, _ = _train(tiny_gopro, tiny_cache, out, capsys, "--resume", epochs_constant=3)
    assert "restarting from scratch" in printed and "--extend" in printed
    assert info["iterations_run"] == 12 and info["extended_from"] is None

    out2 = tmp_path / "extended"
    _train(tiny_gopro, tiny_cache, out2, capsys)
    printed, info, _ = _train(tiny_gopro, tiny_cache, out2, capsys, "--resume", "--extend", epochs_constant=3)
    assert "restarting" not in printed
    assert info["resumed_from"] == 8 and info["iterations_run"] == 4 and info["iterations"] == 12
    assert info["extended_from"] == [{"iteration": 8, "epochs_constant": 2, "epochs_decay": 0,
                                      "run_hash": first["run_hash"]}]
    # A shortened schedule or another change is never an extension.
    printed, info, _ = _train(tiny_gopro, tiny_cache, out2, capsys, "--resume", "--extend", epochs_constant=1)
    assert "restarting from scratch" in printed and info["iterations_run"] == 4 and info["extended_from"] is None
