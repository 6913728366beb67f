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
import dataclasses
import errno
import hashlib
import io
import json
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
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
    state = registry.get("msr2b").build(registry.get("msr2b").options(options)).state_dict()
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
    return sorted(p.name for p in folder.iterdir() if re.search(r"\.(tmp|extracting|old)-\d+$|\.tmp$", p.name))


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


@probe("filesystem", "train with a full disk at its first checkpoint: exit 1, no temporary checkpoint left")
def _(t):
    args = train_args(t, "--stop-after", "1", "--method-config", json.dumps(OPTIONS))

    def save(obj, f, *a, **k):
        Path(f).write_bytes(b"half")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    with mock.patch.object(torch, "save", save):
        run = cli(*args)
    assert leftovers(t / "run") == [] and not (t / "run" / "checkpoint.pt").exists()
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
    """What the workflow runs on a profile before any job (rules/common.smk): benchmark.config.check_profile."""
    def check():
        from benchmark.config import check_profile

        check_profile(config)
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
    return call("check_profile(profile): train.epochs_constant = train.epochs_decay = 0", schema_check(config))


@probe("config", 'profile with timing.width "wide" (schema)')
def _(t):
    return call('check_profile(profile): timing.width = "wide"', schema_check(smoke_with(("timing", "width"), "wide")))


@probe("config", "profile with an unknown key (schema)")
def _(t):
    return call("check_profile(profile): train.learning_rate = 0.1",
                schema_check(smoke_with(("train", "learning_rate"), 0.1)))


@probe("config", "profile with data.gopro.unpack_limit 0.5 (schema)")
def _(t):
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["data"]["gopro"]["unpack_limit"] = 0.5
    return call("check_profile(paper profile): data.gopro.unpack_limit = 0.5", schema_check(config))


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
    with mock.patch.object(fetch_module, "KOHLER_MD5", {"BlurryImages.zip": hashlib.md5(good).hexdigest()}), \
            mock.patch.object(fetch_module, "KOHLER_BASE", server.url + "/official/"):
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


# -- issue 20: second pass ------------------------------------------------------------------------
# One section per class of the issue; each probe is a case of its class, not only the example.
def photo(t: Path) -> Path:
    return image(t / "photo.png", (48, 40))


def gopro_of(t: Path, pairs: int) -> tuple[Path, Path]:
    """A tiny GOPRO tree with ``pairs`` training pairs and its crop cache."""
    from benchmark.data import build_crop_cache, gopro_pairs
    from benchmark.synthetic import synthesise_gopro

    synthesise_gopro(t / "gopro", seed=7, train_pairs=pairs, test_pairs=2, size=48, n_subframes=3)
    build_crop_cache(gopro_pairs(t / "gopro", "train"), t / "cache")
    return t / "gopro", t / "cache"


def killed(t: Path, code: str, appears: Callable[[], bool]) -> None:
    """Run ``code`` in a child Python and SIGKILL it once ``appears()`` holds: a run killed outright, which
    cannot clean up after itself."""
    child = subprocess.Popen([sys.executable, "-c", code], cwd=t, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(1200):
            if appears() or child.poll() is not None:
                break
            time.sleep(0.05)
        assert appears(), "the child ended, or took 60 s, before it could be killed mid-run"
    finally:
        child.kill()
        child.wait()


# 1. method options, range-checked through one path (benchmark.config), whatever the method
@probe("options", 'wiener --options {"balance": NaN} (every pixel was 0, exit 0)')
def _(t):
    run = cli("deblur", photo(t), "--method", "wiener", "--options", '{"balance": NaN}')
    assert not list(t.glob("photo_*.png"))
    return run


@probe("options", 'richardson-lucy --options {"rl_iterations": 0} (one grey value, exit 0)')
def _(t):
    return cli("deblur", photo(t), "--method", "richardson-lucy", "--options", '{"rl_iterations": 0}')


@probe("options", 'pan --options {"lambda_grad": -1} (a loop that never ended)')
def _(t):
    return cli("deblur", photo(t), "--method", "pan", "--options", '{"lambda_grad": -1}')


@probe("options", 'pan --options {"kernel_size": [9]} (a traceback)')
def _(t):
    return cli("deblur", photo(t), "--method", "pan", "--options", '{"kernel_size": [9]}')


@probe("options", 'pan --options {"kernel_size": 8} (a kernel side must be odd)')
def _(t):
    return cli("deblur", photo(t), "--method", "pan", "--options", '{"kernel_size": 8}')


@probe("options", 'msr2b --options {"k": 2.0} and {"w0": "t2"} (not a whole number, not a choice)')
def _(t):
    path = weights(t / "w")
    run = cli("deblur", photo(t), "--weights", path, "--options", '{"k": 2.0}')
    assert cli("deblur", photo(t), "--weights", path, "--options", '{"w0": "t2"}').code == 2
    return run


@probe("options", 'nafnet --options {"enc_blk_nums": [1, -1], ...} (an element out of range)')
def _(t):
    options = '{"width": 8, "enc_blk_nums": [1, -1], "dec_blk_nums": [1, 1]}'
    return cli("time", "--method", "nafnet", "--options", options, "--width", "16", "--height", "16", "--runs", "10",
               "--warmup", "0", "--device", "cpu", "--out", t / "t.json")


# 2. training settings: --train, --method-config, a method's train overrides and the profile, merged, checked
@probe("settings", 'train --train {"checkpoint_every": 0} (a ZeroDivisionError traceback)')
def _(t):
    return cli(*train_args(t, "--train", '{"checkpoint_every": 0}'))


@probe("settings", 'train --method-config {"train": {"n_critic": -1}} (0 is the named content-only recipe)')
def _(t):
    return cli(*train_args(t, "--method-config", json.dumps({**OPTIONS, "train": {"n_critic": -1}})))


@probe("settings", "a profile whose methods.msr2b.train sets content_weight -100 (trained something else)")
def _(t):
    config = smoke_with(("methods", "msr2b"), {"train": {"content_weight": -100}})
    (t / "p.yaml").write_text(yaml.safe_dump(config))
    args = train_args(t)
    args[args.index("--config") + 1] = t / "p.yaml"
    return cli(*args)


@probe("settings", 'train --train {"lr_final": -1, "log_every": 0, "val_every": 0} (three problems, one line)')
def _(t):
    return cli(*train_args(t, "--train", '{"lr_final": -1, "log_every": 0, "val_every": 0}'))


@probe("settings", "a loss that becomes non-finite (content_weight 1e308): one line, not a FloatingPointError")
def _(t):
    return cli(*train_args(t, "--method-config", json.dumps(OPTIONS), "--train",
                           '{"content_weight": 1e308, "log_every": 1}'))


# 3. the schema is strict: an integer is not 2.0, a number is finite
@probe("schema", "profile with seeds [0, 2.0] (scheduled a run msr2b-s2.0 that raised TypeError)")
def _(t):
    return call("check_profile(profile): seeds = [0, 2.0]", schema_check(smoke_with(("seeds",), [0, 2.0])))


@probe("schema", "profile with train.lr_final NaN (passed minimum: 0)")
def _(t):
    return call("check_profile(profile): train.lr_final = nan",
                schema_check(smoke_with(("train", "lr_final"), float("nan"))))


@probe("schema", "paper profile with data.gopro.unpack_limit .inf")
def _(t):
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["data"]["gopro"]["unpack_limit"] = float("inf")
    return call("check_profile(paper profile): data.gopro.unpack_limit = inf", schema_check(config))


@probe("schema", "profile with report.bootstrap 1000.0 (a TypeError in the tables job)")
def _(t):
    return call("check_profile(profile): report.bootstrap = 1000.0",
                schema_check(smoke_with(("report", "bootstrap"), 1000.0)))


@probe("schema", "profile with methods.wiener.balance -1 (option limits checked before any job)")
def _(t):
    return call("check_profile(profile): methods.wiener.balance = -1",
                schema_check(smoke_with(("methods", "wiener", "balance"), -1)))


# 4. downloads distrust their server
@probe("download", "a resume answered with 206 and the whole file: starts over, the genuine archive locked", "ok")
@served
def _(t, server):
    genuine = gopro_zip()
    server.files["/G.zip"] = genuine
    server.truncate_once.add("/G.zip")
    server.lies["/G.zip"] = "whole-206"
    run = cli("fetch", "gopro", "--root", t / "g", "--mirror", server.url + "/G.zip", "--retries", "2",
              "--backoff", "0.01", "--quiet")
    assert json.loads((t / "g" / LOCK_FILE).read_text())["GOPRO_Large.zip"] == hashlib.sha256(genuine).hexdigest()
    return run


@probe("download", "a server without Content-Length that never stops: cut at --max-size, nothing kept")
@served
def _(t, server):
    server.files["/G.zip"] = b"x"
    server.lies["/G.zip"] = "no-length"
    with mock.patch.object(fetch_module, "GOPRO_URL", server.url + "/official/GOPRO_Large.zip"):
        run = cli("fetch", "gopro", "--root", t / "g", "--mirror", server.url + "/G.zip", "--max-size", "2M",
                  "--retries", "0", "--quiet")
    assert not list((t / "g" / "downloads").glob("*")) if (t / "g" / "downloads").exists() else True
    return run


@probe("download", "one byte every 0.5 s: given up at --max-time 2, all retries together")
@served
def _(t, server):
    server.files["/G.zip"] = gopro_zip()
    server.lies["/G.zip"] = "drip"
    with mock.patch.object(fetch_module, "GOPRO_URL", server.url + "/official/GOPRO_Large.zip"):
        return cli("fetch", "gopro", "--root", t / "g", "--mirror", server.url + "/G.zip", "--max-time", "2",
                   "--retries", "3", "--backoff", "0.01", "--quiet")


@probe("download", "a status line that is not HTTP: the next mirror is tried", "ok")
@served
def _(t, server):
    server.lies["/ssh"] = "not-http"
    server.files["/G.zip"] = gopro_zip()
    run = cli("fetch", "gopro", "--root", t / "g", "--mirror", server.url + "/ssh", "--mirror", server.url + "/G.zip",
              "--retries", "0", "--quiet")
    assert (t / "g" / LOCK_FILE).exists()
    return run


@probe("download", "fetch weights when every source fails: one line saying why each did")
@served
def _(t, server):
    from benchmark import releases

    server.lies["/ssh"] = "not-http"
    offline = dataclasses.replace(releases.RELEASES["nafnet-32"], urls=(server.url + "/drive/gone",))
    with mock.patch.dict(releases.RELEASES, {"nafnet-32": offline}):
        run = cli("fetch", "weights", "nafnet-32", "--root", t / "w", "--mirror", server.url + "/ssh", "--retries",
                  "0", "--quiet")
    assert "/ssh: not an HTTP answer" in run.err and "/drive/gone: HTTP 404" in run.err
    return run


# 5. weights and images checked before use
@probe("weights", "a safetensors file of booleans (restored an all-white image, exit 0)")
def _(t):
    from safetensors.torch import save_file

    state = torch.load(weights(t / "w"), weights_only=True)
    save_file({k: v > 0 for k, v in state.items()}, str(t / "bools.safetensors"))
    run = cli("deblur", photo(t), "--method", "msr2b", "--options", json.dumps(OPTIONS), "--weights",
              t / "bools.safetensors")
    assert not list(t.glob("photo_*.png"))
    return run


@probe("weights", "fetch weights --archive of an all-NaN file (was cached, its hash locked)")
def _(t):
    from benchmark import releases

    small = {"width": 8, "enc_blk_nums": [1], "middle_blk_num": 1, "dec_blk_nums": [1]}
    method = registry.get("nafnet")
    state = method.build(method.options(small)).state_dict()
    torch.save({"params": {k: torch.full_like(v, float("nan")) for k, v in state.items()}}, t / "nan.pth")
    rel = dataclasses.replace(releases.RELEASES["nafnet-32"], options=small)
    with mock.patch.dict(releases.RELEASES, {"nafnet-32": rel}):
        run = cli("fetch", "weights", "nafnet-32", "--root", t / "w", "--archive", t / "nan.pth", "--quiet")
    assert not (t / "w" / "checksums.lock.json").exists() and not (t / "w" / "nafnet-32.safetensors").exists()
    return run


@probe("weights", "a DeepDeblur release zip with a bad CRC (a BadZipFile traceback)")
def _(t):
    small = {"features": 4, "blocks": 1}
    method = registry.get("deepdeblur")
    buf = io.BytesIO()
    torch.save({"G": method.build(method.options(small)).state_dict()}, buf)
    with zipfile.ZipFile(t / "GOPRO_L1.zip", "w", zipfile.ZIP_STORED) as z:
        z.writestr("GOPRO_L1/models/model-1.pt", buf.getvalue())
    data = bytearray((t / "GOPRO_L1.zip").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (t / "GOPRO_L1.zip").write_bytes(bytes(data))
    return cli("deblur", photo(t), "--method", "deepdeblur", "--options", json.dumps(small), "--weights",
               t / "GOPRO_L1.zip")


@probe("image", "a float TIFF in [0, 1] (mode F; was black): read as the intensities it means", "ok")
def _(t):
    Image.fromarray(np.full((10, 12), 0.5, np.float32)).save(t / "f.tif")
    run = cli("deblur", t / "f.tif", "--method", "blurred")
    assert np.array(Image.open(t / "f_blurred.png")).mean() == 128 and "[0, 1]" in run.out
    return run


@probe("image", "a 32-bit integer TIFF beyond the 16-bit range (mode I; was white)")
def _(t):
    Image.fromarray(np.full((10, 12), 70000, np.int32)).save(t / "i.tif")
    return cli("deblur", t / "i.tif", "--method", "blurred")


@probe("image", "a 16-bit-per-channel RGB PNG: scaled to 8 bits, said so", "ok")
def _(t):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\0" + np.full((12, 3), 32896, ">u2").tobytes() for _ in range(10))
    (t / "deep.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12, 10, 16, 2, 0, 0, 0))
                                 + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    run = cli("deblur", t / "deep.png", "--method", "blurred")
    assert np.array(Image.open(t / "deep_blurred.png")).mean() == 128 and "16 bits per channel" in run.out
    return run


# 6. a run's identity
@probe("run identity", "changed pixels of a training pair other than the first, middle and last: not resumed",
       "ok")
def _(t):
    data, cache = gopro_of(t, 4)
    args = ["train", "--method", "msr2b", "--method-config", json.dumps(OPTIONS), "--data", data, "--cache", cache,
            "--out", t / "run", "--config", SMOKE, "--quiet", "--device", "cpu", "--validation-images", "0"]
    assert cli(*args, "--stop-after", "1").code == 0
    pairs = np.load(cache / "pairs.npy", mmap_mode="r+")
    pairs[1, 0, 0, 0, 0] ^= 1
    pairs.flush()
    del pairs
    run = cli(*args, "--resume", "--stop-after", "1")
    assert "restarting from scratch" in run.out and "data.pixels" in run.out
    return run


@probe("run identity", "a lengthened schedule without --extend onto a finished run: model.pt kept")
def _(t):
    args = train_args(t, "--method-config", json.dumps(OPTIONS), "--resume")
    assert cli(*args, "--train", '{"keep_checkpoint": true}').code == 0  # (the smoke profile drops it at the end)
    before = (t / "run" / "model.pt").read_bytes()
    (t / "run" / "model.pt").unlink()  # a finished run that kept its checkpoint, without its model.pt
    run = cli(*args, "--train", '{"keep_checkpoint": true, "epochs_constant": 2}')
    assert (t / "run" / "checkpoint.pt").exists() and before
    return run


@probe("run identity", "train --out onto a finished run with other settings, without --force: kept")
def _(t):
    args = train_args(t, "--method-config", json.dumps(OPTIONS))
    assert cli(*args).code == 0
    before = (t / "run" / "model.pt").read_bytes()
    run = cli(*args, "--train", '{"lr": 0.002}')  # the smoke profile's is 0.001
    assert (t / "run" / "model.pt").read_bytes() == before
    return run


# 7. no silent half-work, no leftovers
@probe("half-work", "the output folder deleted while deblur works through a folder (exited 0 with 3 of 6)")
def _(t):
    from benchmark import data as data_module

    (t / "album").mkdir()
    for i in range(6):
        image(t / "album" / f"{i}.png", seed=i)
    write, count = data_module.write_image, []

    def write_then_delete(path, array):
        write(path, array)
        count.append(path)
        if len(count) == 3:
            shutil.rmtree(Path(path).parent)  # another process, or a hurried user

    with mock.patch.object(data_module, "write_image", write_then_delete):
        return cli("deblur", t / "album", "--method", "blurred")


@probe("half-work", "restore's output folder removed by another process midway: no manifest claims the images")
def _(t):
    from benchmark import data as data_module

    data = tiny_gopro(t)
    write, count = data_module.write_image, []

    def write_then_remove(path, array):
        write(path, array)
        count.append(path)
        if len(count) == 1:
            shutil.rmtree(t / "r" / "gopro")

    with mock.patch.object(data_module, "write_image", write_then_remove):
        run = cli("restore", "--method", "blurred", "--gopro", data, "--out", t / "r", "--quiet")
    assert not list((t / "r").glob("shard-*.json")) and leftovers(t) == []
    return run


@probe("half-work", "a cache build killed outright (SIGKILL): the next build sweeps its temporary folder", "ok")
def _(t):
    data = tiny_gopro(t)
    code = ("import time\nimport benchmark.data as d\nread = d.read_image\n"
            "d.read_image = lambda *a, **k: (time.sleep(0.5), read(*a, **k))[1]\n"
            f"from benchmark.cli import main\nmain(['cache', '--data', {str(data)!r}, '--out', 'cache'])\n")
    killed(t, code, lambda: any(p.name.startswith(".cache") for p in t.iterdir()))
    run = cli("cache", "--data", data, "--out", t / "cache")
    assert [p.name for p in t.iterdir() if p.name.startswith(".cache")] == [] and (t / "cache").is_dir()
    return run


@probe("half-work", "a deblur killed outright while writing: the next run sweeps its temporary file", "ok")
def _(t):
    (t / "album").mkdir()
    for i in range(3):
        image(t / "album" / f"{i}.png", seed=i)
    code = ("import time\nfrom PIL import Image\n"
            "def save(self, fp, *a, **k):\n    fp.write(b'half an image')\n    fp.flush()\n    time.sleep(60)\n"
            "Image.Image.save = save\n"
            "from benchmark.cli import main\nmain(['deblur', 'album', '--method', 'blurred'])\n")
    out = t / "album_blurred"
    killed(t, code, lambda: out.is_dir() and any(p.name.startswith(".") for p in out.iterdir()))
    run = cli("deblur", t / "album", "--method", "blurred")
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "2.png"]
    return run


@probe("half-work", "a truncated checkpoint.pt: set aside in one line, training starts afresh", "ok")
def _(t):
    args = train_args(t, "--method-config", json.dumps(OPTIONS))
    assert cli(*args, "--stop-after", "1").code == 0
    checkpoint = t / "run" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:500])
    run = cli(*args, "--resume", "--stop-after", "1")
    assert "cannot be read" in run.out and (t / "run" / "checkpoint.pt.unreadable").stat().st_size == 500
    return run


# 8. messages that name the right thing
@probe("messages", "a full disk while the crop cache is written (no file name from the system): names the cache")
def _(t):
    data = tiny_gopro(t)

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch.object(Path, "write_text", full):
        run = cli("cache", "--data", data, "--out", t / "cache")
    assert f"{t / 'cache'}: No space left on device: the disk holding {t} is full" in run.err
    return run


@probe("messages", "EINVAL with no file name while time writes its JSON (was 'error: : Invalid argument')")
def _(t):
    def invalid(self, *a, **k):
        raise OSError(errno.EINVAL, "Invalid argument")

    with mock.patch.object(Path, "write_text", invalid):
        run = cli("time", "--method", "blurred", "--runs", "10", "--warmup", "0", "--width", "16", "--height", "16",
                  "--out", t / "t.json")
    assert "error: :" not in run.err and f"{t / 't.json'}: Invalid argument" in run.err
    return run


@probe("messages", "the run folder removed by another process at a checkpoint: says so, not 'free space'")
def _(t):
    args = train_args(t, "--method-config", json.dumps(OPTIONS), "--stop-after", "1")

    def save(obj, f, *a, **k):
        shutil.rmtree(Path(f).parent)
        raise RuntimeError(f"Parent directory {Path(f).parent} does not exist.")

    with mock.patch.object(torch, "save", save):
        run = cli(*args)
    assert "was removed while this command ran" in run.err and "free space" not in run.err
    return run


# 9. CSV cells that a spreadsheet would run as formulas
@probe("csv", "score --method '=HYPERLINK(...)' of a sequence folder named '@SUM(A1)': text cells", "ok")
def _(t):
    from benchmark.data import gopro_pairs, read_image, write_image

    data = tiny_gopro(t)
    (data / "test" / "SYN_coffee").rename(data / "test" / "@SUM(A1)")
    for p in gopro_pairs(data, "test"):
        write_image(t / "restored" / "gopro" / p.seq / p.blurred.name, read_image(p.blurred))
    run = cli("score", "--gopro", data, "--restored", t / "restored", "--method", '=HYPERLINK("http://x")', "--out",
              t / "s", "--quiet")
    rows = (t / "s" / "gopro.csv").read_text().splitlines()[1:]
    assert rows and all(r.startswith("\"'=HYPERLINK(\"\"http://x\"\")\"") for r in rows)
    assert any(",'@SUM(A1)/" in r for r in rows) and all(r.split(",")[-1][0].isdigit() for r in rows)
    return run


# 10. the workflow's own checks
@probe("workflow", "fig5.method: pan (scheduled trainings of a classical method)")
def _(t):
    return call("check_profile(profile): fig5.method = pan", schema_check(smoke_with(("fig5", "method"), "pan")))


@probe("workflow", "fig5.method of no registered method (a Snakemake-formatted KeyError)")
def _(t):
    return call("check_profile(profile): fig5.method = msr3b", schema_check(smoke_with(("fig5", "method"), "msr3b")))


@probe("workflow", "data.source real without data.gopro (a Snakemake-formatted KeyError: 'gopro')")
def _(t):
    return call("check_profile(profile): data.source = real", schema_check(smoke_with(("data", "source"), "real")))


@probe("workflow", "a typo in --config: a few lines naming the key and the valid ones (was 766 lines)")
def _(t):
    def parse():
        out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(t),
                              "-n", "--config", "trian={lr: 1}"], capture_output=True, text=True, timeout=100)
        lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
        assert out.returncode != 0 and len(lines) <= 8, f"{len(lines)} lines"
        raise ValueError(next(line for line in lines if "trian" in line))

    return call("snakemake -n --config 'trian={lr: 1}'", parse)


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


PROBE_LIMIT = 120  # seconds: a probe still running then is a hang (pan's half-quadratic loop never ended)


class Hang(BaseException):
    """Raised into a probe that ran past PROBE_LIMIT (a BaseException: cli() and call() let it through)."""


def _hang(signum, frame):
    raise Hang


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
            signal.signal(signal.SIGALRM, _hang)
            signal.alarm(PROBE_LIMIT)
            try:
                run = p.fn(tmp)
            except Hang:
                run = Run("(no answer)", None, "")
                failure = f"no answer within {PROBE_LIMIT} s (a hang)"
            except AssertionError as err:
                run = Run("(see probe)", None, "")
                failure = f"check failed: {traceback.extract_tb(err.__traceback__)[-1].line}"
            except Exception:  # noqa: BLE001
                run = Run("(probe crashed)", None, "", traceback.format_exc())
            finally:
                signal.alarm(0)
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

Issue 20 (a second, independent campaign) added the 44 probes from "options" on, a case of each of its
ten classes of defect and more: against main 46e65d2 (the same script, with the profile probes run through
that commit's workflow checks), 40 of them FAIL: 9 tracebacks (ZeroDivisionError, FloatingPointError,
TypeError, BadZipFile, KeyError), 18 silent exit 0 (NaN and out-of-range options and settings, 2.0 taken
for an integer, a classical method swept in Fig. 5, boolean weights, float and 32-bit images, a run without
some of its outputs), 1 hang (pan's loop with a negative weight, stopped by the probe's 120 s limit), and 12
failed checks (a spliced download's hash locked, a mirror's bad status line not moving on, a finished
model.pt replaced, temporaries of killed runs left, messages naming no file or the wrong cause, formulas in
CSV cells, 764 lines for a typo). Of the other four, main already refused two, and two use options main
lacks (`--max-size`, `--max-time`: its fetch could not be bounded at all). A probe still running after 120 s
counts as a hang.

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

Choices where issue 20 left room:

- Limits are declared per option in each method's `baselines/` file as JSON-Schema keywords and checked
  with the profile's schema by one strict validator (`benchmark/config.py`); an option that is a training
  setting takes the schema's `train` entry. Upper bounds only where a value has no meaning beyond them
  (dropout < 1, Pan's exponent <= 2); a large iteration count is the user's choice, not an error.
- Downloads: a resumed request re-reads its last 4 KiB to check that the server continues the same file;
  a download is capped at `--max-size` (default: `unpack_limit` x the expected dataset, 1 GiB for VGG19,
  4 GiB for weights) and `--max-time` per source (24 h), and an attempt receiving less than 120 KiB in
  120 s is retried. Google Drive's confirmation page is followed by the same routine.
- A finished run (`model.pt`) is replaced only by the same run (its run hash), by `--resume --extend`, or
  with `train --force`; a checkpoint of a shorter schedule is refused without `--extend` (the workflow,
  which removes `model.pt` before a rerun, stops with that line); an unreadable checkpoint is set aside as
  `checkpoint.pt.unreadable`, and training starts afresh.
- 32-bit integer images are read as 16-bit when their values fit (TIFF and PGM store 16-bit data so),
  floating-point ones when they lie in [0, 1]; anything else is refused rather than guessed.
- CSV cells: a text cell starting with `=`, `+`, `-`, `@`, tab or CR gets a leading apostrophe (numbers,
  negative ones too, stay numbers); rows end in CRLF so a CR inside a cell is quoted.
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
