"""Downloads against a local HTTP server on 127.0.0.1 serving small archives with the real layouts:
resume after truncation, mirrors, checksums, the GOPRO lock file and safe extraction."""

import hashlib

import pytest
from miniature import Server, gopro_zip, png, zip_bytes

from benchmark import fetch as fetch_module
from benchmark.fetch import FetchError, download, extract, fetch
from benchmark.prepare import verify_gopro, verify_kohler


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def test_truncated_download_is_resumed_with_a_range_request(server, tmp_path):
    payload = bytes(range(256)) * 4000
    server.files["/big.bin"] = payload
    server.truncate_once.add("/big.bin")
    dest = download([server.url + "/big.bin"], tmp_path / "big.bin", sha256=hashlib.sha256(payload).hexdigest(),
                    retries=2, backoff=0.01, quiet=True)
    assert dest.read_bytes() == payload
    assert any(r and r.startswith("bytes=") and r != "bytes=0-" for _, r in server.requests)
    assert not (tmp_path / "big.bin.part").exists()


def test_mirrors_are_tried_in_order(server, tmp_path):
    server.files["/second/file.bin"] = b"payload"
    dest = download([server.url + "/first/file.bin", server.url + "/second/file.bin"], tmp_path / "file.bin",
                    retries=1, backoff=0.01, quiet=True)
    assert dest.read_bytes() == b"payload"
    assert [p for p, _ in server.requests] == ["/first/file.bin", "/second/file.bin"]


def test_every_mirror_failing_names_the_file(server, tmp_path):
    with pytest.raises(FetchError, match="file.bin: every mirror failed"):
        download([server.url + "/nope"], tmp_path / "file.bin", retries=1, backoff=0.01, quiet=True)


def test_corrupted_archive_fails_its_checksum_and_leaves_nothing(server, tmp_path, monkeypatch):
    good = zip_bytes({"BlurryImages/Blurry1_1.png": png(0)})
    monkeypatch.setattr(fetch_module, "KOHLER_MD5", {"BlurryImages.zip": hashlib.md5(good).hexdigest()})
    server.files["/kohler/BlurryImages.zip"] = good[:-10] + b"corrupted!"
    with pytest.raises(FetchError, match=r"BlurryImages\.zip: md5 .* does not match"):
        fetch("kohler", tmp_path / "kohler", mirrors=[server.url + "/kohler"], retries=0, backoff=0.01, quiet=True)
    leftovers = [p for p in (tmp_path / "kohler").rglob("*") if p.is_file()]
    assert leftovers == [], leftovers


def test_kohler_fetch_with_good_archives(server, tmp_path, monkeypatch):
    archives = {"BlurryImages.zip": zip_bytes({"BlurryImages/Blurry1_1.png": png(0)}),
                "GroundTruth_pngs_Image1.zip": zip_bytes({f"Image1/Kernel1/GroundTruth1_1_{f}.png": png(f)
                                                     for f in (1, 2, 3)})}
    monkeypatch.setattr(fetch_module, "KOHLER_MD5", {k: hashlib.md5(v).hexdigest() for k, v in archives.items()})
    for name, data in archives.items():
        server.files[f"/kohler/{name}"] = data
    fetch("kohler", tmp_path / "k", mirrors=[server.url + "/kohler"], retries=0, backoff=0.01, quiet=True)
    report = verify_kohler(tmp_path / "k", expected={(1, 1): 3})
    assert report.ok, report.format_report()


@pytest.mark.parametrize("member", ["../escape.png", "/etc/evil.png", "GOPRO_Large/../../escape.png"])
def test_members_escaping_the_target_are_refused(tmp_path, member):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(zip_bytes({"GOPRO_Large/train/ok.png": b"x", member: b"x"}))
    with pytest.raises(FetchError, match="bad.zip: member"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.png").exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_link_members_are_refused(tmp_path):
    archive = tmp_path / "link.zip"
    archive.write_bytes(zip_bytes({"a.png": b"x"}, links=("GOPRO_Large/link",)))
    with pytest.raises(FetchError, match="symbolic link"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_gopro_checksum_is_locked_on_first_download(server, tmp_path):
    server.files["/GOPRO_Large.zip"] = gopro_zip()
    root = tmp_path / "GOPRO_Large"
    record = fetch("gopro", root, mirrors=[server.url + "/GOPRO_Large.zip"], retries=0, backoff=0.01, quiet=True)
    assert record["checksums"]["GOPRO_Large.zip"] == hashlib.sha256(server.files["/GOPRO_Large.zip"]).hexdigest()
    assert verify_gopro(root, expected={"train": {"GOPR0372_07_00": 2}, "test": {"GOPR0384_11_00": 2}}).ok
    # The archive on the server changes: the next download no longer matches the recorded hash.
    (root / "downloads" / "GOPRO_Large.zip").unlink()
    changed = bytearray(gopro_zip())
    changed[100] ^= 0xFF
    server.files["/GOPRO_Large.zip"] = bytes(changed)
    with pytest.raises(FetchError, match="does not match"):
        fetch("gopro", root, mirrors=[server.url + "/GOPRO_Large.zip"], retries=0, backoff=0.01, quiet=True)


def test_gopro_from_a_local_archive(tmp_path):
    archive = tmp_path / "GOPRO_Large.zip"
    archive.write_bytes(gopro_zip())
    fetch("gopro", tmp_path / "data", archive=archive, quiet=True)
    assert (tmp_path / "data" / "test" / "GOPR0384_11_00" / "blur_gamma" / "000056.png").exists()


def test_prepare_reports_missing_extra_and_wrong_counts(tmp_path):
    archive = tmp_path / "g.zip"
    archive.write_bytes(gopro_zip())
    fetch("gopro", tmp_path / "g", archive=archive, quiet=True)
    (tmp_path / "g" / "train" / "GOPR0372_07_00" / "sharp" / "000047.png").unlink()
    (tmp_path / "g" / "test" / "GOPR9999_00_00").mkdir()
    report = verify_gopro(tmp_path / "g")  # against the real per-sequence counts
    text = report.format_report()
    assert not report.ok
    assert "train/GOPR0372_07_00/sharp/000047.png" in report.missing
    assert "test/GOPR9999_00_00" in report.extra
    assert "train/GOPR0374_11_00" in report.missing  # 21 real training sequences are absent
    assert any("GOPR0372_07_00: 1 pairs, expected 100" in w for w in report.wrong)
    assert "PROBLEMS FOUND" in text


def test_md5_overrides_name_real_archives_only(tmp_path):
    with pytest.raises(FetchError, match="--md5 Blurry.zip: not a Köhler archive"):
        fetch("kohler", tmp_path / "k", md5={"Blurry.zip": "0" * 32}, quiet=True)
    assert not (tmp_path / "k" / "downloads").exists()
