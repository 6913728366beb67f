"""Downloads against a local HTTP server on 127.0.0.1 serving small archives with the real layouts:
resume after truncation, mirrors, checksums, the GOPRO lock file and safe extraction; and servers that lie
(issue 20): a resumed request answered with the whole file or another range, no Content-Length and no end,
one byte at a time, a status line that is not HTTP, a web page instead of the file."""

import errno
import hashlib
import random

import pytest
from miniature import Server, gopro_zip, png, zip_bytes

from benchmark import fetch as fetch_module
from benchmark.cli import main
from benchmark.fetch import FetchError, LocalWriteError, download, extract, fetch
from benchmark.prepare import verify_gopro, verify_kohler


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def no_official_urls(monkeypatch):
    """A failing mirror moves on to the next source: the official URLs would leave the machine."""
    monkeypatch.setattr(fetch_module, "GOPRO_URL", "http://127.0.0.1:9/GOPRO_Large.zip")
    monkeypatch.setattr(fetch_module, "KOHLER_BASE", "http://127.0.0.1:9/kohler/")


CAP = 10 << 20


def test_truncated_download_is_resumed_with_a_range_request(server, tmp_path):
    payload = bytes(range(256)) * 4000
    server.files["/big.bin"] = payload
    server.truncate_once.add("/big.bin")
    dest = download([server.url + "/big.bin"], tmp_path / "big.bin", sha256=hashlib.sha256(payload).hexdigest(),
                    retries=2, backoff=0.01, quiet=True, max_bytes=CAP)
    assert dest.read_bytes() == payload
    assert any(r and r.startswith("bytes=") and r != "bytes=0-" for _, r in server.requests)
    assert not (tmp_path / "big.bin.part").exists()


def test_mirrors_are_tried_in_order(server, tmp_path):
    server.files["/second/file.bin"] = b"payload"
    dest = download([server.url + "/first/file.bin", server.url + "/second/file.bin"], tmp_path / "file.bin",
                    retries=1, backoff=0.01, quiet=True, max_bytes=CAP)
    assert dest.read_bytes() == b"payload"
    assert [p for p, _ in server.requests] == ["/first/file.bin", "/second/file.bin"]


def test_every_source_failing_names_the_file_and_why_each_failed(server, tmp_path):
    server.lies["/liar"] = "not-http"
    with pytest.raises(FetchError) as info:
        download([server.url + "/nope", server.url + "/liar"], tmp_path / "file.bin", retries=1, backoff=0.01,
                 quiet=True, max_bytes=CAP)
    message = str(info.value)
    assert "\n" not in message and message.startswith("file.bin: every source failed: ")
    assert f"{server.url}/nope: HTTP 404" in message and f"{server.url}/liar: not an HTTP answer" in message


def test_corrupted_archive_fails_its_checksum_and_leaves_nothing(server, tmp_path, monkeypatch):
    good = zip_bytes({"BlurryImages/Blurry1_1.png": png(0)})
    monkeypatch.setattr(fetch_module, "KOHLER_MD5", {"BlurryImages.zip": hashlib.md5(good).hexdigest()})
    server.files["/kohler/BlurryImages.zip"] = good[:-10] + b"corrupted!"
    with pytest.raises(FetchError, match=r"BlurryImages\.zip: every source failed: .*BlurryImages\.zip: md5 .* "
                                         r"does not match"):
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


# -- servers that lie (issue 20) ----------------------------------------------------------------------------
@pytest.mark.parametrize("lie", ["whole-206", "shifted-206", "wrong-range"])
def test_a_resumed_request_answered_with_other_bytes_starts_over_cleanly(server, tmp_path, lie):
    """Defect: a 206 carrying the whole file was appended to the half already there (half + whole), which
    still opens as a zip."""
    payload = random.Random(0).randbytes(1_000_000)  # not periodic: a shifted copy differs
    server.files["/big.bin"] = payload
    server.truncate_once.add("/big.bin")
    server.lies["/big.bin"] = lie
    dest = download([server.url + "/big.bin"], tmp_path / "big.bin", retries=3, backoff=0.01, quiet=True,
                    max_bytes=CAP)
    assert dest.read_bytes() == payload
    ranges = [r for _, r in server.requests]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[2] is None  # resumed, refused, restarted


def test_a_spliced_gopro_archive_is_refused_and_its_hash_never_locked(tmp_path):
    genuine = gopro_zip()
    spliced = tmp_path / "GOPRO_Large.zip"
    spliced.write_bytes(genuine[: len(genuine) // 2] + genuine)  # what the lying mirror used to leave
    with pytest.raises(FetchError, match="unexpected bytes before the archive's first member"):
        fetch("gopro", tmp_path / "g", archive=spliced, quiet=True)
    assert not (tmp_path / "g" / fetch_module.LOCK_FILE).exists()
    good = tmp_path / "good.zip"
    good.write_bytes(genuine)
    fetch("gopro", tmp_path / "g", archive=good, quiet=True)  # the genuine archive is then accepted


def test_a_server_without_content_length_is_cut_at_the_size_cap(server, tmp_path):
    server.files["/endless"] = b"x"
    server.lies["/endless"] = "no-length"
    with pytest.raises(FetchError, match=r"sent more than the limit of 1,048,576 bytes \(--max-size\) without "
                                         "announcing a length"):
        download([server.url + "/endless"], tmp_path / "f.bin", retries=0, quiet=True, max_bytes=1 << 20)
    assert not (tmp_path / "f.bin.part").exists()


def test_an_announced_length_beyond_the_cap_fails_before_the_body(server, tmp_path):
    server.files["/big"] = b"y" * 5000
    with pytest.raises(FetchError, match="announces 5,000 bytes, more than the limit of 4,000"):
        download([server.url + "/big"], tmp_path / "f.bin", retries=0, quiet=True, max_bytes=4000)


def test_a_dripping_server_is_given_up_at_the_time_limit(server, tmp_path):
    """Defect: the 60 s timeout was per read, so one byte every 5 s never ended."""
    server.files["/slow"] = b"z" * 1000
    server.lies["/slow"] = "drip"
    server.drip_seconds = 0.2
    server.files["/fast"] = b"z" * 1000
    dest = download([server.url + "/slow", server.url + "/fast"], tmp_path / "f.bin", retries=2, backoff=0.01,
                    quiet=True, max_bytes=CAP, max_seconds=1.0)
    assert dest.read_bytes() == b"z" * 1000  # the next source was tried after the first ran out of time
    with pytest.raises(FetchError, match=r"/slow: (took longer than|no whole file within) --max-time 1 s"):
        download([server.url + "/slow"], tmp_path / "g.bin", retries=2, backoff=0.01, quiet=True, max_bytes=CAP,
                 max_seconds=1.0)


def test_a_status_line_that_is_not_http_moves_on_to_the_next_mirror(server, tmp_path):
    server.lies["/liar"] = "not-http"
    server.files["/good"] = b"payload"
    dest = download([server.url + "/liar", server.url + "/good"], tmp_path / "f.bin", retries=2, backoff=0.01,
                    quiet=True, max_bytes=CAP)
    assert dest.read_bytes() == b"payload"
    assert [p for p, _ in server.requests] == ["/liar", "/good"]  # not retried: it is no HTTP server


def test_google_drives_confirmation_page_is_followed_and_other_pages_refused(server, tmp_path):
    server.files["/drive/file.pth"] = b"weights"
    server.lies["/drive/file.pth"] = "drive"
    dest = download([server.url + "/drive/file.pth"], tmp_path / "file.pth", retries=0, quiet=True, max_bytes=CAP)
    assert dest.read_bytes() == b"weights"
    assert server.requests[-1][0].startswith("/drive/file.pth/confirmed?") and "confirm=t" in server.requests[-1][0]
    server.files["/page"] = b"<html><title>Quota exceeded</title></html>"
    server.lies["/page"] = "html"  # a web page without a download form
    with pytest.raises(FetchError, match="answered with a web page, not the file"):
        download([server.url + "/page"], tmp_path / "x.pth", retries=0, quiet=True, max_bytes=CAP)


def test_a_full_local_disk_is_not_blamed_on_the_mirrors(server, tmp_path, monkeypatch):
    server.files["/a"] = server.files["/b"] = b"payload"
    real_open = open

    def full(file, mode="r", *args, **kwargs):
        if str(file).endswith(".part") and "b" in mode and ("w" in mode or "a" in mode):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(LocalWriteError) as info:
        download([server.url + "/a", server.url + "/b"], tmp_path / "f.bin", retries=2, backoff=0.01, quiet=True,
                 max_bytes=CAP)
    assert info.value.errno == errno.ENOSPC and info.value.filename.endswith("f.bin.part")
    assert [p for p, _ in server.requests] == ["/a"]


def test_retries_and_limits_are_checked_on_the_command_line(tmp_path, capsys):
    for flag, value in (("--retries", "-1"), ("--max-time", "nan"), ("--max-size", "lots"), ("--backoff", "-2")):
        with pytest.raises(SystemExit):
            main(["fetch", "gopro", "--root", str(tmp_path), flag, value])
        assert f"argument {flag}: " in capsys.readouterr().err
