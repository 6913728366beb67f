"""Inference time, parameters and MACs per method (SPEC section 6).

A 1280x720 RGB image, batch 1, warm-up runs first, the median of at least 10 runs; on CUDA each run
is measured between two CUDA events (the device synchronised before the first), elsewhere by the wall
clock. Disk I/O is excluded because the image is made in memory. A network on CUDA is timed in fp32
(TF32 convolutions off, so fp32 means fp32) and again under bf16 autocast (``median_s_bf16``); on a CPU
the bf16 column is left empty, since CPU bf16 is an emulation nobody would deploy. Classical methods
are timed through their ``restore`` on the CPU, at a size the configuration names, and without torch:
it is imported only where a network or a CUDA device is timed.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.registry import Method, network_restore

if TYPE_CHECKING:
    import torch

Device = Any  # a torch.device, or "cpu" for a classical method


def _kind(device: Device) -> str:
    return getattr(device, "type", str(device))


def hardware(device: Device, *, network: bool = True) -> dict[str, str]:
    """The device and CPU/GPU model the figures were measured on (and torch's version and threads when a
    network ran)."""
    info = {"device": _kind(device), "cpu": _cpu_model()}
    if network:
        import torch

        info |= {"torch": torch.__version__, "torch_threads": str(torch.get_num_threads())}
        if _kind(device) == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device: Device) -> None:
    if _kind(device) == "cuda":
        import torch

        torch.cuda.synchronize(device)


def median_seconds(run: Any, *, warmup: int, runs: int, device: Device) -> list[float]:
    """Seconds of each of ``runs`` calls of ``run()`` after ``warmup`` untimed ones: CUDA events on a
    GPU (they time the device's work, whatever the host does meanwhile), the wall clock elsewhere."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"timing needs runs >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    for _ in range(warmup):
        run()
    _sync(device)
    samples = []
    for _ in range(runs):
        if _kind(device) == "cuda":
            import torch

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1000)
        else:
            started = time.perf_counter()
            run()
            samples.append(time.perf_counter() - started)
    return samples


def test_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic uint8 image: content does not change a network's cost, only its size."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def complexity(model: torch.nn.Module, width: int, height: int) -> dict[str, int]:
    """Parameters and multiply-accumulates of one forward pass at ``width`` x ``height``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmark.inference import pad_to_multiple, to_tensor

    device = next(model.parameters()).device
    x, _ = pad_to_multiple(to_tensor(test_image(width, height), device), getattr(model, "size_multiple", 1))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return {"params": sum(p.numel() for p in model.parameters()), "macs": counter.get_total_flops() // 2}


def time_method(method: Method, model: torch.nn.Module | None, options: Mapping[str, Any], *,
                width: int, height: int, warmup: int, runs: int, device: Device,
                bf16: bool | None = None) -> dict[str, Any]:
    """Median time of ``method.restore`` on one in-memory image: a classical method (``model`` None) on
    the CPU by the wall clock, whatever ``device`` says; a network on ``device`` in fp32, and under bf16
    autocast when ``bf16`` (default: on CUDA only)."""
    image = test_image(width, height)
    if model is None:
        samples = median_seconds(lambda: method.restore(None, image, options), warmup=warmup, runs=runs, device="cpu")
        return {**_summary(method, width, height, runs, warmup, samples, None, "cpu"),
                **hardware("cpu", network=False), "params": 0, "macs": None}
    import torch

    model = model.to(device).eval()
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        samples = median_seconds(lambda: method.restore(model, image, options), warmup=warmup, runs=runs,
                                 device=device)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    median_bf16 = None
    if device.type == "cuda" if bf16 is None else bf16:
        def restore_bf16() -> Any:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return method.restore(model, image, options)
        median_bf16 = statistics.median(median_seconds(restore_bf16, warmup=warmup, runs=runs, device=device))
    result = {**_summary(method, width, height, runs, warmup, samples, median_bf16, device), **hardware(device)}
    if method.restore is network_restore:
        return result | complexity(model, width, height)
    # a network used piecewise (Sun et al.'s patch CNN): MACs not counted
    return result | {"params": sum(p.numel() for p in model.parameters()), "macs": None}


def _summary(method: Method, width: int, height: int, runs: int, warmup: int, samples: list[float],
             median_bf16: float | None, device: Device) -> dict[str, Any]:
    return {"method": method.name, "width": width, "height": height, "runs": runs, "warmup": warmup,
            "median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples),
            "median_s_bf16": median_bf16, "clock": "cuda-events" if _kind(device) == "cuda" else "wall"}
