"""Inference time, parameters and MACs per method (SPEC section 6).

A 1280x720 RGB image, batch 1, warm-up runs first, the median of at least 10 runs; on CUDA each run
is measured between two CUDA events (the device synchronised before the first), elsewhere by the wall
clock. Disk I/O is excluded because the image is made in memory. A network on CUDA is timed in fp32
(TF32 convolutions off, so fp32 means fp32) and again under bf16 autocast (``median_s_bf16``); on a CPU
the bf16 column is left empty, since CPU bf16 is an emulation nobody would deploy. Classical methods
are timed through their ``restore`` on the CPU, at a size the configuration names.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark.registry import Method, network_restore, pad_to_multiple, to_tensor


def hardware(device: torch.device) -> dict[str, str]:
    """The device and CPU/GPU model the figures were measured on."""
    info = {"device": device.type, "cpu": _cpu_model(), "torch": torch.__version__,
            "torch_threads": str(torch.get_num_threads())}
    if device.type == "cuda":
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(run: Any, *, warmup: int, runs: int, device: torch.device) -> list[float]:
    """Seconds of each of ``runs`` calls of ``run()`` after ``warmup`` untimed ones: CUDA events on a
    GPU (they time the device's work, whatever the host does meanwhile), the wall clock elsewhere."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"timing needs runs >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    for _ in range(warmup):
        run()
    _sync(device)
    samples = []
    for _ in range(runs):
        if device.type == "cuda":
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


def for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """A network as ``restore``, ``deblur`` and ``time`` run it: eval mode, channels_last weights (the
    convolutions then run in NHWC; on the CPU, MSR2B and DeblurGAN at 640x368 ran 1.6-1.7x faster,
    docs/measurements.md)."""
    return model.eval().to(memory_format=torch.channels_last)


def test_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic uint8 image: content does not change a network's cost, only its size."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def complexity(model: torch.nn.Module, width: int, height: int) -> dict[str, int]:
    """Parameters and multiply-accumulates of one forward pass at ``width`` x ``height``."""
    device = next(model.parameters()).device
    x, _ = pad_to_multiple(to_tensor(test_image(width, height), device), getattr(model, "size_multiple", 1))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return {"params": sum(p.numel() for p in model.parameters()), "macs": counter.get_total_flops() // 2}


def time_method(method: Method, model: torch.nn.Module | None, options: Mapping[str, Any], *,
                width: int, height: int, warmup: int, runs: int, device: torch.device,
                bf16: bool | None = None) -> dict[str, Any]:
    """Median time of ``method.restore`` on one in-memory image, fp32, and under bf16 autocast for a
    network when ``bf16`` (default: on CUDA only)."""
    image = test_image(width, height)
    if model is not None:
        model = model.to(device).eval()
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        samples = median_seconds(lambda: method.restore(model, image, options), warmup=warmup, runs=runs,
                                 device=device)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    median_bf16 = None
    if model is not None and (device.type == "cuda" if bf16 is None else bf16):
        def restore_bf16() -> Any:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return method.restore(model, image, options)
        median_bf16 = statistics.median(median_seconds(restore_bf16, warmup=warmup, runs=runs, device=device))
    result: dict[str, Any] = {
        "method": method.name, "width": width, "height": height, "runs": runs, "warmup": warmup,
        "median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples),
        "median_s_bf16": median_bf16, "clock": "cuda-events" if device.type == "cuda" else "wall",
        **hardware(device),
    }
    if model is not None and method.restore is network_restore:
        result |= complexity(model, width, height)
    else:  # a classical method, or a network used piecewise (Sun et al.'s patch CNN): MACs not counted
        result |= {"params": sum(p.numel() for p in model.parameters()) if model is not None else 0, "macs": None}
    return result
