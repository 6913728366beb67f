# Helpers shared by the rules: load the profile, apply overrides, validate, and map wildcards to
# the method registry and the training runs. No rule logic lives here beyond picking inputs and
# parameters. Parsing the workflow writes nothing (`--lint` and `-n` create no files): the resolved
# configuration is written by `write_resolved_config`, called from `onstart` (which runs only when jobs
# are about to run).
#
# How configuration reaches a job: a job reads the resolved file `{R}/config.yaml` and picks its own
# section (`--config FILE --run RUN`, `--method NAME`); values that do go on a command line (paths,
# URLs, names) are quoted with `:q` (shlex) so nothing from the configuration is ever run by the shell.
# Because the resolved file is not a tracked input (it would rerun every job on any change), each rule
# carries `params.cfg`: a hash of exactly the sections it reads, so a changed value reruns the jobs
# that read it and no others.
import hashlib
import json
import os
from pathlib import Path

import yaml

from benchmark import devices, evaluate, registry, runs
from benchmark.config import ConfigError, check_profile
from benchmark import releases as _releases


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
        try:
            parsed = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            return value
        # Only numbers, booleans and lists are typed: a path such as "a: b" or "dir #1" stays a string.
        if parsed is None or isinstance(parsed, (bool, int, float, list)):
            return parsed
        return value
    return value


def load_config(cli_config):
    overrides = _typed({k: v for k, v in cli_config.items() if k != "profile"})
    name = cli_config.get("profile", "quick")
    path = Path(workflow.basedir) / "config" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yaml") if p.stem != "schema")
        raise WorkflowError(f"unknown profile {name!r} (config/{name}.yaml not found; profiles: {', '.join(known)})")
    merged = _deep_update(yaml.safe_load(path.read_text()), overrides)
    for optional in ("hide", "realblur"):  # `data={hide: null}` switches a generalisation set off
        if isinstance(merged.get("data"), dict) and optional in merged["data"] and merged["data"][optional] is None:
            del merged["data"][optional]
    try:  # the one validation path (benchmark/config.py): schema, registry, options and training settings
        return check_profile(merged)
    except ConfigError as err:
        raise WorkflowError(f"profile {name!r} (config/{name}.yaml and --config): {len(err.problems)} "
                            f"problem{'s' if len(err.problems) > 1 else ''}\n{err.report()}") from None


CFG = load_config(config)
PROFILE = CFG["profile"]
R = f"results/{PROFILE}"
CONFIG_FILE = f"{R}/config.yaml"
METHODS = [m.name for m in registry.available()]
TRAINED = [m.name for m in registry.available() if m.kind == "trained"]
RUNS = runs.plan(CFG)  # every training job: method x seed, plus the Fig. 5 sweep over k
# Restored and scored: every method (classical once, trained once per seed) and the Fig. 5 runs are not.
EVALUATED = [name for m in METHODS for _, name in runs.seed_runs(m, CFG)]
# The generalisation sets: downloaded where data.hide / data.realblur are set, stand-ins made by `synthesise`
# in a synthetic profile (data.synthetic.generalisation_pairs).
SYNTHETIC = CFG["data"]["source"] == "synthetic"
GENERALISATION = [d for d in ("hide", "realblur") if any(s.startswith(d) for s in evaluate.generalisation_sets(CFG))]
DATASETS = ("gopro", "kohler", *([] if SYNTHETIC else GENERALISATION))
GOPRO_ROOT = f"{R}/data/gopro" if SYNTHETIC else CFG["data"]["gopro"]["root"]
KOHLER_ROOT = f"{R}/data/kohler" if SYNTHETIC else CFG["data"]["kohler"]["root"]
DATA_ROOTS = {"gopro": GOPRO_ROOT, "kohler": KOHLER_ROOT} | {
    d: f"{R}/data/{d}" if SYNTHETIC else CFG["data"][d]["root"] for d in GENERALISATION}
# What marks the data as usable: the synthesis record, or the verification report of a download.
DATA_READY = {d: f"{R}/data/synthetic.json" if SYNTHETIC else f"{R}/data/{d}.verified.txt" for d in DATASETS}
# Jobs that run a network hold a GPU: on `device: cuda`, and on `auto` where a GPU is visible.
GPU = CFG["device"] == "cuda" or (CFG["device"] == "auto" and bool(devices.visible_devices()))


def write_resolved_config():
    """The merged, validated configuration every `deblurbench` call reads (rewritten only on change,
    so its time stamp means something)."""
    path = Path(CONFIG_FILE)
    text = yaml.safe_dump(CFG, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(path)


def config_hash(*keys, extra=None):
    """A short hash of the named configuration sections (dotted keys like "methods.pan"), plus `extra`."""
    picked = {}
    for key in keys:
        value = CFG
        for part in key.split("."):
            value = value.get(part, {}) if isinstance(value, dict) else {}
        picked[key] = value
    text = json.dumps([picked, extra], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# EPLL's published patch GMM (Sun et al.'s prior, `gmm: epll`) is fetched before any restore or timing
# of a method that uses it, into the folder of that method's `gmm_file`.
EPLL_FILES = {registry.configured_options(m, CFG)["gmm_file"] for m in METHODS
              if registry.configured_options(m, CFG).get("gmm") == "epll"}
if len(EPLL_FILES) > 1:
    raise WorkflowError(f"methods name different EPLL model files ({', '.join(sorted(EPLL_FILES))}): use one")
EPLL_ROOT = str(Path(next(iter(EPLL_FILES))).parent) if EPLL_FILES else "weights"


def epll_ready(name):
    """The fetch record of EPLL's GMM when the method behind `name` restores with it, else nothing."""
    options = registry.configured_options(name, CFG)
    return [f"{R}/data/epll-gmm.fetched.json"] if options.get("gmm") == "epll" else []


# The ImageNet VGG19 weights are fetched (and their hash checked) before any training that uses them.
VGG19_READY = [f"{R}/data/vgg19.fetched.json"] if CFG["train"]["perceptual_weights"] == "imagenet" else []


def fetch_args(dataset):
    """--root, --mirror, --archive and --md5 for `deblurbench fetch`, as a list (each quoted by `:q`)."""
    if dataset == "vgg19":
        return []
    if dataset == "epll-gmm":
        return ["--root", EPLL_ROOT]
    cfg = CFG["data"][dataset]
    args = ["--root", cfg["root"]]
    for url in cfg.get("mirrors", []):
        args += ["--mirror", url]
    if cfg.get("archive"):
        args += ["--archive", cfg["archive"]]
    for name, digest in sorted(cfg.get("md5", {}).items()):
        args += ["--md5", f"{name}={digest}"]
    if "unpack_limit" in cfg:
        args += ["--unpack-limit", str(cfg["unpack_limit"])]
    if dataset in ("hide", "realblur"):  # their fetch checks the pairs before it locks the archive's hash
        args += verify_args(dataset)
    return args


def verify_args(dataset):
    return ["--structure-only"] if CFG["data"][dataset].get("verify", "counts") == "structure" else []


def method_of(run):
    """The registered method behind a run or evaluation name (msr2b-s1, msr2b-k9 -> msr2b)."""
    return RUNS[run].method if run in RUNS else run


def run_hash(run):
    """What defines a training run: its method's section, the train and data sections, the run itself."""
    r = RUNS[run]
    return config_hash("train", "data", "device", f"methods.{r.method}", extra=[r.method, r.seed, r.options])


def weights_of(name):
    """The weights a restore / time job loads (trained methods only)."""
    return f"{R}/train/{name}/model.pt" if method_of(name) in TRAINED else []


# Wiener and Richardson-Lucy deconvolve with the kernels Pan's restore estimated (and saved under
# restored/pan/kernels/) instead of estimating them again; a kernel is reused only where the kernel options
# agree. They wait for every shard of Pan.
KERNEL_USERS = ("wiener", "richardson-lucy")


def pan_kernels(name):
    return restore_manifests("pan") if method_of(name) in KERNEL_USERS and "pan" in METHODS else []


def kernels_args(wildcards, input):
    return ["--kernels", f"{R}/restored/pan/kernels"] if input.kernels else []


def weights_args(wildcards, input):
    return ["--weights", input.weights] if input.weights else []


def test_sets(name):
    """The test sets an evaluated name is restored and scored on, in order (benchmark/evaluate.py)."""
    return evaluate.evaluation_sets(CFG, method_of(name))


def test_set_args(name):
    sets = test_sets(name)
    gamma = ["--gamma"] if "gopro_gamma" in sets else []
    extra = [*(["--hide", DATA_ROOTS["hide"]] if "hide" in sets else []),
             *(["--realblur", DATA_ROOTS["realblur"]] if "realblur-j" in sets else [])]
    verify = {"structure"} if SYNTHETIC else {CFG["data"][d].get("verify", "counts") for d in GENERALISATION}
    if extra and verify == {"structure"}:
        extra += ["--verify", "structure"]
    return ["--gopro", GOPRO_ROOT, "--blur-folder", CFG["data"]["blur_folder"], *gamma, "--kohler", KOHLER_ROOT,
            *extra]


# -- evaluation shards (benchmark/evaluate.py): each evaluated name's test images, cut into shards of
# `evaluation.shard_size` images, one restore and one score job each. The counts come from the
# configuration, so the DAG is known before any data exists.
EXPECTED_IMAGES = evaluate.expected_images(CFG)


def shards(name, method=None):
    """The shard tags (001-of-003, ...) of an evaluated name or release, whose registered method is `method`."""
    images = sum(EXPECTED_IMAGES[s] for s in test_sets(name))
    return evaluate.shard_tags(images, evaluate.shard_size(CFG, method or method_of(name)))


SHARD_TAG = r"\d{3}-of-\d{3}"


def shard_arg(wildcards):
    index, _, count = wildcards.shard.partition("-of-")
    return f"{int(index)}/{int(count)}"


def restore_manifests(name):
    return [f"{R}/restored/{name}/shard-{tag}.json" for tag in shards(name)]


def score_shards(name):
    return [f"{R}/scores/{name}/shard-{tag}" for tag in shards(name)]


def cluster_resources(rule):
    """What a job of `rule` asks a cluster for (`resources:` in the configuration: runtime, mem_mb)."""
    return CFG.get("resources", {}).get(rule, {})


def gpu_jobs(name=None):
    """1 for a job that runs a network on the GPU (restore and time only for trained methods), else 0."""
    return 1 if GPU and (name is None or method_of(name) in TRAINED) else 0


def on_gpu(name=None):
    """The command prefix that gives a GPU job its own device (benchmark/devices.py), or nothing."""
    return "DEBLURBENCH_GPU_SLOT=1" if gpu_jobs(name) else ""


def results_dir(wildcards, output):
    """results/<profile>, the folder the aggregation commands read (the parent of their output)."""
    return str(Path(output[0]).parent)


def aggregate_inputs(wildcards):
    return {
        "scores": [shard for name in EVALUATED for shard in score_shards(name)],
        "timing": [f"{R}/timing/{m}.json" for m in METHODS],
        "runs": [f"{R}/train/{r}/run.json" for r in RUNS],
        "restored": [m for name in EVALUATED for m in restore_manifests(name)],
        "releases": release_products(),  # rules/weights.smk
    }


def check_device():
    """Nothing silently falls back: a CUDA profile on a machine without a GPU stops before any job."""
    if CFG["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise WorkflowError(
                f"profile {PROFILE!r} asks for device: cuda, but torch sees no CUDA device here. Run it on a "
                "GPU machine, or use --config device=cpu knowingly.")


# -- the authors' released weights (rules/weights.smk) ---------------------------------------------
WEIGHTS_CFG = CFG.get("weights", {"releases": []})
RELEASES = list(WEIGHTS_CFG["releases"])
WEIGHTS_ROOT = WEIGHTS_CFG.get("root", "weights")
RR = f"{R}/releases"


def release_fetch_args(name):
    """--root, --mirror and --archive (a local copy) for `deblurbench fetch weights NAME`, as a list
    (each quoted by `:q`)."""
    args = ["--root", WEIGHTS_ROOT]
    for url in WEIGHTS_CFG.get("mirrors", {}).get(name, []):
        args += ["--mirror", url]
    if WEIGHTS_CFG.get("files", {}).get(name):
        args += ["--archive", WEIGHTS_CFG["files"][name]]
    return args


def release_options(name):
    """Every option of the release's architecture, so the profile's section for its method cannot change it."""
    rel = _releases.release(name)
    return json.dumps(registry.get(rel.method).options(rel.options), sort_keys=True)


def release_products():
    """What the tables read: each listed release's scores and timing."""
    return ([f"{RR}/scores/{n}/shard-{tag}" for n in RELEASES for tag in release_shards(n)]
            + [f"{RR}/timing/{n}.json" for n in RELEASES])


def release_shards(name):
    return shards(name, _releases.release(name).method)
