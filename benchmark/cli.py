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


def load_profile(path: Path | None) -> dict[str, Any]:
    """A profile YAML from ``config/`` (or any file of that shape); ``{}`` when none is given."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CliError(f"{path}: cannot read the configuration ({err})") from err
    if not isinstance(data, dict):
        raise CliError(f"{path}: the configuration must be a mapping")
    return data


def _run_options(weights: Path | None) -> dict[str, Any]:
    """Options recorded beside weights written by ``deblurbench train`` (``run.json``)."""
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
    if not isinstance(options, dict):
        raise CliError(f"{info}: not a run record written by `deblurbench train` (expected a JSON object "
                       "with an 'options' object); delete it or give --options")
    return options


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
    options = registry.configured_options(method.name, profile,
                                          {**_run_options(args.weights), **(args.options or {})})
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
    from benchmark import registry
    from models.generator import count_parameters

    rows = []
    for m in registry.available():
        params = count_parameters(m.build(m.options())) if m.build is not None else 0
        rows.append((m.name, m.display_name, m.kind, f"{params:,}", m.summary))
    if args.json:
        keys = ("name", "display_name", "kind", "params", "summary")
        print(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], indent=2))
        return 0
    widths = [max(len(r[i]) for r in rows + [("name", "display name", "kind", "params", "")]) for i in range(4)]
    header = ("name", "display name", "kind", "params")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)))
    return 0


def cmd_synthesise(args: argparse.Namespace) -> int:
    from benchmark.synthetic import synthesise_gopro, synthesise_kohler, synthetic_shake

    s = {**load_profile(args.config).get("data", {}).get("synthetic", {}), **(args.params or {})}
    if not s:
        raise CliError("synthesise needs --config PROFILE.yaml or --params JSON with the data.synthetic settings")
    gopro = synthesise_gopro(args.out / "gopro", seed=s["seed"], train_pairs=s["train_pairs"],
                             test_pairs=s["test_pairs"], size=s["size"], n_subframes=s["n_subframes"],
                             **synthetic_shake(s))
    kohler = synthesise_kohler(args.out / "kohler", seed=s["seed"] + 1, n_paths=s["kohler_paths"],
                               size=s["kohler_size"], n_subframes=s["n_subframes"], **synthetic_shake(s))
    _write_text(args.out / "synthetic.json", json.dumps({"gopro": gopro, "kohler": kohler, "settings": s},
                                                        indent=2, default=str))
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

    from benchmark.data import CropSampler
    from benchmark.files import check_parent
    from benchmark.train import Trainer, method_setup, resolve_device, write_run_info

    _threads(args.threads)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    profile = load_profile(args.config)
    run = _run_of(args, profile)
    method, options, settings = method_setup(run.method, profile, {**run.options, **(args.method_config or {})},
                                             {**(args.train or {}), **({"seed": run.seed} if args.run else {})})
    if method.kind != "trained":
        raise CliError(f"method {method.name!r} is classical: there is nothing to train")
    missing = [k for k in ("lr", "lr_final", "epochs_constant", "epochs_decay", "batch_size", "crop", "seed")
               if k not in settings]
    if missing:
        raise CliError(f"train settings lack {', '.join(missing)}: give --config PROFILE.yaml or --train JSON")
    _check_schedule(settings, args.stop_after)
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
    started = time.perf_counter()
    weights = trainer.run(resume=args.resume, stop_after=args.stop_after,
                          extend=args.extend or bool(settings.get("extend", False)))
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


def _check_schedule(settings: Mapping[str, Any], stop_after: int | None) -> None:
    """A schedule of zero iterations would write an untrained network as if it were trained."""
    for key, minimum in (("epochs_constant", 0), ("epochs_decay", 0), ("batch_size", 1), ("crop", 1)):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise CliError(f"train setting {key} = {value!r}: must be a whole number >= {minimum}")
    if settings["epochs_constant"] + settings["epochs_decay"] < 1:
        raise CliError(f"train settings epochs_constant = {settings['epochs_constant']} and epochs_decay = "
                       f"{settings['epochs_decay']}: the schedule has no iterations; set at least one epoch")
    if stop_after is not None and stop_after < 1:
        raise CliError(f"--stop-after {stop_after}: must be at least 1 iteration")


def _test_sets(args: argparse.Namespace) -> list[tuple[str, str, Path, str]]:
    """(name, layout, root, blur folder) of every test set named on the command line."""
    sets = []
    if args.gopro:
        sets.append(("gopro", "gopro", args.gopro, args.blur_folder))
        if args.gamma:
            sets.append(("gopro_gamma", "gopro", args.gopro, "blur_gamma"))
    if args.kohler:
        sets.append(("kohler", "kohler", args.kohler, ""))
    if not sets:
        raise CliError("name at least one test set: --gopro ROOT and/or --kohler ROOT")
    return sets


def _restore_jobs(layout: str, root: Path, blur_folder: str) -> list[tuple[Path, Path]]:
    """(blurred input, output path relative to the set's output folder) for every test image."""
    from benchmark.data import gopro_pairs, kohler_items

    if layout == "gopro":
        return [(p.blurred, Path(p.seq) / p.blurred.name) for p in gopro_pairs(root, "test", blur_folder)]
    return [(k.blurred, Path(k.blurred.name)) for k in kohler_items(root)]


def cmd_restore(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from benchmark.data import read_image, write_image
    from benchmark.files import staged_dir

    method, options, model, _ = inference_setup(args, load_profile(args.config))
    sets = _test_sets(args)
    if args.kernels is not None and not args.kernels.is_dir():
        raise CliError(f"--kernels {args.kernels}: not a folder (give the kernels/ folder of Pan's restore)")
    summary = {"method": method.name, "sets": {}}
    with staged_dir(args.out) as tmp:
        if options.get("save_kernels"):  # Pan's kernels, kept beside its PNGs for the Wiener and RL rows
            options["kernel_dir"] = str(tmp / "kernels")
        if args.kernels is not None:
            options["kernel_dir"] = str(args.kernels)
        for name, layout, root, blur_folder in sets:
            jobs = _restore_jobs(layout, root, blur_folder)[: args.limit or None]
            seconds = []
            for blurred_path, rel in tqdm(jobs, desc=f"restore {method.name} ({name})", unit="img",
                                          disable=args.quiet):
                blurred = read_image(blurred_path)
                start = time.perf_counter()
                restored = method.restore(model, blurred, options)
                seconds.append(time.perf_counter() - start)
                write_image(tmp / name / rel, restored)
            summary["sets"][name] = {"images": len(jobs), "seconds": seconds}
            print(f"restored {len(jobs)} {name} images with {method.name}")
        _write_text(tmp / "restore.json", json.dumps(summary, indent=2))
    return 0


def _score_set(layout: str, root: Path, blur_folder: str, restored: Path, cw_ssim: bool, quiet: bool) -> list[dict]:
    from tqdm import tqdm

    from benchmark.data import gopro_pairs, kohler_items, read_image
    from benchmark.metrics import KOHLER_COLUMNS, kohler_score, score_image

    rows = []
    if layout == "gopro":
        for p in tqdm(gopro_pairs(root, "test", blur_folder), desc="score", disable=quiet):
            image = read_image(restored / p.seq / p.blurred.name)
            rows.append({"image": f"{p.seq}/{p.blurred.name}",
                         **score_image(image, read_image(p.sharp), with_cw_ssim=cw_ssim)})
    else:
        for k in tqdm(kohler_items(root), desc="score", disable=quiet):
            result = kohler_score(read_image(restored / k.blurred.name), [read_image(f) for f in k.frames])
            rows.append({"image": k.blurred.name, **{c: result[c] for c in KOHLER_COLUMNS}})
    return rows


def cmd_score(args: argparse.Namespace) -> int:
    import pandas as pd

    from benchmark.files import staged_dir

    sets = _test_sets(args)
    with staged_dir(args.out) as tmp:
        for name, layout, root, blur_folder in sets:
            rows = _score_set(layout, root, blur_folder, args.restored / name, args.cw_ssim, args.quiet)
            if not rows:
                raise CliError(f"{root}: no test images found")
            frame = pd.DataFrame(rows)
            if args.method:
                frame.insert(0, "method", args.method)
            frame.to_csv(tmp / f"{name}.csv", index=False, float_format="%.6f")
            print(f"scored {len(rows)} {name} images -> {args.out / (name + '.csv')}")
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


def cmd_deblur(args: argparse.Namespace) -> int:
    from benchmark.deblur import deblur_all, plan

    jobs = plan(args.input, args.out, args.force)
    method, options, model, _ = inference_setup(args, {})
    return deblur_all(method, model, options, jobs)


def cmd_plan(args: argparse.Namespace) -> int:
    from benchmark.plan import format_plan, make_plan
    from benchmark.train import resolve_device

    _threads(args.threads)
    if args.config is None:
        raise CliError("give the profile to plan: --config config/paper.yaml")
    profile = load_profile(args.config)
    missing = [k for k in ("profile", "data", "train", "fig5") if k not in profile]
    if missing:
        raise CliError(f"{args.config}: not a profile (no {', '.join(missing)})")
    plan, source = make_plan(profile, gpu_check=args.gpu_check, probe_seconds=args.probe_seconds,
                             device=resolve_device(args.device))
    text = format_plan(profile["profile"], plan, source)
    print(text)
    if args.out is not None:
        _write_text(args.out, json.dumps({"profile": profile["profile"], "source": source, **plan}, indent=2))
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


def cmd_tables(args: argparse.Namespace) -> int:
    from reports.tables import write_tables

    write_tables(args.results, args.config, args.out)
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from reports.figures import write_figures

    write_figures(args.results, args.config, args.out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from reports.render import render_report

    render_report(args.results, args.config, args.out)
    return 0


# -- parser ---------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, *, device: bool = False, config: bool = True) -> None:
    if config:
        p.add_argument("--config", type=Path, help="profile YAML (config/quick.yaml, ...) supplying defaults")
    if device:
        p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                       help="where to run (default: auto = cuda if available)")
        p.add_argument("--threads", type=int, help="torch CPU threads for this process")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deblurbench",
        description="Reproduction suite for the MSR2B multi-scale conditional GAN for image deblurring "
                    "(Qi & Wang 2023). The Snakefile runs these steps; each also works on its own.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("methods", cmd_methods, "list the registered methods with their parameter counts")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("synthesise", cmd_synthesise, "make the embedded synthetic camera-shake data (GOPRO and Köhler layouts)")
    p.add_argument("--out", type=Path, required=True, help="folder to create (gopro/ and kohler/ inside)")
    p.add_argument("--params", type=_json_arg, help="JSON overriding the profile's data.synthetic settings")
    _common(p)

    p = add("cache", cmd_cache, "decode a GOPRO-layout split into a memory-mapped random-crop cache")
    p.add_argument("--data", type=Path, required=True, help="GOPRO-layout root")
    p.add_argument("--split", default="train", choices=("train", "test"))
    p.add_argument("--blur-folder", default="blur", choices=("blur", "blur_gamma"))
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
    _common(p, device=True)

    def test_sets(p: argparse.ArgumentParser) -> None:
        p.add_argument("--gopro", type=Path, help="GOPRO-layout root: its test split is used")
        p.add_argument("--kohler", type=Path, help="Köhler-layout root")
        p.add_argument("--blur-folder", default="blur", choices=("blur", "blur_gamma"), help="GOPRO input folder")
        p.add_argument("--gamma", action="store_true", help="also GOPRO's blur_gamma inputs (set gopro_gamma)")

    p = add("restore", cmd_restore, "restore the test sets with a method, writing PNGs (one folder per set)")
    p.add_argument("--method", required=True)
    p.add_argument("--weights", type=Path, help="trained weights (model.pt / checkpoint.pt / official release)")
    test_sets(p)
    p.add_argument("--options", type=_json_arg, help="JSON of method options")
    p.add_argument("--limit", type=int, help="only the first N images of each set")
    p.add_argument("--kernels", type=Path,
                   help="wiener / richardson-lucy: the kernels/ folder of Pan's restore, read instead of "
                        "estimating each kernel again")
    p.add_argument("--out", type=Path, required=True, help="folder: <out>/gopro, <out>/kohler, ...")
    _common(p, device=True)

    p = add("score", cmd_score, "score restored images against the ground truth (a per-image CSV per set)")
    test_sets(p)
    p.add_argument("--restored", type=Path, required=True, help="folder written by `deblurbench restore`")
    p.add_argument("--method", help="method name written into the CSVs")
    p.add_argument("--cw-ssim", action="store_true", help="also CW-SSIM (pyiqa)")
    p.add_argument("--out", type=Path, required=True, help="folder of CSVs: <out>/gopro.csv, <out>/kohler.csv")
    _common(p, config=False)

    p = add("time", cmd_time, "time a method at 1280x720 (median of N runs), with params and MACs")
    p.add_argument("--method", required=True)
    p.add_argument("--weights", type=Path, help="weights (optional: timing does not depend on their values)")
    p.add_argument("--options", type=_json_arg)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--runs", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--out", type=Path, required=True, help="JSON to write")
    _common(p, device=True)

    p = add("deblur", cmd_deblur, "deblur an image or a folder of images (end-user command)")
    p.add_argument("input", type=Path, help="an image file or a folder of images")
    p.add_argument("--method", default="msr2b", help="registered method (default: msr2b)")
    p.add_argument("--weights", type=Path, help="weights of a trained method (model.pt, or an official release)")
    p.add_argument("--options", type=_json_arg, help="JSON of method options (e.g. '{\"k\": 9}')")
    p.add_argument("--out", type=Path, help="output file (image in) or folder (folder in); never an input")
    p.add_argument("--force", action="store_true", help="overwrite outputs that already exist")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    for name, func, help_ in (("tables", cmd_tables, "aggregate the per-image CSVs into the paper's tables"),
                              ("figures", cmd_figures, "draw Fig. 5, the training curves and Figs. 6-8"),
                              ("report", cmd_report, "render the self-contained HTML report")):
        p = add(name, func, help_)
        p.add_argument("--results", type=Path, required=True, help="results/<profile> folder")
        p.add_argument("--out", type=Path, required=True)
        _common(p)

    p = add("plan", cmd_plan, "before a long run: each training's iterations, time per iteration, GPU-hours, "
                              "and the trainings' wall time on 1, 4 and 8 GPUs")
    p.add_argument("--gpu-check", type=Path, default=Path("results/gpu_check"),
                   help="gpu_check JSON, or a folder whose newest gpu_check*.json is used (default: results/gpu_check)")
    p.add_argument("--probe-seconds", type=float,
                   help="probe this machine for this many seconds in all instead of reading a gpu_check JSON "
                        "(the default, 60 s, when there is none); 0 lists the jobs and iterations untimed")
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
    code = EXIT_ERROR
    try:
        return args.func(args)
    except CliError as err:
        message = err
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
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
