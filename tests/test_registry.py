"""The method registry: one name, one method; discovery finds every module under baselines/."""

import numpy as np
import pytest
import torch

from benchmark import registry
from benchmark.inference import pad_to_multiple
from benchmark.registry import Method, Training, network_restore


def test_discovery_finds_the_papers_methods():
    names = {m.name for m in registry.available()}
    assert {"msr2b", "res2net", "resnet", "blurred"} <= names


def test_duplicate_name_is_an_error():
    existing = registry.get("blurred")
    clone = Method(name="blurred", display_name="x", kind="classical", summary="x", restore=existing.restore)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(clone)
    registry.register(existing)  # the same object again is harmless (a module imported twice)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError, match="msr2b"):
        registry.get("no-such-method")


def test_trained_method_needs_build_and_training():
    with pytest.raises(ValueError, match="needs build and training"):
        Method(name="t", display_name="t", kind="trained", summary="t")
    with pytest.raises(ValueError, match="kind"):
        Method(name="t", display_name="t", kind="learned", summary="t")
    Method(name="t", display_name="t", kind="trained", summary="t", build=lambda o: torch.nn.Identity(),
           training=Training(content_loss=lambda o: torch.nn.L1Loss()))


def test_options_put_overrides_on_defaults():
    m = registry.get("msr2b")
    assert m.options({"k": 3})["k"] == 3 and m.options()["k"] == 9 and m.options()["block"] == "msr2b"


@pytest.mark.parametrize("shape", [(1, 3, 7, 9), (1, 3, 8, 8), (1, 3, 2, 3)])
def test_pad_to_multiple_pads_bottom_right_only(shape):
    x = torch.arange(np.prod(shape), dtype=torch.float32).reshape(shape)
    padded, (h, w) = pad_to_multiple(x, 4)
    assert padded.shape[-2] % 4 == 0 and padded.shape[-1] % 4 == 0
    assert (h, w) == shape[-2:]
    assert torch.equal(padded[..., :h, :w], x)


def test_network_restore_round_trips_uint8_and_takes_the_finest_scale():
    class TwoScales(torch.nn.Module):
        size_multiple = 4

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            assert x.shape[-1] % 4 == 0 and x.shape[-2] % 4 == 0
            return [x[..., ::2, ::2] * 0, x + self.p]

    image = np.random.default_rng(0).integers(0, 256, (13, 11, 3), dtype=np.uint8)
    assert np.array_equal(network_restore(TwoScales(), image, {}), image)
