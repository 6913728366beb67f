"""Per-image scores written as the workflow writes them (one score shard, benchmark/evaluate.py), for
tests that build a results folder by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmark.evaluate import SHARD_RECORD


def write_scores(folder: Path, sets: dict[str, pd.DataFrame]) -> Path:
    """``folder/shard-001-of-001/<set>.csv`` for each frame, and the shard record the tables check them by."""
    shard = Path(folder) / "shard-001-of-001"
    shard.mkdir(parents=True, exist_ok=True)
    for name, frame in sets.items():
        frame.to_csv(shard / f"{name}.csv", index=False)
    record = {"shard": 1, "shards": 1, "images": {n: len(f) for n, f in sets.items()},
              "sets": {n: {"images": len(f), "listing": "test"} for n, f in sets.items()}}
    (shard / SHARD_RECORD).write_text(json.dumps(record))
    return shard
