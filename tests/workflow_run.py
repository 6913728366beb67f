"""Running the workflow from tests: the `snakemake` command line on this checkout's Snakefile, and the
README's example method (installed as a plug-in by the `plugin_env` fixture in conftest.py)."""

from __future__ import annotations

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
