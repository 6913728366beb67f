"""The evaluation: which images each test set holds, how a method's evaluation is cut into shards,
and the restore and score loops over one shard.

One place knows how a test set's images are listed, named and paired: :data:`TEST_SETS`. A method
is evaluated on a sequence of test sets (GOPRO's test split, Köhler, and for the main model GOPRO's
``blur_gamma`` inputs); their images, concatenated in that order, are its *evaluation list*. Shard
``k`` of ``n`` takes the ``k``-th of ``n`` contiguous, nearly equal slices of that list, so a shard
knows its images from the data alone and the workflow knows the number of shards from the
configuration (:func:`shard_count`) before any data exists.

A restore shard is resumable image by image. Each restored image is written atomically to
``<out>/<set>/<name>`` and then recorded in ``<out>/.state/<set>/<name>.json``: the digest of the
shard's identity (method, options, the digest of the weights file) and the digests of the image's
input and output files. A restarted shard keeps every image whose record, input and output still
agree, and restores the rest; a changed method, option or weights file (another identity) restores
every image again. When every image of the shard is done, its manifest (the workflow's output) is
written, with how many images this call restored and how many it kept.

A score shard scores exactly the images of its restore shard and writes one CSV per test set plus
``shard.json`` (the shard's place, and each set's size and listing digest), so that the tables can
check that the union of a method's shards holds every image of every set exactly once
(:func:`read_set_scores`).

Nothing here imports torch: a network's model is built by the caller and only passed through.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.files import file_digest, read_csv, write_text_atomic

STATE_DIR = ".state"
SHARD_RECORD = "shard.json"


# -- test sets: listing, naming, pairing ----------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One test image: its set, its name inside the set (the restored file's relative path, and the
    ``image`` column of the scores), the blurred input, and the ground truth (the sharp image, or every
    ground-truth frame of a Köhler shot)."""

    set: str
    name: str
    blurred: Path
    truth: tuple[Path, ...]


@dataclass(frozen=True)
class SetSource:
    """One test set of an evaluation: its name (``gopro``, ``gopro_gamma``, ``kohler``, ``hide``, ``realblur-j``,
    ``realblur-r``), its kind in :data:`TEST_SETS`, the root folder, the blurred-input folder (GOPRO's ``blur`` or
    ``blur_gamma``) and how HIDE and RealBlur pairs are checked (``counts``: against the official list or count;
    ``structure``: by name only, for miniature and stand-in trees)."""

    name: str
    kind: str
    root: Path
    blur_folder: str = ""
    verify: str = "counts"

    def items(self) -> list[Item]:
        return TEST_SETS[self.kind].list_items(self)


@dataclass(frozen=True)
class TestSet:
    """A kind of test set: how its images are listed from a :class:`SetSource`, and how one is scored
    (``score(restored, item, cw_ssim) -> columns``)."""

    list_items: Callable[[SetSource], list[Item]]
    score: Callable[[Any, Item, bool], dict[str, Any]]


def _gopro_items(source: SetSource) -> list[Item]:
    from benchmark.data import gopro_pairs

    return [Item(source.name, f"{p.seq}/{p.blurred.name}", p.blurred, (p.sharp,))
            for p in gopro_pairs(source.root, "test", source.blur_folder)]


def _kohler_items(source: SetSource) -> list[Item]:
    from benchmark.data import kohler_items

    return [Item(source.name, k.blurred.name, k.blurred, k.frames) for k in kohler_items(source.root)]


def _generalisation_items(source: SetSource) -> list[Item]:
    """HIDE's pairs by file name, RealBlur's as ``<scene>/blur_<K>.png`` (benchmark/testsets.py pairs them)."""
    from benchmark.testsets import pairs

    flat = source.kind == "hide"
    return [Item(source.name, p.name if flat else f"{p.seq}/{p.name}", p.blurred, (p.sharp,))
            for p in pairs(source.kind, source.root, source.verify)]


def _score_pair(restored: Any, item: Item, cw_ssim: bool) -> dict[str, Any]:
    from benchmark.data import read_image
    from benchmark.metrics import score_image

    return score_image(restored, read_image(item.truth[0]), with_cw_ssim=cw_ssim)


def _score_kohler(restored: Any, item: Item, cw_ssim: bool) -> dict[str, Any]:
    from benchmark.data import read_image
    from benchmark.metrics import KOHLER_COLUMNS, kohler_score

    result = kohler_score(restored, [read_image(f) for f in item.truth])
    return {c: result[c] for c in KOHLER_COLUMNS}


def _score_hide(restored: Any, item: Item, cw_ssim: bool) -> dict[str, Any]:
    from benchmark.data import read_image
    from benchmark.metrics import hide_score

    return hide_score(restored, read_image(item.truth[0]))


def _score_realblur(restored: Any, item: Item, cw_ssim: bool) -> dict[str, Any]:
    """RealBlur's protocol; an image whose ECC registration failed is scored unregistered and kept
    (``ecc_converged`` false), never dropped from the mean."""
    from benchmark.data import read_image
    from benchmark.metrics import REALBLUR_COLUMNS, realblur_score

    result = realblur_score(restored, read_image(item.truth[0]))
    return {c: result[c] for c in (*REALBLUR_COLUMNS, "scale")}


TEST_SETS: dict[str, TestSet] = {
    "gopro": TestSet(_gopro_items, _score_pair),
    "kohler": TestSet(_kohler_items, _score_kohler),
    "hide": TestSet(_generalisation_items, _score_hide),
    "realblur-j": TestSet(_generalisation_items, _score_realblur),
    "realblur-r": TestSet(_generalisation_items, _score_realblur),
}
GENERALISATION = ("hide", "realblur-j", "realblur-r")  # beyond the paper (SPEC section 10)


def set_sources(gopro: Path | None, kohler: Path | None, blur_folder: str = "blur", gamma: bool = False, *,
                hide: Path | None = None, realblur: Path | None = None, verify: str = "counts") -> list[SetSource]:
    """The test sets named on a command line, in evaluation order."""
    sources = []
    if gopro is not None:
        sources.append(SetSource("gopro", "gopro", Path(gopro), blur_folder))
        if gamma:
            sources.append(SetSource("gopro_gamma", "gopro", Path(gopro), "blur_gamma"))
    if kohler is not None:
        sources.append(SetSource("kohler", "kohler", Path(kohler)))
    if hide is not None:
        sources.append(SetSource("hide", "hide", Path(hide), verify=verify))
    if realblur is not None:
        sources += [SetSource(name, name, Path(realblur), verify=verify) for name in ("realblur-j", "realblur-r")]
    if not sources:
        raise ValueError("name at least one test set: --gopro ROOT, --kohler ROOT, --hide ROOT or --realblur ROOT")
    return sources


def listing_digest(items: Sequence[Item]) -> str:
    """A digest of a set's image names in order: two shards agree on a set only if they listed the same images."""
    return hashlib.sha256("\n".join(i.name for i in items).encode()).hexdigest()[:16]


# -- shards ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (from 1) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (isinstance(self.index, int) and isinstance(self.count, int) and 1 <= self.index <= self.count):
            raise ValueError(f"shard {self.index}/{self.count}: the index must be a whole number from 1 to the count")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"3/12"`` -> shard 3 of 12."""
        index, sep, count = str(text).partition("/")
        try:
            return cls(int(index), int(count))
        except ValueError:
            raise ValueError(f"--shard {text!r}: give K/N, shard K of N with 1 <= K <= N (e.g. 3/12)") from None

    @property
    def tag(self) -> str:
        """The shard's name in file names: ``003-of-012``."""
        return f"{self.index:03d}-of-{self.count:03d}"

    def take(self, items: Sequence[Item]) -> list[Item]:
        """This shard's contiguous slice of ``items`` (the slices of all shards partition the list)."""
        start = (self.index - 1) * len(items) // self.count
        stop = self.index * len(items) // self.count
        return list(items[start:stop])


def remove_other_splits(folder: Path, shard: Shard) -> list[Path]:
    """Remove the ``shard-K-of-M`` files and folders of ``folder`` cut into another number of shards than
    ``shard``'s (a changed shard size): the union of a method's shards must come from one split."""
    import re
    import shutil

    removed = []
    if Path(folder).is_dir():
        for path in Path(folder).iterdir():
            match = re.fullmatch(r"shard-\d{3}-of-(\d{3})(\.json)?", path.name)
            if match and int(match[1]) != shard.count:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed.append(path)
    return removed


def shard_count(images: int, shard_size: int) -> int:
    """How many shards an evaluation of ``images`` images takes at ``shard_size`` images per shard."""
    if not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"evaluation shard size {shard_size!r}: must be a whole number >= 1")
    return max(1, math.ceil(images / shard_size))


def shard_tags(images: int, shard_size: int) -> list[str]:
    n = shard_count(images, shard_size)
    return [Shard(k, n).tag for k in range(1, n + 1)]


def expected_images(cfg: Mapping[str, Any]) -> dict[str, int]:
    """How many images each test set of a profile holds, known before any data exists (the workflow cuts
    shards from these counts): the synthetic generator's settings, or the real sets' published counts.
    A tree verified by structure only (a miniature) may hold fewer; its last shards are then empty."""
    if cfg["data"]["source"] == "synthetic":
        from benchmark.synthetic import TEST_PHOTOS

        s = cfg["data"]["synthetic"]
        gopro, kohler = s["test_pairs"], s["kohler_paths"] * len(TEST_PHOTOS)
        stand_ins = dict.fromkeys(GENERALISATION, s.get("generalisation_pairs", 0))  # benchmark/standins.py
        return {"gopro": gopro, "gopro_gamma": gopro, "kohler": kohler, **stand_ins}
    from benchmark.data import HIDE_TEST_PAIRS, REALBLUR_TEST_PAIRS
    from benchmark.prepare import GOPRO_COUNTS, KOHLER_FRAMES

    gopro = sum(GOPRO_COUNTS["test"].values())
    return {"gopro": gopro, "gopro_gamma": gopro, "kohler": len(KOHLER_FRAMES), "hide": HIDE_TEST_PAIRS,
            "realblur-j": REALBLUR_TEST_PAIRS, "realblur-r": REALBLUR_TEST_PAIRS}


def image_sizes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """(width, height) of each test set's images: the synthetic generator's sizes, or GOPRO's 1280x720 frames
    and Köhler's 800x800 shots."""
    if cfg["data"]["source"] == "synthetic":
        s = cfg["data"]["synthetic"]
        gopro, kohler = (s["size"], s["size"]), (s["kohler_size"], s["kohler_size"])
        return {"gopro": gopro, "gopro_gamma": gopro, "kohler": kohler, **dict.fromkeys(GENERALISATION, gopro)}
    # HIDE: GOPRO-like 1280x720 frames; RealBlur: about 680x773 (they vary a little, none above 800x800)
    return {"gopro": (1280, 720), "gopro_gamma": (1280, 720), "kohler": (800, 800), "hide": (1280, 720),
            "realblur-j": (680, 773), "realblur-r": (680, 773)}


def generalisation_sets(cfg: Mapping[str, Any]) -> list[str]:
    """The generalisation test sets a profile scores: where ``data.hide`` and ``data.realblur`` are set, or, in a
    synthetic profile, all three as stand-ins where ``data.synthetic.generalisation_pairs`` is above 0."""
    data = cfg["data"]
    if data["source"] == "synthetic":
        return list(GENERALISATION) if data["synthetic"].get("generalisation_pairs", 0) > 0 else []
    return [*(["hide"] if data.get("hide") else []), *(["realblur-j", "realblur-r"] if data.get("realblur") else [])]


def evaluation_sets(cfg: Mapping[str, Any], method: str) -> list[str]:
    """The test sets a method is evaluated on, in order: GOPRO's test split, for the main model (the Fig. 5
    method) also its ``blur_gamma`` inputs (the metric audit), Köhler, then the generalisation sets."""
    return ["gopro", *(["gopro_gamma"] if method == cfg["fig5"]["method"] else []), "kohler",
            *generalisation_sets(cfg)]


def shard_size(cfg: Mapping[str, Any], method: str) -> int:
    """Images per shard for ``method``: its own entry under ``evaluation.shard_size``, else the default."""
    sizes = cfg["evaluation"]["shard_size"]
    return sizes.get(method, sizes["default"])


def evaluation_items(sources: Sequence[SetSource]) -> tuple[list[Item], dict[str, dict[str, Any]]]:
    """Every image of ``sources`` in evaluation order, and each set's size and listing digest."""
    items, sets = [], {}
    for source in sources:
        listed = source.items()
        items += listed
        sets[source.name] = {"images": len(listed), "listing": listing_digest(listed)}
    return items, sets


# -- restore --------------------------------------------------------------------------------------
def identity(method: str, options: Mapping[str, Any], weights: Path | None) -> dict[str, Any]:
    """What defines a restore shard's results: the method, its options (paths of shared kernel folders
    aside) and the digest of its weights file."""
    kept = {k: v for k, v in options.items() if k != "kernel_dir"}
    return {"method": method, "options": json.loads(json.dumps(kept, sort_keys=True, default=str)),
            "weights": file_digest(weights) if weights is not None else None}


def identity_digest(ident: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


class RestoreRecords:
    """What a restore has finished, one record per image: ``<out>/.state/<set>/<name>.json`` with the digest
    of the identity that restored it, and the digests of its input and output files. Written after the
    image, each atomically: a kill leaves at worst an image without a record, which is restored again."""

    def __init__(self, out: Path, ident: Mapping[str, Any]) -> None:
        self.root = Path(out) / STATE_DIR
        self.identity = identity_digest(ident)

    def _path(self, item: Item) -> Path:
        return self.root / item.set / f"{item.name}.json"

    def kept(self, item: Item, output: Path, input_digest: str) -> tuple[str | None, str]:
        """(the output's digest when ``output`` is this identity's restoration of this very input, else None;
        why not, for the count of images restored again)."""
        path = self._path(item)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None, "new"
        if record.get("identity") != self.identity:
            return None, "changed"
        if record.get("input") != input_digest or not output.is_file() or file_digest(output) != record.get("output"):
            return None, "changed"
        return record["output"], "kept"

    def finished(self, item: Item, input_digest: str, output_digest: str) -> None:
        record = {"identity": self.identity, "input": input_digest, "output": output_digest}
        write_text_atomic(self._path(item), json.dumps(record, sort_keys=True))


def _gone(path: Path, count: int, total: int) -> OSError:
    """The error of a restore whose written images vanished under it (exit 1: the machine, not the input)."""
    return OSError(errno.ESTALE, f"{count} of the shard's {total} restored images are gone; was the folder deleted "
                   "or moved while restore ran? run again", str(path))


def restore_shard(method: Any, model: Any, options: Mapping[str, Any], sources: Sequence[SetSource],
                  shard: Shard, out: Path, manifest: Path, ident: Mapping[str, Any], *,
                  progress: bool = True) -> dict[str, Any]:
    """Restore the images of ``shard`` into ``out/<set>/<name>``, keeping those an interrupted run of the
    same identity finished, then write ``manifest``. Returns the manifest's content."""
    from tqdm import tqdm

    from benchmark.data import read_image, write_image

    items, sets = evaluation_items(sources)
    mine = shard.take(items)
    remove_other_splits(Path(manifest).parent, shard)
    records = RestoreRecords(out, ident)
    counts = {"kept": 0, "new": 0, "changed": 0}
    seconds, outputs = [], []
    for item in tqdm(mine, desc=f"restore {method.name} shard {shard.index}/{shard.count}", unit="img",
                     disable=not progress):
        target = Path(out) / item.set / item.name
        input_digest = file_digest(item.blurred)
        output_digest, status = records.kept(item, target, input_digest)
        counts[status] += 1
        if output_digest is None:
            blurred = read_image(item.blurred)
            start = time.perf_counter()
            restored = method.restore(model, blurred, options)
            seconds.append(time.perf_counter() - start)
            write_image(target, restored)
            if not target.is_file():
                raise _gone(target, 1, len(mine))
            output_digest = file_digest(target)
            records.finished(item, input_digest, output_digest)
        outputs.append({"set": item.set, "name": item.name, "output": output_digest})
    gone = [Path(out) / o["set"] / o["name"] for o in outputs if not (Path(out) / o["set"] / o["name"]).is_file()]
    if gone:  # the output folder was removed or moved while this ran: no manifest may claim them
        raise _gone(gone[0], len(gone), len(outputs))
    if counts["changed"]:
        print(f"restore shard {shard.tag}: {counts['changed']} images restored again (the method, its options, "
              "its weights or the input changed since they were restored)", flush=True)
    content = {"method": method.name, "shard": shard.index, "shards": shard.count, "sets": sets,
               "identity": dict(ident), "images": outputs, "restored_now": counts["new"] + counts["changed"],
               "kept": counts["kept"], "seconds": seconds}
    write_text_atomic(manifest, json.dumps(content, indent=2, sort_keys=True))
    return content


# -- score ----------------------------------------------------------------------------------------
def score_shard(sources: Sequence[SetSource], shard: Shard, restored: Path, *, cw_ssim: bool = False,
                progress: bool = True) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Score the restored images of ``shard``: the rows of each set's CSV, and the shard record."""
    from tqdm import tqdm

    from benchmark.data import read_image

    items, sets = evaluation_items(sources)
    mine = shard.take(items)
    rows: dict[str, list[dict[str, Any]]] = {}
    kinds = {s.name: s.kind for s in sources}
    for item in tqdm(mine, desc=f"score shard {shard.index}/{shard.count}", unit="img", disable=not progress):
        path = Path(restored) / item.set / item.name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: restored image missing (restore shard {shard.tag} first)")
        rows.setdefault(item.set, []).append(
            {"image": item.name, **TEST_SETS[kinds[item.set]].score(read_image(path), item, cw_ssim)})
    record = {"shard": shard.index, "shards": shard.count, "sets": sets,
              "images": {name: len(r) for name, r in rows.items()}}
    return rows, record


def read_set_scores(folder: Path, set_name: str) -> Any:
    """The union of a method's score shards for one test set (``<folder>/<tag>/<set>.csv``), checked to be
    complete: every shard of the same split present, every image of the set exactly once. ``None`` when
    no shard was scored on that set (the method was not evaluated on it)."""
    import pandas as pd

    folder = Path(folder)
    records = {}
    for path in sorted(folder.glob(f"*/{SHARD_RECORD}")):
        record = json.loads(path.read_text())
        records[path.parent] = record
    if not records:
        return None
    listed = {json.dumps(r["sets"].get(set_name), sort_keys=True) for r in records.values()}
    if listed == {"null"}:
        return None
    counts = {r["shards"] for r in records.values()}
    if len(counts) != 1 or len(listed) != 1:
        raise ValueError(f"{folder}: its score shards come from different splits or listings of {set_name} "
                         f"({len(records)} shard folders, shard counts {sorted(counts)}); delete the folder and "
                         "rerun the workflow")
    count = counts.pop()
    present = {r["shard"] for r in records.values()}
    missing = sorted(set(range(1, count + 1)) - present)
    if missing:
        raise ValueError(f"{folder}: shard(s) {', '.join(Shard(k, count).tag for k in missing)} not scored "
                         f"({len(present)} of {count} present); rerun the workflow to finish them")
    frames = [read_csv(d / f"{set_name}.csv") for d in sorted(records) if (d / f"{set_name}.csv").exists()]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["image"])
    expected = json.loads(listed.pop())["images"]
    duplicated = frame.image[frame.image.duplicated()].tolist()
    if duplicated or len(frame) != expected:
        detail = f"duplicated: {duplicated[:3]}" if duplicated else f"{len(frame)} of {expected} images scored"
        raise ValueError(f"{folder}: the {set_name} scores of its shards are not the set's images exactly once "
                         f"({detail}); delete the folder and rerun the workflow")
    return frame
