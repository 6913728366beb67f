"""The loop behind ``deblurbench deblur``: deblur a user's image or folder of images, never losing a file.

- The output never replaces an input: a single image writes ``<stem>_<method>.png`` beside it (or
  ``--out FILE``); a folder writes into ``<folder>_<method>/`` (or ``--out FOLDER``), which may not be
  the input folder itself. The method in the name keeps two methods' results apart.
- Two outputs never share a name: in a folder, ``photo.png`` becomes ``photo.png``, but when two inputs
  share a stem (``photo.jpg`` and ``photo.png``) each keeps its extension in the name
  (``photo_jpg.png``, ``photo_png.png``); if names still clash the run is refused before anything runs.
- An existing output is replaced only with ``--force``; that is checked for every output first.
- In a folder every image is tried; each one that fails gets one line, and the run exits non-zero
  at the end (2 when an input was bad, 1 when writing failed for another reason, e.g. a full disk).
- A progress bar (on a terminal) and one line per image with its seconds; a network restores a large
  image in overlapping tiles (:func:`benchmark.inference.restore_tiled`), so memory stays bounded.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
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


def plan(source: Path, out: Path | None, force: bool, method: str) -> list[tuple[Path, Path]]:
    """(input, output) for every image, after every check that can be made before any work; default
    outputs are named after ``method``."""
    from benchmark.data import IMAGE_SUFFIXES

    source = Path(source)
    if source.is_dir():
        inputs = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not inputs:
            raise ValueError(f"{source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        out_dir = Path(out) if out is not None else source.with_name(f"{source.name}_{method}")
        check_parent(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--out {out_dir}: is a file; a folder of images needs an output folder")
        if out_dir.exists() and _same(out_dir, source):
            raise ValueError(f"--out {out_dir}: is the input folder; choose another folder "
                             "(deblur never writes among its inputs)")
        jobs = [(p, out_dir / name) for p, name in zip(inputs, output_names(inputs), strict=True)]
    elif source.exists():
        target = Path(out) if out is not None else source.with_name(f"{source.stem}_{method}.png")
        if target.is_dir():
            raise ValueError(f"--out {target}: is a folder; give an output file name such as "
                             f"{target / f'{source.stem}_{method}.png'}")
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


def _restorer(method: Any, model: Any, options: Mapping[str, Any], tile: int,
              overlap: int) -> Callable[[Path, Any, Callable[[int, int], None]], Any]:
    """``restore(src, image, progress)``: a network in tiles of ``tile`` pixels (none when 0) where its output
    is local; a classical method, Sun's and a network that looks at the whole image, in one piece."""
    from benchmark import registry
    from benchmark.inference import restore_tiled, whole_image_statistic

    whole = None
    if model is None or method.restore != registry.network_restore or tile <= 0:
        tile = 0
    else:
        whole = whole_image_statistic(model)
    said = []

    def restore(src: Path, image: Any, progress: Callable[[int, int], None]) -> Any:
        large = tile and max(image.shape[:2]) > tile + 2 * overlap
        if large and whole is None:
            return restore_tiled(method.restore, model, image, options, tile=tile, overlap=overlap,
                                 progress=progress)
        if large and not said:
            print(f"{src}: restored whole, not in tiles of {tile}: {method.name}'s output at a pixel depends on "
                  f"the whole image ({whole}); memory grows with the image")
            said.append(src)
        return method.restore(model, image, options)

    return restore


def deblur_all(method: Any, model: Any, options: Mapping[str, Any], jobs: list[tuple[Path, Path]], *,
               tile: int = 0, overlap: int = 0, quiet: bool = False) -> int:
    """Deblur every job; a progress bar on a terminal, a line per image with its seconds, one line per
    failure on stderr; the exit code (0, 1 or 2)."""
    from tqdm import tqdm

    from benchmark.data import read_image_with_note, write_image

    for folder in sorted({dst.parent for _, dst in jobs}):  # the temporary files of a killed earlier run
        sweep_folder(folder, {dst.name for _, dst in jobs if dst.parent == folder})
    restore = _restorer(method, model, options, tile, overlap)
    codes, seconds, written = [], [], []
    # disable=None: the bar is drawn only when stderr is a terminal (a log or a pipe gets the lines alone)
    bar = tqdm(total=len(jobs), desc=f"deblur ({method.name})", unit="img", disable=True if quiet else None,
               dynamic_ncols=True)

    def tile_done(done: int, total: int) -> None:
        if total > 1:
            bar.set_postfix_str(f"tile {done}/{total}")

    with bar:
        for src, dst in jobs:
            try:
                image, note = read_image_with_note(src)
                if note and not quiet:
                    bar.write(f"{src}: {note}")
                started = time.perf_counter()
                restored = restore(src, image, tile_done)
                seconds.append(time.perf_counter() - started)
                write_image(dst, restored)
            except (OSError, ValueError, RuntimeError) as err:
                message, code = _failure(src, dst, err)
                bar.write(f"{PROG}: error: {message}", file=sys.stderr)
                codes.append(code)
                bar.update(1)
                continue
            written.append(dst)
            if not quiet:
                bar.write(f"{src} -> {dst} ({seconds[-1]:.2f} s, {image.shape[1]}x{image.shape[0]})")
            bar.set_postfix_str("")
            bar.update(1)
    gone = [dst for dst in written if not dst.is_file()]
    if gone:  # the output folder was deleted or moved while this ran: exit 0 would claim them all written
        print(f"{PROG}: error: {len(gone)} of the {len(written)} outputs written are gone ({gone[0]}"
              f"{' ...' if len(gone) > 1 else ''}); was {gone[0].parent} deleted or moved while deblur ran? "
              "run again", file=sys.stderr)
        return 1
    if len(jobs) > 1 and seconds and not quiet:
        print(f"deblurred {len(seconds)} of {len(jobs)} images with {method.name} in {sum(seconds):.1f} s "
              f"({sum(seconds) / len(seconds):.2f} s per image)")
    if not codes:
        return 0
    if len(jobs) > 1:
        print(f"{PROG}: error: {len(codes)} of {len(jobs)} images failed (each named above); "
              f"the other outputs are in {jobs[0][1].parent}", file=sys.stderr)
    return 1 if 1 in codes else 2
