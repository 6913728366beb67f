"""The one validation path of issue 20 (benchmark/config.py): every method's options range-checked from its
declaration, the training settings and the profile checked by the same strict schema rules, each problem one
line naming the key, the value and what is allowed."""

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark import registry, runs
from benchmark.cli import EXIT_ERROR, main
from benchmark.config import ConfigError, check_profile, check_train_settings, describe, method_setup

REPO = Path(__file__).resolve().parents[1]


def _profile(name: str = "smoke") -> dict:
    return yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())


@pytest.mark.parametrize(("method", "options", "named"), [
    ("wiener", {"balance": float("nan")}, "option balance = nan: must be a finite number > 0 (default 0.1)"),
    ("wiener", {"balance": float("inf")}, "option balance = inf: must be a finite number > 0"),
    ("wiener", {"balance": 0}, "option balance = 0: must be a finite number > 0"),
    ("richardson-lucy", {"rl_iterations": 0}, "option rl_iterations = 0: must be a whole number >= 1"),
    ("richardson-lucy", {"rl_iterations": 2.0}, "option rl_iterations = 2.0: must be a whole number >= 1"),
    ("pan", {"lambda_grad": -1}, "option lambda_grad = -1: must be a finite number >= 0"),
    ("pan", {"kernel_size": [9]}, "option kernel_size = [9]: must be null or a whole number >= 3 that is odd"),
    ("pan", {"kernel_size": 8}, "option kernel_size = 8: must be null or a whole number >= 3 that is odd"),
    ("pan", {"final_p": 3}, "option final_p = 3: must be a finite number > 0 and <= 2"),
    ("pan", {"final_data_norm": "l3"}, 'option final_data_norm = "l3": must be one of "l1-robust", "l2"'),
    ("msr2b", {"k": 0}, "option k = 0: must be a whole number >= 1"),
    ("msr2b", {"block": "resnext"}, 'option block = "resnext": must be one of "msr2b", "res2net", "resnet"'),
    ("nafnet", {"enc_blk_nums": [1, -1]}, "option enc_blk_nums[1] = -1: must be a whole number >= 0"),
    ("nafnet", {"dec_blk_nums": []}, "option dec_blk_nums = []: must be a list of at least 1 item"),
    ("deepdeblur", {"kernel": 4}, "option kernel = 4: must be a whole number >= 1 that is odd"),
    ("deblurgan", {"dropout": 1.0}, "option dropout = 1.0: must be a finite number >= 0 and < 1"),
    # a trained method's training settings among its options: the schema's train entry applies
    ("deblurgan", {"n_critic": -1}, "option n_critic = -1: must be a whole number >= 0"),  # 0: content only
    ("deblurgan", {"betas": [0.5]}, "option betas = [0.5]: must be a list of exactly 2 items, each a finite number"),
    ("sun", {"lam": -1e-3}, "option lam = -0.001: must be a finite number > 0"),
])
def test_every_option_is_range_checked_in_one_line(method, options, named):
    with pytest.raises(ConfigError) as info:
        registry.get(method).options(options)
    assert str(info.value).startswith(f"method {method!r}: ") and named in str(info.value)
    assert "\n" not in str(info.value)


def test_every_registered_method_declares_valid_defaults_and_limits():
    for method in registry.available():
        assert method.options() == dict(method.defaults)  # the defaults satisfy the declared limits


def test_the_defects_reproductions_are_refused_before_anything_runs(tmp_path, capsys):
    """Issue 20's examples: wiener NaN (every pixel 0, exit 0), pan lambda_grad -1 (never returned), pan
    kernel_size [9] (a traceback)."""
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(photo)
    for method, options in (("wiener", '{"balance": NaN}'), ("pan", '{"lambda_grad": -1}'),
                            ("pan", '{"kernel_size": [9]}'), ("richardson-lucy", '{"rl_iterations": 0}')):
        assert main(["deblur", str(photo), "--method", method, "--options", options]) == EXIT_ERROR
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"method {method!r}: option" in err
    assert not list(tmp_path.glob("photo_*.png"))


def test_the_schema_is_strict_about_integers_and_finite_numbers():
    for bad in ({"seed": 2.0}, {"lr": float("nan")}, {"lr_final": float("inf")}, {"batch_size": True},
                {"betas": [0.5, float("nan")]}, {"checkpoint_every": 0}):
        with pytest.raises(ConfigError, match=f"train setting {next(iter(bad))}"):
            check_train_settings(bad)
    check_train_settings({"seed": 2, "lr": 1e-4, "lr_final": 0, "batch_size": 1})


@pytest.mark.parametrize(("path", "value", "named"), [
    (("seeds",), [0, 2.0], "config key seeds[1] = 2.0: must be a whole number"),
    (("train", "lr_final"), float("nan"), "config key train.lr_final = nan: must be a finite number >= 0"),
    (("report", "bootstrap"), 1000.0, "config key report.bootstrap = 1000.0: must be a whole number >= 100"),
    (("train", "lerning_rate"), 0.1, "config key train.lerning_rate: unknown key (valid: "),
    (("fig5", "method"), "pan", "config key fig5.method = 'pan': a classical method; Fig. 5 sweeps"),
    (("fig5", "method"), "deblurgan", "config key fig5.method = 'deblurgan': a trained method without an option k"),
    (("fig5", "method"), "msr3b", "config key fig5.method = 'msr3b': not a registered method"),
    (("data", "source"), "real", "config key data: lacks the key gopro (data.source is real: name data.gopro.root"),
    (("methods", "pan"), {"lambda_grad": -1}, "config key methods.pan: option lambda_grad = -1"),
    (("methods", "deblurgan"), {"train": {"n_critic": 2.0}},
     "config key methods.deblurgan: train setting n_critic = 2.0"),
    (("methods", "wiener"), {"train": {"lr": 1}}, "config key methods.wiener.train: wiener is a classical method"),
    (("methods", "msr3b"), {"k": 1}, "config key methods.msr3b: not a registered method"),
])
def test_profile_problems_name_the_key_and_what_is_allowed(path, value, named):
    config = _profile()
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as info:
        check_profile(config)
    assert any(named in line for line in info.value.problems), info.value.problems
    assert len(info.value.report().splitlines()) <= 9


def test_profile_unpack_limit_must_be_finite():
    config = _profile("paper")
    config["data"]["gopro"]["unpack_limit"] = math.inf
    with pytest.raises(ConfigError, match=r"data.gopro.unpack_limit = inf: must be a finite number >= 1"):
        check_profile(config)


@pytest.mark.parametrize("name", ["smoke", "quick", "paper"])
def test_every_profile_passes_and_gets_the_schemas_defaults(name):
    config = check_profile(_profile(name))
    assert config["train"]["gp_reduction"] in ("sum", "mean") and config["timing"]["exclusive"] in (True, False)
    for method in (m for m in registry.available() if m.kind == "trained"):
        method_setup(method.name, config, None)  # what each training job will check again


def test_a_run_of_a_classical_method_is_never_planned():
    config = _profile()
    config["fig5"]["method"] = "pan"
    with pytest.raises(ValueError, match="fig5.method = 'pan': a classical method"):
        runs.plan(config)


def test_method_train_overrides_are_merged_then_checked():
    profile = copy.deepcopy(_profile())
    profile["methods"]["deblurgan"] = {"train": {"crop": 8}}
    with pytest.raises(ConfigError, match="train setting crop = 8: must be a whole number >= 16"):
        method_setup("deblurgan", profile, None)
    with pytest.raises(ConfigError, match="train = 5: must be a mapping"):
        method_setup("deblurgan", _profile(), {"train": 5})
    _, _, settings = method_setup("deblurgan", _profile(), {"train": {"crop": 16}})
    assert settings["crop"] == 16 and settings["n_critic"] == 5


def test_descriptions_read_as_plain_words():
    assert describe({"type": "integer", "minimum": 1}) == "a whole number >= 1"
    assert describe({"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}) == \
        "a list of exactly 2 items, each a finite number"
    assert describe({"enum": ["sum", "mean"]}) == 'one of "sum", "mean"'
    assert describe({"minimum": 1}) == ">= 1"


def test_registered_names_cannot_start_a_formula():
    with pytest.raises(ValueError, match="method name '=cmd'"):
        registry.Method(name="=cmd", display_name="x", kind="classical", summary="x", restore=lambda m, b, o: b)
    with pytest.raises(ValueError, match="limits for options it does not have: balanse"):
        registry.Method(name="x", display_name="x", kind="classical", summary="x", restore=lambda m, b, o: b,
                        defaults={"balance": 0.1}, limits={"balanse": {"minimum": 0}})
