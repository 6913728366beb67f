"""Running the workflow from tests: the `snakemake` command line on this checkout's Snakefile, and the
README's example method (installed as a plug-in by the `plugin_env` fixture in conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, env: dict | None = None,
              timeout: float | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- add-your-method:begin -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README lost its 'add your method' example"
    return block.group(1)


def job_process(workdir: Path, command: str) -> int | None:
    """The pid of the `deblurbench <command>` job a workflow runs in ``workdir`` (a job to kill in a test)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv]
        if command in text and "--config" in text and any(a.endswith("deblurbench") for a in text[:2]) \
                and Path(cwd) == workdir.resolve():
            return int(proc.name)
    return None
