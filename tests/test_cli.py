"""The end-user command line: deblur any image, clear errors, nothing half-written."""

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark import registry
from benchmark.cli import EXIT_ERROR, build_parser, main

OPTIONS = {"block": "msr2b", "k": 1, "width": 8, "w0": "identity"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Weights as `deblurbench train` leaves them: model.pt with run.json (its options) beside it."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = registry.get("msr2b").build(registry.get("msr2b").options(OPTIONS))
    torch.save(model.state_dict(), run / "model.pt")
    (run / "run.json").write_text(json.dumps({"method": "msr2b", "options": OPTIONS}))
    return run / "model.pt"


def _image(path, mode, size):
    rng = np.random.default_rng(0)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode).save(path)
    return path


@pytest.mark.parametrize("size", [(37, 23), (64, 48), (5, 3)])
def test_deblur_keeps_any_size(weights, tmp_path, size):
    src = _image(tmp_path / "in.png", "RGB", size)
    out = tmp_path / "out.png"
    assert main(["deblur", str(src), "--weights", str(weights), "--out", str(out), "--device", "cpu"]) == 0
    result = np.array(Image.open(out))
    assert result.shape == (size[1], size[0], 3) and result.dtype == np.uint8


@pytest.mark.parametrize(("mode", "said"), [("L", "grayscale"), ("RGBA", "alpha")])
def test_deblur_converts_grayscale_and_rgba_and_says_so(weights, tmp_path, capsys, mode, said):
    src = _image(tmp_path / f"in_{mode}.png", mode, (20, 18))
    assert main(["deblur", str(src), "--weights", str(weights), "--device", "cpu"]) == 0
    assert said in capsys.readouterr().out.lower()
    assert np.array(Image.open(tmp_path / f"in_{mode}_msr2b.png")).shape == (18, 20, 3)


def test_deblur_a_folder(weights, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        _image(folder / f"p{i}.png", "RGB", (16 + i, 12))
    (folder / "notes.txt").write_text("not an image, and not picked up")
    assert main(["deblur", str(folder), "--weights", str(weights), "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "photos_msr2b").iterdir()) == ["p0.png", "p1.png"]


def test_deblur_a_non_image_fails_clearly_and_leaves_nothing(weights, tmp_path, capsys):
    bad = tmp_path / "fake.png"
    bad.write_bytes(b"this is not a PNG")
    out = tmp_path / "fake_out.png"
    assert main(["deblur", str(bad), "--weights", str(weights), "--out", str(out)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "fake.png" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [bad]


def test_deblur_with_a_classical_method_needs_no_weights(tmp_path):
    src = _image(tmp_path / "in.png", "RGB", (9, 7))
    assert main(["deblur", str(src), "--method", "blurred"]) == 0
    assert np.array_equal(np.array(Image.open(tmp_path / "in_blurred.png")), np.array(Image.open(src)))


def test_trained_method_without_weights_and_wrong_weights_fail_clearly(tmp_path, capsys):
    src = _image(tmp_path / "in.png", "RGB", (9, 7))
    assert main(["deblur", str(src), "--method", "msr2b"]) == EXIT_ERROR
    assert "--weights" in capsys.readouterr().err
    wrong = tmp_path / "wrong.pt"
    torch.save({"nothing": torch.zeros(1)}, wrong)
    assert main(["deblur", str(src), "--method", "msr2b", "--weights", str(wrong)]) == EXIT_ERROR
    assert "wrong.pt" in capsys.readouterr().err


def test_methods_lists_every_registered_method_and_counts_parameters_on_request(capsys):
    assert main(["methods", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert set(listed) == {m.name for m in registry.available()} and "params" not in listed["msr2b"]
    assert main(["methods", "--json", "--params"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["msr2b"]["params"] > 0 and listed["pan"]["params"] == 0


def test_methods_table_fits_100_columns(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 100
    assert all(m.name in out for m in registry.available())


def test_methods_into_a_closed_pipe_is_no_error():
    """`deblurbench methods | head`: the reader leaves early; no traceback, no "Broken pipe" error."""
    run = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "methods", "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    run.stdout.close()
    err = run.stderr.read().decode()
    assert run.wait() == 0 and err == ""


def test_every_subcommand_and_option_has_help(capsys):
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"train", "restore", "score", "time", "deblur", "methods", "report", "fetch", "prepare", "plan"} <= set(
        commands)
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
        with pytest.raises(SystemExit) as stop:
            main([name, "--help"])
        assert stop.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_fetch_help_names_the_releases(capsys):
    from benchmark.releases import RELEASES

    with pytest.raises(SystemExit):
        main(["fetch", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(name in out for name in RELEASES) and ".py" not in out


def test_version_and_bare_command_print_and_succeed(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("deblurbench ")
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: deblurbench") and "deblur" in out and "methods" in out
