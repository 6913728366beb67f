"""The loop behind ``deblurbench deblur``: deblur a user's image or folder of images, never losing a file.

- The output never replaces an input: a single image writes ``<stem>_deblurred.png`` beside it (or
  ``--out FILE``); a folder writes into ``<folder>_deblurred/`` (or ``--out FOLDER``), which may not be
  the input folder itself.
- Two outputs never share a name: in a folder, ``photo.png`` becomes ``photo.png``, but when two inputs
  share a stem (``photo.jpg`` and ``photo.png``) each keeps its extension in the name
  (``photo_jpg.png``, ``photo_png.png``); if names still clash the run is refused before anything runs.
- An existing output is replaced only with ``--force``; that is checked for every output first.
- In a folder every image is tried; each one that fails gets one line, and the run exits non-zero
  at the end (2 when an input was bad, 1 when writing failed for another reason, e.g. a full disk).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from benchmark.files import check_parent, os_error_message, sweep_folder

PROG = "deblurbench deblur"


def _same(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def output_names(inputs: list[Path]) -> list[str]:
    """Output file names (PNG) for a folder's images: the stem, plus the extension where stems clash."""
    stems: dict[str, int] = {}
    for p in inputs:
        stems[p.stem.casefold()] = stems.get(p.stem.casefold(), 0) + 1
    names = [p.stem + ".png" if stems[p.stem.casefold()] == 1 else f"{p.stem}_{p.suffix[1:].lower()}.png"
             for p in inputs]
    seen: dict[str, Path] = {}
    for p, name in zip(inputs, names, strict=True):
        if name.casefold() in seen:
            raise ValueError(f"{seen[name.casefold()]} and {p} would both be written as {name}; "
                             "rename one of them")
        seen[name.casefold()] = p
    return names


def plan(source: Path, out: Path | None, force: bool) -> list[tuple[Path, Path]]:
    """(input, output) for every image, after every check that can be made before any work."""
    from benchmark.data import IMAGE_SUFFIXES

    source = Path(source)
    if source.is_dir():
        inputs = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not inputs:
            raise ValueError(f"{source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        out_dir = Path(out) if out is not None else source.with_name(source.name + "_deblurred")
        check_parent(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--out {out_dir}: is a file; a folder of images needs an output folder")
        if out_dir.exists() and _same(out_dir, source):
            raise ValueError(f"--out {out_dir}: is the input folder; choose another folder "
                             "(deblur never writes among its inputs)")
        jobs = [(p, out_dir / name) for p, name in zip(inputs, output_names(inputs), strict=True)]
    elif source.exists():
        target = Path(out) if out is not None else source.with_name(source.stem + "_deblurred.png")
        if target.is_dir():
            raise ValueError(f"--out {target}: is a folder; give an output file name such as "
                             f"{target / (source.stem + '_deblurred.png')}")
        check_parent(target)
        if Image.registered_extensions().get(target.suffix.lower()) is None:
            raise ValueError(f"--out {target}: unknown image suffix {target.suffix!r}; use .png")
        if _same(target, source):
            raise ValueError(f"--out {target}: is the input image; choose another name "
                             "(deblur never writes over its input)")
        jobs = [(source, target)]
    else:
        raise ValueError(f"{source}: no such file or folder")
    existing = [dst for _, dst in jobs if dst.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more outputs)" if len(existing) > 1 else ""
        raise ValueError(f"{existing[0]}: already exists{more}; add --force to overwrite")
    return jobs


def _failure(src: Path, dst: Path, err: Exception) -> tuple[str, int]:
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
        return os_error_message(err, err.filename or dst)
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (message if str(src) in message else f"{src}: {message}"), 2


def deblur_all(method: Any, model: Any, options: Mapping[str, Any], jobs: list[tuple[Path, Path]]) -> int:
    """Deblur every job; one line per failure on stderr; the exit code (0, 1 or 2)."""
    from benchmark.data import read_image_with_note, write_image

    for folder in sorted({dst.parent for _, dst in jobs}):  # the temporary files of a killed earlier run
        sweep_folder(folder, {dst.name for _, dst in jobs if dst.parent == folder})
    codes, written = [], []
    for src, dst in jobs:
        try:
            image, note = read_image_with_note(src)
            if note:
                print(f"{src}: {note}")
            write_image(dst, method.restore(model, image, options))
        except (OSError, ValueError, RuntimeError) as err:
            message, code = _failure(src, dst, err)
            print(f"{PROG}: error: {message}", file=sys.stderr)
            codes.append(code)
            continue
        print(f"{src} -> {dst}")
        written.append(dst)
    gone = [dst for dst in written if not dst.is_file()]
    if gone:  # the output folder was deleted or moved while this ran: exit 0 would claim them all written
        print(f"{PROG}: error: {len(gone)} of the {len(written)} outputs written are gone ({gone[0]}"
              f"{' ...' if len(gone) > 1 else ''}); was {gone[0].parent} deleted or moved while deblur ran? "
              "run again", file=sys.stderr)
        return 1
    if not codes:
        return 0
    if len(jobs) > 1:
        print(f"{PROG}: error: {len(codes)} of {len(jobs)} images failed (each named above); "
              f"the other outputs are in {jobs[0][1].parent}", file=sys.stderr)
    return 1 if 1 in codes else 2
