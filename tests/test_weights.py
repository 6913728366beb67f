"""`deblurbench fetch weights NAME` against a local HTTP server on 127.0.0.1: resume after a truncated
transfer, the SHA-256 lock recorded only after a strict load and checked after, a corrupt or wrong
download refused and removed, a local file, the `.safetensors` copy, Google Drive's confirmation page (in its
layout, from 127.0.0.1), and weights checked before use (issue 20: booleans, NaN, a damaged zip)."""

import dataclasses
import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
import torch
from miniature import Server
from PIL import Image

from benchmark import registry, releases
from benchmark.cli import EXIT_ERROR, main
from benchmark.fetch import FetchError
from benchmark.releases import RELEASES, Release, fetch_weights

SMALL = {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]}


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def small_release(monkeypatch):
    """nafnet-32 with small options (the GoPro sizes are pinned in test_nafnet.py), same layout."""
    release = Release("nafnet-32", "nafnet", "NAFNet-GoPro-width32.pth", ("https://drive.google.com/uc?id=XYZ",),
                      "test", SMALL)
    monkeypatch.setitem(RELEASES, "nafnet-32", release)
    return release


def released_bytes(seed=0, options=SMALL, wrap="params"):
    method = registry.get("nafnet")
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in method.build(method.options(options))
             .state_dict().items()}
    buf = io.BytesIO()
    torch.save({wrap: state}, buf)
    return buf.getvalue(), state


def test_resumes_loads_strictly_caches_safetensors_and_locks_the_hash(server, small_release, tmp_path):
    data, state = released_bytes()
    server.files["/w/NAFNet-GoPro-width32.pth"] = data
    server.truncate_once.add("/w/NAFNet-GoPro-width32.pth")
    root = tmp_path / "weights"
    record = fetch_weights("nafnet-32", root, mirrors=[server.url + "/w/NAFNet-GoPro-width32.pth"], retries=2,
                           backoff=0.01, quiet=True)
    ranges = [r for p, r in server.requests if p == "/w/NAFNet-GoPro-width32.pth"]
    assert len(ranges) == 2 and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    sha = hashlib.sha256(data).hexdigest()
    assert record["checksums"] == {"NAFNet-GoPro-width32.pth": sha}
    assert json.loads((root / "checksums.lock.json").read_text()) == {"NAFNet-GoPro-width32.pth": sha}
    from safetensors.torch import load_file

    cached = load_file(root / "nafnet-32.safetensors")
    assert set(cached) == set(state) and all(torch.equal(cached[k], state[k]) for k in state)
    # The cached copy restores through the deblur command like the original file.
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (19, 27, 3), dtype=np.uint8)).save(image)
    for i, path in enumerate((root / "nafnet-32.safetensors", root / "downloads" / "NAFNet-GoPro-width32.pth")):
        assert main(["deblur", str(image), "--method", "nafnet", "--options", json.dumps(SMALL), "--weights",
                     str(path), "--device", "cpu", "--out", str(tmp_path / f"out{i}.png")]) == 0
    assert np.array_equal(np.array(Image.open(tmp_path / "out0.png")), np.array(Image.open(tmp_path / "out1.png")))
    # A second fetch reads the download already there: no new request.
    before = len(server.requests)
    fetch_weights("nafnet-32", root, mirrors=[server.url + "/w/NAFNet-GoPro-width32.pth"], quiet=True)
    assert len(server.requests) == before


def test_a_changed_file_fails_the_recorded_checksum(server, small_release, tmp_path):
    root = tmp_path / "weights"
    url = server.url + "/w/NAFNet-GoPro-width32.pth"
    server.files["/w/NAFNet-GoPro-width32.pth"] = released_bytes(0)[0]
    fetch_weights("nafnet-32", root, mirrors=[url], retries=0, backoff=0.01, quiet=True)
    (root / "downloads" / "NAFNet-GoPro-width32.pth").unlink()
    server.files["/w/NAFNet-GoPro-width32.pth"] = released_bytes(1)[0]  # loads fine, but not the locked file
    with pytest.raises(FetchError, match="NAFNet-GoPro-width32.pth: SHA-256 .* differs from the one recorded"):
        fetch_weights("nafnet-32", root, mirrors=[url], retries=0, backoff=0.01, quiet=True)


@pytest.mark.parametrize("bad", ["corrupt", "wrong architecture"])
def test_a_bad_download_is_refused_removed_and_never_locked(server, small_release, tmp_path, bad):
    good = released_bytes()[0]
    if bad == "corrupt":
        payload, message = good[: len(good) // 2] + b"\0" * 64, "not a readable torch file"
    else:
        payload = released_bytes(options={**SMALL, "enc_blk_nums": [1, 2]})[0]
        message = r"NAFNet: unexpected keys \[encoders\.1\.1\.beta"
    server.files["/w/NAFNet-GoPro-width32.pth"] = payload
    root = tmp_path / "weights"
    url = server.url + "/w/NAFNet-GoPro-width32.pth"
    with pytest.raises(FetchError, match=f"release nafnet-32: .*{message}"):
        fetch_weights("nafnet-32", root, mirrors=[url], retries=0, backoff=0.01, quiet=True)
    assert not (root / "checksums.lock.json").exists()
    assert not (root / "downloads" / "NAFNet-GoPro-width32.pth").exists()
    assert not (root / "nafnet-32.safetensors").exists()
    server.files["/w/NAFNet-GoPro-width32.pth"] = good  # the next try starts clean and succeeds
    fetch_weights("nafnet-32", root, mirrors=[url], retries=0, backoff=0.01, quiet=True)
    assert json.loads((root / "checksums.lock.json").read_text()) == {
        "NAFNet-GoPro-width32.pth": hashlib.sha256(good).hexdigest()}


def test_a_local_file_through_the_command_line(small_release, tmp_path, capsys):
    data, _ = released_bytes()
    local = tmp_path / "my-copy.pth"
    local.write_bytes(data)
    root, record = tmp_path / "weights", tmp_path / "record.json"
    assert main(["fetch", "weights", "nafnet-32", "--root", str(root), "--archive", str(local),
                 "--record", str(record), "--quiet"]) == 0
    assert json.loads(record.read_text())["weights"] == str(root / "nafnet-32.safetensors")
    assert (root / "nafnet-32.safetensors").exists() and local.exists()
    assert main(["fetch", "weights", "nafnet-32", "--root", str(root), "--archive", str(tmp_path / "none.pth")]) \
        == EXIT_ERROR
    assert "none.pth: no such file" in capsys.readouterr().err
    assert main(["fetch", "weights", "nafnet-128", "--root", str(root)]) == EXIT_ERROR
    assert ("unknown release 'nafnet-128'; choose deblurgan, deepdeblur, nafnet-32, nafnet-64, sun"
            in capsys.readouterr().err)


def test_google_drive_links_follow_the_confirmation_page(server, small_release, tmp_path, monkeypatch):
    """Drive answers a large file with a "can't scan for viruses" page; its download form is followed by the
    one download routine (size and time caps included). Served here by 127.0.0.1 in Drive's page layout."""
    data, _ = released_bytes()
    server.files["/uc"] = data
    server.lies["/uc"] = "drive"
    monkeypatch.setitem(RELEASES, "nafnet-32", dataclasses.replace(small_release, urls=(server.url + "/uc?id=XYZ",)))
    record = fetch_weights("nafnet-32", tmp_path / "w", retries=0, quiet=True)
    assert [p.partition("?")[0] for p, _ in server.requests] == ["/uc", "/uc/confirmed"]
    assert record["checksums"]["NAFNet-GoPro-width32.pth"] == hashlib.sha256(data).hexdigest()


def test_when_every_source_fails_the_one_line_says_why_each_did(server, small_release, tmp_path, monkeypatch,
                                                                  capsys):
    """Defect: `fetch weights nafnet-32` offline ended "every source failed:" with nothing after the colon."""
    server.lies["/liar.pth"] = "not-http"
    monkeypatch.setitem(RELEASES, "nafnet-32", dataclasses.replace(small_release, urls=(server.url + "/gone.pth",)))
    assert main(["fetch", "weights", "nafnet-32", "--root", str(tmp_path / "w"), "--mirror", server.url + "/liar.pth",
                 "--retries", "0", "--quiet"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "every source failed: " in err
    assert f"{server.url}/liar.pth: not an HTTP answer" in err and f"{server.url}/gone.pth: HTTP 404" in err


def test_weights_of_booleans_or_nan_are_refused_before_use_and_never_locked(small_release, tmp_path, capsys):
    """Defects: a safetensors file of booleans restored an all-white image with exit 0; `fetch weights
    --archive` of an all-NaN file cached it and locked its hash."""
    from safetensors.torch import save_file

    _, state = released_bytes()
    save_file({k: v > 0 for k, v in state.items()}, str(tmp_path / "bools.safetensors"))
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    assert main(["deblur", str(image), "--method", "nafnet", "--options", json.dumps(SMALL), "--weights",
                 str(tmp_path / "bools.safetensors"), "--device", "cpu"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another kind of value than the network's weights" in err and "bool" in err
    assert not (tmp_path / "photo_nafnet.png").exists()

    nan = tmp_path / "nan.pth"
    torch.save({"params": {k: torch.full_like(v, float("nan")) for k, v in state.items()}}, nan)
    root = tmp_path / "weights"
    assert main(["fetch", "weights", "nafnet-32", "--root", str(root), "--archive", str(nan), "--quiet"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "NaN or Inf" in err
    assert not (root / "checksums.lock.json").exists() and not (root / "nafnet-32.safetensors").exists()


def test_a_deepdeblur_zip_with_a_bad_crc_is_one_line(tmp_path, capsys):
    """Defect: a BadZipFile traceback."""
    options = {"features": 4, "blocks": 1}
    method = registry.get("deepdeblur")
    buf = io.BytesIO()
    torch.save({"G": method.build(method.options(options)).state_dict()}, buf)
    archive = tmp_path / "GOPRO_L1.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("GOPRO_L1/models/model-1.pt", buf.getvalue())
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the member: its CRC-32 no longer matches
    archive.write_bytes(bytes(data))
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    assert main(["deblur", str(image), "--method", "deepdeblur", "--options", json.dumps(options), "--weights",
                 str(archive), "--device", "cpu"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "GOPRO_L1/models/model-1.pt cannot be read" in err and "Bad CRC" in err


def test_every_release_names_its_readme_link_and_loads_into_its_method():
    assert set(RELEASES) == {"deblurgan", "deepdeblur", "nafnet-32", "nafnet-64", "sun"}
    for rel in RELEASES.values():  # Sun et al.'s archive is on Jian Sun's page, the others on Google Drive
        assert all(u.startswith("https://drive.google.com/uc?id=") for u in rel.urls) or rel.name == "sun"
        assert registry.get(rel.method).load_official is not None
    assert RELEASES["nafnet-64"].options == {"width": 64} and RELEASES["deepdeblur"].filename.endswith(".zip")
    assert releases.cached_path("w", "nafnet-64").name == "nafnet-64.safetensors"
