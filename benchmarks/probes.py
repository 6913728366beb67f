"""Bad-input probes of issue 10: run each one and write the table of docs/reliability.md.

    python benchmarks/probes.py                          # run every probe, print the table
    python benchmarks/probes.py --out docs/reliability.md

Each probe feeds the command line (in this process, through ``benchmark.cli.main``) or a library
entry point one bad input (an image, weights, an archive, a configuration value, a path or a
simulated filesystem fault), captures the exit code and stderr, and checks what must hold besides
(no user file lost, nothing half-written, no hash locked, no temporary folder left). A probe passes
as "clear error" (non-zero exit, every stderr line one `error:` line, no traceback) or "handled
correctly" (exit 0, and the result checked); anything else is a FAIL, and the script exits 1.
A full disk and a read-only filesystem are simulated by patching the writer to raise the OSError the
kernel would raise (ENOSPC, EROFS): this machine runs as root, which ignores permissions. Archives and
downloads use miniature archives with the real layouts (``tests/miniature.py``) and a server on
127.0.0.1. Everything runs in a temporary folder; nothing is fetched from the network.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import io
import json
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
import zipfile
import zlib
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from miniature import Server, gopro_zip, png, zip_bytes  # noqa: E402

from benchmark import fetch as fetch_module  # noqa: E402
from benchmark import registry  # noqa: E402
from benchmark.cli import main  # noqa: E402
from benchmark.fetch import LOCK_FILE  # noqa: E402

OPTIONS = {"block": "msr2b", "k": 1, "width": 8, "w0": "identity"}
SMOKE = REPO / "config" / "smoke.yaml"


@dataclass
class Run:
    command: str
    code: int | None
    err: str
    traceback: str | None = None
    out: str = ""


@dataclass
class Probe:
    category: str
    title: str
    expect: str  # "error" or "ok"
    fn: Callable[[Path], Run]


PROBES: list[Probe] = []


def probe(category: str, title: str, expect: str = "error"):
    def wrap(fn):
        PROBES.append(Probe(category, title, expect, fn))
        return fn
    return wrap


def cli(*argv) -> Run:
    """``deblurbench ARGV`` in this process."""
    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    tb = None
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # noqa: BLE001 - a traceback is what the probe looks for
            code, tb = None, traceback.format_exc()
    return Run("deblurbench " + " ".join(argv), code, err.getvalue(), tb, out.getvalue())


def call(command: str, fn: Callable[[], object]) -> Run:
    """A library entry point: an exception with a one-line message is a clear error (exit 2)."""
    try:
        fn()
    except (ValueError, RuntimeError, OSError) as err:
        return Run(command, 2, f"error: {err}")
    except Exception:  # noqa: BLE001
        return Run(command, None, "", traceback.format_exc())
    return Run(command, 0, "")


# -- fixtures -------------------------------------------------------------------------------------
def image(path: Path, size=(12, 10), seed=0, mode="RGB") -> Path:
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return path


def weights(folder: Path, *, poison: float | None = None, options=OPTIONS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    state = registry.get("msr2b").build(options).state_dict()
    if poison is not None:
        next(v for v in state.values() if v.is_floating_point()).view(-1)[0] = poison
    torch.save(state, folder / "model.pt")
    (folder / "run.json").write_text(json.dumps({"method": "msr2b", "options": options}))
    return folder / "model.pt"


def png_header(path: Path, width: int, height: int) -> Path:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if re.search(r"\.(tmp|extracting)-\d+$|\.tmp$", p.name))


def tiny_gopro(t: Path) -> Path:
    from benchmark.synthetic import synthesise_gopro

    root = t / "gopro"
    synthesise_gopro(root, seed=7, train_pairs=2, test_pairs=2, size=48, n_subframes=3)
    return root


def train_args(t: Path, *extra) -> list:
    from benchmark.data import build_crop_cache, gopro_pairs

    data = tiny_gopro(t)
    build_crop_cache(gopro_pairs(data, "train"), t / "cache")
    return ["train", "--method", "msr2b", "--data", data, "--cache", t / "cache", "--out", t / "run", "--config",
            SMOKE, "--quiet", "--device", "cpu", "--validation-images", "0", *extra]


def failing_save(code: int):
    def save(self, fp, *args, **kwargs):
        fp.write(b"half")
        raise OSError(code, "simulated")
    return mock.patch.object(Image.Image, "save", save)


# -- images ---------------------------------------------------------------------------------------
@probe("image", "a text file named .png")
def _(t):
    (t / "fake.png").write_text("not a picture")
    return cli("deblur", t / "fake.png", "--method", "blurred")


@probe("image", "an empty .jpg")
def _(t):
    (t / "empty.jpg").write_bytes(b"")
    return cli("deblur", t / "empty.jpg", "--method", "blurred")


@probe("image", "a PNG cut in half")
def _(t):
    data = image(t / "full.png", (64, 64)).read_bytes()
    (t / "half.png").write_bytes(data[: len(data) // 2])
    return cli("deblur", t / "half.png", "--method", "blurred")


@probe("image", "decompression bomb: a PNG declaring 100000x100000 pixels")
def _(t):
    return cli("deblur", png_header(t / "bomb.png", 100000, 100000), "--method", "blurred")


@probe("image", "a PNG declaring 1x100000000 pixels (a thin bomb)")
def _(t):
    return cli("deblur", png_header(t / "thin.png", 1, 100_000_000), "--method", "blurred")


@probe("image", "a missing input")
def _(t):
    return cli("deblur", t / "nowhere.png", "--method", "blurred")


@probe("image", "a folder without images")
def _(t):
    (t / "docs").mkdir()
    (t / "docs" / "notes.txt").write_text("x")
    return cli("deblur", t / "docs", "--method", "blurred")


@probe("image", "grayscale PNG (converted to RGB, said so)", "ok")
def _(t):
    run = cli("deblur", image(t / "g.png", mode="L"), "--method", "blurred")
    assert np.array(Image.open(t / "g_blurred.png")).shape == (10, 12, 3) and "grayscale" in run.out
    return run


@probe("image", "RGBA PNG (alpha dropped, said so)", "ok")
def _(t):
    run = cli("deblur", image(t / "a.png", mode="RGBA"), "--method", "blurred")
    assert (t / "a_blurred.png").exists() and "alpha" in run.out
    return run


@probe("image", "16-bit grayscale PNG", "ok")
def _(t):
    Image.fromarray(np.arange(120, dtype=np.uint16).reshape(10, 12) * 500).save(t / "deep.png")
    run = cli("deblur", t / "deep.png", "--method", "blurred")
    assert np.array(Image.open(t / "deep_blurred.png")).shape == (10, 12, 3)
    return run


@probe("image", "palette PNG with transparency", "ok")
def _(t):
    Image.fromarray(np.zeros((6, 6), np.uint8), "P").save(t / "pal.png", transparency=0)
    run = cli("deblur", t / "pal.png", "--method", "blurred")
    assert (t / "pal_blurred.png").exists()
    return run


@probe("image", "CMYK JPEG", "ok")
def _(t):
    image(t / "c.jpg", mode="CMYK")
    run = cli("deblur", t / "c.jpg", "--method", "blurred")
    assert (t / "c_blurred.png").exists()
    return run


@probe("image", "a 1x1 image through the network", "ok")
def _(t):
    run = cli("deblur", image(t / "dot.png", (1, 1)), "--weights", weights(t / "w"), "--device", "cpu")
    assert np.array(Image.open(t / "dot_msr2b.png")).shape == (1, 1, 3)
    return run


@probe("image", "odd sizes (37x23) through the network", "ok")
def _(t):
    run = cli("deblur", image(t / "odd.png", (37, 23)), "--weights", weights(t / "w"), "--device", "cpu")
    assert np.array(Image.open(t / "odd_msr2b.png")).shape == (23, 37, 3)
    return run


@probe("image", "EXIF-rotated JPEG (orientation applied)", "ok")
def _(t):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(t / "rot.jpg", exif=exif)
    run = cli("deblur", t / "rot.jpg", "--method", "blurred")
    assert np.array(Image.open(t / "rot_blurred.png")).shape == (20, 10, 3)
    return run


@probe("image", "a folder with two bad files among good ones: every file tried, exit 2 at the end")
def _(t):
    folder = t / "photos"
    folder.mkdir()
    image(folder / "a.png")
    (folder / "b.png").write_bytes(b"junk")
    (folder / "c.jpg").write_bytes(b"")
    image(folder / "d.png")
    run = cli("deblur", folder, "--method", "blurred")
    assert sorted(p.name for p in (t / "photos_blurred").iterdir()) == ["a.png", "d.png"]
    return run


@probe("image", "photo.jpg and photo.png in one folder: two outputs, none lost", "ok")
def _(t):
    folder = t / "photos"
    folder.mkdir()
    image(folder / "photo.png", seed=1)
    image(folder / "photo.jpg", seed=2)
    run = cli("deblur", folder, "--method", "blurred")
    assert sorted(p.name for p in (t / "photos_blurred").iterdir()) == ["photo_jpg.png", "photo_png.png"]
    return run


@probe("image", "Photo.PNG and photo.png (names that clash on a case-insensitive disk)")
def _(t):
    folder = t / "photos"
    folder.mkdir()
    image(folder / "Photo.PNG")
    image(folder / "photo.png")
    run = cli("deblur", folder, "--method", "blurred")
    assert not (t / "photos_blurred").exists()
    return run


# -- paths ----------------------------------------------------------------------------------------
@probe("path", "--out is the input image")
def _(t):
    src = image(t / "photo.png")
    before = src.read_bytes()
    run = cli("deblur", src, "--method", "blurred", "--out", src)
    assert src.read_bytes() == before
    return run


@probe("path", "--out is the input image through another path (./x/../photo.png)")
def _(t):
    src = image(t / "photo.png")
    (t / "x").mkdir()
    before = src.read_bytes()
    run = cli("deblur", src, "--method", "blurred", "--out", t / "x" / ".." / "photo.png")
    assert src.read_bytes() == before
    return run


@probe("path", "--out is the input folder")
def _(t):
    (t / "album").mkdir()
    before = image(t / "album" / "a.png").read_bytes()
    run = cli("deblur", t / "album", "--method", "blurred", "--out", t / "album")
    assert (t / "album" / "a.png").read_bytes() == before and len(list((t / "album").iterdir())) == 1
    return run


@probe("path", "--out is an existing folder (image in)")
def _(t):
    (t / "outdir").mkdir()
    return cli("deblur", image(t / "photo.png"), "--method", "blurred", "--out", t / "outdir")


@probe("path", "--out below a file (deblur)")
def _(t):
    (t / "file.txt").write_text("x")
    return cli("deblur", image(t / "photo.png"), "--method", "blurred", "--out", t / "file.txt" / "o.png")


@probe("path", "--out is a file (folder in)")
def _(t):
    (t / "album").mkdir()
    image(t / "album" / "a.png")
    (t / "file.txt").write_text("x")
    run = cli("deblur", t / "album", "--method", "blurred", "--out", t / "file.txt")
    assert (t / "file.txt").read_text() == "x"
    return run


@probe("path", "--out with an unknown image suffix (.xyz)")
def _(t):
    return cli("deblur", image(t / "photo.png"), "--method", "blurred", "--out", t / "out.xyz")


@probe("path", "an existing output without --force")
def _(t):
    (t / "r.png").write_text("earlier result")
    run = cli("deblur", image(t / "photo.png"), "--method", "blurred", "--out", t / "r.png")
    assert (t / "r.png").read_text() == "earlier result"
    return run


@probe("path", "an existing output with --force", "ok")
def _(t):
    (t / "r.png").write_text("earlier result")
    run = cli("deblur", image(t / "photo.png"), "--method", "blurred", "--out", t / "r.png", "--force")
    assert np.array(Image.open(t / "r.png")).shape == (10, 12, 3)
    return run


@probe("path", "restore --out below a file")
def _(t):
    (t / "file.txt").write_text("x")
    return cli("restore", "--method", "blurred", "--kohler", t, "--out", t / "file.txt" / "r", "--quiet")


@probe("path", "score --out below a file")
def _(t):
    (t / "file.txt").write_text("x")
    return cli("score", "--kohler", t, "--restored", t, "--out", t / "file.txt" / "s", "--quiet")


@probe("path", "time --out is a folder")
def _(t):
    (t / "outdir").mkdir()
    return cli("time", "--method", "blurred", "--out", t / "outdir")


@probe("path", "train --out below a file")
def _(t):
    (t / "file.txt").write_text("x")
    args = train_args(t)
    args[args.index("--out") + 1] = t / "file.txt" / "run"
    return cli(*args)


@probe("path", "score a restored folder that does not exist")
def _(t):
    data = tiny_gopro(t)
    run = cli("score", "--gopro", data, "--restored", t / "missing", "--out", t / "s", "--quiet")
    assert leftovers(t) == []
    return run


@probe("path", "prepare a dataset root that does not exist")
def _(t):
    return cli("prepare", "--dataset", "gopro", "--root", t / "missing", "--structure-only")


# -- filesystem faults ----------------------------------------------------------------------------
@probe("filesystem", "full disk while writing the output (ENOSPC, simulated): exit 1, nothing half-written")
def _(t):
    src = image(t / "photo.png")
    with failing_save(errno.ENOSPC):
        run = cli("deblur", src, "--method", "blurred")
    assert [p.name for p in t.iterdir()] == ["photo.png"]
    return run


@probe("filesystem", "read-only filesystem (EROFS, simulated): exit 2, nothing half-written")
def _(t):
    src = image(t / "photo.png")
    with failing_save(errno.EROFS):
        run = cli("deblur", src, "--method", "blurred")
    assert [p.name for p in t.iterdir()] == ["photo.png"]
    return run


@probe("filesystem", "full disk in the middle of a folder: every file tried, exit 1")
def _(t):
    (t / "album").mkdir()
    for i in range(3):
        image(t / "album" / f"{i}.png")
    with failing_save(errno.ENOSPC):
        run = cli("deblur", t / "album", "--method", "blurred")
    assert list((t / "album_blurred").glob("*")) == [] if (t / "album_blurred").exists() else True
    return run


@probe("filesystem", "full disk during restore: no temporary file left, no manifest written")
def _(t):
    data = tiny_gopro(t)
    with failing_save(errno.ENOSPC):
        run = cli("restore", "--method", "blurred", "--gopro", data, "--out", t / "r", "--quiet")
    assert leftovers(t) == [] and not any(leftovers(d) for d in (t / "r").rglob("*") if d.is_dir())
    assert not list((t / "r").glob("shard-*.json"))
    return run


@probe("filesystem", "full disk during a checkpoint write (ENOSPC, simulated): names the disk, temp removed")
def _(t):
    from benchmark.train import save_atomic

    def save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch.object(torch, "save", save):
        run = call("save_atomic(state, run/checkpoint.pt)", lambda: save_atomic({}, t / "checkpoint.pt"))
    assert list(t.iterdir()) == []
    return run


@probe("filesystem", "train with a full disk at its first checkpoint: exit 1, no checkpoint.pt.tmp")
def _(t):
    args = train_args(t, "--stop-after", "1", "--method-config", json.dumps(OPTIONS))

    def save(obj, f, *a, **k):
        Path(f).write_bytes(b"half")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    with mock.patch.object(torch, "save", save):
        run = cli(*args)
    assert not (t / "run" / "checkpoint.pt.tmp").exists() and not (t / "run" / "checkpoint.pt").exists()
    return run


@probe("filesystem", "failed restore (a broken test image): no .r.tmp-PID folder left")
def _(t):
    data = tiny_gopro(t)
    sorted((data / "test").rglob("blur/*.png"))[-1].write_bytes(b"broken")
    run = cli("restore", "--method", "blurred", "--gopro", data, "--out", t / "r", "--quiet")
    assert leftovers(t) == []
    return run


@probe("filesystem", "stale .s.tmp-PID of a dead process is swept by score; a live one is kept", "ok")
def _(t):
    data = tiny_gopro(t)
    stale, live = t / f".s.tmp-{dead_pid()}", t / ".s.tmp-1"
    for folder in (stale, live):
        folder.mkdir()
    assert cli("restore", "--method", "blurred", "--gopro", data, "--out", t / "r", "--quiet").code == 0
    run = cli("score", "--gopro", data, "--restored", t / "r", "--out", t / "s", "--quiet")
    assert not stale.exists() and live.exists()
    return run


@probe("filesystem", "stale .gopro-unpacked.tmp-PID of a dead process is swept by fetch", "ok")
def _(t):
    root = t / "g"
    root.mkdir()
    (root / f".gopro-unpacked.tmp-{dead_pid()}").mkdir()
    (t / "GOPRO_Large.zip").write_bytes(gopro_zip())
    run = cli("fetch", "gopro", "--root", root, "--archive", t / "GOPRO_Large.zip", "--quiet")
    assert leftovers(root) == []
    return run


# -- weights --------------------------------------------------------------------------------------
@probe("weights", "weights holding NaN")
def _(t):
    run = cli("deblur", image(t / "photo.png"), "--weights", weights(t / "w", poison=float("nan")))
    assert not (t / "photo_msr2b.png").exists()
    return run


@probe("weights", "weights holding Inf")
def _(t):
    return cli("deblur", image(t / "photo.png"), "--weights", weights(t / "w", poison=float("inf")))


@probe("weights", "a network whose output is NaN (finite weights, NaN produced)")
def _(t):
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.scale / 0.0 * 0.0

    return call("network_restore(model whose output is NaN, image)",
                lambda: registry.network_restore(Broken(), np.zeros((4, 4, 3), np.uint8), {}))


def evil_pickle(t: Path, protocol: int) -> Run:
    marker = t / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "pwned"))

    (t / "w").mkdir()
    with open(t / "w" / "model.pt", "wb") as f:
        pickle.dump({"generator": Evil()}, f, protocol=protocol)
    run = cli("deblur", image(t / "photo.png"), "--weights", t / "w" / "model.pt", "--options", json.dumps(OPTIONS))
    assert not marker.exists()
    return run


@probe("weights", "malicious pickle, protocol 2 (unpickling would write a file)")
def _(t):
    return evil_pickle(t, 2)


@probe("weights", "malicious pickle, protocol 4 (unpickling would write a file)")
def _(t):
    return evil_pickle(t, 4)


@probe("weights", "malicious pickle inside a torch.save zip checkpoint")
def _(t):
    marker = t / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "pwned"))

    (t / "w").mkdir()
    torch.save({"generator": Evil()}, t / "w" / "model.pt")
    run = cli("deblur", image(t / "photo.png"), "--weights", t / "w" / "model.pt", "--options", json.dumps(OPTIONS))
    assert not marker.exists()
    return run


@probe("weights", "weights of another architecture (width 16 for width 8)")
def _(t):
    path = weights(t / "w", options={**OPTIONS, "width": 16})
    (t / "w" / "run.json").unlink()
    return cli("deblur", image(t / "photo.png"), "--weights", path, "--options", json.dumps(OPTIONS))


@probe("weights", "a weights file cut in half")
def _(t):
    path = weights(t / "w")
    path.write_bytes(path.read_bytes()[:2000])
    return cli("deblur", image(t / "photo.png"), "--weights", path)


@probe("weights", "a text file as weights")
def _(t):
    (t / "w").mkdir()
    (t / "w" / "model.pt").write_text("hello")
    return cli("deblur", image(t / "photo.png"), "--weights", t / "w" / "model.pt", "--options", json.dumps(OPTIONS))


@probe("weights", "--weights is a folder")
def _(t):
    (t / "w").mkdir()
    return cli("deblur", image(t / "photo.png"), "--weights", t / "w")


@probe("weights", "a trained method without --weights")
def _(t):
    return cli("deblur", image(t / "photo.png"), "--method", "msr2b")


@probe("weights", "run.json beside the weights is a JSON list")
def _(t):
    path = weights(t / "w")
    (t / "w" / "run.json").write_text("[1, 2, 3]")
    return cli("deblur", image(t / "photo.png"), "--weights", path)


@probe("weights", "run.json beside the weights is not JSON")
def _(t):
    path = weights(t / "w")
    (t / "w" / "run.json").write_text("{options: ")
    return cli("deblur", image(t / "photo.png"), "--weights", path)


@probe("weights", "run.json records an option the method does not have")
def _(t):
    path = weights(t / "w")
    (t / "w" / "run.json").write_text(json.dumps({"options": {**OPTIONS, "depth": 3}}))
    return cli("deblur", image(t / "photo.png"), "--weights", path)


# -- configuration --------------------------------------------------------------------------------
@probe("config", "--options with an unknown key")
def _(t):
    return cli("deblur", image(t / "photo.png"), "--method", "wiener", "--options", '{"kernal_size": 9}')


@probe("config", '--options {"width": "wide"}')
def _(t):
    return cli("deblur", image(t / "photo.png"), "--weights", weights(t / "w"), "--options", '{"width": "wide"}')


@probe("config", '--options {"balance": "high"} (a string for a number)')
def _(t):
    return cli("deblur", image(t / "photo.png"), "--method", "wiener", "--options", '{"balance": "high"}')


@probe("config", '--options {"k": true} (a boolean for a whole number)')
def _(t):
    return cli("deblur", image(t / "photo.png"), "--weights", weights(t / "w"), "--options", '{"k": true}')


@probe("config", "--options that is not JSON")
def _(t):
    return cli("deblur", image(t / "photo.png"), "--method", "wiener", "--options", "{kernel_size: 9")


@probe("config", "--options that is a JSON list")
def _(t):
    return cli("deblur", image(t / "photo.png"), "--method", "wiener", "--options", "[9]")


@probe("config", "an unknown method")
def _(t):
    return cli("deblur", image(t / "photo.png"), "--method", "msr3b")


@probe("config", "train --method-config with an unknown key")
def _(t):
    return cli(*train_args(t, "--method-config", '{"blocks": 3}'))


@probe("config", "train with a schedule of zero epochs")
def _(t):
    return cli(*train_args(t, "--train", '{"epochs_constant": 0, "epochs_decay": 0}'))


@probe("config", 'train with batch_size "one"')
def _(t):
    return cli(*train_args(t, "--train", '{"batch_size": "one"}'))


@probe("config", "train --stop-after 0")
def _(t):
    return cli(*train_args(t, "--stop-after", "0"))


@probe("config", "train a classical method")
def _(t):
    args = train_args(t)
    args[args.index("msr2b")] = "wiener"
    return cli(*args)


def schema_check(config: dict) -> Callable[[], None]:
    def check():
        from snakemake.exceptions import WorkflowError
        from snakemake.utils import validate

        try:
            validate(config, str(REPO / "config" / "schema.yaml"), set_default=False)
        except WorkflowError as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            what = next((line for line in lines if line.startswith("ValidationError")), lines[0])
            where = next((line for line in lines if line.startswith("On instance")), "")
            raise ValueError(f"{what} ({where.rstrip(':')})") from err
    return check


def smoke_with(path: tuple[str, ...], value) -> dict:
    config = yaml.safe_load(SMOKE.read_text())
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return config


@probe("config", "profile with epochs_constant 0 and epochs_decay 0 (schema)")
def _(t):
    config = smoke_with(("train", "epochs_constant"), 0)
    config["train"]["epochs_decay"] = 0
    return call("validate(profile, config/schema.yaml): train.epochs_constant = train.epochs_decay = 0",
                schema_check(config))


@probe("config", 'profile with timing.width "wide" (schema)')
def _(t):
    return call('validate(profile, config/schema.yaml): timing.width = "wide"',
                schema_check(smoke_with(("timing", "width"), "wide")))


@probe("config", "profile with an unknown key (schema)")
def _(t):
    return call("validate(profile, config/schema.yaml): train.learning_rate = 0.1",
                schema_check(smoke_with(("train", "learning_rate"), 0.1)))


@probe("config", "profile with data.gopro.unpack_limit 0.5 (schema)")
def _(t):
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["data"]["gopro"]["unpack_limit"] = 0.5
    return call("validate(paper profile, config/schema.yaml): data.gopro.unpack_limit = 0.5", schema_check(config))


@probe("config", 'time --config with timing.width "wide" (no schema on this path)')
def _(t):
    config = smoke_with(("timing", "width"), "wide")
    config["timing"]["classical_width"] = "wide"
    (t / "p.yaml").write_text(yaml.safe_dump(config))
    return cli("time", "--method", "blurred", "--config", t / "p.yaml", "--out", t / "t.json")


@probe("config", "time --runs 0")
def _(t):
    return cli("time", "--method", "blurred", "--runs", "0", "--warmup", "0", "--out", t / "t.json")


@probe("config", "a profile file that is a YAML list")
def _(t):
    (t / "p.yaml").write_text("- 1\n- 2\n")
    return cli("time", "--method", "blurred", "--config", t / "p.yaml", "--out", t / "t.json")


@probe("config", "a profile file that is not YAML")
def _(t):
    (t / "p.yaml").write_text("train: {lr: [\n")
    return cli("time", "--method", "blurred", "--config", t / "p.yaml", "--out", t / "t.json")


@probe("config", "a profile file that does not exist")
def _(t):
    return cli("time", "--method", "blurred", "--config", t / "none.yaml", "--out", t / "t.json")


@probe("config", "--device cuda on a machine without CUDA (or with it: runs)", "any")
def _(t):
    return cli("deblur", image(t / "photo.png"), "--weights", weights(t / "w"), "--device", "cuda")


# -- archives -------------------------------------------------------------------------------------
def gopro_archive(t: Path, members: dict[str, bytes]) -> Path:
    path = t / "GOPRO_Large.zip"
    path.write_bytes(zip_bytes(members))
    return path


@probe("archive", "member ../escape.png (leaves the folder)")
def _(t):
    run = cli("fetch", "gopro", "--root", t / "g", "--archive",
              gopro_archive(t, {"GOPRO_Large/train/a.png": b"x", "../escape.png": b"x"}), "--quiet")
    assert not (t / "escape.png").exists()
    return run


@probe("archive", "member GOPRO_Large/../../escape.png")
def _(t):
    run = cli("fetch", "gopro", "--root", t / "g", "--archive",
              gopro_archive(t, {"GOPRO_Large/../../escape.png": b"x"}), "--quiet")
    assert not (t.parent / "escape.png").exists()
    return run


@probe("archive", "member with an absolute path /etc/evil.png")
def _(t):
    return cli("fetch", "gopro", "--root", t / "g", "--archive", gopro_archive(t, {"/etc/evil.png": b"x"}), "--quiet")


@probe("archive", "a symbolic-link member")
def _(t):
    path = t / "GOPRO_Large.zip"
    path.write_bytes(zip_bytes({"GOPRO_Large/train/a.png": b"x"}, links=("GOPRO_Large/link",)))
    return cli("fetch", "gopro", "--root", t / "g", "--archive", path, "--quiet")


@probe("archive", "a Köhler archive with a top-level downloads/ folder")
def _(t):
    root = t / "kohler"
    (root / "downloads").mkdir(parents=True)
    (root / "downloads" / "earlier.zip").write_bytes(b"an earlier download")
    (t / "zips").mkdir()
    evil = zip_bytes({"BlurryImages/Blurry1_1.png": png(0), "downloads/evil.txt": b"x"})
    (t / "zips" / "BlurryImages.zip").write_bytes(evil)
    with mock.patch.object(fetch_module, "KOHLER_MD5", {"BlurryImages.zip": hashlib.md5(evil).hexdigest()}):
        run = cli("fetch", "kohler", "--root", root, "--archive", t / "zips", "--quiet")
    assert [p.name for p in (root / "downloads").iterdir()] == ["earlier.zip"]
    return run


@probe("archive", "zip bomb: 2 MB of zeros where 0.1 MB is expected (expectation scaled down for the probe)")
def _(t):
    path = t / "GOPRO_Large.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("GOPRO_Large/train/a.png", b"\0" * 2_000_000)
    with mock.patch.dict(fetch_module.EXPECTED_SIZE, {"GOPRO_Large.zip": (100_000, 1000)}):
        run = cli("fetch", "gopro", "--root", t / "g", "--archive", path, "--quiet")
    assert not any((t / "g").iterdir())
    return run


@probe("archive", "member-count bomb: 50 members where 10 are expected (scaled down for the probe)")
def _(t):
    path = gopro_archive(t, {f"GOPRO_Large/train/{i}.png": b"x" for i in range(50)})
    with mock.patch.dict(fetch_module.EXPECTED_SIZE, {"GOPRO_Large.zip": (10**9, 10)}):
        return cli("fetch", "gopro", "--root", t / "g", "--archive", path, "--unpack-limit", "2", "--quiet")


@probe("archive", "a GOPRO archive without test/")
def _(t):
    run = cli("fetch", "gopro", "--root", t / "g", "--archive",
              gopro_archive(t, {"GOPRO_Large/train/S/blur/1.png": png(0)}), "--quiet")
    assert leftovers(t / "g") == [] and not (t / "g" / LOCK_FILE).exists()
    return run


@probe("archive", "a GOPRO archive whose blurred image has no sharp partner")
def _(t):
    members = {f"GOPRO_Large/{s}/S/{f}/1.png": png(0) for s in ("train", "test") for f in ("blur", "blur_gamma")}
    run = cli("fetch", "gopro", "--root", t / "g", "--archive", gopro_archive(t, members), "--quiet")
    assert not (t / "g" / "train").exists()
    return run


@probe("archive", "not a zip file at all")
def _(t):
    (t / "GOPRO_Large.zip").write_text("<html>mirror error page</html>")
    return cli("fetch", "gopro", "--root", t / "g", "--archive", t / "GOPRO_Large.zip", "--quiet")


@probe("archive", "--unpack-limit 0.5")
def _(t):
    return cli("fetch", "gopro", "--root", t / "g", "--unpack-limit", "0.5")


@probe("archive", "--md5 that is not an MD5")
def _(t):
    return cli("fetch", "kohler", "--root", t / "k", "--md5", "BlurryImages.zip=xyz")


@probe("archive", "--md5 for an archive Köhler does not have")
def _(t):
    return cli("fetch", "kohler", "--root", t / "k", "--md5", f"Blurry.zip={'0' * 32}")


@probe("archive", "fetch gopro without --root")
def _(t):
    return cli("fetch", "gopro", "--archive", t / "x.zip")


# -- downloads (127.0.0.1) ------------------------------------------------------------------------
def served(fn):
    def run(t):
        server = Server()
        try:
            return fn(t, server)
        finally:
            server.close()
    run.__name__ = fn.__name__
    return run


@probe("download", "a truncated GOPRO download does not lock its hash; the genuine one is then accepted")
@served
def _(t, server):
    genuine = gopro_zip()
    server.files["/G.zip"] = genuine[: len(genuine) // 2]
    url = server.url + "/G.zip"
    run = cli("fetch", "gopro", "--root", t / "g", "--mirror", url, "--retries", "0", "--quiet")
    assert not (t / "g" / LOCK_FILE).exists() and not (t / "g" / "downloads" / "GOPRO_Large.zip").exists()
    server.files["/G.zip"] = genuine
    assert cli("fetch", "gopro", "--root", t / "g", "--mirror", url, "--retries", "0", "--quiet").code == 0
    assert json.loads((t / "g" / LOCK_FILE).read_text())["GOPRO_Large.zip"] == hashlib.sha256(genuine).hexdigest()
    return run


@probe("download", "a wrong archive at the GOPRO mirror does not lock its hash")
@served
def _(t, server):
    server.files["/G.zip"] = zip_bytes({"GOPRO_Large/readme.txt": b"moved"})
    run = cli("fetch", "gopro", "--root", t / "g", "--mirror", server.url + "/G.zip", "--retries", "0", "--quiet")
    assert not (t / "g" / LOCK_FILE).exists()
    return run


@probe("download", "the GOPRO archive changed since its hash was locked")
@served
def _(t, server):
    server.files["/G.zip"] = gopro_zip()
    url = server.url + "/G.zip"
    assert cli("fetch", "gopro", "--root", t / "g", "--mirror", url, "--retries", "0", "--quiet").code == 0
    changed = bytearray(server.files["/G.zip"])
    changed[100] ^= 0xFF
    server.files["/G.zip"] = bytes(changed)
    return cli("fetch", "gopro", "--root", t / "g", "--mirror", url, "--retries", "0", "--quiet")


@probe("download", "a Köhler archive failing its MD5")
@served
def _(t, server):
    good = zip_bytes({"BlurryImages/Blurry1_1.png": png(0)})
    server.files["/k/BlurryImages.zip"] = good[:-10] + b"corrupted!"
    with mock.patch.object(fetch_module, "KOHLER_MD5", {"BlurryImages.zip": hashlib.md5(good).hexdigest()}):
        run = cli("fetch", "kohler", "--root", t / "k", "--mirror", server.url + "/k", "--retries", "0", "--quiet")
    assert [p for p in (t / "k").rglob("*") if p.is_file()] == []
    return run


@probe("download", "every mirror answers 404 (the official URL replaced by 127.0.0.1 too)")
@served
def _(t, server):
    with mock.patch.object(fetch_module, "GOPRO_URL", server.url + "/official/GOPRO_Large.zip"):
        return cli("fetch", "gopro", "--root", t / "g", "--mirror", server.url + "/none.zip", "--retries", "0",
                   "--quiet")


@probe("download", "a download cut short is resumed with a Range request", "ok")
@served
def _(t, server):
    server.files["/G.zip"] = gopro_zip()
    server.truncate_once.add("/G.zip")
    run = cli("fetch", "gopro", "--root", t / "g", "--mirror", server.url + "/G.zip", "--retries", "1",
              "--backoff", "0.01", "--quiet")
    assert any(r for _, r in server.requests)
    return run


# -- running and reporting ------------------------------------------------------------------------
def outcome(p: Probe, run: Run, failure: str | None) -> tuple[str, bool]:
    if run.traceback:
        return f"FAIL: traceback ({run.traceback.strip().splitlines()[-1]})", False
    if failure:
        return f"FAIL: {failure}", False
    lines = [line for line in run.err.strip().splitlines() if line.strip()]
    if "Traceback" in run.err:
        return "FAIL: traceback on stderr", False
    if run.code == 0 and p.expect in ("ok", "any"):
        return "handled correctly", True
    if run.code in (1, 2) and p.expect in ("error", "any") and not run.command.startswith("deblurbench"):
        return "clear error (raised)", True
    if run.code in (1, 2) and p.expect in ("error", "any"):
        # argparse prints its usage line before its one error line
        errors = [line for line in lines if not line.startswith("usage:") and not line.startswith(" ")]
        if errors and all("error:" in line for line in errors):
            return f"clear error (exit {run.code})", True
        return "FAIL: stderr is not one error line per problem", False
    return f"FAIL: exit {run.code}, expected {'an error' if p.expect == 'error' else 'success'}", False


def clean(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp.parent), "tmp").replace(str(REPO), ".")
    text = re.sub(r"\b[0-9a-f]{32,64}\b", "<hash>", text)
    text = re.sub(r"\.(tmp|extracting)-\d+", r".\1-PID", text)
    text = re.sub(r"\d+ MB free", "N MB free", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    return text


def run_all(only: str | None = None) -> tuple[list[tuple[Probe, Run, str, bool]], bool]:
    results, ok = [], True
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        for index, p in enumerate(PROBES, 1):
            if only and only not in p.title:
                continue
            tmp = Path(scratch) / f"p{index:03d}"
            tmp.mkdir()
            failure = None
            try:
                run = p.fn(tmp)
            except AssertionError as err:
                run = Run("(see probe)", None, "")
                failure = f"check failed: {traceback.extract_tb(err.__traceback__)[-1].line}"
            except Exception:  # noqa: BLE001
                run = Run("(probe crashed)", None, "", traceback.format_exc())
            text, passed = outcome(p, run, failure)
            ok &= passed
            run.command, run.err, run.out = clean(run.command, tmp), clean(run.err, tmp), clean(run.out, tmp)
            results.append((p, run, text, passed))
            print(f"{index:3d} {'ok  ' if passed else 'FAIL'} {p.category:10s} {p.title}: {text}", file=sys.stderr)
            shutil.rmtree(tmp, ignore_errors=True)
    return results, ok


def message_of(run: Run) -> str:
    """The error lines (the last two of a folder run), or what a successful run printed."""
    lines = [line.strip() for line in run.err.strip().splitlines() if line.strip() and not line.startswith("usage:")]
    if not lines and run.code == 0:
        out = [line.strip() for line in run.out.strip().splitlines() if line.strip()]
        return ("stdout: " + " / ".join(out[:2])) if out else ""
    return " / ".join(lines[-2:])


def table(results) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = ["| # | kind | probe | command | outcome | message |", "|---|---|---|---|---|---|"]
    for i, (p, run, text, _) in enumerate(results, 1):
        rows.append(f"| {i} | {p.category} | {cell(p.title)} | `{cell(run.command)}` | {cell(text)} | "
                    f"{cell(message_of(run)) or '(none)'} |")
    return "\n".join(rows)


HEADER = """# Reliability: bad inputs and what they get

Every row below is a probe that **ran**: `python benchmarks/probes.py --out docs/reliability.md`
wrote this file (the script feeds each bad input to `deblurbench` in-process, or to the library
entry point named in the command column, and checks what must hold besides the message: no input
overwritten, nothing half-written, no hash locked, no temporary folder left). Paths are shown
relative to the probe's scratch folder (`tmp/pNNN`), hashes as `<hash>`, process ids as `PID`.

Outcomes: **clear error** - a non-zero exit (2: bad input, 1: the machine failed, e.g. a full disk)
with one `error:` line per problem that names the file or value and says what to do;
**handled correctly** - exit 0 with the right result (checked). Full disks and read-only
filesystems are simulated by making the writer raise the kernel's OSError (ENOSPC, EROFS), as
the probe machine runs as root. The zip-bomb probes scale the expected dataset size down
(the real caps are `data.<dataset>.unpack_limit` x the expected size: GOPRO_Large 9642 images
of 1280x720, Köhler 48 blurred images and 199 ground-truth frames per shot of 800x800).
Downloads use a server on 127.0.0.1. No row may read FAIL; the script exits 1 if one does.

Before the fixes of issue 10 (commit 8d576f1), this script reported 54 of these 98 probes as FAIL:
19 tracebacks, 14 silent exit 0 (Inf weights, NaN output, an empty schedule, unknown or mistyped
options, `--out` equal to an input, `--runs 0`, a thin bomb), 5 messages of several lines, and 16
failed checks (inputs or earlier outputs lost, a checksum lock poisoned, `downloads/` replaced,
temporary folders left).

Choices where issue 10 left room:

- `deblurbench deblur FOLDER` names each output `<stem>.png`; when two inputs share a stem
  (`photo.jpg`, `photo.png`) both keep their extension (`photo_jpg.png`, `photo_png.png`); names
  that still clash (`Photo.PNG`, `photo.png`, which clash on a case-insensitive disk) are refused
  before anything runs. `--out` may not be an input file or the input folder. Outputs that already
  exist are refused up front unless `--force` is given.
- Exit 2 for bad input (a file, value or path the user gave, including a read-only location);
  exit 1 when the machine failed (no space left, quota, I/O error).
- Archives may hold only the dataset's top-level folders (GOPRO: `GOPRO_Large/`, or `train/` and
  `test/`; Köhler: `BlurryImages/`, `Image1/`...`Image4/`): any other member is refused, not
  skipped, so a repacked archive is noticed.
"""


def main_(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the Markdown table here (docs/reliability.md)")
    parser.add_argument("--only", help="run only the probes whose title contains this text")
    args = parser.parse_args(argv)
    results, ok = run_all(args.only)
    counts = {}
    for _, _, text, _ in results:
        key = "FAIL" if text.startswith("FAIL") else text.split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    document = (HEADER + f"\n{len(results)} probes: {summary}.\n\n" + table(results) + "\n")
    if args.out:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(document)
        tmp.replace(args.out)
    else:
        print(document)
    print(f"{len(results)} probes: {summary}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main_())
