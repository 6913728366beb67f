"""Writing outputs without leaving a mess: temporary siblings tagged with the process id, a sweep of the
ones that dead processes left behind, and what a filesystem error means to the user (one line).

A command writes a folder ``out`` as ``.out.tmp-PID`` (or ``.out.extracting-PID`` while unpacking an
archive) and renames it into place when it is complete; on failure the temporary folder is removed. A
process killed outright cannot clean up, so the next run sweeps every such sibling whose process is
gone. Siblings of live processes are left alone: another job may still be writing them.

Every file and folder written here gets the mode that ``open`` and ``mkdir`` would give it (0644 and
0755 under umask 022): ``tempfile.mkstemp`` and ``mkdtemp`` make private 0600 / 0700 entries, which a
rename would carry into place and leave unreadable to colleagues sharing the results.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TAGS = ("tmp", "extracting")
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
    tmp = temporary_sibling(path)
    try:
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
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out)


def os_error_message(err: OSError, path: Path | str | None = None) -> tuple[str, int]:
    """One line naming the file and what to do, and the exit code: 1 when the machine failed (a full
    disk, an I/O error), 2 when the path given cannot be used (read-only, a folder, missing)."""
    name = path if path is not None else (err.filename or "")
    reason = err.strerror or str(err)
    if err.errno in FULL:
        where = Path(name).parent if name else Path.cwd()
        return f"{name}: {reason}: the disk holding {where} is full; free space and run again", 1
    if err.errno in NOT_WRITABLE:
        return f"{name}: {reason}: this location is not writable; choose another --out or fix its permissions", 2
    if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
        return f"{name}: {reason}; check the path", 2
    return f"{name}: {reason}", 1
