"""The ``deblurbench`` command line: one subcommand per step of the workflow, plus ``deblur``.

Every subcommand fails with one clear line on stderr naming the file or value and what to do, exit
code 2 for bad input and 1 when the machine failed (a full disk), and writes its outputs under a
temporary name before renaming them into place (:mod:`benchmark.files`). The loop of ``deblur``
lives in :mod:`benchmark.deblur`; ``docs/reliability.md`` lists the bad inputs probed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

EXIT_ERROR = 2  # bad input: a file, a value or a path the user gave
EXIT_FAILURE = 1  # the machine failed: a full disk, an I/O error


class CliError(Exception):
    """An error whose message is the whole story for the user."""


# -- configuration helpers ------------------------------------------------------------------------
def _json_arg(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


PROFILES = Path(__file__).resolve().parents[1] / "config"  # the profiles of this checkout


def profile_file(value: str) -> Path:
    """``--config``: a YAML file, or the name of a profile (``paper`` for ``config/paper.yaml``, looked up in
    ``./config`` and then in this checkout's ``config/``)."""
    path = Path(value)
    if not path.exists() and not path.suffix and len(path.parts) == 1:
        for folder in (Path("config"), PROFILES):
            if (folder / f"{value}.yaml").is_file():
                return folder / f"{value}.yaml"
    return path


def profile_names() -> list[str]:
    """The profiles shipped in ``config/`` (every YAML there but the schema)."""
    return sorted(p.stem for p in PROFILES.glob("*.yaml") if p.stem != "schema")


def load_profile(path: Path | None) -> dict[str, Any]:
    """A profile YAML from ``config/`` (or any file of that shape); ``{}`` when none is given."""
    if path is None:
        return {}
    if not Path(path).exists():
        raise CliError(f"--config {path}: no such file, nor a profile of that name (profiles: "
                       f"{', '.join(profile_names())})")
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CliError(f"{path}: cannot read the configuration ({err})") from err
    if not isinstance(data, dict):
        raise CliError(f"{path}: the configuration must be a mapping")
    return data


def _run_record(weights: Path | None) -> dict[str, Any]:
    """The run record (``run.json``) that ``deblurbench train`` wrote beside ``weights``; ``{}`` when none."""
    if weights is None:
        return {}
    info = Path(weights).with_name("run.json")
    if not info.exists():
        return {}
    try:
        record = json.loads(info.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CliError(f"{info}: not a readable run record ({err}); delete it or give --options") from err
    options = record.get("options", {}) if isinstance(record, dict) else None
    if not isinstance(options, dict) or not isinstance(record.get("method", ""), str):
        raise CliError(f"{info}: not a run record written by `deblurbench train` (expected a JSON object "
                       "with an 'options' object); delete it or give --options")
    return record


def _run_options(weights: Path | None, method: str) -> dict[str, Any]:
    """Options recorded beside weights written by ``deblurbench train`` for ``method``."""
    record = _run_record(weights)
    if record.get("method", method) != method:
        raise CliError(f"--weights {weights}: trained for method {record['method']!r} (its run.json), not "
                       f"{method!r}; leave out --method or give {method!r} weights")
    return record.get("options", {})


def inference_setup(args: argparse.Namespace, profile: Mapping[str, Any], *,
                    weights_required: bool = True) -> tuple[Any, dict[str, Any], Any, Any]:
    """(method, options, model, device) for ``restore``, ``time`` and ``deblur``.

    Options: the method's defaults, the profile, the run record beside ``--weights``, then ``--options``.
    A network is built on ``--device`` in eval mode with its weights (without them when
    ``weights_required`` is false: timing does not depend on their values). A classical method has no
    model, runs on the CPU and never imports torch.
    """
    from benchmark import registry

    method = registry.get(args.method)
    if method.kind == "classical" and args.weights is not None:
        raise CliError(f"--weights {args.weights}: method {method.name!r} is classical and takes no weights; "
                       "leave out --weights (or name a trained method with --method)")
    options = registry.configured_options(method.name, profile,
                                          {**_run_options(args.weights, method.name), **(args.options or {})})
    if method.kind == "classical":
        return method, options, None, "cpu"
    if args.weights is None and weights_required:
        raise CliError(f"method {method.name!r} is trained: give its weights with --weights FILE")
    from benchmark.inference import for_inference
    from benchmark.train import resolve_device

    _threads(getattr(args, "threads", None))
    device = resolve_device(args.device)
    model = method.build(options)
    if args.weights is not None:
        from benchmark.weights import load_weights

        load_weights(method, model, args.weights)
    return method, options, for_inference(model.to(device)), device


def _check_file_out(path: Path) -> None:
    from benchmark.files import check_parent

    if path.is_dir():
        raise CliError(f"--out {path}: is a folder; give a file name")
    check_parent(path)


def _write_text(path: Path, text: str) -> None:
    from benchmark.files import write_text_atomic

    _check_file_out(path)
    write_text_atomic(path, text)


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


# -- subcommands ----------------------------------------------------------------------------------
def cmd_methods(args: argparse.Namespace) -> int:
    import shutil
    import textwrap

    from benchmark import registry

    methods = registry.available()
    params = {}
    if args.params:  # builds every network: imports torch, seconds per method
        from models.generator import count_parameters

        params = {m.name: count_parameters(m.build(m.options())) for m in methods if m.build is not None}
    if args.json:
        print(json.dumps([{"name": m.name, "display_name": m.display_name, "kind": m.kind, "summary": m.summary,
                           **({"params": params.get(m.name, 0)} if args.params else {})} for m in methods],
                         indent=2))
        return 0
    columns = [("name", [m.name for m in methods]), ("kind", [m.kind for m in methods])]
    if args.params:
        columns.append(("params", [f"{params[m.name]:,}" if m.name in params else "–" for m in methods]))
    widths = [max(len(header), *map(len, values)) for header, values in columns]
    indent = sum(widths) + 2 * len(widths)
    wrap = max(30, min(shutil.get_terminal_size((100, 24)).columns, 100) - indent)
    print("  ".join(h.ljust(w) for (h, _), w in zip(columns, widths, strict=True)) + "  display name")
    for i, m in enumerate(methods):
        lines = textwrap.wrap(m.display_name, wrap) or [""]
        cells = [values[i].ljust(w) for (_, values), w in zip(columns, widths, strict=True)]
        print("  ".join(cells) + "  " + lines[0])
        for line in lines[1:]:
            print(" " * indent + line)
    if not args.params:
        print("\n(--params adds parameter counts, --json the summaries)")
    return 0


def cmd_synthesise(args: argparse.Namespace) -> int:
    from benchmark.config import ConfigError, problems, schema
    from benchmark.synthetic import synthesise_gopro, synthesise_kohler, synthetic_shake

    s = {**load_profile(args.config).get("data", {}).get("synthetic", {}), **(args.params or {})}
    if not s:
        raise CliError("synthesise needs --config PROFILE.yaml or --params JSON with the data.synthetic settings")
    found = problems(s, schema()["properties"]["data"]["properties"]["synthetic"], "data.synthetic setting")
    if found:
        raise ConfigError(found)
    gopro = synthesise_gopro(args.out / "gopro", seed=s["seed"], train_pairs=s["train_pairs"],
                             test_pairs=s["test_pairs"], size=s["size"], n_subframes=s["n_subframes"],
                             **synthetic_shake(s))
    kohler = synthesise_kohler(args.out / "kohler", seed=s["seed"] + 1, n_paths=s["kohler_paths"],
                               size=s["kohler_size"], n_subframes=s["n_subframes"], **synthetic_shake(s))
    record = {"gopro": gopro, "kohler": kohler, "settings": s}
    if s.get("generalisation_pairs", 0) > 0:  # the generalisation sets' stand-ins, in their own layouts
        from benchmark.standins import synthesise_hide, synthesise_realblur

        shake = synthetic_shake(s).get("max_translation_px", 4.0)
        for name, make in (("hide", synthesise_hide), ("realblur", synthesise_realblur)):
            record[name] = make(args.out / name, seed=s["seed"], pairs=s["generalisation_pairs"], size=s["size"],
                                n_subframes=s["n_subframes"], max_translation_px=shake)
    _write_text(args.out / "synthetic.json", json.dumps(record, indent=2, default=str))
    print(f"synthesised {args.out}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from benchmark.data import build_crop_cache, gopro_pairs

    pairs = gopro_pairs(args.data, args.split, args.blur_folder)
    path = build_crop_cache(pairs, args.out)
    print(f"crop cache of {len(pairs)} pairs at {path}")
    return 0


def _validation_set(data: Path, blur_folder: str, n: int) -> list[tuple[Any, Any]]:
    from benchmark.data import gopro_pairs, read_image, spread_over_scenes

    pairs = spread_over_scenes(gopro_pairs(data, "test", blur_folder), n) if n > 0 else []
    return [(read_image(p.blurred), read_image(p.sharp)) for p in pairs]


def _run_of(args: argparse.Namespace, profile: Mapping[str, Any]) -> Any:
    """The run to train: ``--run NAME`` from the configuration's plan (benchmark/runs.py), or ``--method``."""
    from benchmark import runs

    if args.run is None:
        if args.method is None:
            raise CliError("name what to train: --run NAME (with --config FILE) or --method NAME")
        return runs.Run(args.out.name, args.method, profile.get("train", {}).get("seed", 0))
    if not profile:
        raise CliError("--run needs --config FILE (the resolved configuration that defines the runs)")
    plan = runs.plan(profile)
    if args.run not in plan:
        raise CliError(f"{args.config}: no run {args.run!r} in this configuration (runs: {', '.join(plan)})")
    return plan[args.run]


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from benchmark import registry
    from benchmark.config import method_setup
    from benchmark.data import CropSampler
    from benchmark.files import check_parent
    from benchmark.train import Trainer, resolve_device, write_run_info

    _threads(args.threads)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    profile = load_profile(args.config)
    run = _run_of(args, profile)
    if registry.get(run.method).kind != "trained":
        raise CliError(f"method {run.method!r} is classical: there is nothing to train")
    method, options, settings = method_setup(run.method, profile, {**run.options, **(args.method_config or {})},
                                             {**(args.train or {}), **({"seed": run.seed} if args.run else {})})
    missing = [k for k in ("lr", "lr_final", "epochs_constant", "epochs_decay", "batch_size", "crop", "seed")
               if k not in settings]
    if missing:
        raise CliError(f"train settings lack {', '.join(missing)}: give --config PROFILE.yaml or --train JSON")
    if args.stop_after is not None and args.stop_after < 1:
        raise CliError(f"--stop-after {args.stop_after}: must be at least 1 iteration")
    check_parent(args.out)
    settings.setdefault("log_every", 10)
    settings.setdefault("checkpoint_every", 100)
    settings.setdefault("val_every", 1)
    settings["quiet"] = args.quiet
    device = resolve_device(args.device)
    data_cfg = profile.get("data", {})
    blur_folder = args.blur_folder or data_cfg.get("blur_folder", "blur")
    val_n = args.validation_images if args.validation_images is not None else data_cfg.get("validation_images", 4)
    sampler = CropSampler(args.cache, crop=settings["crop"], seed=settings["seed"],
                          random_flip=settings.get("random_flip", False))
    trainer = Trainer(method, options, settings, sampler, args.out, device,
                      validation=_validation_set(args.data, blur_folder, val_n))
    extend = args.extend or bool(settings.get("extend", False))
    _keep_finished_run(args, trainer, extend)
    started = time.perf_counter()
    weights = trainer.run(resume=args.resume, stop_after=args.stop_after, extend=extend)
    write_run_info(args.out / "run.json", {
        "run": run.name, "method": method.name, "options": options, "settings": settings, "device": str(device),
        "params": sum(p.numel() for p in trainer.generator.parameters()),
        "device_id": os.environ.get("DEBLURBENCH_DEVICE", ""),
        "iterations": trainer.iteration, "total_iterations": trainer.total_iters, "training_pairs": len(sampler),
        "iterations_run": trainer.iterations_run, "resumed_from": trainer.resumed_from,
        "run_hash": trainer.run_hash, "not_resumed_because": trainer.restart_reason,
        "extended_from": trainer.extensions or None,
        "speed": trainer.speed,
        "wall_seconds": trainer.wall_seconds, "this_call_seconds": time.perf_counter() - started,
        "health": trainer.final_health,  # collapse to the identity, residual size, dead ReLUs (benchmark/train.py)
    })
    if trainer.iteration < trainer.total_iters:
        print(f"stopped after {trainer.iteration} of {trainer.total_iters} iterations; "
              f"continue with --resume ({trainer.checkpoint_path})")
    else:
        print(f"trained {method.name}: {weights}")
    return 0


def _keep_finished_run(args: argparse.Namespace, trainer: Any, extend: bool) -> None:
    """A finished run in ``--out`` (its model.pt) is replaced only by the same run (the run hash its run.json
    records), by continuing its checkpoint with ``--resume --extend``, or with ``--force``; ``--force`` also
    drops a checkpoint this run would not continue, so training starts over."""
    from benchmark.train import NON_DEFINING_KEYS, ResumeRefused, differences, lengthens

    if args.force:
        try:
            keep = args.resume and trainer.checkpoint_to_resume(extend) is not None
        except ResumeRefused:
            keep = False
        if not keep:
            trainer.checkpoint_path.unlink(missing_ok=True)
        return
    if not (args.out / "model.pt").exists():
        return
    record = _finished_record(args.out / "run.json")
    if record.get("run_hash") == trainer.run_hash:
        return
    if args.resume and extend:
        state = trainer.read_checkpoint()
        if state is not None and lengthens(state, trainer.definition):
            return
    old = {"options": record.get("options", {}), "settings": record.get("settings", {})}
    new = {"options": trainer.options, "settings": trainer.settings}
    changed = [k for k in differences(old, new) if k.removeprefix("settings.") not in NON_DEFINING_KEYS]
    what = f"{', '.join(changed[:6])} changed" if changed else "another run: other data or an older deblurbench"
    raise CliError(f"--out {args.out}: holds a finished run ({what}); add --force to replace it (its model.pt "
                   "and checkpoint are lost), or choose another --out")


def _finished_record(path: Path) -> dict[str, Any]:
    """The run.json of a finished run in --out, as far as it reads (``{}`` otherwise)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _sources(args: argparse.Namespace) -> list[Any]:
    from benchmark.evaluate import set_sources

    try:
        return set_sources(args.gopro, args.kohler, args.blur_folder, args.gamma, hide=args.hide,
                           realblur=args.realblur, verify=args.verify)
    except ValueError as err:
        raise CliError(str(err)) from err


def cmd_restore(args: argparse.Namespace) -> int:
    from benchmark.evaluate import Shard, identity, restore_shard
    from benchmark.files import check_parent

    check_parent(args.out)
    method, options, model, _ = inference_setup(args, load_profile(args.config))
    sources = _sources(args)
    shard = Shard.parse(args.shard)
    if args.kernels is not None and not args.kernels.is_dir():
        raise CliError(f"--kernels {args.kernels}: not a folder (give the kernels/ folder of Pan's restore)")
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {args.out}: is a file, not a folder; choose another --out")
    if options.get("save_kernels"):  # Pan's kernels, kept beside its PNGs for the Wiener and RL rows
        options["kernel_dir"] = str(args.out / "kernels")
    if args.kernels is not None:
        options["kernel_dir"] = str(args.kernels)
    manifest = args.manifest or args.out / f"shard-{shard.tag}.json"
    _check_file_out(manifest)
    done = restore_shard(method, model, options, sources, shard, args.out, manifest,
                         identity(method.name, options, args.weights), progress=not args.quiet)
    print(f"restored {done['restored_now']} images with {method.name} (shard {shard.index}/{shard.count}; "
          f"{done['kept']} kept from an interrupted run) -> {manifest}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    import pandas as pd

    from benchmark.evaluate import SHARD_RECORD, Shard, remove_other_splits, score_shard
    from benchmark.files import check_parent, staged_dir, write_csv

    check_parent(args.out)
    sources = _sources(args)
    shard = Shard.parse(args.shard)
    remove_other_splits(args.out.parent, shard)
    rows, record = score_shard(sources, shard, args.restored, cw_ssim=args.cw_ssim, progress=not args.quiet)
    with staged_dir(args.out) as tmp:
        for name, set_rows in rows.items():
            frame = pd.DataFrame(set_rows)
            if args.method:
                frame.insert(0, "method", args.method)
            write_csv(frame, tmp / f"{name}.csv", float_format="%.6f")
            print(f"scored {len(set_rows)} {name} images -> {args.out / (name + '.csv')}")
        _write_text(tmp / SHARD_RECORD, json.dumps(record, indent=2, sort_keys=True))
    return 0


def cmd_time(args: argparse.Namespace) -> int:
    from benchmark.timing import time_method

    _check_file_out(args.out)
    profile = load_profile(args.config)
    t = profile.get("timing", {})
    method, options, model, device = inference_setup(args, profile, weights_required=False)
    keys = ("classical_width", "classical_height") if model is None else ("width", "height")
    def setting(given: int | None, key: str, default: int, minimum: int) -> int:
        return given if given is not None else _count(t.get(key, default), f"timing.{key}", args.config, minimum)

    width, height = setting(args.width, keys[0], 1280, 1), setting(args.height, keys[1], 720, 1)
    warmup, runs = setting(args.warmup, "warmup", 2, 0), setting(args.runs, "runs", 10, 1)
    if min(width, height, runs) < 1 or warmup < 0:
        raise CliError(f"--width {width} --height {height} --runs {runs} --warmup {warmup}: sizes and runs must be "
                       "at least 1, warm-up at least 0")
    result = time_method(method, model, options, width=width, height=height, warmup=warmup, runs=runs, device=device)
    _write_text(args.out, json.dumps(result, indent=2))
    print(f"{method.name}: median {result['median_s']:.4f} s at {width}x{height} on {result['device']}")
    return 0


def _count(value: Any, key: str, config: Path | None, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CliError(f"{key} = {value!r} in {config}: must be a whole number >= {minimum}")
    return value


DEFAULT_METHOD = "msr2b"
ASSUMED = "(the default: no --method, no run.json beside the weights)"


def _deblur_method(args: argparse.Namespace) -> tuple[str, str | None]:
    """(method, how it was chosen when --method was not given): the one ``run.json`` beside ``--weights``
    names, else the paper's MSR2B."""
    if args.method is not None:
        return args.method, None
    record = _run_record(args.weights)
    if record.get("method"):
        return record["method"], f"method {record['method']} (from {Path(args.weights).with_name('run.json')})"
    if args.weights is None:
        return DEFAULT_METHOD, None  # a trained method without weights fails below, naming --weights
    return DEFAULT_METHOD, f"method {DEFAULT_METHOD} {ASSUMED}"


def cmd_deblur(args: argparse.Namespace) -> int:
    from benchmark.deblur import deblur_all, plan

    args.method, chosen = _deblur_method(args)
    jobs = plan(args.input, args.out, args.force, args.method)
    if chosen:
        print(chosen)
    try:
        method, options, model, _ = inference_setup(args, {})
    except ValueError as err:
        if chosen is None or not chosen.endswith(ASSUMED):
            raise
        raise CliError(f"{err}; no --method was given and no run.json lies beside the weights, so "
                       f"{DEFAULT_METHOD} was assumed: name the weights' method with --method") from err
    return deblur_all(method, model, options, jobs, tile=args.tile, overlap=args.overlap, quiet=args.quiet)


def cmd_plan(args: argparse.Namespace) -> int:
    from benchmark.plan import format_evaluation, format_notes, format_plan, make_evaluation_plan, make_plan
    from benchmark.train import resolve_device

    _threads(args.threads)
    if args.config is None:
        raise CliError("give the profile to plan: --config paper (or a YAML file such as config/paper.yaml)")
    profile = load_profile(args.config)
    missing = [k for k in ("profile", "data", "train", "fig5") if k not in profile]
    if missing:
        raise CliError(f"{args.config}: not a profile (no {', '.join(missing)})")
    if args.probe_seconds is not None and args.probe_seconds < 0:
        raise CliError(f"--probe-seconds {args.probe_seconds:g}: must be 0 (no probe) or more")
    profile = _whole_profile(args.config)
    device = resolve_device(args.device)
    half = None if args.probe_seconds is None else args.probe_seconds / 2  # the trainings' and the evaluation's
    plan, source = make_plan(profile, gpu_check=args.gpu_check, probe_seconds=half, device=device,
                             warn=lambda text: print(f"deblurbench plan: warning: {text}", file=sys.stderr, flush=True))
    print(format_plan(profile["profile"], plan, source), flush=True)
    if format_notes(plan):
        print("\nProbe notes:\n" + format_notes(plan), flush=True)
    evaluation, sources = make_evaluation_plan(profile, gpu_check=args.gpu_check, probe_seconds=half, device=device,
                                               results=Path("results") / profile["profile"])
    print("\n" + format_evaluation(profile["profile"], evaluation, sources))
    if args.out is not None:
        _write_text(args.out, json.dumps({"profile": profile["profile"], "source": source, **plan,
                                          "evaluation": {"sources": sources, **evaluation}}, indent=2))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from benchmark import fetch

    if args.dataset == "weights":
        from benchmark.releases import run

        return run(args)
    if args.release:
        raise CliError(f"fetch {args.dataset}: takes no release name ({args.release!r})")
    return fetch.run(args)


def cmd_prepare(args: argparse.Namespace) -> int:
    from benchmark import prepare

    return prepare.run(args)


def _whole_profile(path: Path | None) -> dict[str, Any]:
    """A profile every key of which is checked as the workflow checks it (a command run by hand gets the same
    one-line errors as the workflow, instead of a TypeError deep in a job)."""
    from benchmark.config import check_profile

    if path is None:
        raise CliError("give the profile: --config results/<profile>/config.yaml (or config/<profile>.yaml)")
    return check_profile(load_profile(path))


def cmd_tables(args: argparse.Namespace) -> int:
    from reports.tables import write_tables

    _whole_profile(args.config)
    write_tables(args.results, args.config, args.out)
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from reports.figures import write_figures

    _whole_profile(args.config)
    write_figures(args.results, args.config, args.out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from reports.render import render_report

    _whole_profile(args.config)
    render_report(args.results, args.config, args.out)
    return 0


# -- parser ---------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, *, device: bool = False, config: bool = True) -> None:
    if config:
        p.add_argument("--config", type=profile_file,
                       help=f"profile: a name ({', '.join(profile_names())}) or a YAML file (config/quick.yaml, ...)")
    if device:
        p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                       help="where to run (default: auto = cuda if available)")
        p.add_argument("--threads", type=int, help="torch CPU threads for this process")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("deblurbench")
    except metadata.PackageNotFoundError:
        return "(not installed: run from a checkout)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deblurbench",
        description="Reproduction suite for the MSR2B multi-scale conditional GAN for image deblurring "
                    "(Qi & Wang 2023). The Snakefile runs these steps; each also works on its own.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("methods", cmd_methods, "list the registered methods (name, kind, display name)")
    p.add_argument("--params", action="store_true",
                   help="also count each network's parameters (builds every network: imports torch, seconds)")
    p.add_argument("--json", action="store_true", help="print JSON (with each method's summary) instead of a table")

    p = add("synthesise", cmd_synthesise, "make the embedded synthetic camera-shake data (GOPRO and Köhler layouts)")
    p.add_argument("--out", type=Path, required=True, help="folder to create (gopro/ and kohler/ inside)")
    p.add_argument("--params", type=_json_arg, help="JSON overriding the profile's data.synthetic settings")
    _common(p)

    p = add("cache", cmd_cache, "decode a GOPRO-layout split into a memory-mapped random-crop cache")
    p.add_argument("--data", type=Path, required=True, help="GOPRO-layout root")
    p.add_argument("--split", default="train", choices=("train", "test"), help="which split (default: train)")
    p.add_argument("--blur-folder", default="blur", choices=("blur", "blur_gamma"),
                   help="GOPRO's blurred-input folder (default: blur)")
    p.add_argument("--out", type=Path, required=True, help="cache folder to write")

    p = add("train", cmd_train, "train a method's network with the one training loop (resumable)")
    p.add_argument("--method", help="registered method name (see `deblurbench methods`)")
    p.add_argument("--run", help="a run of --config's plan: method, seed and options (msr2b, msr2b-s1, msr2b-k9)")
    p.add_argument("--data", type=Path, required=True, help="GOPRO-layout root (its test split validates)")
    p.add_argument("--cache", type=Path, required=True, help="crop cache of the train split (`deblurbench cache`)")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoint.pt, model.pt, log.csv, val.csv")
    p.add_argument("--train", type=_json_arg, help="JSON overriding the profile's train section")
    p.add_argument("--method-config", type=_json_arg, help="JSON of the method's options (and 'train' overrides)")
    p.add_argument("--blur-folder", choices=("blur", "blur_gamma"), help="GOPRO blur folder for validation")
    p.add_argument("--validation-images", type=int, help="test images scored each val_every epochs")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt")
    p.add_argument("--extend", action="store_true",
                   help="with --resume: continue a run whose schedule was lengthened (recorded in run.json)")
    p.add_argument("--stop-after", type=int, help="stop after this many iterations (a resumable checkpoint)")
    p.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms (bitwise resume)")
    p.add_argument("--force", action="store_true",
                   help="replace a finished run of other settings in --out, and start over instead of refusing a "
                        "checkpoint whose schedule was lengthened")
    _common(p, device=True)

    def test_sets(p: argparse.ArgumentParser) -> None:
        p.add_argument("--gopro", type=Path, help="GOPRO-layout root: its test split is used")
        p.add_argument("--kohler", type=Path, help="Köhler-layout root")
        p.add_argument("--blur-folder", default="blur", choices=("blur", "blur_gamma"), help="GOPRO input folder")
        p.add_argument("--gamma", action="store_true", help="also GOPRO's blur_gamma inputs (set gopro_gamma)")
        p.add_argument("--hide", type=Path, help="HIDE root: its 2,025 test pairs (set hide)")
        p.add_argument("--realblur", type=Path,
                       help="RealBlur root: RealBlur-J's and RealBlur-R's 980 listed test pairs (sets realblur-j, "
                            "realblur-r)")
        p.add_argument("--verify", default="counts", choices=("counts", "structure"),
                       help="HIDE and RealBlur pairs: checked against the official list and count (default), or "
                            "paired by name only (miniature and stand-in trees)")

    p = add("restore", cmd_restore, "restore the test sets with a method, writing PNGs (one folder per set)")
    p.add_argument("--method", required=True, help="registered method (`deblurbench methods`)")
    p.add_argument("--weights", type=Path, help="trained weights (model.pt / checkpoint.pt / official release)")
    test_sets(p)
    p.add_argument("--options", type=_json_arg, help="JSON of method options")
    p.add_argument("--shard", default="1/1",
                   help="restore only shard K of N (K/N; default 1/1, every image): the images of the test sets, "
                        "in order, cut into N nearly equal contiguous slices. A killed shard resumes where it "
                        "stopped when run again with the same method, options and weights")
    p.add_argument("--manifest", type=Path,
                   help="the record written when the shard is complete (default: <out>/shard-K-of-N.json)")
    p.add_argument("--kernels", type=Path,
                   help="wiener / richardson-lucy: the kernels/ folder of Pan's restore, read instead of "
                        "estimating each kernel again")
    p.add_argument("--out", type=Path, required=True,
                   help="folder: the restored images go to <out>/gopro/SEQ/NAME.png, <out>/kohler/NAME.png, ...")
    _common(p, device=True)

    p = add("score", cmd_score, "score restored images against the ground truth (a per-image CSV per set)")
    test_sets(p)
    p.add_argument("--restored", type=Path, required=True, help="folder written by `deblurbench restore`")
    p.add_argument("--shard", default="1/1", help="score only shard K of N (as `restore --shard`)")
    p.add_argument("--method", help="method name written into the CSVs")
    p.add_argument("--cw-ssim", action="store_true", help="also CW-SSIM (pyiqa)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder of CSVs: <out>/gopro.csv, <out>/kohler.csv, and shard.json")
    _common(p, config=False)

    p = add("time", cmd_time, "time a method at 1280x720 (median of N runs), with params and MACs")
    p.add_argument("--method", required=True, help="registered method (`deblurbench methods`)")
    p.add_argument("--weights", type=Path, help="weights (optional: timing does not depend on their values)")
    p.add_argument("--options", type=_json_arg, help="JSON of method options")
    p.add_argument("--width", type=int, help="image width (default: the profile's timing.width, else 1280)")
    p.add_argument("--height", type=int, help="image height (default: the profile's timing.height, else 720)")
    p.add_argument("--runs", type=int, help="timed runs, the median is kept (default: timing.runs, else 10)")
    p.add_argument("--warmup", type=int, help="untimed runs first (default: timing.warmup, else 2)")
    p.add_argument("--out", type=Path, required=True, help="JSON to write")
    _common(p, device=True)

    p = add("deblur", cmd_deblur, "deblur an image or a folder of images (end-user command)")
    p.add_argument("input", type=Path, help="an image file or a folder of images")
    p.add_argument("--method", help="registered method (`deblurbench methods`); default: the method named in the "
                                    "run.json beside --weights, else msr2b")
    p.add_argument("--weights", type=Path, help="weights of a trained method (model.pt, or an official release)")
    p.add_argument("--options", type=_json_arg, help="JSON of method options (e.g. '{\"k\": 9}')")
    p.add_argument("--out", type=Path, help="output file (image in) or folder (folder in); never an input "
                                            "(default: PHOTO_METHOD.png beside the image, FOLDER_METHOD/ beside "
                                            "the folder)")
    p.add_argument("--force", action="store_true", help="overwrite outputs that already exist")
    p.add_argument("--tile", type=int, default=512,
                   help="restore a network's large images in tiles of this many pixels a side, so memory stays "
                        "bounded (default 512; 0: the whole image at once)")
    p.add_argument("--overlap", type=int, default=64,
                   help="pixels of context restored around each tile and then dropped (default 64)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to run a network (default: auto = cuda if available)")
    p.add_argument("--threads", type=int, help="torch CPU threads for this process")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no line per image")

    for name, func, help_ in (("tables", cmd_tables, "aggregate the per-image CSVs into the paper's tables"),
                              ("figures", cmd_figures, "draw Fig. 5, the training curves and Figs. 6-8"),
                              ("report", cmd_report, "render the self-contained HTML report")):
        p = add(name, func, help_)
        p.add_argument("--results", type=Path, required=True, help="results/<profile> folder")
        p.add_argument("--out", type=Path, required=True,
                       help="where to write (tables, figures: a folder; report: the HTML file)")
        _common(p)

    p = add("plan", cmd_plan, "before a long run: each training's iterations, time per iteration and GPU-hours, "
                              "the evaluation's images, shards and seconds per image, their CPU- and GPU-hours, "
                              "and the wall times on 1, 8 and 64 nodes")
    p.add_argument("--gpu-check", type=Path, default=Path("results/gpu_check"),
                   help="gpu_check JSON, or a folder whose newest gpu_check*.json is used (default: results/gpu_check)")
    p.add_argument("--probe-seconds", type=float,
                   help="probe this machine for this many seconds in all (half for the trainings, half for one "
                        "restored image per method), making the data, building the networks and warming up "
                        "included, instead of reading a gpu_check JSON (the default, 60 s, when there is none); 0 "
                        "lists the jobs, iterations, images and shards untimed")
    p.add_argument("--out", type=Path, help="also write the plan as JSON here")
    _common(p, device=True)

    for name, func, help_ in (("fetch", cmd_fetch, "download and verify GOPRO, Köhler, the VGG19 weights or "
                                                   "the authors' released weights (fetch weights NAME)"),
                              ("prepare", cmd_prepare, "verify a dataset tree against its known layout")):
        p = add(name, func, help_)
        module = __import__(f"benchmark.{name}", fromlist=["add_arguments"])
        module.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from benchmark import devices

    devices.claim_if_asked()  # a workflow GPU job: its own device, before torch sees any
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `deblurbench`: what it can do
        parser.print_help()
        return 0
    code = EXIT_ERROR
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, rather than at exit
        return code
    except BrokenPipeError:  # `deblurbench methods | head`: the reader has gone, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 0
    except CliError as err:
        message = err
    except (FileNotFoundError, ValueError, KeyError, RuntimeError, ArithmeticError) as err:  # FloatingPointError
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        if isinstance(err, OSError) and err.errno is not None:  # the system's, not one of our one-line messages
            from benchmark.files import os_error_message

            message, code = os_error_message(err)
    except OSError as err:
        from benchmark.files import os_error_message

        message, code = os_error_message(err)
    except KeyboardInterrupt:
        message = "interrupted"
    lines = str(message).strip().splitlines() or [type(message).__name__]
    print(f"deblurbench {args.command}: error: {lines[0]}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
