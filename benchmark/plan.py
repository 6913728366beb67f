"""What a profile's trainings will cost before they run: iterations, time per iteration, GPU-hours,
and the wall time of the DAG's trainings on 1, 8 and 64 GPUs; the evaluation's images, shards, seconds per
image, CPU- and GPU-hours and wall time on 1, 8 and 64 cluster nodes (``deblurbench plan``).

The time per iteration comes from a ``benchmarks/gpu_check.py`` JSON (measured on a GPU) or from a
short probe on this machine: the project's one training loop (:class:`benchmark.train.Trainer`)
run for a few seconds at each job's own crop, batch, losses and critic steps on synthetic crops.
The trainings are independent jobs; on N GPUs they are placed longest first on the GPU that frees
up first, and the wall time is the last one's end. The evaluation's seconds per image come from the
profile's own timings at the test images' size, a gpu_check JSON, or a probe of one image per method
through its restore code (in a child process); its shard jobs are placed the same way on 1, 8 and 64
nodes. Fetching, scoring and the report take minutes and are not counted.

A probe keeps to its time budget, making the probe data, building the networks and the warm-up
included: the trainings' probe and the evaluation's each get half; within one, each job gets an equal
share of what is left, and a job still running at the end of its share is stopped (:func:`deadline`; a
running torch operation finishes first; an evaluation probe's child process is ended) and listed as not
measured, or as a lower bound, with what it was doing.
"""

from __future__ import annotations

import json
import math
import resource
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GPU_CHECK_DIR = Path("results/gpu_check")
NODE_COUNTS = (1, 8, 64)  # the wall times printed: on 1, 8 and 64 GPUs or cluster nodes
DEFAULT_PROBE_SECONDS = 60.0
MIN_SHARE_SECONDS = 0.5  # a job whose share of the budget is shorter is not started
PAPER_CROP = 256  # the paper's training crop: a probe at this size on a CPU gets a warning first


class OutOfTime(Exception):
    """A probe's share of the time budget ran out."""


class Deadline:
    """A point in time (``time.monotonic()``) after which a probe stops: :class:`OutOfTime` is raised in the
    main thread inside an :meth:`interruptible` block (Python runs the signal handler between bytecodes, so a
    torch operation in progress finishes first). Outside such a block (making data, building the networks,
    importing their modules, which must never be cut half-way) the expiry is noted and raised by the next
    :meth:`check` or :meth:`interruptible`. Outside the main thread it is only checked there."""

    def __init__(self, at: float) -> None:
        self.at, self.expired, self._armed = at, False, False

    def check(self) -> None:
        if self.expired or time.monotonic() >= self.at:
            self.expired = True
            raise OutOfTime

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        self.check()
        self._armed = True
        try:
            yield
        finally:
            self._armed = False

    @contextmanager
    def alarm(self) -> Iterator[Deadline]:
        """Arm the timer for the whole probe (the handler raises only inside :meth:`interruptible`)."""
        self.check()
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def expire(signum: int, frame: Any) -> None:
            self.expired = True
            if self._armed:
                raise OutOfTime

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, max(self.at - time.monotonic(), 1e-3))
        try:
            yield self
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Job:
    """One training of the DAG: its run name, method, options, settings and length."""

    run: str
    method: str
    options: dict[str, Any] = field(hash=False)
    settings: dict[str, Any] = field(hash=False)
    pairs: int
    iterations: int
    timed_as: str  # the run whose time per iteration this one takes (another seed trains at the same speed)


def timed_jobs(jobs: Sequence[Job]) -> list[Job]:
    """The jobs to time: one per method and options (a method's other seeds take their time from it)."""
    return [j for j in jobs if j.run == j.timed_as]


def train_pairs(cfg: Mapping[str, Any]) -> int:
    """Training pairs of the profile's data: GOPRO's 2103, or the synthetic ``train_pairs``."""
    if cfg["data"]["source"] == "synthetic":
        return int(cfg["data"]["synthetic"]["train_pairs"])
    from benchmark.prepare import GOPRO_COUNTS

    return sum(GOPRO_COUNTS["train"].values())


def training_jobs(cfg: Mapping[str, Any]) -> list[Job]:
    """The DAG's training runs as ``benchmark/runs.py`` names them (every trained method and seed, then the
    Fig. 5 sweep's extra k values), with the settings each run's ``deblurbench train`` would use."""
    from benchmark import runs
    from benchmark.train import method_setup

    pairs = train_pairs(cfg)
    jobs = []
    for run in runs.plan(cfg).values():
        method, options, settings = method_setup(run.method, cfg, run.options)
        per_epoch = math.ceil(pairs / settings["batch_size"])
        epochs = settings["epochs_constant"] + settings["epochs_decay"]
        timed_as = run.name if run.options else runs.run_name(run.method, cfg["train"]["seed"], cfg)
        jobs.append(Job(run.name, run.method, options, {**settings, "seed": run.seed}, pairs, epochs * per_epoch,
                        timed_as))
    return jobs


def probe_data(folder: Path, size: int, pairs: int = 4) -> Path:
    """A crop cache of ``pairs`` synthetic camera-shake pairs of ``size`` x ``size`` (made once per folder)."""
    from benchmark.data import build_crop_cache, gopro_pairs
    from benchmark.synthetic import synthesise_gopro

    cache = folder / f"cache-{size}"
    if not cache.exists():
        root = folder / f"gopro-{size}"
        synthesise_gopro(root, seed=0, train_pairs=pairs, test_pairs=2, size=size, n_subframes=5)
        build_crop_cache(gopro_pairs(root, "train"), cache)
    return cache


def peak_memory_mb(device: Any) -> float:
    """Peak memory: allocated on the GPU since the last reset, or this process's peak RSS on the CPU."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probe(job: Job, device: Any, seconds: float, workdir: Path, *, precision: str | None = None,
          compile: bool = False, warmup_iterations: int = 2, data_size: int | None = None,
          stage: dict[str, Any] | None = None, deadline: Deadline | None = None) -> dict[str, Any]:
    """Time ``job``'s training iteration with the one training loop: ``warmup_iterations`` first
    (cudnn autotuning, compilation, the allocator), then as many as fit in ``seconds``. The time is
    the loop's own clock over the measured iterations, the device read at the end included.
    The VGG19 of a perceptual loss is randomly initialised (same cost as the ImageNet weights).
    ``stage`` is kept up to date with what the probe is doing, and ``deadline`` (a :class:`Deadline`) may
    stop it: while data are made and networks built only between those steps, during the iterations at once."""
    stage = {} if stage is None else stage
    deadline = deadline or Deadline(math.inf)
    import torch

    from benchmark import registry
    from benchmark.data import CropSampler
    from benchmark.train import Trainer

    method = registry.get(job.method)
    settings = {**job.settings, "perceptual_weights": "random", "quiet": True, "epochs_constant": 10**6,
                "epochs_decay": 0, "log_every": 10**9, "checkpoint_every": 10**9, "compile": compile}
    if precision is not None:
        settings["precision"] = precision
    stage.update(at="making the probe data", since=time.monotonic())
    cache = probe_data(workdir, data_size or settings["crop"])
    sampler = CropSampler(cache, crop=settings["crop"], seed=settings["seed"])
    deadline.check()
    with tempfile.TemporaryDirectory(dir=workdir) as out:
        stage.update(at="building the networks", since=time.monotonic())
        trainer = Trainer(method, job.options, settings, sampler, Path(out), device)
        deadline.check()  # a build that outlasted the share is named as such
        stage.update(at=f"in {warmup_iterations} warm-up iteration(s)", since=time.monotonic())
        with deadline.interruptible():
            trainer.run(stop_after=warmup_iterations)
        warm = (time.monotonic() - stage["since"]) / warmup_iterations
        stage.update(at="in its first timed iteration", since=time.monotonic())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        done, clock = trainer.iteration, trainer.wall_seconds
        # Stop the loop one warm-up iteration's length before the deadline, so its last iteration ends in time.
        limit = min(seconds, deadline.at - time.monotonic() - 1.2 * warm)
        try:
            with deadline.interruptible():
                trainer.run(resume=True, time_limit=max(limit, 0.0))
        except OutOfTime:  # stopped inside an iteration: the ones completed count
            if trainer.iteration == done:  # none: the warm-up iteration's time stands for one
                return {"run": job.run, "ms_per_iteration": 1000 * warm, "from_warmup": True}
        n, elapsed = trainer.iteration - done, trainer.wall_seconds - clock
        return {"run": job.run, "method": job.method, "precision": trainer.speed["precision"],
                "compiled": trainer.speed.get("compiled", "none"), "crop": settings["crop"],
                "batch_size": settings["batch_size"], "iterations": n, "seconds": elapsed,
                "ms_per_iteration": 1000 * elapsed / n, "iterations_per_second": n / elapsed,
                "peak_memory_mb": peak_memory_mb(device)}


def schedule_wall(hours: Sequence[float], gpus: int) -> float:
    """Wall time of independent jobs on ``gpus`` GPUs, longest first onto the GPU free first."""
    ends = [0.0] * gpus
    for h in sorted(hours, reverse=True):
        i = ends.index(min(ends))
        ends[i] += h
    return max(ends, default=0.0)


def estimate(jobs: Sequence[Job], ms_per_iteration: Mapping[str, float]) -> dict[str, Any]:
    """Each job's GPU-hours (iterations x time per iteration) and the trainings' wall time on 1, 8, 64 GPUs.
    A job without its own measurement is left out of the walls and named in ``unmeasured``."""
    rows, unmeasured = [], []
    for job in jobs:
        ms = ms_per_iteration.get(job.timed_as)
        if ms is None:
            unmeasured.append(job.run)
        rows.append({"run": job.run, "method": job.method, "iterations": job.iterations,
                     "crop": job.settings["crop"], "batch_size": job.settings["batch_size"],
                     "ms_per_iteration": ms, "hours": None if ms is None else job.iterations * ms / 3.6e6})
    hours = [r["hours"] for r in rows if r["hours"] is not None]
    return {"jobs": rows, "gpu_hours": sum(hours), "unmeasured": unmeasured,
            "wall_hours": {str(n): schedule_wall(hours, n) for n in NODE_COUNTS}}


def latest_gpu_check(where: Path) -> Path | None:
    """The newest ``gpu_check*.json`` in a folder (or the file itself)."""
    if where.is_file():
        return where
    found = sorted(where.glob("gpu_check*.json"), key=lambda p: p.stat().st_mtime) if where.is_dir() else []
    return found[-1] if found else None


def measured_times(record: Mapping[str, Any], precision: str) -> dict[str, float]:
    """run -> ms per iteration from a gpu_check JSON, at ``precision`` (uncompiled)."""
    return {t["run"]: t["ms_per_iteration"] for t in record["training"]
            if t["precision"] == precision and t["compiled"] == "none"}


def probe_times(jobs: Sequence[Job], device: Any, seconds: float, workdir: Path,
                started: float | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """(run -> ms per iteration, run -> why it was not measured or how it was): every job probed in its profile's
    precision, all of it (data, building, warm-up) within ``seconds`` from ``started`` (monotonic; default
    now). Each job gets an equal share of the time left when it starts."""
    end = (time.monotonic() if started is None else started) + seconds
    times, notes = {}, {}
    for i, job in enumerate(jobs):
        share = (end - time.monotonic()) / (len(jobs) - i)
        if share < MIN_SHARE_SECONDS:
            notes[job.run] = "the time budget was spent before its turn"
            continue
        stage: dict[str, Any] = {"at": "starting", "since": time.monotonic()}
        try:
            with Deadline(time.monotonic() + share).alarm() as deadline:
                result = probe(job, device, share, workdir, warmup_iterations=1, stage=stage, deadline=deadline)
            times[job.run] = result["ms_per_iteration"]
            if result.get("from_warmup"):
                notes[job.run] = (f"timed by its warm-up iteration alone (no timed iteration fitted in its "
                                  f"{share:.1f} s share): one-time costs included, an overestimate")
        except OutOfTime:
            notes[job.run] = (f"stopped at the end of its {share:.1f} s share, {stage['at']} for "
                              f"{time.monotonic() - stage['since']:.1f} s")
    return times, notes


def paper_sizes_on_cpu(jobs: Sequence[Job], device: Any) -> str | None:
    """A warning before a CPU probe of trainings at the paper's sizes (what a GPU is for), or None."""
    big = [j for j in jobs if j.settings["crop"] >= PAPER_CROP]
    if device.type != "cpu" or not big:
        return None
    crops = sorted({j.settings["crop"] for j in big})
    batches = sorted({j.settings["batch_size"] for j in big})
    return (f"probing {len(big)} trainings at the paper's sizes ({'/'.join(map(str, crops))} px crops, batch "
            f"{'/'.join(map(str, batches))}) on the CPU: an iteration takes seconds to minutes here, so within the "
            "budget most stay unmeasured, and what is measured is CPU time, not a GPU estimate. For a GPU "
            "estimate run benchmarks/gpu_check.py on the GPU and pass its JSON with --gpu-check; "
            "--probe-seconds 0 lists the jobs untimed.")


def format_plan(profile: str, plan: Mapping[str, Any], source: str) -> str:
    """The plan as a Markdown table and the wall-time lines (CPU-hours where a CPU was measured)."""
    unit = "CPU" if plan.get("measured_on") == "cpu" else "GPU"
    lines = [f"Training plan of profile `{profile}` (time per iteration: {source})", "",
             f"| run | iterations | crop | batch | ms / iteration | {unit}-hours |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in plan["jobs"]:
        ms = "not measured" if r["ms_per_iteration"] is None else f"{r['ms_per_iteration']:.1f}"
        hours = "–" if r["hours"] is None else f"{r['hours']:.2f}"
        lines.append(f"| {r['run']} | {r['iterations']:,} | {r['crop']} | {r['batch_size']} | {ms} | {hours} |")
    if len(plan["unmeasured"]) == len(plan["jobs"]):
        return "\n".join(lines)
    lines += ["", f"Total: {plan['gpu_hours']:.2f} {unit}-hours. Wall time of the trainings (longest first, "
                  f"on the {unit} free first): " + ", ".join(f"{n} {unit}{'s' if n > 1 else ''}: "
                                                     f"{plan['wall_hours'][str(n)]:.2f} h" for n in NODE_COUNTS)]
    if plan["unmeasured"]:
        lines.append(f"Not measured, left out of the totals: {', '.join(plan['unmeasured'])}.")
    return "\n".join(lines)


def format_notes(plan: Mapping[str, Any]) -> str:
    """Why a job of a probe was not measured, or how it was, one line each (empty when all were, plainly)."""
    reasons = plan.get("probe_notes", {})
    return "\n".join(f"- {run}: {why}" for run, why in reasons.items())


def make_plan(cfg: Mapping[str, Any], *, gpu_check: Path | None, probe_seconds: float | None,
              device: Any, workdir: Path | None = None,
              warn: Callable[[str], None] | None = None) -> tuple[dict[str, Any], str]:
    """(plan, where its times come from): the gpu_check JSON unless a probe is asked for or none exists.
    A probe keeps to ``probe_seconds`` (default 60 s) from this call on, and ``warn`` hears first when it
    is about to probe the paper's sizes on a CPU."""
    started = time.monotonic()
    jobs = training_jobs(cfg)
    precision = cfg["train"].get("precision", "fp32")
    record_path = latest_gpu_check(gpu_check) if gpu_check is not None and probe_seconds is None else None
    if probe_seconds == 0:  # the jobs and their iterations only
        return estimate(jobs, {}), "not measured (--probe-seconds 0)"
    if record_path is not None:
        record = json.loads(record_path.read_text())
        times = measured_times(record, precision)
        measured_on = record["hardware"]["device"]
        source = (f"{record_path}, measured on {record['hardware'].get('gpu') or record['hardware']['cpu']} "
                  f"({precision})")
        notes = {}
    else:
        seconds = probe_seconds if probe_seconds is not None else DEFAULT_PROBE_SECONDS
        warning = paper_sizes_on_cpu(jobs, device)
        if warning and warn is not None:
            warn(warning)
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            times, notes = probe_times(timed_jobs(jobs), device, seconds, Path(tmp), started=started)
        from benchmark.timing import hardware

        where, measured_on = hardware(device), device.type
        source = (f"a {time.monotonic() - started:.0f} s probe on this machine (budget {seconds:g} s; "
                  f"{where.get('gpu') or where['cpu']}, {device.type}, {precision})")
    plan = estimate(jobs, times) | {"measured_on": "cpu" if measured_on == "cpu" else "gpu"}
    return plan | ({"probe_notes": notes} if notes else {}), source


# -- the evaluation: restore every test image of every evaluated name, in shards --------------------------

@dataclass(frozen=True)
class EvaluationJob:
    """An evaluated name (a classical method, a trained method's seed, an authors' release): its method and
    options, how many images of each test set it restores, and its shards."""

    name: str
    method: str
    options: dict[str, Any] = field(hash=False)
    network: bool
    images: dict[str, int] = field(hash=False)
    shards: int
    shard_size: int


def evaluation_jobs(cfg: Mapping[str, Any]) -> list[EvaluationJob]:
    """Every evaluated name of the DAG, as ``rules/common.smk`` and ``rules/weights.smk`` name them."""
    from benchmark import evaluate, registry, runs
    from benchmark.releases import release

    expected = evaluate.expected_images(cfg)
    named = [(name, m.name, registry.configured_options(m.name, cfg), m.name) for m in registry.available()
             for _, name in runs.seed_runs(m.name, cfg)]
    for r in cfg.get("weights", {}).get("releases", []):  # evaluated as their own names (no blur_gamma audit)
        rel = release(r)
        named.append((f"authors:{r}", rel.method, registry.get(rel.method).options(rel.options), r))
    jobs = []
    for name, method, options, evaluated_as in named:
        images = {s: expected[s] for s in evaluate.evaluation_sets(cfg, evaluated_as)}
        size = evaluate.shard_size(cfg, method)
        jobs.append(EvaluationJob(name, method, options, registry.get(method).kind == "trained", images,
                                  evaluate.shard_count(sum(images.values()), size), size))
    return jobs


def _restore_seconds(probes: Sequence[tuple[str, dict[str, Any], str]], width: int, height: int,
                     queue: Any) -> None:
    """Child process of :func:`probe_restores`: for each (method, options, device) in turn, build the method (a
    network with untrained weights: its cost does not depend on their values), say so, restore one image and
    put the seconds on ``queue``."""
    from benchmark import registry
    from benchmark.timing import test_image

    image = test_image(width, height)
    for method, options, device in probes:
        m = registry.get(method)
        model = None
        if m.kind == "trained":
            import torch

            from benchmark.inference import for_inference

            torch.set_num_threads(1)
            model = for_inference(m.build(dict(options)).to(device))
        queue.put(("ready", method))
        started = time.perf_counter()
        m.restore(model, image, dict(options))
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
        queue.put(("done", time.perf_counter() - started))


RESERVE_SECONDS = 30.0  # what a restore probe keeps back for each method after the one it runs (build + one image)


def _receive(channel: Any, child: Any, until: float, method: str) -> Any:
    """The child's next message before ``until`` (``time.monotonic()``; queue.Empty after it); an error if the
    child died."""
    import queue as queues

    while True:
        try:
            return channel.get(timeout=min(0.5, max(until - time.monotonic(), 0.01)))
        except queues.Empty:
            if not child.is_alive() and channel.empty():
                raise RuntimeError(f"plan: the restore probe of {method} died (exit code {child.exitcode})") from None
            if time.monotonic() >= until:
                raise


def probe_restores(probes: Sequence[tuple[str, Mapping[str, Any], str]], width: int, height: int,
                   budget: float) -> dict[str, tuple[float | None, bool]]:
    """Seconds to restore one ``width`` x ``height`` image with each (method, options, device) through its restore
    code, in a child process, within ``budget`` seconds in all (starting the child and building the networks
    included): each method may use what is left but :data:`RESERVE_SECONDS` for each method after it (at least
    an equal share), so one slow classical method can be measured without starving the rest.
    method -> (seconds, True); (seconds it ran, False) when its restore was stopped at the end of its share (a
    lower bound); (None, False) when the share ran out before the method was built. A stopped child is
    replaced for the methods after it."""
    import multiprocessing
    import queue as queues

    context = multiprocessing.get_context("spawn")
    todo = [(m, dict(o), d) for m, o, d in probes]
    results: dict[str, tuple[float | None, bool]] = {}
    end = time.monotonic() + budget
    while todo:
        channel = context.Queue()
        child = context.Process(target=_restore_seconds, args=(todo, width, height, channel), daemon=True)
        child.start()
        try:
            while todo:
                method = todo[0][0]
                left = max(end - time.monotonic(), 0.0)  # a slow method may use what the rest will not need
                until = time.monotonic() + max(left / len(todo), left - RESERVE_SECONDS * (len(todo) - 1))
                try:
                    _receive(channel, child, until, method)  # ("ready", method): started and built
                except queues.Empty:
                    results[method] = (None, False)
                    todo.pop(0)
                    break
                started = time.monotonic()
                try:
                    results[method] = (_receive(channel, child, until, method)[1], True)
                except queues.Empty:  # stopped at the end of its share: a lower bound
                    results[method] = (time.monotonic() - started, False)
                    todo.pop(0)
                    break
                todo.pop(0)
        finally:
            if child.is_alive():
                child.terminate()
            child.join()
    return results


def timing_files(results: Path) -> dict[str, dict[str, Any]]:
    """The workflow's own timing JSONs of a profile (``results/<profile>/timing``), by method."""
    found = {}
    for path in sorted((results / "timing").glob("*.json")) if (results / "timing").is_dir() else []:
        try:
            found[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


def evaluation_seconds(cfg: Mapping[str, Any], jobs: Sequence[EvaluationJob], *, results: Path | None,
                       gpu_check: Mapping[str, Any] | None, probe_seconds: float, device: Any
                       ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Seconds per GOPRO-sized image per method, and where each came from: the profile's own timing of that
    method at that size (``deblurbench time``), a gpu_check measurement of the network, or a probe of one image
    through the restore code on this machine within ``probe_seconds`` in all."""
    from benchmark.evaluate import image_sizes

    width, height = image_sizes(cfg)["gopro"]
    timed = timing_files(results) if results is not None else {}
    checked = {r["method"]: r for r in (gpu_check or {}).get("inference", [])
               if (r.get("width"), r.get("height")) == (width, height)}
    methods = {j.method: j.options for j in jobs}
    seconds: dict[str, dict[str, Any]] = {}
    to_probe = []
    for method in methods:
        t = timed.get(method)
        if t and (t.get("width"), t.get("height")) == (width, height):
            seconds[method] = {"seconds": t["median_s"], "complete": True, "source": "timing",
                               "device": t.get("device", "cpu")}
        elif method in checked:
            seconds[method] = {"seconds": checked[method]["median_s"], "complete": True, "source": "gpu_check",
                               "device": "cuda"}
        else:
            to_probe.append(method)
    if probe_seconds > 0 and to_probe:
        from benchmark import registry

        where = {m: "cpu" if registry.get(m).kind == "classical" else getattr(device, "type", str(device))
                 for m in to_probe}
        probed = probe_restores([(m, methods[m], where[m]) for m in to_probe], width, height, probe_seconds)
        for method, (value, complete) in probed.items():
            if value is not None:
                seconds[method] = {"seconds": value, "complete": complete, "source": "probe",
                                   "device": where[method]}
    return seconds, [m for m in methods if m not in seconds]


def estimate_evaluation(cfg: Mapping[str, Any], jobs: Sequence[EvaluationJob],
                        seconds: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each evaluated name's hours (images x seconds per image, a set of another size scaled by its pixel count
    from the GOPRO-sized measurement), its shards' hours, the CPU- and GPU-hours, and the evaluation's wall time
    on 1, 8 and 64 nodes (each node running one shard job at a time, longest first)."""
    from benchmark.evaluate import image_sizes

    sizes = image_sizes(cfg)
    base = sizes["gopro"][0] * sizes["gopro"][1]
    rows, shard_hours, hours_on = [], [], {"cpu": 0.0, "cuda": 0.0}
    for job in jobs:
        s = seconds.get(job.method)
        row = {"name": job.name, "method": job.method, "images": sum(job.images.values()), "shards": job.shards,
               "shard_size": job.shard_size, "seconds_per_image": None, "lower_bound": False, "device": None,
               "hours": None, "hours_per_shard": None}
        if s is not None:
            total = sum(n * s["seconds"] * sizes[name][0] * sizes[name][1] / base for name, n in job.images.items())
            device = "cpu" if s["device"] == "cpu" else "cuda"
            row |= {"seconds_per_image": s["seconds"], "lower_bound": not s["complete"], "device": device,
                    "hours": total / 3600, "hours_per_shard": total / 3600 / job.shards}
            shard_hours += [total / 3600 / job.shards] * job.shards
            hours_on[device] += total / 3600
        rows.append(row)
    return {"jobs": rows, "cpu_hours": hours_on["cpu"], "gpu_hours": hours_on["cuda"],
            "unmeasured": [r["name"] for r in rows if r["hours"] is None],
            "lower_bounds": sorted({r["method"] for r in rows if r["lower_bound"]}),
            "wall_hours": {str(n): schedule_wall(shard_hours, n) for n in NODE_COUNTS}}


def format_evaluation(profile: str, plan: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """The evaluation plan as a Markdown table and its totals."""
    where = "; ".join(f"{k}: {v}" for k, v in sources.items()) or "not measured"
    lines = [f"Evaluation plan of profile `{profile}` (seconds per GOPRO-sized image: {where})", "",
             "| evaluated | images | shards x images | s / image | on | hours | hours / shard |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for r in plan["jobs"]:
        per = "not measured" if r["seconds_per_image"] is None else (
            (">" if r["lower_bound"] else "") + f"{r['seconds_per_image']:.2f}")
        hours = "–" if r["hours"] is None else f"{r['hours']:.2f}"
        shard = "–" if r["hours_per_shard"] is None else f"{r['hours_per_shard']:.2f}"
        on = {"cpu": "CPU", "cuda": "GPU", None: "–"}[r["device"]]
        lines.append(f"| {r['name']} | {r['images']:,} | {r['shards']} x {r['shard_size']} | {per} | {on} | "
                     f"{hours} | {shard} |")
    if len(plan["unmeasured"]) < len(plan["jobs"]):
        lines += ["", f"Total: {plan['cpu_hours']:.2f} CPU-hours, {plan['gpu_hours']:.2f} GPU-hours. Wall time of "
                      "the evaluation (one shard job per node at a time, longest first): "
                  + ", ".join(f"{n} node{'s' if n > 1 else ''}: {plan['wall_hours'][str(n)]:.2f} h"
                              for n in NODE_COUNTS)]
    if plan["lower_bounds"]:
        lines.append("Stopped at the end of its share of the budget, so a lower bound (>): "
                     f"{', '.join(plan['lower_bounds'])}.")
    if plan["unmeasured"]:
        lines.append(f"Not measured, left out of the totals: {', '.join(plan['unmeasured'])}.")
    return "\n".join(lines)


def make_evaluation_plan(cfg: Mapping[str, Any], *, gpu_check: Path | None, probe_seconds: float | None,
                         device: Any, results: Path | None) -> tuple[dict[str, Any], dict[str, str]]:
    """(evaluation plan, where its seconds per image come from, by source)."""
    jobs = evaluation_jobs(cfg)
    record_path = latest_gpu_check(gpu_check) if gpu_check is not None else None
    record = json.loads(record_path.read_text()) if record_path is not None else None
    # as the trainings: a probe when asked for, or when there is no gpu_check JSON to read
    budget = probe_seconds if probe_seconds is not None else (0.0 if record is not None else DEFAULT_PROBE_SECONDS)
    seconds, _ = evaluation_seconds(cfg, jobs, results=results, gpu_check=record, probe_seconds=budget,
                                    device=device)
    from benchmark.evaluate import image_sizes

    width, height = image_sizes(cfg)["gopro"]
    names = {"timing": f"{results}/timing at {width}x{height}", "gpu_check": str(record_path),
             "probe": f"one {width}x{height} image per method on this machine ({budget:.0f} s budget)"}
    sources = {names[k]: ", ".join(m for m, s in seconds.items() if s["source"] == k)
               for k in names if any(s["source"] == k for s in seconds.values())}
    return estimate_evaluation(cfg, jobs, seconds), sources
