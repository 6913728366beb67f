# Helpers shared by the rules: load the profile, apply overrides, validate, and map wildcards to
# the method registry. No rule logic lives here beyond picking inputs and parameters.
import copy
import json
from pathlib import Path

import yaml
from snakemake.utils import validate

from benchmark import registry


def _deep_update(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


def _typed(value):
    """Snakemake reads the inner values of `--config 'train={lr: 2.0e-4}'` as strings: type them."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, str):
        for parse in (int, float):
            try:
                return parse(value)
            except ValueError:
                pass
        return yaml.safe_load(value) if value else value
    return value


def load_config(cli_config):
    overrides = _typed({k: v for k, v in cli_config.items() if k != "profile"})
    name = cli_config.get("profile", "quick")
    path = Path(workflow.basedir) / "config" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yaml") if p.stem != "schema")
        raise WorkflowError(f"unknown profile {name!r} (config/{name}.yaml not found; profiles: {', '.join(known)})")
    merged = _deep_update(yaml.safe_load(path.read_text()), overrides)
    validate(merged, str(Path(workflow.basedir) / "config" / "schema.yaml"))
    unknown = sorted(set(merged["methods"]) - {m.name for m in registry.available()})
    if unknown:
        raise WorkflowError(f"config key methods: {', '.join(unknown)} is not a registered method "
                            f"(see `deblurbench methods`)")
    return merged


CFG = load_config(config)
PROFILE = CFG["profile"]
R = f"results/{PROFILE}"
METHODS = registry.available()
TRAINED = [m.name for m in METHODS if m.kind == "trained"]
GAN_SWEEP = CFG["fig5"]["method"]
SWEEP_RUNS = {f"{GAN_SWEEP}-k{k}": k for k in CFG["fig5"]["k"] if k != registry.get(GAN_SWEEP).defaults.get("k")}
RUNS = TRAINED + list(SWEEP_RUNS)
DATASETS = ("gopro", "kohler")
SYNTHETIC = CFG["data"]["source"] == "synthetic"
GOPRO_ROOT = f"{R}/data/gopro" if SYNTHETIC else CFG["data"]["gopro"]["root"]
KOHLER_ROOT = f"{R}/data/kohler" if SYNTHETIC else CFG["data"]["kohler"]["root"]
DATA_ROOTS = {"gopro": GOPRO_ROOT, "kohler": KOHLER_ROOT}
# What marks the data as usable: the synthesis record, or the verification report of a download.
DATA_READY = {d: f"{R}/data/synthetic.json" if SYNTHETIC else f"{R}/data/{d}.verified.txt" for d in DATASETS}


def _write_resolved(cfg, path):
    """The merged, validated configuration every `deblurbench` call reads (rewritten only on change)."""
    path = Path(path)
    text = yaml.safe_dump(cfg, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path)


CONFIG_FILE = _write_resolved(CFG, f"{R}/config.yaml")


# The ImageNet VGG19 weights are fetched (and their hash checked) before any training that uses them.
VGG19_READY = [f"{R}/data/vgg19.fetched.json"] if CFG["train"]["perceptual_weights"] == "imagenet" else []


def fetch_flags(dataset):
    """--root, --mirror and --archive for `deblurbench fetch`, from the configuration."""
    if dataset == "vgg19":
        return ""
    cfg = CFG["data"][dataset]
    flags = [f"--root {cfg['root']}"] + [f"--mirror {url}" for url in cfg.get("mirrors", [])]
    if cfg.get("archive"):
        flags.append(f"--archive {cfg['archive']}")
    flags += [f"--md5 {name}={digest}" for name, digest in sorted(cfg.get("md5", {}).items())]
    return " ".join(flags)


def verify_flag(dataset):
    return "--structure-only" if CFG["data"][dataset].get("verify", "counts") == "structure" else ""


def method_of(run):
    return GAN_SWEEP if run in SWEEP_RUNS else run


def method_config(run):
    """The configuration one run sees: its method's section, plus k for a Fig. 5 sweep run."""
    cfg = copy.deepcopy(CFG["methods"].get(method_of(run), {}))
    if run in SWEEP_RUNS:
        cfg["k"] = SWEEP_RUNS[run]
    return json.dumps(cfg, sort_keys=True)


def weights_of(method):
    return f"{R}/train/{method}/model.pt" if method in TRAINED else []


def weights_flag(wildcards, input):
    return f"--weights {input.weights}" if input.weights else ""


def test_set_flags(method):
    """The test sets a method is restored and scored on; the main model also on GOPRO's blur_gamma."""
    gamma = " --gamma" if method == GAN_SWEEP else ""
    return (f"--gopro {GOPRO_ROOT} --blur-folder {CFG['data']['blur_folder']}{gamma} --kohler {KOHLER_ROOT}")


def device_flag():
    return f"--device {CFG['device']}"


def check_device():
    """Nothing silently falls back: a CUDA profile on a machine without a GPU stops before any job."""
    if CFG["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise WorkflowError(
                f"profile {PROFILE!r} asks for device: cuda, but torch sees no CUDA device here. Run it on a "
                "GPU machine, or use --config device=cpu knowingly.")
