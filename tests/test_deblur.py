"""`deblur` as an end-user tool: tiled inference equal to the whole image's, outputs named after the
method, the method read from a run's run.json, a clear line for a classical method given weights."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from benchmark import registry
from benchmark.cli import EXIT_ERROR, main
from benchmark.inference import for_inference, network_restore, restore_tiled, tile_spans, whole_image_statistic

SMALL = {"msr2b": {"k": 2, "width": 8},
         "nafnet": {"width": 8, "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1], "middle_blk_num": 1},
         "deepdeblur": {"features": 8, "blocks": 1}}


def _network(name: str) -> tuple[torch.nn.Module, dict]:
    method = registry.get(name)
    options = method.options(SMALL[name])
    torch.manual_seed(0)
    model = method.build(options)
    with torch.no_grad():  # weights far from MSR2B's identity start, so every block changes the image
        for p in model.parameters():
            p.normal_(0, 0.05)
    return for_inference(model), options


def _photo() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[100:260, 120:330])  # 160 x 210, real edges and texture


@pytest.mark.parametrize("name", list(SMALL))
def test_tiled_inference_equals_the_whole_image_within_one_grey_level(name):
    model, options = _network(name)
    image = _photo()
    whole = network_restore(model, image, options).astype(int)
    assert np.abs(whole - image).mean() > 1  # the network does change the image
    tiles = []
    tiled = restore_tiled(network_restore, model, image, options, tile=64, overlap=16,
                          progress=lambda done, total: tiles.append((done, total)))
    assert tiles[-1] == (12, 12)  # 3 x 4 tiles of 64 over 160 x 210
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    # Without context around each tile, the seams show: the overlap is what makes the two equal.
    seams = restore_tiled(network_restore, model, image, options, tile=64, overlap=0).astype(int)
    assert np.abs(seams - whole).max() > 1


def test_an_image_that_fits_one_tile_is_restored_whole():
    model, options = _network("msr2b")
    image = _photo()[:96, :96]
    calls = []
    restore_tiled(lambda m, x, o: calls.append(x.shape) or network_restore(m, x, o), model, image, options,
                  tile=64, overlap=16)
    assert calls == [(96, 96, 3)]
    assert tile_spans(150, 64) == [(0, 64), (64, 128), (128, 150)]


def test_networks_that_look_at_the_whole_image_are_not_tiled():
    deblurgan = registry.get("deblurgan")
    assert "InstanceNorm" in whole_image_statistic(deblurgan.build(deblurgan.options({"ngf": 8, "n_blocks": 1})))
    nafnet = registry.get("nafnet")
    assert "pools" in whole_image_statistic(nafnet.build(nafnet.options({**SMALL["nafnet"], "local": False})))
    assert whole_image_statistic(_network("nafnet")[0]) is None  # NAFNet's local pooling (TLC) tiles


@pytest.fixture
def nafnet_run(tmp_path):
    """A NAFNet model.pt with the run.json `deblurbench train` writes beside it."""
    run = tmp_path / "train" / "nafnet"
    run.mkdir(parents=True)
    method = registry.get("nafnet")
    options = method.options(SMALL["nafnet"])
    torch.save(method.build(options).state_dict(), run / "model.pt")
    (run / "run.json").write_text(json.dumps({"method": "nafnet", "options": options}))
    return run / "model.pt"


def test_the_method_comes_from_run_json_and_names_the_output(nafnet_run, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(_photo()[:40, :48]).save(photo)
    assert main(["deblur", str(photo), "--weights", str(nafnet_run), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "method nafnet (from" in out and "s, 48x40)" in out
    assert (tmp_path / "photo_nafnet.png").exists()
    # Another method on the same photo writes beside it, not over it.
    assert main(["deblur", str(photo), "--method", "wiener"]) == 0
    assert (tmp_path / "photo_wiener.png").exists()
    # --method contradicting the run.json is refused, naming both.
    assert main(["deblur", str(photo), "--method", "msr2b", "--weights", str(nafnet_run)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "'nafnet'" in err and "'msr2b'" in err and len(err.strip().splitlines()) == 1


def test_weights_without_run_json_and_without_method_say_what_to_do(nafnet_run, tmp_path, capsys):
    (nafnet_run.parent / "run.json").unlink()
    photo = tmp_path / "photo.png"
    Image.fromarray(_photo()[:16, :16]).save(photo)
    assert main(["deblur", str(photo), "--weights", str(nafnet_run), "--device", "cpu"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--method" in err[0] and "msr2b was assumed" in err[0]


def test_a_classical_method_given_weights_says_it_takes_none(nafnet_run, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(_photo()[:16, :16]).save(photo)
    assert main(["deblur", str(photo), "--method", "pan", "--weights", str(nafnet_run)]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'pan' is classical and takes no weights" in err[0]
    assert not (tmp_path / "photo_pan.png").exists()


def test_a_folder_reports_seconds_per_image(tmp_path, capsys):
    folder = tmp_path / "album"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_photo()[:20, i:20 + i]).save(folder / f"{i}.png")
    assert main(["deblur", str(folder), "--method", "blurred"]) == 0
    out = capsys.readouterr().out
    assert "deblurred 2 of 2 images with blurred in" in out and "s per image)" in out
    assert sorted(p.name for p in (tmp_path / "album_blurred").iterdir()) == ["0.png", "1.png"]
