"""Download, verify and unpack the real data: GOPRO_Large, Köhler et al.'s benchmark and VGG19 weights.

Downloads resume a ``.part`` file with an HTTP Range request, retry with exponential backoff, try
mirrors in order, show a progress bar, verify a checksum and only then rename into place. GOPRO has
no published checksum: its SHA-256 is recorded in a lock file once the first download has been
extracted and its layout verified (so a truncated or wrong archive never locks its own hash), and
verified on every later one. Archives are extracted member by member into a temporary folder beside
the target; a member with an absolute path, a ``..`` that would leave the folder, a link, or a
top-level folder the dataset does not have (``downloads/``) is refused, and so is an archive whose
members would unpack to more than ``unpack_limit`` times the expected dataset's size or member count
(a zip bomb). Temporary folders are removed on failure, and those of dead processes are swept.
Nothing here touches the network at import time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from benchmark.files import sweep_stale, temporary_sibling, write_text_atomic
from benchmark.prepare import GOPRO_COUNTS, KOHLER_FRAMES

CHUNK = 1 << 20


KOHLER_BASE = "http://people.kyb.tuebingen.mpg.de/rolfk/BenchmarkECCV2012/"
KOHLER_MD5 = {  # published with the benchmark (as deepinv's loader records them)
    "GroundTruth_pngs_Image1.zip": "acb90b6d9bfdb4b2370e08a5fcb80e68",
    "GroundTruth_pngs_Image2.zip": "da440d3bf43b32bec0b7170ccd828f29",
    "GroundTruth_pngs_Image3.zip": "3a77c41c951367f35db52eb18496bbac",
    "GroundTruth_pngs_Image4.zip": "72ce9690c3ed1296358653396cf9576d",
    "BlurryImages.zip": "61ffb1434d93fca6c508976a7216d723",
}
GOPRO_URL = "https://huggingface.co/datasets/snah/GOPRO_Large/resolve/main/GOPRO_Large.zip"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_SHA256 = "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
LOCK_FILE = "checksums.lock.json"
UNPACK_LIMIT = 2.0  # default multiple of the expected size (config data.<dataset>.unpack_limit)


def _expected(images: int, folders: int, side: tuple[int, int]) -> tuple[int, int]:
    """(bytes, members) of a dataset archive: its images as raw 8-bit RGB (an upper bound for a PNG of
    natural images) and one member per image and per folder."""
    return images * side[0] * side[1] * 3, images + folders


_GOPRO_IMAGES = 3 * sum(n for split in GOPRO_COUNTS.values() for n in split.values())  # blur, blur_gamma, sharp
_GOPRO_FOLDERS = 3 + 4 * sum(len(split) for split in GOPRO_COUNTS.values())
# Expected uncompressed (bytes, members) of each archive: GOPRO frames are 1280x720, Köhler's 800x800.
EXPECTED_SIZE: dict[str, tuple[int, int]] = {
    "GOPRO_Large.zip": _expected(_GOPRO_IMAGES, _GOPRO_FOLDERS, (1280, 720)),
    "BlurryImages.zip": _expected(48, 1, (800, 800)),
} | {f"GroundTruth_pngs_Image{i}.zip": _expected(sum(n for (a, _), n in KOHLER_FRAMES.items() if a == i), 13,
                                                (800, 800)) for i in range(1, 5)}
# The top-level folders each archive may hold; any other member is refused.
TOP_LEVEL: dict[str, frozenset[str]] = {
    "GOPRO_Large.zip": frozenset({"GOPRO_Large", "train", "test"}),
    "BlurryImages.zip": frozenset({"BlurryImages"}),
} | {f"GroundTruth_pngs_Image{i}.zip": frozenset({f"Image{i}"}) for i in range(1, 5)}


class FetchError(RuntimeError):
    """A download or an archive that cannot be trusted; the message names the file."""


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_once(url: str, part: Path, quiet: bool) -> None:
    """Append the rest of ``url`` to ``part`` (a Range request when part of it is already there)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        if have and response.status != 206:  # the server ignored the range: start again
            have = 0
        total = response.headers.get("Content-Length")
        total = int(total) + have if total is not None else None
        with open(part, "ab" if have else "wb") as out, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"),
                disable=quiet) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size < total:
            raise urllib.error.ContentTooShortError(
                f"{url}: connection closed after {part.stat().st_size} of {total} bytes", None)


def download(urls: Sequence[str], dest: Path, *, md5: str | None = None, sha256: str | None = None,
             retries: int = 4, backoff: float = 2.0, quiet: bool = False) -> Path:
    """Fetch ``dest`` from the first mirror that works, resuming and retrying; verify, then rename."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors = []
    for url in urls:
        for attempt in range(retries + 1):
            try:
                _fetch_once(url, part, quiet)
            except (urllib.error.URLError, OSError) as err:
                errors.append(f"{url} (attempt {attempt + 1}): {err}")
                if isinstance(err, urllib.error.HTTPError) and err.code in (403, 404, 410):
                    break  # this mirror does not have it: try the next one
                if attempt < retries:
                    time.sleep(backoff * 2**attempt)
                continue
            verify(part, md5=md5, sha256=sha256, name=dest.name)
            os.replace(part, dest)
            return dest
    raise FetchError(f"{dest.name}: every mirror failed: " + "; ".join(errors))


def verify(path: Path, *, md5: str | None, sha256: str | None, name: str | None = None) -> None:
    """Check a checksum; a bad file is removed so that the next try starts clean."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is None:
            continue
        actual = file_digest(path, algorithm)
        if actual != expected:
            path.unlink()
            raise FetchError(f"{name or path.name}: {algorithm} {actual} does not match the expected {expected}; "
                             "the file was removed, fetch it again")


def _safe_members(archive: zipfile.ZipFile, source: Path, top_level: frozenset[str] | None = None,
                  max_bytes: int | None = None, max_members: int | None = None) -> list[zipfile.ZipInfo]:
    members = []
    for info in archive.infolist():
        name = PurePosixPath(info.filename)
        mode = info.external_attr >> 16
        if name.is_absolute() or info.filename.startswith(("/", "\\")) or ":" in name.parts[0]:
            raise FetchError(f"{source}: member {info.filename!r} has an absolute path; refusing to extract")
        if ".." in name.parts:
            raise FetchError(f"{source}: member {info.filename!r} would land outside the target folder")
        if (mode & 0o170000) == 0o120000:
            raise FetchError(f"{source}: member {info.filename!r} is a symbolic link; refusing to extract")
        if top_level is not None and name.parts[0] not in top_level:
            raise FetchError(f"{source}: member {info.filename!r} is not part of the dataset (expected only "
                             f"{', '.join(sorted(top_level))}); refusing to extract")
        members.append(info)
    if max_members is not None and len(members) > max_members:
        raise FetchError(f"{source}: {len(members)} members exceed the limit of {max_members} (--unpack-limit times "
                         "the expected dataset's); refusing to extract a zip bomb or the wrong archive")
    total = sum(info.file_size for info in members)  # zipfile never writes more than a member declares
    if max_bytes is not None and total > max_bytes:
        raise FetchError(f"{source}: {total:,} bytes uncompressed exceed the limit of {max_bytes:,} (--unpack-limit "
                         "times the expected dataset's); refusing to extract a zip bomb or the wrong archive")
    return members


def _unpack(archive: Path, into: Path, **limits) -> None:
    """Every member checked first, then written into the new folder ``into``."""
    try:
        with zipfile.ZipFile(archive) as z:
            members = _safe_members(z, archive, **limits)
            into.mkdir(parents=True)
            for info in members:
                z.extract(info, into)
    except (zipfile.BadZipFile, EOFError) as err:
        raise FetchError(f"{archive}: not a readable zip archive ({err}); fetch it again") from err


def limits_for(name: str, unpack_limit: float | None) -> dict:
    """The extraction limits of a known archive: its top-level folders and ``unpack_limit`` times its size."""
    if name not in EXPECTED_SIZE:
        return {}
    size, count = EXPECTED_SIZE[name]
    factor = UNPACK_LIMIT if unpack_limit is None else unpack_limit
    return {"top_level": TOP_LEVEL[name], "max_bytes": int(factor * size), "max_members": int(factor * count)}


def extract(archive: Path, target: Path, *, top_level: frozenset[str] | None = None, max_bytes: int | None = None,
            max_members: int | None = None) -> Path:
    """Unpack a zip into ``target`` safely: every member checked first (and, when given, the allowed
    top-level names and the size and member-count caps), written into a temporary sibling folder, which
    is renamed into place only when the whole archive has been read."""
    archive, target = Path(archive), Path(target)
    sweep_stale(target)
    tmp = temporary_sibling(target, "extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _unpack(archive, tmp, top_level=top_level, max_bytes=max_bytes, max_members=max_members)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        for item in tmp.iterdir():  # several archives unpack into one folder (Köhler)
            destination = target / item.name
            if destination.exists():
                shutil.rmtree(destination) if destination.is_dir() else destination.unlink()
            os.replace(item, destination)
        tmp.rmdir()
    else:
        os.replace(tmp, target)
    return target


def _lock(root: Path) -> dict[str, str]:
    path = root / LOCK_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _record(root: Path, name: str, sha256: str) -> None:
    write_text_atomic(root / LOCK_FILE, json.dumps(_lock(root) | {name: sha256}, indent=2, sort_keys=True))


def fetch(name: str, root: Path | None = None, *, mirrors: Sequence[str] = (), archive: Path | None = None,
          md5: Mapping[str, str] | None = None, retries: int = 4, backoff: float = 2.0, quiet: bool = False,
          unpack_limit: float | None = None) -> dict:
    """Fetch ``gopro``, ``kohler`` or ``vgg19``; returns a record of files and checksums.

    ``md5`` replaces published Köhler checksums by archive name, for a mirror that re-packed them.
    ``unpack_limit`` caps what an archive may unpack to, as a multiple of the expected dataset.
    """
    if name == "epll-gmm":  # Sun et al.'s patch prior: EPLL's release (benchmark/epll.py)
        from benchmark.epll import fetch_epll

        return fetch_epll(root or Path("weights"), mirrors=mirrors, local=archive, retries=retries, backoff=backoff,
                          quiet=quiet)
    if name == "vgg19":
        from models.losses import vgg19_weights_path

        dest = vgg19_weights_path(root)
        if not (dest.exists() and file_digest(dest, "sha256") == VGG19_SHA256):
            download([*mirrors, VGG19_URL], dest, sha256=VGG19_SHA256, retries=retries, backoff=backoff, quiet=quiet)
        return {"dataset": "vgg19", "path": str(dest), "checksums": {dest.name: VGG19_SHA256}}
    if root is None:
        raise FetchError(f"fetch {name}: give --root, the folder the dataset goes into")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    downloads = root / "downloads"
    if name == "gopro":
        zip_path = Path(archive) if archive else downloads / "GOPRO_Large.zip"
        locked = _lock(root).get("GOPRO_Large.zip")
        if not archive:  # the lock is checked below, where a mismatching download is kept, not deleted
            download([*mirrors, GOPRO_URL], zip_path, retries=retries, backoff=backoff, quiet=quiet)
        actual = file_digest(zip_path, "sha256")
        if locked and actual != locked:
            kept = zip_path
            if not archive:
                kept = zip_path.with_name(zip_path.name + ".unverified")
                os.replace(zip_path, kept)
            raise FetchError(f"{kept}: SHA-256 {actual} does not match the one recorded in {root / LOCK_FILE} "
                             f"({locked}): the archive changed since the first download; if you trust this copy, "
                             f"remove GOPRO_Large.zip from the lock and run fetch with --archive {kept}")
        try:
            _unpack_gopro(zip_path, root, limits_for("GOPRO_Large.zip", unpack_limit))
        except FetchError:
            if not archive:  # our own download is useless: the next run fetches it afresh
                zip_path.unlink(missing_ok=True)
            raise
        _record(root, "GOPRO_Large.zip", actual)  # only now: a bad archive never locks its own hash
        return {"dataset": "gopro", "root": str(root), "checksums": {"GOPRO_Large.zip": actual}}
    if name == "kohler":
        checksums = {}
        unknown = sorted(set(md5 or {}) - set(KOHLER_MD5))
        if unknown:
            raise FetchError(f"--md5 {', '.join(unknown)}: not a Köhler archive ({', '.join(KOHLER_MD5)})")
        for file, expected in {**KOHLER_MD5, **(md5 or {})}.items():
            local = Path(archive) / file if archive else downloads / file
            if not archive:
                download([*(m.rstrip("/") + "/" + file for m in mirrors), KOHLER_BASE + file], local, md5=expected,
                         retries=retries, backoff=backoff, quiet=quiet)
            else:
                verify_copy = file_digest(local, "md5")
                if verify_copy != expected:
                    raise FetchError(f"{local}: md5 {verify_copy} does not match the expected {expected}")
            extract(local, root, **limits_for(file, unpack_limit))
            checksums[file] = expected
        return {"dataset": "kohler", "root": str(root), "checksums": checksums}
    raise FetchError(f"unknown dataset {name!r}; choose gopro, kohler or vgg19")


def _unpack_gopro(zip_path: Path, root: Path, limits: Mapping) -> None:
    """Extract into a staging folder, check the GOPRO_Large layout there, then move the splits into place;
    the staging folder goes whatever happens."""
    from benchmark.prepare import verify_gopro

    sweep_stale(root / "gopro-unpacked")
    staging = temporary_sibling(root / "gopro-unpacked")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _unpack(zip_path, staging, **limits)
        inner = staging / "GOPRO_Large" if (staging / "GOPRO_Large").is_dir() else staging
        for split in ("train", "test"):
            if not (inner / split).is_dir():
                raise FetchError(f"{zip_path}: no {split}/ folder inside; not the GOPRO_Large layout")
        report = verify_gopro(inner, expected=None)
        if not report.ok:
            problems = (report.missing + report.extra + report.wrong)[:3]
            raise FetchError(f"{zip_path}: not the GOPRO_Large layout ({'; '.join(problems)})")
        for split in ("train", "test"):
            if (root / split).exists():
                shutil.rmtree(root / split)
            os.replace(inner / split, root / split)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _md5_arg(text: str) -> tuple[str, str]:
    name, _, digest = text.partition("=")
    if not name or len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest):
        raise argparse.ArgumentTypeError(f"{text!r}: expected ARCHIVE=HASH with a 32-digit lowercase hex MD5")
    return name, digest


def _factor_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number >= 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=("gopro", "kohler", "vgg19", "epll-gmm", "weights"), help="what to fetch")
    parser.add_argument("release", nargs="?", help="weights: the authors' release (see benchmark/weights.py RELEASES)")
    parser.add_argument("--root", type=Path, help="target folder (vgg19: default torch hub checkpoints)")
    parser.add_argument("--mirror", action="append", default=[], metavar="URL",
                        help="try this URL first (GOPRO: the archive; Köhler: a folder holding the zips); repeatable")
    parser.add_argument("--archive", type=Path, help="use a local copy (GOPRO: the zip; Köhler: folder of zips)")
    parser.add_argument("--md5", action="append", default=[], metavar="ARCHIVE=HASH", type=_md5_arg,
                        help="Köhler: expect this MD5 for ARCHIVE instead of the published one (re-packed mirror)")
    parser.add_argument("--retries", type=int, default=4, help="retries per mirror (exponential backoff)")
    parser.add_argument("--backoff", type=float, default=2.0, help="first retry delay in seconds")
    parser.add_argument("--record", type=Path, help="write the checksum record (JSON) here")
    parser.add_argument("--unpack-limit", type=_factor_arg, default=UNPACK_LIMIT, metavar="FACTOR",
                        help="refuse an archive unpacking to more than FACTOR x the expected dataset's size or "
                             f"member count (config data.<dataset>.unpack_limit; default {UNPACK_LIMIT:g})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    record = fetch(args.dataset, args.root, mirrors=args.mirror, archive=args.archive, md5=dict(args.md5),
                   retries=args.retries, backoff=args.backoff, quiet=args.quiet, unpack_limit=args.unpack_limit)
    if args.record:
        write_text_atomic(args.record, json.dumps(record, indent=2))
    print(json.dumps(record["checksums"], indent=2))
    return 0
