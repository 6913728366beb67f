"""A checkpoint belongs to the run that wrote it (issue 10, defect 1): a changed configuration restarts
from scratch, a lengthened schedule continues only when asked, and run.json says what happened. Issue 20: a
run's identity covers every pixel of its training data; a finished run (model.pt) or a longer-trained
checkpoint is never replaced without --force; a checkpoint cut short is set aside, not a dead end."""

import json
import shutil

import numpy as np
import pytest
import torch

from benchmark.cli import EXIT_ERROR, main

TRAIN = {"seed": 0, "epochs_constant": 2, "epochs_decay": 0, "lr": 1e-4, "lr_final": 1e-7, "betas": [0.5, 0.999],
         "eps": 1e-8, "n_critic": 1, "gp_weight": 10.0, "content_weight": 100.0, "perceptual_weights": "random",
         "perceptual_normalize": True, "batch_size": 1, "crop": 32, "val_every": 1, "log_every": 1,
         "checkpoint_every": 2}


def _argv(data, cache, out, *extra, **train):
    return ["train", "--method", "msr2b", "--method-config", '{"k": 1, "width": 8}',
            "--train", json.dumps(TRAIN | train), "--data", str(data), "--cache", str(cache),
            "--validation-images", "0", "--out", str(out), "--device", "cpu", "--quiet", *extra]


def _refused(data, cache, out, capsys, *extra, **train):
    """The run is refused in one line, and the finished run in ``out`` is left as it was."""
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(_argv(data, cache, out, *extra, **train)) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    return err


def _train(data, cache, out, capsys, *extra, **train):
    assert main(_argv(data, cache, out, *extra, **train)) == 0
    printed = capsys.readouterr().out
    return printed, json.loads((out / "run.json").read_text()), torch.load(out / "model.pt", weights_only=True)


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_changed_settings_restart_from_scratch(tiny_gopro, tiny_cache, tmp_path, capsys):
    out = tmp_path / "run"
    _, first, old = _train(tiny_gopro, tiny_cache, out, capsys)
    assert first["iterations_run"] == 8 and first["resumed_from"] is None and first["run_hash"]
    # A finished run of other settings is not replaced without --force (issue 20; it used to be).
    err = _refused(tiny_gopro, tiny_cache, out, capsys, "--resume", lr=5e-4)
    assert "holds a finished run (settings.lr changed); add --force" in err
    # The defect of issue 10: resuming a finished run with another lr ran 0 iterations and wrote the old weights.
    printed, info, new = _train(tiny_gopro, tiny_cache, out, capsys, "--resume", "--force", lr=5e-4)
    assert info["iterations_run"] == 8 and info["resumed_from"] is None
    assert info["settings"]["lr"] == 5e-4 and info["run_hash"] != first["run_hash"]
    assert not _same(old, new)
    _, fresh, reference = _train(tiny_gopro, tiny_cache, tmp_path / "fresh", capsys, lr=5e-4)
    assert _same(new, reference) and fresh["run_hash"] == info["run_hash"]
    # The same settings resume (a finished run: nothing left to do) and say so in run.json.
    _, again, same = _train(tiny_gopro, tiny_cache, out, capsys, "--resume", lr=5e-4)
    assert again["iterations_run"] == 0 and again["resumed_from"] == 8 and _same(same, new)
    # The workflow's way: Snakemake removes a job's outputs (model.pt, run.json, logs) before rerunning it,
    # so a changed configuration finds only the checkpoint, and restarts from scratch saying why.
    for name in ("model.pt", "run.json"):
        (out / name).unlink()
    printed, info, _ = _train(tiny_gopro, tiny_cache, out, capsys, "--resume", lr=1e-4)
    assert printed.count("restarting from scratch") == 1 and "lr" in printed and info["iterations_run"] == 8


def test_lengthened_schedule_continues_only_when_asked(tiny_gopro, tiny_cache, tmp_path, capsys):
    out = tmp_path / "run"
    _, first, _ = _train(tiny_gopro, tiny_cache, out, capsys)
    # Defect (issue 20): without --extend the finished run was thrown away and trained again from scratch.
    err = _refused(tiny_gopro, tiny_cache, out, capsys, "--resume", epochs_constant=3)
    assert "holds a finished run (settings.epochs_constant changed)" in err
    (out / "model.pt").unlink()  # as the workflow leaves it: the finished checkpoint alone
    err = _refused(tiny_gopro, tiny_cache, out, capsys, "--resume", epochs_constant=3)
    assert "checkpoint.pt: not resuming: the schedule was lengthened (2+0 -> 3+0 epochs)" in err
    assert "--extend" in err and "--force" in err
    printed, info, _ = _train(tiny_gopro, tiny_cache, out, capsys, "--resume", "--force", epochs_constant=3)
    assert info["iterations_run"] == 12 and info["resumed_from"] is None and info["extended_from"] is None

    out2 = tmp_path / "extended"
    _train(tiny_gopro, tiny_cache, out2, capsys)
    printed, info, _ = _train(tiny_gopro, tiny_cache, out2, capsys, "--resume", "--extend", epochs_constant=3)
    assert "restarting" not in printed
    assert info["resumed_from"] == 8 and info["iterations_run"] == 4 and info["iterations"] == 12
    assert info["extended_from"] == [{"iteration": 8, "epochs_constant": 2, "epochs_decay": 0,
                                      "run_hash": first["run_hash"]}]
    # A shortened schedule or another change is never an extension: it needs --force over a finished run.
    _refused(tiny_gopro, tiny_cache, out2, capsys, "--resume", "--extend", epochs_constant=1)
    printed, info, _ = _train(tiny_gopro, tiny_cache, out2, capsys, "--resume", "--extend", "--force",
                              epochs_constant=1)
    assert info["iterations_run"] == 4 and info["extended_from"] is None


def test_every_pixel_of_the_training_data_defines_the_run(tiny_gopro, tiny_cache, tmp_path, capsys):
    """Defect: only the first, middle and last pairs were hashed, so a changed second pair of four resumed the
    old checkpoint silently."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_cache, cache)
    out = tmp_path / "run"
    assert main(_argv(tiny_gopro, cache, out, "--stop-after", "2")) == 0
    first = json.loads((out / "run.json").read_text())
    pairs = np.load(cache / "pairs.npy", mmap_mode="r+")
    assert len(pairs) == 4
    pairs[1, 1, 0, 0, 0] ^= 1  # one value of the sharp image of the second pair
    pairs.flush()
    del pairs
    printed, info, _ = _train(tiny_gopro, cache, out, capsys, "--resume")
    assert "restarting from scratch" in printed and "data.pixels" in printed
    assert info["resumed_from"] is None and info["run_hash"] != first["run_hash"]


def test_a_checkpoint_cut_short_is_set_aside_and_training_starts_afresh(tiny_gopro, tiny_cache, tmp_path, capsys):
    """Defect: a truncated checkpoint.pt stopped every later resume (and the workflow) until deleted by hand."""
    out = tmp_path / "run"
    assert main(_argv(tiny_gopro, tiny_cache, out, "--stop-after", "2")) == 0
    checkpoint = out / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    capsys.readouterr()
    printed, info, _ = _train(tiny_gopro, tiny_cache, out, capsys, "--resume")
    assert printed.count("not resuming") == 1 and "cannot be read" in printed and "checkpoint.pt.unreadable" in printed
    assert info["resumed_from"] is None and info["iterations_run"] == 8
    assert (out / "checkpoint.pt.unreadable").stat().st_size == 1000


@pytest.mark.parametrize("setting", [{"checkpoint_every": 0}, {"log_every": 0}, {"val_every": 0}, {"n_critic": -1},
                                     {"content_weight": -100}, {"lr_final": -1}, {"lr": float("nan")},
                                     {"batch_size": 2.0}, {"crop": 8}, {"gp_reduction": "max"}, {"betas": [0.5]},
                                     {"epochs_decay": 0, "epochs_constant": 0}, {"learning_rate": 0.1}])
def test_training_settings_are_checked_by_the_schema_wherever_they_come_from(tiny_gopro, tiny_cache, tmp_path,
                                                                           capsys, setting):
    """Defects: checkpoint_every, log_every or val_every 0 were ZeroDivisionError tracebacks; n_critic 0,
    content_weight -100 and lr_final -1 trained something else with exit 0."""
    key = next(iter(setting))  # the setting the message names
    for how in ("--train", "--method-config"):
        argv = _argv(tiny_gopro, tiny_cache, tmp_path / "run")
        if how == "--train":
            argv[argv.index("--train") + 1] = json.dumps(TRAIN | setting)
        else:
            argv[argv.index("--method-config") + 1] = json.dumps({"k": 1, "width": 8, "train": setting})
        assert main(argv) == EXIT_ERROR
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"train setting {key}" in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_a_non_finite_loss_is_one_line(tiny_gopro, tiny_cache, tmp_path, capsys):
    """Defect: a FloatingPointError traceback."""
    assert main(_argv(tiny_gopro, tiny_cache, tmp_path / "run", content_weight=1e308, log_every=1)) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "non-finite loss" in err and "Traceback" not in err
