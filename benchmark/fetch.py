"""Download, verify and unpack the real data: GOPRO_Large, Köhler et al.'s benchmark and VGG19 weights.

Downloads (:func:`download`, the one routine, also for the authors' weights) resume a ``.part`` file with
an HTTP Range request whose answer is checked rather than trusted, retry with exponential backoff, are
capped in size and time, try every source in order and say why each failed, show a progress bar, verify a
checksum and only then rename into place. GOPRO has
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
import contextlib
import http.client
import json
import math
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from benchmark.files import file_digest, sweep_stale, temporary_sibling, write_text_atomic
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


# Every download is capped: in size (``--max-size``; by default the unpack limit's multiple of the expected
# dataset, which no genuine archive of it exceeds, or the weights caps below) and in time per source
# (``--max-time``, all its attempts together), besides a read that waits longer than READ_TIMEOUT and an
# attempt that stalls (less than STALL_BYTES in STALL_SECONDS).
READ_TIMEOUT = 60.0
MAX_SECONDS = 24 * 3600.0
STALL_SECONDS, STALL_BYTES = 120.0, 120 << 10
OVERLAP = 4096  # bytes a resumed request asks for again, to check that the server continues the same file
VGG19_MAX_BYTES = 1 << 30  # the file is 548 MiB
MAX_PAGE = 1 << 20  # the most of an HTML answer read while looking for Google Drive's confirmation link


class SourceFailed(Exception):
    """This source cannot give the file; the message says why (retrying it would not help)."""


class _Again(Exception):
    """This attempt failed in a way another attempt at the same source may not (a cut connection, a stall)."""


class LocalWriteError(OSError):
    """Writing the download on this machine failed (a full disk): no source is to blame, none is tried."""


def download(urls: Sequence[str], dest: Path, *, md5: str | None = None, sha256: str | None = None,
             retries: int = 4, backoff: float = 2.0, quiet: bool = False, max_bytes: int,
             max_seconds: float = MAX_SECONDS) -> Path:
    """Fetch ``dest`` from the first source that gives a whole, verified file; then rename it into place.

    Nothing a server says is trusted: a resumed request must come back as the range asked for (checked
    against ``Content-Range``, and by the first OVERLAP bytes matching what is already there), otherwise the
    partial file is dropped and the download starts over; more than ``max_bytes`` (announced or received) or
    longer than ``max_seconds`` at one source fails that source; an answer that is not HTTP, an error page, a
    web page where a file is expected (other than Google Drive's confirmation page, which is followed) or a
    checksum mismatch moves on to the next source. A source is retried ``retries`` times with exponential
    backoff for transient failures (a cut connection, a timeout, a stall, a 5xx). The FetchError raised when
    every source failed says why each one did. A failed write on this machine is a LocalWriteError at once.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    failures = []
    for url in urls:
        try:
            _from_source(opener, url, part, retries=retries, backoff=backoff, quiet=quiet, max_bytes=max_bytes,
                         deadline=time.monotonic() + max_seconds, max_seconds=max_seconds)
            verify(part, md5=md5, sha256=sha256, name=dest.name)
        except (SourceFailed, FetchError) as err:
            failures.append(f"{url}: {str(err).removeprefix(dest.name + ': ')}")
            continue
        os.replace(part, dest)
        return dest
    raise FetchError(f"{dest.name}: every source failed: " + ("; ".join(failures) or "no source was given"))


def _from_source(opener: urllib.request.OpenerDirector, url: str, part: Path, *, retries: int, backoff: float,
                 quiet: bool, max_bytes: int, deadline: float, max_seconds: float) -> None:
    last = "no attempt was made"
    for attempt in range(retries + 1):
        if time.monotonic() >= deadline:
            raise SourceFailed(f"no whole file within --max-time {max_seconds:g} s (last: {last})")
        try:
            _attempt(opener, url, part, quiet=quiet, max_bytes=max_bytes, deadline=deadline, max_seconds=max_seconds)
            return
        except LocalWriteError:
            raise
        except urllib.error.HTTPError as err:
            if err.code == 416:  # the part already there is not a prefix of this file: start over
                part.unlink(missing_ok=True)
            elif 400 <= err.code < 500 and err.code not in (408, 425, 429):
                raise SourceFailed(f"HTTP {err.code} {err.reason}") from err
            last = f"HTTP {err.code} {err.reason}"
        except http.client.HTTPException as err:  # a status line that is not HTTP, a cut chunked body
            if not isinstance(err, http.client.IncompleteRead | http.client.RemoteDisconnected):
                raise SourceFailed(f"not an HTTP answer ({type(err).__name__}: {_first_line(err)})") from err
            last = f"{type(err).__name__}: {_first_line(err)}"
        except (_Again, urllib.error.URLError, OSError) as err:  # refused, unreachable, timed out, cut
            last = _first_line(getattr(err, "reason", None) or err)
        if attempt < retries:
            time.sleep(max(0.0, min(backoff * 2**attempt, deadline - time.monotonic())))
    raise SourceFailed(f"{last} (after {retries + 1} attempt{'s' if retries else ''})")


def _first_line(err: object) -> str:
    text = str(err).strip()
    return (text.splitlines() or [type(err).__name__])[0][:200]


def _attempt(opener: urllib.request.OpenerDirector, url: str, part: Path, *, quiet: bool, max_bytes: int,
             deadline: float, max_seconds: float) -> None:
    """One request: continue ``part`` (or start it) with what ``url`` sends, checking everything it says."""
    have = part.stat().st_size if part.exists() else 0
    start = max(0, have - OVERLAP)
    headers = {"Range": f"bytes={start}-"} if have else {}
    timeout = max(0.05, min(READ_TIMEOUT, deadline - time.monotonic()))
    with contextlib.ExitStack() as stack:
        response = stack.enter_context(opener.open(urllib.request.Request(url, headers=headers), timeout=timeout))
        if response.headers.get_content_type() == "text/html":
            page = response.read(MAX_PAGE).decode("utf-8", "replace")
            link = urllib.parse.urljoin(response.geturl(), _confirmation_link(page))
            response = stack.enter_context(opener.open(urllib.request.Request(link, headers=headers), timeout=timeout))
            if response.headers.get_content_type() == "text/html":
                raise SourceFailed("answered with a web page again after its download link was followed")
        offset, total = _body_range(response, part, have, start)
        if total is not None and total > max_bytes:
            part.unlink(missing_ok=True)
            raise SourceFailed(f"announces {total:,} bytes, more than the limit of {max_bytes:,} (--max-size)")
        size = offset
        started = window = time.monotonic()
        window_bytes = 0
        if offset:  # a resumed range: its first bytes must be what is already there
            head = _read_exactly(response, have - offset, deadline, max_seconds)
            with open(part, "rb") as f:
                f.seek(offset)
                if f.read() != head:
                    part.unlink()
                    raise _Again(f"the resumed bytes {offset}-{have - 1} differ from those downloaded before (the "
                                 "server does not continue the same file); starting over")
            size = have
        try:
            out = stack.enter_context(open(part, "ab" if offset else "wb"))
        except OSError as err:
            raise LocalWriteError(err.errno, err.strerror, str(part)) from err
        bar = stack.enter_context(tqdm(total=total, initial=size, unit="B", unit_scale=True,
                                       desc=part.name.removesuffix(".part"), disable=quiet))
        while chunk := response.read1(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                out.close()
                part.unlink(missing_ok=True)
                raise SourceFailed(f"sent more than the limit of {max_bytes:,} bytes (--max-size)"
                                   + ("" if total is not None else " without announcing a length"))
            try:
                out.write(chunk)
            except OSError as err:
                raise LocalWriteError(err.errno, err.strerror, str(part)) from err
            bar.update(len(chunk))
            now, window_bytes = time.monotonic(), window_bytes + len(chunk)
            if now > deadline:
                raise SourceFailed(f"took longer than --max-time {max_seconds:g} s ({size:,} bytes received, "
                                   f"{(size - offset) / max(now - started, 1e-9):,.0f} B/s)")
            if now - window >= STALL_SECONDS:
                if window_bytes < STALL_BYTES:
                    raise _Again(f"stalled: {window_bytes:,} bytes in {now - window:.0f} s")
                window, window_bytes = now, 0
    if total is not None and size < total:
        raise _Again(f"connection closed after {size:,} of {total:,} bytes")


def _body_range(response: Any, part: Path, have: int, start: int) -> tuple[int, int | None]:
    """(where in the file the body begins, the file's whole size when the server says it). A resumed
    request answered with another range, or with a 206 that does not say which, drops ``part``."""
    status = response.status
    length = response.headers.get("Content-Length")
    length = int(length) if length is not None and length.strip().isdigit() else None
    if not have:
        if status != 200:
            raise SourceFailed(f"answered a plain request with HTTP {status}, not 200")
        return 0, length
    if status == 200:  # the range was ignored: this is the whole file again
        return 0, length
    if status != 206:
        raise SourceFailed(f"answered a range request with HTTP {status}")
    header = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", header.strip())
    first, last = (int(match[1]), int(match[2])) if match else (-1, -1)
    whole = int(match[3]) if match and match[3] != "*" else None
    honest = (first == start <= last and (length is None or length == last - start + 1)
              and (whole is None or have <= whole > last))
    if not honest:
        part.unlink()
        raise _Again(f"answered the range request bytes={start}- with Content-Range {header or '(none)'!r} and "
                     f"Content-Length {length}; starting over")
    return start, whole


def _read_exactly(response: Any, n: int, deadline: float, max_seconds: float) -> bytes:
    data = b""
    while len(data) < n:
        chunk = response.read1(n - len(data))
        if not chunk:
            raise _Again(f"connection closed within the {n} resumed bytes")
        data += chunk
        if time.monotonic() > deadline:
            raise SourceFailed(f"took longer than --max-time {max_seconds:g} s")
    return data


def _confirmation_link(page: str) -> str:
    """Where Google Drive's "can't scan this file for viruses" page sends the download (gdown's own reading
    of it); any other web page where a file was expected fails the source, naming the page."""
    try:
        from gdown.download import get_url_from_gdrive_confirmation

        return get_url_from_gdrive_confirmation(page)
    except Exception as err:  # noqa: BLE001 - gdown's own error types: no link on this page
        title = re.search(r"<title>(.*?)</title>", page, re.IGNORECASE | re.DOTALL)
        shown = " ".join((title.group(1) if title else page[:80]).split())
        raise SourceFailed(f"answered with a web page, not the file ({shown!r}: {_first_line(err)})") from err


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
    """Every member checked first, then written into the new folder ``into``; each member's CRC-32 is
    checked as it is read (zipfile raises on a mismatch)."""
    try:
        with zipfile.ZipFile(archive) as z:
            _whole(z, archive)
            members = _safe_members(z, archive, **limits)
            into.mkdir(parents=True)
            for info in members:
                z.extract(info, into)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise FetchError(f"{archive}: not a readable zip archive ({_first_line(err)}); fetch it again") from err


def _whole(archive: zipfile.ZipFile, source: Path) -> None:
    """A zip whose first member does not start at byte 0 has bytes before it: zipfile reads past them (a
    self-extractor's stub), but a download has none, so they are a spliced file (a broken resume)."""
    first = min((info.header_offset for info in archive.infolist()), default=0)
    if first != 0:
        raise FetchError(f"{source}: {first:,} unexpected bytes before the archive's first member (a download "
                         "spliced from two answers?); fetch it again")


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
          unpack_limit: float | None = None, max_size: int | None = None, max_time: float = MAX_SECONDS,
          verify: str = "counts") -> dict:
    """Fetch ``gopro``, ``kohler``, ``hide``, ``realblur`` or ``vgg19``; returns a record of files and checksums.

    ``md5`` replaces published Köhler checksums by archive name, for a mirror that re-packed them.
    ``unpack_limit`` caps what an archive may unpack to, as a multiple of the expected dataset; a download
    is capped at ``max_size`` bytes (by default that same bound: a zip of the dataset's images is no
    larger than they are) and ``max_time`` seconds per source. ``verify`` (HIDE, RealBlur): ``counts``
    checks the official lists and counts, ``structure`` pairing only.
    """
    def get(urls: Sequence[str], dest: Path, cap: int, **checksum: str | None) -> None:
        download(urls, dest, retries=retries, backoff=backoff, quiet=quiet, max_bytes=max_size or cap,
                 max_seconds=max_time, **checksum)

    if name == "epll-gmm":  # Sun et al.'s patch prior: EPLL's release (benchmark/epll.py)
        from benchmark.epll import fetch_epll

        return fetch_epll(root or Path("weights"), mirrors=mirrors, local=archive, retries=retries, backoff=backoff,
                          quiet=quiet, max_bytes=max_size, max_seconds=max_time)
    if name == "vgg19":
        from models.losses import vgg19_weights_path

        dest = vgg19_weights_path(root)
        if not (dest.exists() and file_digest(dest, "sha256") == VGG19_SHA256):
            get([*mirrors, VGG19_URL], dest, VGG19_MAX_BYTES, sha256=VGG19_SHA256)
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
            get([*mirrors, GOPRO_URL], zip_path, limits_for("GOPRO_Large.zip", unpack_limit)["max_bytes"])
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
                get([*(m.rstrip("/") + "/" + file for m in mirrors), KOHLER_BASE + file], local,
                    limits_for(file, unpack_limit)["max_bytes"], md5=expected)
            else:
                verify_copy = file_digest(local, "md5")
                if verify_copy != expected:
                    raise FetchError(f"{local}: md5 {verify_copy} does not match the expected {expected}")
            extract(local, root, **limits_for(file, unpack_limit))
            checksums[file] = expected
        return {"dataset": "kohler", "root": str(root), "checksums": checksums}
    if name in ("hide", "realblur"):  # the generalisation test sets: declared and verified in benchmark/testsets.py
        from benchmark.testsets import fetch_testset

        return fetch_testset(name, root, mirrors=mirrors, archive=archive, retries=retries, backoff=backoff,
                             quiet=quiet, unpack_limit=unpack_limit, verify=verify, max_size=max_size,
                             max_time=max_time)
    raise FetchError(f"unknown dataset {name!r}; choose gopro, kohler, hide, realblur or vgg19")


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


def _count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 0")
    return value


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds >= 0")
    return value


def _size_arg(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", text.strip(), re.IGNORECASE)
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 500M or 12G")
    scale = 1024 ** ("KMGT".index(match[2].upper()) + 1) if match[2] else 1
    return int(float(match[1]) * scale)


def _factor_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number >= 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=("gopro", "kohler", "hide", "realblur", "vgg19", "epll-gmm", "weights"),
                        help="what to fetch (epll-gmm: EPLL's patch prior for Sun et al.)")
    from benchmark.releases import RELEASES  # here, not at the top: releases imports this module

    parser.add_argument("release", nargs="?", metavar="NAME",
                        help=f"weights only: the authors' release, one of {', '.join(RELEASES)}")
    parser.add_argument("--root", type=Path, help="target folder (vgg19: default torch hub checkpoints)")
    parser.add_argument("--mirror", action="append", default=[], metavar="URL",
                        help="try this URL first (GOPRO: the archive; Köhler: a folder holding the zips); repeatable")
    parser.add_argument("--archive", type=Path, help="use a local copy (GOPRO: the zip; Köhler: folder of zips)")
    parser.add_argument("--md5", action="append", default=[], metavar="ARCHIVE=HASH", type=_md5_arg,
                        help="Köhler: expect this MD5 for ARCHIVE instead of the published one (re-packed mirror)")
    parser.add_argument("--retries", type=_count_arg, default=4, help="retries per source (exponential backoff)")
    parser.add_argument("--backoff", type=_seconds_arg, default=2.0, help="first retry delay in seconds")
    parser.add_argument("--max-size", type=_size_arg, metavar="SIZE",
                        help="give up a source that sends more than SIZE bytes (suffix K, M, G; default: the "
                             "--unpack-limit multiple of the expected dataset, 1 GiB for VGG19, "
                             "4 GiB for released weights)")
    parser.add_argument("--max-time", type=_seconds_arg, default=MAX_SECONDS, metavar="SECONDS",
                        help=f"give up a source after this long, all its retries together (default {MAX_SECONDS:g})")
    parser.add_argument("--record", type=Path, help="write the checksum record (JSON) here")
    parser.add_argument("--unpack-limit", type=_factor_arg, default=UNPACK_LIMIT, metavar="FACTOR",
                        help="refuse an archive unpacking to more than FACTOR x the expected dataset's size or "
                             f"member count (config data.<dataset>.unpack_limit; default {UNPACK_LIMIT:g})")
    parser.add_argument("--structure-only", action="store_true",
                        help="HIDE, RealBlur: pair by name only, not against the official counts and lists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    record = fetch(args.dataset, args.root, mirrors=args.mirror, archive=args.archive, md5=dict(args.md5),
                   retries=args.retries, backoff=args.backoff, quiet=args.quiet, unpack_limit=args.unpack_limit,
                   max_size=args.max_size, max_time=args.max_time,
                   verify="structure" if args.structure_only else "counts")
    if args.record:
        write_text_atomic(args.record, json.dumps(record, indent=2))
    print(json.dumps(record["checksums"], indent=2))
    return 0
