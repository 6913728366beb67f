"""Issue 10: bad input ends in one clear line, never in a traceback, a silent useless result or a lost file.

Checksum lock (defect 2), non-finite weights and outputs, empty schedules and unknown options (3), the
``deblur`` command's file safety (4), one-line errors for filesystem faults and odd values (6), archive
members and size caps (7) and temporary leftovers (8). The fetch tests use a server on 127.0.0.1.
Issue 20 (at the end): outputs that disappear midway, a staging folder removed by another process, the
temporaries of killed runs, OS errors that name no file, and CSV cells a spreadsheet would run as formulas;
its other classes are in test_config.py, test_fetch.py, test_weights.py, test_data.py, test_train_identity.py.
"""

import errno
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from miniature import Server, gopro_zip, png, zip_bytes
from PIL import Image

from benchmark import data as data_module
from benchmark import fetch as fetch_module
from benchmark import registry
from benchmark.cli import EXIT_ERROR, main
from benchmark.fetch import LOCK_FILE, FetchError, extract, fetch
from benchmark.train import save_atomic

REPO = Path(__file__).resolve().parents[1]
EXIT_FAILURE = 1  # a failure (full disk), as opposed to bad input (2)
OPTIONS = {"block": "msr2b", "k": 1, "width": 8, "w0": "identity"}


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    torch.save(registry.get("msr2b").build(registry.get("msr2b").options(OPTIONS)).state_dict(), run / "model.pt")
    (run / "run.json").write_text(json.dumps({"method": "msr2b", "options": OPTIONS}))
    return run / "model.pt"


def _image(path, size=(12, 10), seed=0):
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


def _one_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def _dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# -- 2. checksum lock ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["truncated", "wrong"])
def test_a_bad_gopro_archive_does_not_lock_its_hash(server, tmp_path, bad):
    genuine = gopro_zip()
    server.files["/GOPRO_Large.zip"] = (genuine[: len(genuine) // 2] if bad == "truncated"
                                        else zip_bytes({"GOPRO_Large/readme.txt": b"not the dataset"}))
    root = tmp_path / "GOPRO_Large"
    mirror = [server.url + "/GOPRO_Large.zip"]
    with pytest.raises(FetchError):
        fetch("gopro", root, mirrors=mirror, retries=0, backoff=0.01, quiet=True)
    lock = root / LOCK_FILE
    assert not lock.exists() or "GOPRO_Large.zip" not in json.loads(lock.read_text())
    assert not (root / "downloads" / "GOPRO_Large.zip").exists()  # a bad download is not kept
    server.files["/GOPRO_Large.zip"] = genuine
    record = fetch("gopro", root, mirrors=mirror, retries=0, backoff=0.01, quiet=True)
    assert record["checksums"]["GOPRO_Large.zip"] == hashlib.sha256(genuine).hexdigest()
    assert json.loads(lock.read_text())["GOPRO_Large.zip"] == hashlib.sha256(genuine).hexdigest()
    assert (root / "test" / "GOPR0384_11_00" / "sharp" / "000047.png").exists()


def test_a_download_that_differs_from_the_lock_is_kept_and_the_way_out_named(server, tmp_path):
    root = tmp_path / "GOPRO_Large"
    mirror = [server.url + "/GOPRO_Large.zip"]
    server.files["/GOPRO_Large.zip"] = gopro_zip()
    fetch("gopro", root, mirrors=mirror, retries=0, backoff=0.01, quiet=True)
    with zipfile.ZipFile(io.BytesIO(gopro_zip())) as z:  # the same layout, other pixels
        other = zip_bytes({name: png(100 + i) for i, name in enumerate(z.namelist())})
    server.files["/GOPRO_Large.zip"] = other
    with pytest.raises(FetchError, match="does not match") as info:
        fetch("gopro", root, mirrors=mirror, retries=0, backoff=0.01, quiet=True)
    kept = root / "downloads" / "GOPRO_Large.zip.unverified"
    assert kept.read_bytes() == other and LOCK_FILE in str(info.value) and str(kept) in str(info.value)
    # The user trusts it: without the lock entry, the kept copy is accepted and locked.
    (root / LOCK_FILE).write_text("{}")
    fetch("gopro", root, archive=kept, quiet=True)
    assert json.loads((root / LOCK_FILE).read_text())["GOPRO_Large.zip"] == hashlib.sha256(other).hexdigest()


# -- 3. useless results -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, capsys, value):
    state = registry.get("msr2b").build(registry.get("msr2b").options(OPTIONS)).state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first].view(-1)[0] = value
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    (tmp_path / "run.json").write_text(json.dumps({"options": OPTIONS}))
    src = _image(tmp_path / "in.png")
    assert main(["deblur", str(src), "--weights", str(bad), "--device", "cpu"]) == EXIT_ERROR
    _one_line(capsys, "bad.pt", "NaN or Inf")
    assert not (tmp_path / "in_msr2b.png").exists()


def test_non_finite_network_output_is_refused():
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.scale * float("nan")

    with pytest.raises(ValueError, match="NaN or Inf"):
        registry.network_restore(Broken(), np.zeros((4, 4, 3), np.uint8), {})


def _schema_errors(config):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(REPO / "config" / "schema.yaml"), set_default=False)
    except WorkflowError as err:
        return str(err)
    return None


def test_schema_requires_at_least_one_epoch():
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    assert _schema_errors(config) is None
    config["train"]["epochs_constant"] = 0
    config["train"]["epochs_decay"] = 0
    assert "epochs_decay" in _schema_errors(config)
    config["train"]["epochs_decay"] = 1  # decay only is a schedule
    assert _schema_errors(config) is None


def test_train_refuses_an_empty_schedule(tiny_gopro, tiny_cache, tmp_path, capsys):
    args = ["train", "--method", "msr2b", "--data", str(tiny_gopro), "--cache", str(tiny_cache),
            "--out", str(tmp_path / "run"), "--config", str(REPO / "config" / "smoke.yaml"), "--quiet",
            "--method-config", json.dumps(OPTIONS)]
    assert main([*args, "--train", '{"epochs_constant": 0, "epochs_decay": 0}']) == EXIT_ERROR
    _one_line(capsys, "epochs_constant", "epochs_decay")
    assert main([*args, "--stop-after", "0"]) == EXIT_ERROR
    _one_line(capsys, "--stop-after")
    assert not (tmp_path / "run" / "model.pt").exists()


def test_unknown_options_name_the_valid_keys(tiny_gopro, tiny_cache, tmp_path, capsys):
    src = _image(tmp_path / "in.png")
    assert main(["deblur", str(src), "--method", "wiener", "--options", '{"kernal_size": 9}']) == EXIT_ERROR
    _one_line(capsys, "kernal_size", "kernel_size")
    assert main(["train", "--method", "msr2b", "--data", str(tiny_gopro), "--cache", str(tiny_cache),
                 "--out", str(tmp_path / "run"), "--config", str(REPO / "config" / "smoke.yaml"),
                 "--method-config", '{"blocks": 3}']) == EXIT_ERROR
    _one_line(capsys, "blocks", "width")
    with pytest.raises(ValueError, match="kernal_size"):
        registry.get("pan").options({"kernal_size": 9})


# -- 4. deblur never loses a user's file --------------------------------------------------------------
def test_deblur_refuses_to_write_over_its_input(weights, tmp_path, capsys):
    src = _image(tmp_path / "photo.png")
    before = src.read_bytes()
    assert main(["deblur", str(src), "--weights", str(weights), "--out", str(src), "--device", "cpu"]) == EXIT_ERROR
    _one_line(capsys, "photo.png")
    assert src.read_bytes() == before
    folder = tmp_path / "album"
    folder.mkdir()
    inside = _image(folder / "a.png")
    before = inside.read_bytes()
    assert main(["deblur", str(folder), "--method", "blurred", "--out", str(folder)]) == EXIT_ERROR
    _one_line(capsys, "album", "input folder")
    assert inside.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["a.png"]


def test_deblur_outputs_never_collide(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    _image(folder / "photo.png", seed=1)
    Image.fromarray(np.full((10, 12, 3), 200, np.uint8)).save(folder / "photo.jpg")
    _image(folder / "other.png", seed=2)
    assert main(["deblur", str(folder), "--method", "blurred"]) == 0
    out = tmp_path / "photos_blurred"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["other.png", "photo_jpg.png", "photo_png.png"]
    assert np.array_equal(np.array(Image.open(out / "photo_png.png")), np.array(Image.open(folder / "photo.png")))
    assert np.array(Image.open(out / "photo_jpg.png")).mean() > 150


def test_deblur_folder_processes_every_file_and_fails_at_the_end(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    _image(folder / "a.png")
    (folder / "b.png").write_bytes(b"not a png")
    (folder / "c.jpg").write_bytes(b"")
    _image(folder / "d.png")
    assert main(["deblur", str(folder), "--method", "blurred"]) == EXIT_ERROR
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err
    assert any("b.png" in line for line in err) and any("c.jpg" in line for line in err)
    assert "2 of 4" in err[-1]
    assert sorted(p.name for p in (tmp_path / "photos_blurred").iterdir()) == ["a.png", "d.png"]


def test_deblur_overwrites_an_existing_output_only_with_force(tmp_path, capsys):
    src = _image(tmp_path / "photo.png")
    out = tmp_path / "result.png"
    out.write_bytes(b"the user's earlier result")
    assert main(["deblur", str(src), "--method", "blurred", "--out", str(out)]) == EXIT_ERROR
    _one_line(capsys, "result.png", "--force")
    assert out.read_bytes() == b"the user's earlier result"
    assert main(["deblur", str(src), "--method", "blurred", "--out", str(out), "--force"]) == 0
    assert np.array_equal(np.array(Image.open(out)), np.array(Image.open(src)))


# -- 6. one line for every error ----------------------------------------------------------------------
@pytest.mark.parametrize(("code", "exit_code"), [(errno.ENOSPC, EXIT_FAILURE), (errno.EROFS, EXIT_ERROR)])
def test_full_or_read_only_filesystem_is_one_line(tmp_path, capsys, monkeypatch, code, exit_code):
    src = _image(tmp_path / "photo.png")

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"half")
        raise OSError(code, "simulated")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    assert main(["deblur", str(src), "--method", "blurred"]) == exit_code
    _one_line(capsys, "photo_blurred.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_out_that_is_a_folder_or_below_a_file_is_one_line(tmp_path, capsys):
    src = _image(tmp_path / "photo.png")
    (tmp_path / "folder").mkdir()
    assert main(["deblur", str(src), "--method", "blurred", "--out", str(tmp_path / "folder")]) == EXIT_ERROR
    _one_line(capsys, "folder")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["deblur", str(src), "--method", "blurred", "--out", str(blocker / "x.png")]) == EXIT_ERROR
    _one_line(capsys, "file.txt")
    assert main(["score", "--kohler", str(tmp_path), "--restored", str(tmp_path),
                 "--out", str(blocker / "scores")]) == EXIT_ERROR
    _one_line(capsys, "file.txt")
    assert main(["time", "--method", "blurred", "--out", str(tmp_path / "folder")]) == EXIT_ERROR
    _one_line(capsys, "folder")


def _png_header_only(path, width, height):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("size", [(100000, 100000), (1, 100_000_000)])  # the second is where PIL only warns
def test_decompression_bomb_is_one_line(tmp_path, capsys, size):
    bomb = _png_header_only(tmp_path / "bomb.png", *size)
    assert main(["deblur", str(bomb), "--method", "blurred"]) == EXIT_ERROR
    _one_line(capsys, "bomb.png", f"{size[0]}x{size[1]}")
    assert not (tmp_path / "bomb_blurred.png").exists()
    with pytest.raises(ValueError, match="bomb.png"):
        data_module.read_image(bomb)


def test_run_json_that_is_a_list_is_one_line(weights, tmp_path, capsys):
    shutil.copy(weights, tmp_path / "model.pt")
    (tmp_path / "run.json").write_text("[1, 2, 3]")
    src = _image(tmp_path / "photo.png")
    assert main(["deblur", str(src), "--weights", str(tmp_path / "model.pt"), "--device", "cpu"]) == EXIT_ERROR
    _one_line(capsys, "run.json")


def test_width_wide_is_one_line(weights, tmp_path, capsys):
    src = _image(tmp_path / "photo.png")
    assert main(["deblur", str(src), "--weights", str(weights), "--options", '{"width": "wide"}']) == EXIT_ERROR
    _one_line(capsys, "width", "wide")
    profile = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    profile["timing"]["width"] = profile["timing"]["classical_width"] = "wide"
    config = tmp_path / "profile.yaml"
    config.write_text(yaml.safe_dump(profile))
    assert main(["time", "--method", "blurred", "--config", str(config), "--out", str(tmp_path / "t.json")]) \
        == EXIT_ERROR
    _one_line(capsys, "width", "wide")


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")])
def test_full_disk_during_a_checkpoint_names_the_disk_and_removes_the_temporary_file(tmp_path, monkeypatch, error):
    def failing_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match=str(tmp_path)) as info:
        save_atomic({"x": torch.zeros(1)}, tmp_path / "checkpoint.pt")
    assert "free" in str(info.value)
    assert list(tmp_path.iterdir()) == []


# -- 7. archives --------------------------------------------------------------------------------------
def test_kohler_archive_cannot_replace_the_downloads_folder(tmp_path, monkeypatch):
    root = tmp_path / "kohler"
    (root / "downloads").mkdir(parents=True)
    (root / "downloads" / "earlier.zip").write_bytes(b"an earlier download")
    folder = tmp_path / "zips"
    folder.mkdir()
    evil = zip_bytes({"BlurryImages/Blurry1_1.png": png(0), "downloads/evil.txt": b"x"})
    (folder / "BlurryImages.zip").write_bytes(evil)
    monkeypatch.setattr(fetch_module, "KOHLER_MD5", {"BlurryImages.zip": hashlib.md5(evil).hexdigest()})
    with pytest.raises(FetchError, match="downloads/evil.txt"):
        fetch("kohler", root, archive=folder, quiet=True)
    assert sorted(p.name for p in (root / "downloads").iterdir()) == ["earlier.zip"]
    assert not (root / "BlurryImages").exists()


def test_archive_size_and_member_count_are_capped(tmp_path, monkeypatch, capsys):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("GOPRO_Large/train/a.png", b"\0" * 2_000_000)
    with pytest.raises(FetchError, match="uncompressed"):
        extract(archive, tmp_path / "out", max_bytes=1_000_000)
    many = tmp_path / "many.zip"
    many.write_bytes(zip_bytes({f"GOPRO_Large/train/{i}.png": b"x" for i in range(20)}))
    with pytest.raises(FetchError, match="members"):
        extract(many, tmp_path / "out", max_members=10)
    assert not (tmp_path / "out").exists()
    # Through the command: the cap is a multiple of the expected dataset's size.
    monkeypatch.setitem(fetch_module.EXPECTED_SIZE, "GOPRO_Large.zip", (100_000, 1000))
    assert main(["fetch", "gopro", "--root", str(tmp_path / "g"), "--archive", str(archive),
                 "--unpack-limit", "2", "--quiet"]) == EXIT_ERROR
    _one_line(capsys, "bomb.zip", "unpack-limit")
    assert main(["fetch", "gopro", "--root", str(tmp_path / "g"), "--archive", str(archive),
                 "--unpack-limit", "100", "--quiet"]) == EXIT_ERROR  # allowed size, but not the layout
    _one_line(capsys, "bomb.zip", "test/")


def test_profiles_set_the_unpack_limit():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    for dataset in ("gopro", "kohler"):
        assert "unpack_limit" in schema["properties"]["data"]["properties"][dataset]["properties"]
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    assert _schema_errors(paper) is None
    assert paper["data"]["gopro"]["unpack_limit"] >= 1 and paper["data"]["kohler"]["unpack_limit"] >= 1
    paper["data"]["gopro"]["unpack_limit"] = 0.5
    assert _schema_errors(paper) is not None


# -- 8. leftovers -------------------------------------------------------------------------------------
def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or p.name.startswith(".gopro-unpacked")
                  or ".extracting" in p.name)


def test_failed_restore_and_score_leave_no_temporary_folder(tiny_gopro, tmp_path):
    data = tmp_path / "gopro"
    shutil.copytree(tiny_gopro, data)
    victim = sorted((data / "test").rglob("blur/*.png"))[-1]
    victim.write_bytes(b"broken")
    assert main(["restore", "--method", "blurred", "--gopro", str(data), "--out", str(tmp_path / "r"),
                 "--quiet"]) == EXIT_ERROR
    assert main(["score", "--gopro", str(data), "--restored", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "s"), "--quiet"]) == EXIT_ERROR
    assert _leftovers(tmp_path) == []


def test_stale_temporary_folders_of_dead_processes_are_swept(tiny_gopro, tmp_path):
    dead, alive = _dead_pid(), 1
    for name in (f".s.tmp-{dead}", f".s.tmp-{alive}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "half.csv").write_bytes(b"x")
    assert main(["restore", "--method", "blurred", "--gopro", str(tiny_gopro), "--out", str(tmp_path / "r"),
                 "--quiet"]) == 0
    assert main(["score", "--gopro", str(tiny_gopro), "--restored", str(tmp_path / "r"), "--out",
                 str(tmp_path / "s"), "--quiet"]) == 0
    assert _leftovers(tmp_path) == [f".s.tmp-{alive}"]  # another live process may still be writing it


def test_failed_fetch_leaves_no_staging_and_sweeps_stale_ones(tmp_path):
    root = tmp_path / "g"
    root.mkdir()
    (root / f".gopro-unpacked.tmp-{_dead_pid()}").mkdir()
    archive = tmp_path / "GOPRO_Large.zip"
    archive.write_bytes(zip_bytes({"GOPRO_Large/train/x/blur/1.png": png(0)}))  # no test/ split
    with pytest.raises(FetchError, match="test/"):
        fetch("gopro", root, archive=archive, quiet=True)
    assert _leftovers(root) == []
    archive.write_bytes(gopro_zip())
    fetch("gopro", root, archive=archive, quiet=True)
    assert _leftovers(root) == []


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_every_profiles_method_options_are_valid(profile):
    config = yaml.safe_load((REPO / "config" / f"{profile}.yaml").read_text())
    for name, section in config["methods"].items():
        registry.get(name).options({k: v for k, v in section.items() if k != "train"})


def _probe_rows(text: str) -> list[tuple[str, ...]]:
    """(number, kind, probe, outcome) of each row of a reliability table; messages and commands aside."""
    rows = [line.split(" | ") for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    return [(r[0], r[1], r[2], r[4]) for r in rows]


def test_every_probe_passes_and_docs_reliability_is_current(tmp_path):
    """The 142 probes run here (about 50 s of CPU, a third of it the training and workflow probes of issue 20;
    more wall time on a loaded machine): none may FAIL, and docs/reliability.md must show what they give
    now (a change of outcome means the document is stale: rerun benchmarks/probes.py --out ...)."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "probes.py"), "--out", str(tmp_path / "r.md")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    fresh = _probe_rows((tmp_path / "r.md").read_text())
    failed = [row for row in fresh if row[3].startswith("FAIL")]
    assert out.returncode == 0 and not failed, failed or out.stderr[-3000:]
    assert len(fresh) >= 60 and _probe_rows((REPO / "docs" / "reliability.md").read_text()) == fresh


# -- issue 20: half-work, leftovers, messages, CSV cells -----------------------------------------------------
def test_deblur_is_not_a_success_when_written_outputs_disappear(tmp_path, capsys, monkeypatch):
    """Defect: the output folder deleted during a folder's deblur exited 0 with some outputs missing."""
    folder = tmp_path / "album"
    folder.mkdir()
    for i in range(5):
        _image(folder / f"{i}.png", seed=i)
    write, written = data_module.write_image, []

    def write_then_delete(path, array):
        write(path, array)
        written.append(path)
        if len(written) == 2:
            shutil.rmtree(Path(path).parent)

    monkeypatch.setattr(data_module, "write_image", write_then_delete)
    assert main(["deblur", str(folder), "--method", "blurred"]) == EXIT_FAILURE
    err = _one_line(capsys, "2 of the 5 outputs written are gone", "deleted or moved while deblur ran")
    assert str(tmp_path / "album_blurred") in err


def test_an_output_folder_removed_midway_is_noticed_and_no_manifest_claims_it(tiny_gopro, tmp_path, monkeypatch,
                                                                             capsys):
    """Restore writes each image in place (so a killed shard resumes); a folder deleted under it must not end in a
    manifest that lists images which are gone."""
    write, written = data_module.write_image, []

    def write_then_remove(path, array):
        write(path, array)
        written.append(path)
        if len(written) == 1:
            shutil.rmtree(tmp_path / "r")

    monkeypatch.setattr(data_module, "write_image", write_then_remove)
    assert main(["restore", "--method", "blurred", "--gopro", str(tiny_gopro), "--out", str(tmp_path / "r"),
                 "--quiet"]) == EXIT_FAILURE
    _one_line(capsys, str(written[0]), "restored images are gone", "run again")
    assert not list(tmp_path.rglob("shard-*.json")) and not list(tmp_path.rglob("*.tmp-*"))


def test_temporaries_of_killed_deblur_and_cache_runs_are_swept(tiny_gopro, tmp_path):
    """Defect: deblur's and the crop cache's temporary names carried no process id, so nothing swept them."""
    folder, out = tmp_path / "album", tmp_path / "album_blurred"
    folder.mkdir()
    out.mkdir()
    _image(folder / "a.png")
    dead, live = _dead_pid(), 1
    for name in (f".a.png.tmp-{dead}", f".a.png.tmp-{live}", f".other.png.tmp-{dead}"):
        (out / name).write_bytes(b"half")
    assert main(["deblur", str(folder), "--method", "blurred"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f".a.png.tmp-{live}", f".other.png.tmp-{dead}", "a.png"]
    (tmp_path / f".cache.tmp-{dead}").mkdir()
    (tmp_path / f".cache.old-{dead}").mkdir()
    assert main(["cache", "--data", str(tiny_gopro), "--out", str(tmp_path / "cache")]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cache")]


def test_data_writes_are_named_with_the_process_id(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    data_module.write_image(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8))
    assert seen == [f".x.png.tmp-{os.getpid()}"]


@pytest.mark.parametrize(("code", "exit_code"), [(errno.ENOSPC, 1), (errno.EINVAL, 1), (errno.EROFS, 2)])
def test_an_os_error_without_a_file_name_names_no_wrong_disk(code, exit_code):
    """Defects: `error: : Invalid argument`; a full disk blamed on the current folder's disk."""
    from benchmark.files import os_error_message

    message, exit_ = os_error_message(OSError(code, os.strerror(code)))
    assert exit_ == exit_code and not message.startswith(":") and "the system named no file" in message
    assert str(Path.cwd()) not in message


def test_a_full_disk_while_the_cache_is_written_names_the_cache(tiny_gopro, tmp_path, monkeypatch, capsys):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")  # a write: the system names no file

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["cache", "--data", str(tiny_gopro), "--out", str(tmp_path / "cache")]) == EXIT_FAILURE
    _one_line(capsys, f"{tmp_path / 'cache'}: No space left on device: the disk holding {tmp_path} is full")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cache")]


def test_a_checkpoint_folder_removed_by_another_process_is_not_called_a_full_disk(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()

    def save(obj, f, *args, **kwargs):
        shutil.rmtree(run)
        raise RuntimeError(f"Parent directory {run} does not exist.")

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OSError, match="was removed while this command ran") as info:
        save_atomic({}, run / "checkpoint.pt")
    assert "free space" not in str(info.value)


def test_csv_cells_a_spreadsheet_would_run_are_text_and_numbers_stay_numbers(tmp_path):
    """Defect: a name beginning with = (a display name, --method, a sequence folder) was written raw."""
    import pandas as pd

    from benchmark.files import read_csv, write_csv

    names = ["=HYPERLINK(\"http://x\")", "+1+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain", "-1.5"]
    frame = pd.DataFrame({"method": names, "=psnr": [1.5, -2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -8.25]})
    write_csv(frame, tmp_path / "t.csv", float_format="%.6f")
    raw = pd.read_csv(tmp_path / "t.csv", dtype=str, keep_default_na=False)
    assert list(raw.columns) == ["method", "'=psnr"]
    assert list(raw["method"]) == ["'" + n for n in names[:6]] + ["plain", "-1.5"]
    assert raw["'=psnr"].iloc[1] == "-2.000000"  # numbers stay numbers, negative ones too
    back = read_csv(tmp_path / "t.csv")
    assert list(back["method"]) == names and list(back["=psnr"]) == list(frame["=psnr"])


def test_score_writes_names_as_text(tiny_gopro, tmp_path):
    from benchmark.data import gopro_pairs, read_image, write_image

    data = tmp_path / "gopro"
    shutil.copytree(tiny_gopro, data)
    seq = next((data / "test").iterdir())
    seq.rename(seq.with_name("=cmd|' -C calc'!A0"))
    for p in gopro_pairs(data, "test"):
        write_image(tmp_path / "restored" / "gopro" / p.seq / p.blurred.name, read_image(p.blurred))
    assert main(["score", "--gopro", str(data), "--restored", str(tmp_path / "restored"), "--method", "=2+5",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 0
    rows = (tmp_path / "s" / "gopro.csv").read_text().splitlines()[1:]
    assert all(r.startswith("'=2+5,") for r in rows) and any(",'=cmd|' -C calc'!A0/" in r for r in rows)
