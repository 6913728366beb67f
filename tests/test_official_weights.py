"""Released weights load strictly: state dicts built with the official key names and shapes, written
to disk in each release's own layout (DeblurGAN: a plain state dict; DeepDeblur: ``{'G': ...}`` in
``models/model-N.pt`` of a zipped experiment folder; NAFNet: ``{'params': ...}``), and read back through
the registered `load_official` and `deblurbench deblur --weights`; a wrong file is refused with the key lists."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from benchmark import registry
from benchmark.cli import EXIT_ERROR, main
from benchmark.registry import network_restore

# From the official code (research notes, section 11): the tensors a released file holds.
OFFICIAL = {
    "deblurgan": {"tensors": 48, "params": 11_378_179,
                  "shapes": {"model.1.weight": (64, 3, 7, 7), "model.10.conv_block.1.weight": (256, 256, 3, 3),
                             "model.18.conv_block.6.bias": (256,), "model.19.weight": (256, 128, 3, 3),
                             "model.26.weight": (3, 64, 7, 7), "model.26.bias": (3,)}},
    "deepdeblur": {"tensors": 244, "params": 11_721_321,
                   "shapes": {"body_models.0.body.0.weight": (64, 6, 5, 5),
                              "body_models.2.body.0.weight": (64, 3, 5, 5),
                              "body_models.1.body.19.body.2.weight": (64, 64, 5, 5),
                              "body_models.0.body.20.weight": (3, 64, 5, 5),
                              "conv_end_models.1.uppath.0.weight": (12, 3, 5, 5),
                              "conv_end_models.2.uppath.0.bias": (12,)}},
}


# Small NAFNet options keep these tests fast; the GoPro sizes are pinned in test_nafnet.py.
SMALL_NAFNET = {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]}
OPTIONS = {"nafnet": SMALL_NAFNET}


def official_state(name):
    method = registry.get(name)
    state = method.build(method.options(OPTIONS.get(name))).state_dict()
    generator = torch.Generator().manual_seed(0)
    return {k: torch.randn(v.shape, generator=generator) * 0.01 for k, v in state.items()}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_key_names_and_shapes_are_the_official_ones(name):
    expected = OFFICIAL[name]
    method = registry.get(name)
    state = method.build(method.options()).state_dict()
    assert len(state) == expected["tensors"]
    assert sum(v.numel() for v in state.values()) == expected["params"]
    for key, shape in expected["shapes"].items():
        assert tuple(state[key].shape) == shape, key


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_released_file_loads_strictly_and_restores_any_size(name, tmp_path):
    method = registry.get(name)
    state = official_state(name)
    path = tmp_path / "latest_net_G.pth"
    torch.save({"G": state} if name == "deepdeblur" else state, path)
    model = method.build(method.options())
    method.load_official(model, path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    image = np.random.default_rng(0).integers(0, 256, (23, 37, 3), dtype=np.uint8)
    out = network_restore(model.eval(), image, method.options())
    assert out.shape == image.shape and out.dtype == np.uint8


def write_release(name, state, folder):
    """``state`` in the release's own file layout, under its released file name."""
    if name == "deblurgan":
        path = folder / "latest_net_G.pth"
        torch.save(state, path)
    elif name == "deepdeblur":
        path = folder / "GOPRO_L1.zip"
        with zipfile.ZipFile(path, "w") as z:
            for epoch, value in ((500, 0.5), (1000, None)):  # the last epoch is the one read
                buf = io.BytesIO()
                torch.save({"G": {k: v if value is None else torch.full_like(v, value) for k, v in state.items()}}, buf)
                z.writestr(f"GOPRO_L1/models/model-{epoch}.pt", buf.getvalue())
            z.writestr("GOPRO_L1/args.pt", b"not weights")
    else:
        path = folder / "NAFNet-GoPro-width8.pth"
        torch.save({"params": state}, path)
    return path


@pytest.mark.parametrize("name", ["deblurgan", "deepdeblur", "nafnet"])
def test_each_official_layout_restores_through_the_deblur_command(name, tmp_path):
    from PIL import Image

    state = official_state(name)
    path = write_release(name, state, tmp_path)
    image = tmp_path / "photo.png"
    pixels = np.random.default_rng(1).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    options = ["--options", json.dumps(OPTIONS[name])] if name in OPTIONS else []
    assert main(["deblur", str(image), "--method", name, *options, "--weights", str(path), "--device", "cpu",
                 "--out", str(tmp_path / "restored.png")]) == 0
    restored = np.array(Image.open(tmp_path / "restored.png"))
    method = registry.get(name)
    model = method.build(method.options(OPTIONS.get(name)))
    model.load_state_dict(state)
    assert np.array_equal(restored, method.restore(model.eval(), pixels, method.options(OPTIONS.get(name))))


def test_a_file_of_the_wrong_architecture_is_refused_with_the_key_lists(tmp_path, capsys):
    path = write_release("nafnet", official_state("deblurgan"), tmp_path)
    method = registry.get("nafnet")
    with pytest.raises(ValueError, match=r"width8.pth: does not match NAFNet: missing keys "
                       r"\[decoders\.0\.0\.beta, .*\] \(100\); unexpected keys \[model\.1\.bias, .*\] \(48\)"):
        method.load_official(method.build(method.options(SMALL_NAFNET)), path)
    image = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    path = write_release("deblurgan", official_state("deblurgan"), tmp_path)
    assert main(["deblur", str(image), "--method", "deepdeblur", "--weights", str(path)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "latest_net_G.pth: does not match MSResNet: missing keys [body_models.0.body.0.bias" in err
    assert "unexpected keys [model.1.bias" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_missing_key_is_a_clear_error_naming_the_file(name, tmp_path):
    method = registry.get(name)
    state = official_state(name)
    state.pop(next(iter(state)))
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="broken.pth"):
        method.load_official(method.build(method.options()), path)


def test_deblur_command_takes_the_official_deblurgan_weights(tmp_path):
    path = tmp_path / "latest_net_G.pth"
    torch.save(official_state("deblurgan"), path)
    image = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 41, 3), dtype=np.uint8)).save(image)
    assert main(["deblur", str(image), "--method", "deblurgan", "--weights", str(path), "--device", "cpu"]) == 0
    assert np.array(Image.open(tmp_path / "photo_deblurgan.png")).shape == (30, 41, 3)
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "other.pth")
    assert main(["deblur", str(image), "--method", "deblurgan", "--weights", str(tmp_path / "other.pth")]) == EXIT_ERROR


def test_deblurgan_release_with_pre_0_4_instance_norm_statistics_loads(tmp_path):
    """The released file carries InstanceNorm running statistics (PyTorch < 0.4): dropped, nothing else."""
    method = registry.get("deblurgan")
    state = official_state("deblurgan")
    norms = [n for n, m in method.build(method.options()).named_modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert "model.2" in norms and "model.10.conv_block.7" in norms
    old = dict(state) | {f"{n}.{b}": torch.ones(8) for n in norms for b in ("running_mean", "running_var")}
    torch.save(old, tmp_path / "latest_net_G.pth")
    model = method.build(method.options())
    method.load_official(model, tmp_path / "latest_net_G.pth")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    torch.save(old | {"model.1.running_mean": torch.ones(64)}, tmp_path / "bad.pth")  # model.1 is a conv
    with pytest.raises(ValueError, match=r"unexpected keys \[model\.1\.running_mean\] \(1\)"):
        method.load_official(method.build(method.options()), tmp_path / "bad.pth")
