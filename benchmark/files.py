"""Writing outputs without leaving a mess: temporary siblings tagged with the process id, a sweep of the
ones that dead processes left behind, what a filesystem error means to the user (one line), and CSV files
that a spreadsheet opens as data.

A command writes a file or folder ``out`` as ``.out.tmp-PID`` (or ``.out.extracting-PID`` while unpacking
an archive; a folder being replaced waits as ``.out.old-PID``) and renames it into place when it is
complete; on failure the temporary is removed. A process killed outright cannot clean up, so the next run
sweeps every such sibling whose process is gone. Siblings of live processes are left alone: another job
may still be writing them. A staging folder that disappears while a command fills it (removed by another
process or by hand) is noticed before anything is renamed into place.

Every file and folder written here gets the mode that ``open`` and ``mkdir`` would give it (0644 and
0755 under umask 022): ``tempfile.mkstemp`` and ``mkdtemp`` make private 0600 / 0700 entries, which a
rename would carry into place and leave unreadable to colleagues sharing the results.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TAGS = ("tmp", "extracting", "old")
FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def temporary_sibling(target: Path, tag: str = "tmp") -> Path:
    """``<parent>/.<name>.<tag>-<pid>``: where this process builds ``target`` before renaming it."""
    assert tag in TAGS
    target = Path(target)
    return target.with_name(f".{target.name}.{tag}-{os.getpid()}")


def umask() -> int:
    """This process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only on other systems)
    os.umask(mask)
    return mask


def give_default_mode(path: Path | str | int, *, folder: bool = False) -> None:
    """Set the mode ``open`` (0666) or ``mkdir`` (0777) would have given ``path`` (or an open descriptor)
    under the current umask."""
    mode = (0o777 if folder else 0o666) & ~umask()
    if isinstance(path, int):
        os.fchmod(path, mode)
    else:
        os.chmod(path, mode)


def temporary_file(target: Path) -> tuple[int, Path]:
    """(open descriptor, path) of a new uniquely named temporary file beside ``target``, with the mode the
    umask gives (``mkstemp`` alone makes it 0600). The caller writes it and renames it onto ``target``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(target).name}.", suffix=".tmp", dir=Path(target).parent)
    try:
        give_default_mode(fd)
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, Path(tmp)


def temporary_folder(target: Path, suffix: str = ".tmp") -> Path:
    """A new uniquely named temporary folder beside ``target``, with the mode the umask gives (``mkdtemp``
    alone makes it 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{Path(target).name}.", suffix=suffix, dir=Path(target).parent))
    give_default_mode(tmp, folder=True)
    return tmp


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file under a temporary sibling name, then rename it into place: a reader never sees a
    half-written file, and a failed write leaves none behind. The one way this project writes a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    tmp = temporary_sibling(path)
    try:
        with with_name(path):
            tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, it is someone else's
        return True
    return True


def sweep_stale(target: Path) -> list[Path]:
    """Remove the temporary siblings of ``target`` left by processes that no longer run."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:{'|'.join(TAGS)})-(\d+)$")
    removed = []
    for item in target.parent.iterdir():
        match = pattern.match(item.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
            removed.append(item)
    return removed


def sweep_folder(folder: Path, names: set[str] | frozenset[str]) -> list[Path]:
    """Remove the temporaries of ``names`` in ``folder`` that processes no longer running left behind, in
    one listing of the folder (``deblurbench deblur``'s outputs, written one by one)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = re.compile(rf"^\.(.+)\.(?:{'|'.join(TAGS)})-(\d+)$")
    removed = []
    for item in folder.iterdir():
        match = pattern.match(item.name)
        if match and match.group(1) in names and not _alive(int(match.group(2))):
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
            removed.append(item)
    return removed


def check_parent(path: Path, what: str = "--out") -> None:
    """ValueError when a folder above ``path`` is a file, so ``path`` can never be created."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{what} {path}: {parent} is a file, not a folder; choose another {what}")
            return


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A fresh temporary folder for ``out``, moved into place when the block ends without error and
    removed when it does not. Stale temporary folders of dead processes are swept first."""
    from benchmark.data import replace_dir

    out = Path(out)
    check_parent(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a folder; choose another --out")
    sweep_stale(out)
    tmp = temporary_sibling(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # Held open, the folder keeps its inode while this runs: one removed and made again by a writer's
    # mkdir(parents=True) is told apart from it even where inode numbers are reused at once.
    handle = os.open(tmp, os.O_RDONLY)
    try:
        yield tmp
        if os.fstat(handle).st_nlink == 0 or not tmp.is_dir() or tmp.stat().st_ino != os.fstat(handle).st_ino:
            raise OSError(errno.ESTALE, f"the temporary folder {tmp} was removed while this command filled it (by "
                          f"another process or by hand), so part of the output is lost; nothing was written to "
                          f"{out}: run again", str(out))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(handle)
    replace_dir(tmp, out)


def os_error_message(err: OSError, path: Path | str | None = None) -> tuple[str, int]:
    """One line naming the file and what to do, and the exit code: 1 when the machine failed (a full
    disk, an I/O error), 2 when the path given cannot be used (read-only, a folder, missing).

    When the system names no file (a write that failed after the file was opened), none is guessed: the
    line says so rather than naming the current folder's disk."""
    name = str(path if path is not None else (err.filename or ""))
    reason = err.strerror or str(err) or type(err).__name__
    code = errno.errorcode.get(err.errno, "") if err.errno else ""
    if not name:
        reason = f"{reason} ({code}; the system named no file)" if code else f"{reason} (the system named no file)"
    prefix = f"{name}: " if name else ""
    if err.errno in FULL:
        where = f"the disk holding {Path(name).parent}" if name else "a disk this command writes to"
        return f"{prefix}{reason}: {where} is full; free space and run again", 1
    if err.errno in NOT_WRITABLE:
        return f"{prefix}{reason}: this location is not writable; choose another --out or fix its permissions", 2
    if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
        return f"{prefix}{reason}; check the path", 2
    return f"{prefix}{reason}", 1


def with_name(path: Path | str) -> Any:
    """A context manager that gives an OSError raised without a file name (a failed write after the open)
    the name ``path``, so its one-line message names the file and its disk."""
    return _Naming(str(path))


class _Naming:
    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, err: BaseException | None, tb: Any) -> bool:
        if isinstance(err, OSError) and not err.filename and err.errno:
            raise OSError(err.errno, err.strerror or str(err), self.path) from err
        return False


# -- CSV a spreadsheet opens as data ----------------------------------------------------------------------
# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (OWASP, "CSV
# Injection"); a leading apostrophe makes it text. Numbers, also negative ones, are left as they are.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _neutral(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number_text(value):
        return "'" + value
    return value


def _restored(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text_columns(frame: Any) -> list[Any]:
    from pandas.api.types import is_object_dtype, is_string_dtype

    return [c for c in frame.columns if is_object_dtype(frame[c]) or is_string_dtype(frame[c])]


def write_csv(frame: Any, path: Path, **to_csv: Any) -> None:
    """``frame.to_csv(path, index=False)`` with every text cell (column names too) that a spreadsheet would
    run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR) prefixed by an apostrophe; numbers stay numbers.
    Rows end in CRLF (RFC 4180), so that a cell holding a CR is quoted too, never split into a row whose
    next cell could start a formula. :func:`read_csv` reads it back as it was."""
    frame = frame.rename(columns=_neutral)
    text_columns = _text_columns(frame)
    if text_columns:
        frame = frame.assign(**{c: frame[c].map(_neutral) for c in text_columns})
    frame.to_csv(path, index=False, lineterminator="\r\n", **to_csv)


def read_csv(path: Path | Any, **read: Any) -> Any:
    """A CSV written by :func:`write_csv`, as it was before its formula-like cells were neutralised."""
    import pandas as pd

    frame = pd.read_csv(path, **read)
    frame = frame.rename(columns=_restored)
    text_columns = _text_columns(frame)
    if text_columns:
        frame = frame.assign(**{c: frame[c].map(_restored) for c in text_columns})
    return frame


def file_digest(path: Path | str, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (read in 1 MiB chunks): downloads, weights and restored images."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
