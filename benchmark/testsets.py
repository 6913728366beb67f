"""The generalisation test sets beyond the paper (SPEC §10): HIDE and RealBlur-J / RealBlur-R, fetched,
verified and paired like GOPRO and Köhler (``research/generalisation-testsets.md`` §1-2).

Each test set is declared with its sources in order: the authors' own archive first, then the copies the
common repositories (MPRNet, Restormer) download. The configuration's mirrors (URLs of the first source's
archive) are tried before its links; a local copy (``archive``: a file, or a folder holding the sources'
archives by name) replaces the download. Downloads resume and retry (:func:`benchmark.fetch.download`;
Google Drive links go through gdown as the authors' weights do). An archive's SHA-256 is checked against
``<root>/checksums.lock.json`` and recorded there only once its test pairs have been verified, so a truncated
or wrong archive never locks its own hash.

An archive (zip or tar, told apart by content) is unpacked into a temporary folder beside the root, member
by member with the same refusals as GOPRO's (absolute paths, ``..``, links, unknown top-level folders, and
more than ``unpack_limit`` times the expected size or member count). The test sets it holds are found
there, in either layout, and paired by name against their list (:func:`benchmark.data.hide_pairs`,
:func:`benchmark.data.realblur_pairs`); only then are their folders moved under the root. A test set that
does not add up is a one-line :class:`~benchmark.fetch.FetchError` naming how many pairs are missing or extra
and the first few, and our own download is kept as ``<name>.unverified`` (never reused silently). A source
declared as RealBlur-J that holds RealBlur-R (or the reverse) is refused as a swap.

Nothing here touches the network at import time.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from benchmark import data
from benchmark.fetch import MAX_SECONDS, UNPACK_LIMIT, FetchError, _lock, _record, download, extract, file_digest
from benchmark.files import sweep_stale, temporary_sibling
from benchmark.prepare import VerifyReport
from benchmark.registry import Lazy

VERIFY_MODES = ("counts", "structure")  # the full official lists / counts, or pairing by name only


def drive(file_id: str) -> str:
    return f"https://drive.google.com/uc?id={file_id}"


@dataclass(frozen=True)
class Source:
    """One archive holding one or more test sets: its file name (under ``<root>/downloads/``, and its key in
    the lock file), its download links in order, the test sets it holds and where those links are published."""

    archive: str
    urls: tuple[str, ...]
    provides: tuple[str, ...]
    origin: str


@dataclass(frozen=True)
class TestSet:
    """A dataset of test sets fetched into one root: its sources in order, the top-level folders its archives
    may hold, the expected unpacked (bytes, members) of its largest archive, and the page to download it by hand."""

    name: str
    sets: tuple[str, ...]
    sources: tuple[Source, ...]
    top_level: frozenset[str]
    expected_size: tuple[int, int]
    landing: str


def _expected(images: int, folders: int, side: tuple[int, int]) -> tuple[int, int]:
    """(bytes, members): the images as raw 8-bit RGB (an upper bound for PNGs of photos), one member each."""
    return images * side[0] * side[1] * 3, images + folders


_RB = data.REALBLUR_FOLDERS
TESTSETS: dict[str, TestSet] = {t.name: t for t in (
    TestSet("hide", ("hide",), (
        Source("HIDE_dataset.zip", ("https://www.dropbox.com/s/04w3wqxcuin9dy8/HIDE_dataset.zip?dl=1",), ("hide",),
               "joanshen0508/HA_deblur README (Dropbox): train, test and GT of all 8,422 pairs"),
        Source("HIDE_test_restormer.zip", (drive("1XRomKYJF1H92g1EuD06pCQe4o6HlwB7A"),), ("hide",),
               "swz30/Restormer Motion_Deblurring/download_data.py (Google Drive): the 2,025 test pairs as "
               "test/HIDE/{input,target}, the copy MPRNet and Restormer score"),
    ), frozenset({"HIDE_dataset", "train", "test", "GT", "HIDE", "input", "target"}),
        # every pair of the official archive, 1280x720; folders: HIDE_dataset, train, test, its two subsets, GT
        _expected(2 * data.HIDE_ALL_PAIRS, 6, (1280, 720)),
        "https://github.com/joanshen0508/HA_deblur"),
    TestSet("realblur", ("realblur-j", "realblur-r"), (
        Source("RealBlur.tar.gz", (), ("realblur-j", "realblur-r"),
               "rimchang/RealBlur README: a POSTECH share page (https://cgdata.postech.ac.kr/sharing/YhKdbtvD0) "
               "and a Google Drive folder (1xUNAAVzLhNQuGriKTk1hrE-MT-H_56fq), neither a direct file link: "
               "download it by hand and give data.realblur.archive, or a mirror URL of the file"),
        Source("RealBlur_J_test_restormer.zip", (drive("1Rb1DhhXmX7IXfilQ-zL9aGjQfAAvQTrW"),), ("realblur-j",),
               "swz30/Restormer Motion_Deblurring/download_data.py (Google Drive): test/RealBlur_J/{input,target}"),
        Source("RealBlur_R_test_restormer.zip", (drive("1glgeWXCy7Y0qWDc0MXBTUlZYJf8984hS"),), ("realblur-r",),
               "swz30/Restormer Motion_Deblurring/download_data.py (Google Drive): test/RealBlur_R/{input,target}"),
    ), frozenset({*_RB.values(), "RealBlur", "test", "RealBlur_J", "RealBlur_R"}),
        # RealBlur.tar.gz: J and R, 3,758 train + 980 test pairs each (about 680x773; bounded by 800x800), and
        # sceneN, blur and gt folders for each of the 232 scenes of each
        _expected(2 * 2 * (3758 + data.REALBLUR_TEST_PAIRS), 2 * 3 * 232 + 2, (800, 800)),
        "https://github.com/rimchang/RealBlur"),
)}
TEST_SETS = tuple(s for t in TESTSETS.values() for s in t.sets)  # hide, realblur-j, realblur-r

# The official scoring of each test set (benchmark.metrics), named lazily: fetching imports no scipy.
PROTOCOLS: dict[str, Lazy] = {"hide": Lazy("benchmark.metrics:hide_score"),
                              "realblur-j": Lazy("benchmark.metrics:realblur_score"),
                              "realblur-r": Lazy("benchmark.metrics:realblur_score")}


def dataset_of(test_set: str) -> str:
    """The dataset (``hide`` or ``realblur``, the configuration's ``data.<dataset>``) holding a test set."""
    for t in TESTSETS.values():
        if test_set in t.sets:
            return t.name
    raise ValueError(f"unknown test set {test_set!r} (expected one of {', '.join(TEST_SETS)})")


def pairs(test_set: str, root: str | os.PathLike[str], verify: str = "counts") -> list[data.Pair]:
    """The pairs of ``hide``, ``realblur-j`` or ``realblur-r`` under the dataset's root, matched by name:
    ``verify="counts"`` against the official list (RealBlur) or count (HIDE), ``"structure"`` by name only."""
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify {verify!r}: expected one of {', '.join(VERIFY_MODES)}")
    dataset_of(test_set)
    if test_set == "hide":
        return data.hide_pairs(root, data.HIDE_TEST_PAIRS if verify == "counts" else None)
    return data.realblur_pairs(root, test_set[-1], check_list=verify == "counts")


def protocol(test_set: str) -> Callable[..., dict[str, Any]]:
    """``score(restored, reference) -> dict`` under the test set's official protocol."""
    dataset_of(test_set)
    return PROTOCOLS[test_set].resolve()


# -- unpacking ------------------------------------------------------------------------------------------
def _extract_tar(archive: Path, into: Path, *, top_level: frozenset[str], max_bytes: int, max_members: int) -> None:
    """Unpack a (compressed) tar into the new folder ``into`` in one pass, every member checked before it is
    written; the caller removes ``into`` on failure."""
    count = total = 0
    try:
        with tarfile.open(archive, "r|*") as tar:
            into.mkdir(parents=True)
            for member in tar:
                name = PurePosixPath(member.name)
                if not name.parts:  # the archive's own "." entry
                    continue
                if name.is_absolute() or ".." in name.parts:
                    raise FetchError(f"{archive}: member {member.name!r} would land outside the target folder")
                if member.issym() or member.islnk():
                    raise FetchError(f"{archive}: member {member.name!r} is a link; refusing to extract")
                if not (member.isfile() or member.isdir()):
                    raise FetchError(f"{archive}: member {member.name!r} is not a file or folder; refusing to extract")
                if name.parts[0] not in top_level:
                    raise FetchError(f"{archive}: member {member.name!r} is not part of the dataset (expected only "
                                     f"{', '.join(sorted(top_level))}); refusing to extract")
                count, total = count + 1, total + member.size
                if count > max_members or total > max_bytes:
                    raise FetchError(f"{archive}: more than {max_members:,} members or {max_bytes:,} bytes "
                                     "uncompressed (--unpack-limit times the expected dataset's); refusing to extract "
                                     "a tar bomb or the wrong archive")
                tar.extract(member, into, filter="data")
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise FetchError(f"{archive}: not a readable tar archive ({err}); fetch it again") from err


def _unpack(archive: Path, into: Path, testset: TestSet, unpack_limit: float | None) -> None:
    size, members = testset.expected_size
    factor = UNPACK_LIMIT if unpack_limit is None else unpack_limit
    limits = {"top_level": testset.top_level, "max_bytes": int(factor * size), "max_members": int(factor * members)}
    if zipfile.is_zipfile(archive):
        extract(archive, into, **limits)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, into, **limits)
    else:
        raise FetchError(f"{archive}: neither a zip nor a tar archive (a web page instead of the file?); check the "
                         f"link, or download it by hand from {testset.landing}")


# -- finding the test sets in an unpacked archive -------------------------------------------------------
@dataclass(frozen=True)
class Found:
    """A test set found in an unpacked archive: the folder that holds it as its root, its layout, and the
    folders to move under the dataset's root."""

    test_set: str
    base: Path
    layout: str
    folders: tuple[str, ...]


def _find(staging: Path, test_set: str) -> Found | None:
    if test_set == "hide":
        for base in (staging / "HIDE_dataset", staging):
            if any((base / "test" / s).is_dir() for s in data.HIDE_SUBSETS):
                return Found("hide", base, "official", tuple(f for f in ("test", "GT", "train") if (base / f).is_dir()))
        for base in (staging / "test" / "HIDE", staging / "HIDE", staging):
            if (base / "input").is_dir() and (base / "target").is_dir():
                return Found("hide", base, "flat", ("input", "target"))
        return None
    v = test_set[-1].upper()
    for base in (staging, staging / "RealBlur"):
        if (base / _RB[v]).is_dir():
            return Found(test_set, base, "official", (_RB[v],))
    for base in (staging / "test", staging):
        if (base / f"RealBlur_{v}").is_dir():
            return Found(test_set, base, "flat", (f"RealBlur_{v}",))
    return None


# Every folder a test set may occupy under its root, in either layout (replaced when it is fetched again).
_OCCUPIES = {"hide": ("test", "GT", "train", "input", "target"),
             "realblur-j": (_RB["J"], "RealBlur_J"), "realblur-r": (_RB["R"], "RealBlur_R")}


def _check(found: Found, verify: str, archive: Path) -> int:
    try:
        return len(pairs(found.test_set, found.base, verify))
    except (data.PairingError, FileNotFoundError) as err:
        raise FetchError(f"{archive}: {str(err).replace(str(found.base), found.test_set)}") from err


# -- fetching -------------------------------------------------------------------------------------------
def _candidates(testset: TestSet, downloads: Path, mirrors: Sequence[str],
                archive: Path | None) -> list[tuple[Path, Source | None, tuple[str, ...]]]:
    """(local path, source or None for a local file, URLs to download from) in the order they are tried."""
    if archive is None:
        return [(downloads / s.archive, s, (*mirrors, *s.urls) if i == 0 else s.urls)
                for i, s in enumerate(testset.sources)]
    if archive.is_file():
        return [(archive, None, ())]
    if archive.is_dir():
        found = [(archive / s.archive, s, ()) for s in testset.sources if (archive / s.archive).is_file()]
        if found:
            return found
        raise FetchError(f"{archive}: holds none of the {testset.name} archives "
                         f"({', '.join(s.archive for s in testset.sources)})")
    raise FetchError(f"{archive}: no such file or folder (the local copy of the {testset.name} archive)")


def fetch_testset(name: str, root: str | os.PathLike[str], *, mirrors: Sequence[str] = (),
                  archive: str | os.PathLike[str] | None = None, retries: int = 4, backoff: float = 2.0,
                  quiet: bool = False, unpack_limit: float | None = None, verify: str = "counts",
                  max_size: int | None = None, max_time: float = MAX_SECONDS) -> dict[str, Any]:
    """Fetch ``hide`` or ``realblur`` into ``root``, verify its test pairs and record the archives' SHA-256.

    The sources are tried in order until every test set of the dataset is there (RealBlur: J and R from
    ``RealBlur.tar.gz``, or each from its Restormer copy). ``mirrors`` are URLs of the first source's
    archive, tried before its links; ``archive`` a local file (whatever test sets it holds) or a folder of
    the sources' archives by name. ``verify``: ``counts`` (the official list / count) or ``structure``
    (pairing by name only, for miniature trees). A download is capped at ``max_size`` bytes (default:
    ``unpack_limit`` times the dataset's expected size) and ``max_time`` seconds per source. Returns a record
    of the checksums and, per test set, its layout, pair count and archive. Raises
    :class:`~benchmark.fetch.FetchError` with one line.
    """
    if name not in TESTSETS:
        raise FetchError(f"unknown test set dataset {name!r}; choose {', '.join(TESTSETS)}")
    if verify not in VERIFY_MODES:
        raise FetchError(f"verify {verify!r}: expected one of {', '.join(VERIFY_MODES)}")
    testset, root = TESTSETS[name], Path(root)
    root.mkdir(parents=True, exist_ok=True)
    local = Path(archive) if archive is not None else None
    wanted, fetched, checksums, errors = list(testset.sets), {}, {}, []
    for path, source, urls in _candidates(testset, root / "downloads", mirrors, local):
        still = [s for s in wanted if s not in fetched]
        if not still:
            break
        if source is not None and not set(source.provides) & set(still):
            continue
        ours = local is None
        if ours and not path.exists():
            if not urls:
                errors.append(f"{path.name}: no download link ({source.origin})")
                continue
            try:
                cap = max_size or int((UNPACK_LIMIT if unpack_limit is None else unpack_limit)
                                      * testset.expected_size[0])
                download(urls, path, retries=retries, backoff=backoff, quiet=quiet, max_bytes=cap,
                         max_seconds=max_time)
            except FetchError as err:
                errors.append(" ".join(str(err).split()))  # one line, whatever the downloader wrote
                continue
        record = _fetch_archive(testset, root, path, source, still, ours=ours, verify=verify,
                                unpack_limit=unpack_limit)
        fetched |= record
        checksums[path.name] = next(iter(record.values()))["sha256"]
    missing = [s for s in wanted if s not in fetched]
    if missing:
        raise FetchError(f"{name}: {', '.join(missing)} not fetched: " + ("; ".join(errors) or
                         f"{local} holds {', '.join(fetched) or 'none of them'}"))
    return {"dataset": name, "root": str(root), "checksums": checksums, "sets": fetched}


def _fetch_archive(testset: TestSet, root: Path, path: Path, source: Source | None, still: Sequence[str], *,
                   ours: bool, verify: str, unpack_limit: float | None) -> dict[str, dict[str, Any]]:
    """Check one archive against the lock, unpack it aside, find and verify the test sets it holds, move
    them under ``root`` and record its hash; our own download is kept as ``.unverified`` when it fails."""
    actual = file_digest(path, "sha256")
    locked = _lock(root).get(path.name)
    try:
        if locked and actual != locked:
            raise FetchError(f"SHA-256 {actual} does not match the one recorded in {root / 'checksums.lock.json'} "
                             f"({locked}): the archive changed since the first download")
        staging = temporary_sibling(root / f"{testset.name}-unpacked", "extracting")
        sweep_stale(root / f"{testset.name}-unpacked")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            _unpack(path, staging, testset, unpack_limit)
            found = {s: f for s in testset.sets if (f := _find(staging, s)) is not None}
            if source is not None:
                _refuse_swaps(path, source, found)
            found = {s: f for s, f in found.items() if s in still}
            if not found:
                raise FetchError(f"{path}: holds none of {', '.join(still)} in a known layout "
                                 f"(see {testset.landing})")
            counts = {s: _check(f, verify, path) for s, f in found.items()}
            for s, f in found.items():
                for folder in _OCCUPIES[s]:
                    old = root / folder
                    if old.exists():
                        shutil.rmtree(old) if old.is_dir() else old.unlink()
                for folder in f.folders:
                    os.replace(f.base / folder, root / folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except FetchError as err:
        message = str(err) if str(err).startswith(str(path)) else f"{path}: {err}"
        if ours:
            kept = path.with_name(path.name + ".unverified")
            os.replace(path, kept)
            message += f"; the download was kept as {kept}: if you trust it, give it as the local archive"
        raise FetchError(message) from err
    _record(root, path.name, actual)  # only now: a bad archive never locks its own hash
    return {s: {"layout": f.layout, "pairs": counts[s], "archive": path.name, "sha256": actual}
            for s, f in found.items()}


_LABEL = {"hide": "HIDE", "realblur-j": "RealBlur-J", "realblur-r": "RealBlur-R"}


def _refuse_swaps(path: Path, source: Source, found: Mapping[str, Found]) -> None:
    """A source declared as one RealBlur variant that holds the other one instead: J and R swapped."""
    for declared in source.provides:
        if declared.startswith("realblur-") and declared not in found:
            other = "realblur-r" if declared == "realblur-j" else "realblur-j"
            if other in found and other not in source.provides:
                raise FetchError(f"{path}: should hold {_LABEL[declared]} but holds {found[other].folders[0]}/, "
                                 f"which is {_LABEL[other]}: RealBlur-J and RealBlur-R swapped; refusing it")


def verify_testset(name: str, root: str | os.PathLike[str], verify: str = "counts") -> VerifyReport:
    """A :class:`~benchmark.prepare.VerifyReport` of ``hide`` or ``realblur`` under ``root`` (its test sets'
    pairs matched by name against the official list or count), as ``deblurbench prepare`` prints it."""
    if name not in TESTSETS:
        raise ValueError(f"unknown test set dataset {name!r}; choose {', '.join(TESTSETS)}")
    report = VerifyReport(name, Path(root))
    for test_set in TESTSETS[name].sets:
        try:
            report.counted[f"{test_set} pairs"] = len(pairs(test_set, root, verify))
        except data.PairingError as err:
            report.missing += err.missing
            report.extra += err.extra
            report.wrong.append(str(err))
        except FileNotFoundError as err:
            report.missing.append(str(err))
    return report
