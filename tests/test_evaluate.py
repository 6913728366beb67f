"""The sharded evaluation (benchmark/evaluate.py): shards partition a method's test images, a restore shard
resumes image by image (also after a SIGKILL inside the workflow) and gives the bytes of an uninterrupted
run, and the tables refuse a union of score shards that is not every image exactly once."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scored import write_scores
from workflow_run import REPO, job_process, snakemake

from benchmark.cli import main
from benchmark.data import read_image, write_image
from benchmark.evaluate import (
    Item,
    Shard,
    evaluation_items,
    identity,
    read_set_scores,
    restore_shard,
    set_sources,
    shard_count,
    shard_tags,
)
from benchmark.registry import Method


def _items(n: int) -> list[Item]:
    return [Item("gopro", f"S/{i:06d}.png", Path(f"b{i}"), (Path(f"s{i}"),)) for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, 5, 17, 1111])
@pytest.mark.parametrize("count", [1, 2, 3, 7, 30])
def test_shards_partition_the_images_in_order(n, count):
    items = _items(n)
    slices = [Shard(k, count).take(items) for k in range(1, count + 1)]
    assert [i for s in slices for i in s] == items  # every image once, in order
    assert max(map(len, slices)) - min(map(len, slices)) <= 1  # nearly equal


def test_shard_counts_and_names():
    assert shard_count(1111 + 48, 200) == 6 and shard_count(3, 200) == 1 and shard_count(0, 5) == 1
    assert shard_tags(4, 2) == ["001-of-002", "002-of-002"]
    assert Shard.parse("3/12") == Shard(3, 12) and Shard(3, 12).tag == "003-of-012"
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(bad)
    with pytest.raises(ValueError, match="shard size"):
        shard_count(10, 0)


def test_a_method_is_evaluated_on_its_sets_in_order(tiny_gopro):
    items, sets = evaluation_items(set_sources(tiny_gopro, None, "blur", gamma=True))
    assert [i.set for i in items] == ["gopro"] * 2 + ["gopro_gamma"] * 2
    assert items[0].name == items[2].name and "blur_gamma" in str(items[2].blurred)
    assert sets["gopro"]["images"] == 2 and sets["gopro"]["listing"] == sets["gopro_gamma"]["listing"]


class _Counting:
    """A classical method that brightens by one grey level, counts its calls and can fail on the Nth."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls, self.fail_at = 0, fail_at
        self.method = Method(name="counting", display_name="Counting", kind="classical", summary="test",
                             restore=self.restore, defaults={"step": 1})

    def restore(self, model, blurred, options):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("interrupted")
        return np.clip(blurred.astype(int) + options["step"], 0, 255).astype(np.uint8)


def _restore(counting, sources, out, options=None, shard=None):
    options, shard = options or {"step": 1}, shard or Shard(1, 1)
    return restore_shard(counting.method, None, options, sources, shard, out, out / f"shard-{shard.tag}.json",
                         identity("counting", options, None), progress=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_an_interrupted_shard_keeps_its_finished_images_and_matches_an_uninterrupted_run(tiny_gopro, tmp_path):
    sources = set_sources(tiny_gopro, None, "blur", gamma=True)  # 4 images
    straight = _Counting()
    _restore(straight, sources, tmp_path / "straight")
    interrupted = _Counting(fail_at=3)
    with pytest.raises(RuntimeError):
        _restore(interrupted, sources, tmp_path / "r")
    assert not (tmp_path / "r" / "shard-001-of-001.json").exists()  # no manifest before the last image
    again = _Counting()
    manifest = _restore(again, sources, tmp_path / "r")
    assert again.calls == 2 and (manifest["kept"], manifest["restored_now"]) == (2, 2)
    assert _files(tmp_path / "r") == _files(tmp_path / "straight")
    # another option: every image again; another input: that image again
    assert _restore(_Counting(), sources, tmp_path / "r", {"step": 2})["restored_now"] == 4
    victim = tmp_path / "g"
    shutil.copytree(tiny_gopro, victim)
    moved = set_sources(victim, None, "blur", gamma=True)
    _restore(_Counting(), moved, tmp_path / "m")
    first = sorted((victim / "test").rglob("blur/*.png"))[0]
    write_image(first, 255 - read_image(first))
    assert _restore(_Counting(), moved, tmp_path / "m")["restored_now"] == 1


def test_shards_of_one_method_restore_disjoint_images(tiny_gopro, tmp_path):
    sources = set_sources(tiny_gopro, None, "blur", gamma=True)
    names = []
    for k in (1, 2, 3):
        manifest = _restore(_Counting(), sources, tmp_path / "r", shard=Shard(k, 3))
        names += [(i["set"], i["name"]) for i in manifest["images"]]
    assert len(names) == len(set(names)) == 4


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"image": [f"S/{i:06d}.png" for i in range(start, start + n)], "psnr": 20.0})


def _shard(folder: Path, k: int, count: int, frame: pd.DataFrame, total: int) -> None:
    shard = folder / Shard(k, count).tag
    shard.mkdir(parents=True)
    frame.to_csv(shard / "gopro.csv", index=False)
    (shard / "shard.json").write_text(json.dumps({"shard": k, "shards": count,
                                                  "sets": {"gopro": {"images": total, "listing": "x"}}}))


def test_the_union_of_score_shards_must_hold_every_image_exactly_once(tmp_path):
    ok = tmp_path / "ok"
    _shard(ok, 1, 2, _frame(3), 5)
    _shard(ok, 2, 2, _frame(2, 3), 5)
    assert len(read_set_scores(ok, "gopro")) == 5 and read_set_scores(ok, "kohler") is None
    assert read_set_scores(tmp_path / "nothing", "gopro") is None
    missing = tmp_path / "missing"
    _shard(missing, 1, 3, _frame(2), 6)
    _shard(missing, 3, 3, _frame(2, 4), 6)
    with pytest.raises(ValueError, match="002-of-003 not scored"):
        read_set_scores(missing, "gopro")
    twice = tmp_path / "twice"
    _shard(twice, 1, 2, _frame(3), 5)
    _shard(twice, 2, 2, _frame(2, 2), 5)
    with pytest.raises(ValueError, match=r"duplicated: \['S/000002.png'\]"):
        read_set_scores(twice, "gopro")
    short = tmp_path / "short"
    _shard(short, 1, 1, _frame(4), 5)
    with pytest.raises(ValueError, match="4 of 5 images"):
        read_set_scores(short, "gopro")
    mixed = tmp_path / "mixed"
    _shard(mixed, 1, 1, _frame(5), 5)
    _shard(mixed, 1, 2, _frame(3), 5)
    with pytest.raises(ValueError, match="different splits"):
        read_set_scores(mixed, "gopro")
    assert len(read_set_scores(write_scores(tmp_path / "w", {"gopro": _frame(2)}).parent, "gopro")) == 2


def test_restore_and_score_through_the_command_line_in_two_shards(tiny_gopro, tmp_path):
    for k in (1, 2):
        assert main(["restore", "--method", "blurred", "--gopro", str(tiny_gopro), "--kohler", str(tmp_path / "no"),
                     "--out", str(tmp_path / "r"), "--shard", f"{k}/2", "--quiet"]) == 2  # no Köhler set there
    for k in (1, 2):
        assert main(["restore", "--method", "blurred", "--gopro", str(tiny_gopro), "--gamma", "--out",
                     str(tmp_path / "r"), "--shard", f"{k}/2", "--quiet"]) == 0
        assert main(["score", "--gopro", str(tiny_gopro), "--gamma", "--restored", str(tmp_path / "r"), "--shard",
                     f"{k}/2", "--out", str(tmp_path / "s" / f"shard-{Shard(k, 2).tag}"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "r").glob("shard-*")) == ["shard-001-of-002.json",
                                                                        "shard-002-of-002.json"]
    gopro, gamma = read_set_scores(tmp_path / "s", "gopro"), read_set_scores(tmp_path / "s", "gopro_gamma")
    assert len(gopro) == len(gamma) == 2 and list(gopro.image) == list(gamma.image)
    # a new split of the same method replaces the old one's score folders
    assert main(["score", "--gopro", str(tiny_gopro), "--gamma", "--restored", str(tmp_path / "r"), "--out",
                 str(tmp_path / "s" / "shard-001-of-001"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["shard-001-of-001"]


def _records(folder: Path) -> int:
    return len(list((folder / ".state").rglob("*.json"))) if folder.exists() else 0


def test_a_restore_shard_killed_inside_the_workflow_resumes_to_the_same_bytes(tmp_path):
    """SIGKILL the workflow while a restore shard is part-way, run it again: the finished images are kept (not
    restored again), the rest restored, and every file equals the one of an uninterrupted run."""
    config = ["--config", "profile=smoke", "data={synthetic: {test_pairs: 6}}",
              "evaluation={shard_size: {default: 100}}"]
    target = "results/smoke/restored/pan/shard-001-of-001.json"  # one shard: every test set's images
    reference = snakemake(tmp_path / "straight", "--cores", "1", *config, "--", target)
    assert reference.returncode == 0, reference.stderr[-3000:]
    total = len(json.loads((tmp_path / "straight" / target).read_text())["images"])
    assert total >= 8  # 6 GOPRO-like, 2 Köhler-like and the generalisation stand-ins
    work = tmp_path / "killed"
    restored = work / "results/smoke/restored/pan"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
           "--cores", "1", *config, "--", target]
    workflow = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim, deadline = None, time.time() + 300
    while victim is None and workflow.poll() is None and time.time() < deadline:
        if _records(restored) >= 2:
            victim = job_process(work, "restore")
        time.sleep(0.02)
    assert victim is not None, "the restore job finished or never started before it could be killed"
    os.kill(victim, signal.SIGKILL)  # as a preempted node: the job dies, the workflow goes on and fails
    assert workflow.wait(timeout=120) != 0
    done_at_kill = _records(restored)
    assert 2 <= done_at_kill < total and not (work / target).exists(), "the shard was not killed part-way"
    again = snakemake(work, "--cores", "1", *config, "--", target)
    assert again.returncode == 0, again.stderr[-3000:]
    manifest = json.loads((work / target).read_text())
    assert manifest["kept"] == done_at_kill  # a record is written after its image: each one kept
    assert manifest["kept"] + manifest["restored_now"] == total and manifest["restored_now"] == len(manifest["seconds"])
    straight = tmp_path / "straight/results/smoke/restored/pan"
    assert _files(restored) == _files(straight)
    assert json.loads((straight / "shard-001-of-001.json").read_text())["images"] == manifest["images"]
