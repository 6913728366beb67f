"""One GPU per job on a machine with several: a pool of lock files, one per visible device.

Snakemake counts GPU jobs (``--resources gpu=N``) but does not say which device a job gets. A GPU job
of the workflow runs ``DEBLURBENCH_GPU_SLOT=1 deblurbench ...``; the command's first act (before torch
is imported) is to take the first free slot (an exclusive ``flock`` on ``<slot dir>/<device>.lock``),
set ``CUDA_VISIBLE_DEVICES`` to that one device and ``DEBLURBENCH_DEVICE`` to its id. Any other command
can be run the same way with ``python -m benchmark.devices -- COMMAND ...`` (which execs the command
with the locked file inherited). The kernel drops the lock when the holding process ends, however it
ends, so a crashed or SIGKILLed job never leaves a slot taken.

- Visible devices: ``DEBLURBENCH_VISIBLE_DEVICES`` (for tests), else ``CUDA_VISIBLE_DEVICES``, else
  one per ``/proc/driver/nvidia/gpus/*`` entry (no torch import, so the wrapper costs nothing).
- Under SLURM (``SLURM_JOB_ID`` set) the scheduler has already given the job its own devices through
  ``CUDA_VISIBLE_DEVICES``: the wrapper only records them and runs the command.
- No device visible: the command runs unchanged (``DEBLURBENCH_DEVICE`` empty).
- Slot folder: ``DEBLURBENCH_SLOT_DIR``, else ``<tmp>/deblurbench-gpu-slots-<uid>``: machine-wide, so
  two workflows (two profiles) on one machine share the pool.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ENV_DEVICE = "DEBLURBENCH_DEVICE"


def visible_devices(env: dict[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    for key in ("DEBLURBENCH_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        if key in env:
            return [d.strip() for d in env[key].split(",") if d.strip() and d.strip() != "-1"]
    gpus = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(gpus.iterdir())))] if gpus.is_dir() else []


def slot_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("DEBLURBENCH_SLOT_DIR") or Path(tempfile.gettempdir()) / f"deblurbench-gpu-slots-{os.getuid()}")


def acquire(devices: list[str], folder: Path, poll_s: float = 0.5, timeout_s: float | None = None) -> tuple[str, int]:
    """(device, fd holding its lock): the first free slot, waiting while every slot is taken."""
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    start = time.monotonic()
    while True:
        for device in devices:
            fd = os.open(folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return device, fd
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{folder}: every GPU slot ({', '.join(devices)}) stayed taken for {timeout_s} s")
        if not waited:
            print(f"deblurbench devices: all {len(devices)} GPU slots in {folder} are taken; waiting", file=sys.stderr)
            waited = True
        time.sleep(poll_s)


def claim() -> int | None:
    """Take a slot for this process (before torch touches CUDA): set ``CUDA_VISIBLE_DEVICES`` and
    ``DEBLURBENCH_DEVICE``; returns the locked fd (kept open until the process exits), or None."""
    env = os.environ
    if env.get("SLURM_JOB_ID"):
        env[ENV_DEVICE] = env.get("CUDA_VISIBLE_DEVICES", "")
        return None
    devices = visible_devices()
    if not devices:
        env[ENV_DEVICE] = ""
        return None
    device, fd = acquire(devices, slot_dir())
    env["CUDA_VISIBLE_DEVICES"] = device
    env[ENV_DEVICE] = device
    return fd


def claim_if_asked() -> None:
    """``deblurbench`` calls this first: a workflow GPU job sets ``DEBLURBENCH_GPU_SLOT=1`` (rules/common.smk)."""
    if os.environ.pop("DEBLURBENCH_GPU_SLOT", ""):
        claim()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m benchmark.devices -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    fd = claim()
    if fd is not None:
        os.set_inheritable(fd, True)  # the command holds the lock until it exits
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        print(f"deblurbench devices: cannot run {argv[0]!r}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
