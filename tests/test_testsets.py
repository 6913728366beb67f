"""HIDE and RealBlur-J/R: miniature archives with the real layouts served from 127.0.0.1, fetched, verified
against their official lists and paired by name; an incomplete download and a J/R swap are refused."""

import hashlib
import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from miniature import HIDE_TEST, HIDE_TRAIN, Server, hide_zip, png, realblur_flat_zip, realblur_tar, zip_bytes

from benchmark import data, testsets
from benchmark.cli import main
from benchmark.data import PairingError, hide_pairs, realblur_pairs
from benchmark.fetch import FetchError
from benchmark.testsets import fetch_testset, verify_testset

LISTED = [("scene230", 7), ("scene002", 21), ("scene230", 2)]  # three pairs of the official test list
HIDE_NAMES = sorted(n for names in HIDE_TEST.values() for n in names)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def hide(server, monkeypatch):
    """The HIDE sources pointed at the local server, 4 test pairs expected."""
    monkeypatch.setattr(data, "HIDE_TEST_PAIRS", len(HIDE_NAMES))
    sources = (testsets.Source("HIDE_dataset.zip", (server.url + "/dropbox/HIDE_dataset.zip",), ("hide",), "test"),
               testsets.Source("HIDE_test_restormer.zip", (server.url + "/drive/hide.zip",), ("hide",), "test"))
    monkeypatch.setitem(testsets.TESTSETS, "hide",
                        testsets.TestSet("hide", ("hide",), sources, testsets.TESTSETS["hide"].top_level,
                                         testsets.TESTSETS["hide"].expected_size, "test"))
    return server


@pytest.fixture
def realblur(server, monkeypatch):
    """The RealBlur sources pointed at the local server, the official list cut to three of its pairs."""
    monkeypatch.setattr(data, "realblur_test_list", lambda: list(LISTED))
    official = testsets.TESTSETS["realblur"]
    sources = (official.sources[0],
               testsets.Source("RealBlur_J_test_restormer.zip", (server.url + "/drive/J.zip",), ("realblur-j",), "t"),
               testsets.Source("RealBlur_R_test_restormer.zip", (server.url + "/drive/R.zip",), ("realblur-r",), "t"))
    monkeypatch.setitem(testsets.TESTSETS, "realblur",
                        testsets.TestSet("realblur", official.sets, sources, official.top_level, official.expected_size,
                                         "test"))
    return server


def _fetch(name, root, **kw):
    return fetch_testset(name, root, retries=1, backoff=0.01, quiet=True, **kw)


def _one_line(err):
    text = str(err.value)
    assert "\n" not in text, text
    return text


# -- the official lists ----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant, published", [("J", "167cc8d3"), ("R", "91b0b4c9")])
def test_the_realblur_lists_are_the_official_files_byte_for_byte(variant, published):
    text = data.realblur_list_text(variant)
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert digest == data.realblur_list_sha256(variant) and digest.startswith(published)  # research file §2
    lines = text.split("\n")
    assert len(lines) == data.REALBLUR_TEST_PAIRS == 980
    gt, blur = lines[0].split()
    assert gt == f"{data.REALBLUR_FOLDERS[variant]}/scene230/gt/gt_7.png" and blur.endswith("scene230/blur/blur_7.png")


def test_the_realblur_list_has_50_scenes_of_frames_2_to_21():
    entries = data.realblur_test_list()
    per_scene = Counter(scene for scene, _ in entries)
    assert len(set(entries)) == 980 and len(per_scene) == 50
    assert sorted(Counter(per_scene.values()).items()) == [(17, 4), (18, 2), (19, 4), (20, 40)]  # research §2
    assert {k for _, k in entries} == set(range(2, 22)) and "scene244" not in per_scene


# -- HIDE ------------------------------------------------------------------------------------------------
def test_hide_is_fetched_verified_locked_and_paired_by_name(hide, tmp_path):
    hide.files["/dropbox/HIDE_dataset.zip"] = archive = hide_zip()
    hide.truncate_once.add("/dropbox/HIDE_dataset.zip")  # the first transfer breaks off: resumed
    root = tmp_path / "HIDE"
    record = _fetch("hide", root)
    sha = hashlib.sha256(archive).hexdigest()
    assert record["checksums"] == {"HIDE_dataset.zip": sha}
    assert record["sets"]["hide"] == {"layout": "official", "pairs": 4, "archive": "HIDE_dataset.zip", "sha256": sha}
    assert json.loads((root / "checksums.lock.json").read_text()) == {"HIDE_dataset.zip": sha}
    assert any(r and r.startswith("bytes=") for p, r in hide.requests if p == "/dropbox/HIDE_dataset.zip")
    pairs = hide_pairs(root, expected=len(HIDE_NAMES))
    assert [p.name for p in pairs] == HIDE_NAMES and {p.seq for p in pairs} == {"test"}
    for p in pairs:
        assert p.blurred.parent.parent.name == "test" and p.sharp == root / "GT" / p.name
        # matched by name: each blurred image's partner is the GT image the archive paired with it
        k = [n for names in HIDE_TEST.values() for n in names].index(p.name)
        assert p.blurred.read_bytes() == png(k) and p.sharp.read_bytes() == png(100 + k)
    assert verify_testset("hide", root).ok
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_hide_download_missing_one_pair_is_a_clear_error(hide, tmp_path):
    lost = HIDE_TEST["test-long-shot"][0]
    hide.files["/dropbox/HIDE_dataset.zip"] = hide_zip(drop=(f"HIDE_dataset/GT/{lost}",))
    root = tmp_path / "HIDE"
    with pytest.raises(FetchError) as err:
        _fetch("hide", root)
    text = _one_line(err)
    assert f"1 test images without their sharp image (GT/{lost})" in text and "3 test pairs, expected 4" in text
    assert "HIDE_dataset.zip.unverified" in text
    assert sorted(p.name for p in root.iterdir()) == ["downloads"]  # nothing unpacked, no lock
    assert [p.name for p in (root / "downloads").iterdir()] == ["HIDE_dataset.zip.unverified"]


def test_hide_test_image_lost_from_the_download_is_named_through_gt(hide, tmp_path):
    lost = HIDE_TEST["test-close-ups"][1]
    hide.files["/dropbox/HIDE_dataset.zip"] = hide_zip(drop=(f"HIDE_dataset/test/test-close-ups/{lost}",))
    with pytest.raises(FetchError) as err:
        _fetch("hide", tmp_path / "HIDE")
    assert f"sharp images in GT/ with no blurred image in train/ or test/ (GT/{lost})" in _one_line(err)


def test_hide_falls_back_to_the_restormer_copy(hide, tmp_path):
    hide.files["/drive/hide.zip"] = hide_zip(flat=True)  # the Dropbox link answers 404
    root = tmp_path / "HIDE"
    record = _fetch("hide", root)
    assert record["sets"]["hide"]["layout"] == "flat" and list(record["checksums"]) == ["HIDE_test_restormer.zip"]
    pairs = hide_pairs(root, expected=len(HIDE_NAMES))
    assert [p.name for p in pairs] == HIDE_NAMES and all(p.sharp.parent.name == "target" for p in pairs)


def test_hide_flat_copy_with_an_unpaired_image(tmp_path):
    for side in ("input", "target"):
        (tmp_path / side).mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "input" / name).write_bytes(png(0))
    (tmp_path / "target" / "a.png").write_bytes(png(1))
    (tmp_path / "target" / "c.png").write_bytes(png(1))
    with pytest.raises(PairingError) as err:
        hide_pairs(tmp_path, expected=None)
    text = _one_line(err)
    assert "1 blurred images without their sharp image (target/b.png)" in text and "(target/c.png)" in text
    assert err.value.missing == ["target/b.png"] and err.value.extra == ["target/c.png"]


def test_hide_local_archive_and_prepare_through_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "HIDE_TEST_PAIRS", len(HIDE_NAMES))
    archive = tmp_path / "HIDE_dataset.zip"
    archive.write_bytes(hide_zip())
    root = tmp_path / "HIDE"
    assert main(["fetch", "hide", "--root", str(root), "--archive", str(archive), "--quiet"]) == 0
    assert archive.exists() and (root / "GT" / HIDE_TRAIN[0]).exists()
    assert main(["prepare", "--dataset", "hide", "--root", str(root)]) == 0
    assert "hide pairs: 4" in capsys.readouterr().out
    (root / "GT" / HIDE_NAMES[0]).unlink()
    assert main(["prepare", "--dataset", "hide", "--root", str(root)]) != 0
    assert f"GT/{HIDE_NAMES[0]}" in capsys.readouterr().out


# -- RealBlur --------------------------------------------------------------------------------------------
def test_realblur_is_fetched_from_a_mirror_verified_against_the_list_and_paired(realblur, tmp_path):
    realblur.files["/mirror/RealBlur.tar.gz"] = archive = realblur_tar(LISTED)
    root = tmp_path / "RealBlur"
    record = _fetch("realblur", root, mirrors=[realblur.url + "/mirror/RealBlur.tar.gz"])
    sha = hashlib.sha256(archive).hexdigest()
    assert record["checksums"] == {"RealBlur.tar.gz": sha}
    assert {s: r["pairs"] for s, r in record["sets"].items()} == {"realblur-j": 3, "realblur-r": 3}
    assert json.loads((root / "checksums.lock.json").read_text()) == {"RealBlur.tar.gz": sha}
    for variant in ("J", "R"):
        pairs = realblur_pairs(root, variant)
        assert [(p.seq, p.name) for p in pairs] == [("scene002", "blur_21.png"), ("scene230", "blur_2.png"),
                                                    ("scene230", "blur_7.png")]  # by scene, then frame
        for p in pairs:
            assert p.blurred == root / data.REALBLUR_FOLDERS[variant] / p.seq / "blur" / p.name
            assert p.sharp == p.blurred.parent.parent / "gt" / p.name.replace("blur", "gt")
    # the training pair in the archive is not a test pair
    assert all(p.seq != "scene001" for p in realblur_pairs(root, "J"))
    assert verify_testset("realblur", root).ok


def test_realblur_download_missing_one_listed_pair_is_a_clear_error(realblur, tmp_path):
    lost = f"{data.REALBLUR_FOLDERS['R']}/scene230/gt/gt_2.png"
    realblur.files["/mirror/RealBlur.tar.gz"] = realblur_tar(LISTED, drop=(lost,))
    root = tmp_path / "RealBlur"
    with pytest.raises(FetchError) as err:
        _fetch("realblur", root, mirrors=[realblur.url + "/mirror/RealBlur.tar.gz"])
    text = _one_line(err)
    assert f"1 images of the 3 listed RealBlur-R test pairs missing ({lost})" in text
    assert not (root / data.REALBLUR_FOLDERS["J"]).exists() and not (root / "checksums.lock.json").exists()


def test_realblur_against_the_full_official_list_names_what_is_missing(tmp_path, monkeypatch):
    archive = tmp_path / "RealBlur.tar.gz"
    archive.write_bytes(realblur_tar(LISTED))
    with pytest.raises(FetchError) as err:
        _fetch("realblur", tmp_path / "RealBlur", archive=archive)
    text = _one_line(err)
    assert "1,954 images of the 980 listed RealBlur-J test pairs missing" in text  # 2 x 980 - 2 x 3
    assert "scene230/blur/blur_20.png" in text  # the first absent pair of the list, by name


def test_a_j_archive_holding_r_is_refused_as_a_swap(realblur, tmp_path):
    realblur.files["/drive/J.zip"] = realblur_flat_zip(LISTED, "R")  # the "J" link serves RealBlur-R
    realblur.files["/drive/R.zip"] = realblur_flat_zip(LISTED, "R")
    root = tmp_path / "RealBlur"
    with pytest.raises(FetchError) as err:
        _fetch("realblur", root)
    text = _one_line(err)
    assert "RealBlur_J_test_restormer.zip: should hold RealBlur-J but holds RealBlur_R/" in text
    assert "swapped" in text and not (root / "RealBlur_R").exists()


def test_the_j_list_refuses_a_tree_that_holds_r(tmp_path):
    archive = tmp_path / "RealBlur.tar.gz"
    archive.write_bytes(realblur_tar(LISTED, variants=("R",)))
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "tree", filter="data")
    with pytest.raises(PairingError) as err:
        realblur_pairs(tmp_path / "tree", "J", LISTED)
    assert "no RealBlur-J test set, only RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref/" in _one_line(err)
    assert "swapped" in str(err.value)
    assert len(realblur_pairs(tmp_path / "tree", "R", LISTED)) == 3


def test_realblur_restormer_copies_are_matched_against_the_list_by_name(realblur, tmp_path):
    realblur.files["/drive/J.zip"] = realblur_flat_zip(LISTED, "J")
    realblur.files["/drive/R.zip"] = realblur_flat_zip(LISTED, "R")
    root = tmp_path / "RealBlur"
    record = _fetch("realblur", root)  # RealBlur.tar.gz has no direct link: the copies are used
    assert {s: (r["layout"], r["archive"]) for s, r in record["sets"].items()} == {
        "realblur-j": ("flat", "RealBlur_J_test_restormer.zip"),
        "realblur-r": ("flat", "RealBlur_R_test_restormer.zip")}
    pairs = realblur_pairs(root, "R")
    assert [(p.seq, p.name) for p in pairs] == [("scene002", "blur_21.png"), ("scene230", "blur_2.png"),
                                                ("scene230", "blur_7.png")]
    assert pairs[0].blurred == root / "RealBlur_R" / "input" / "scene002_blur_21.png"
    assert pairs[0].sharp == root / "RealBlur_R" / "target" / "scene002_blur_21.png"
    # a name the list does not have, and one that names no scene
    (root / "RealBlur_R" / "input" / "scene999_blur_3.png").write_bytes(png(0))
    (root / "RealBlur_R" / "target" / "scene999_blur_3.png").write_bytes(png(0))
    with pytest.raises(PairingError, match=r"1 pairs not in the official test list \(scene999_blur_3.png\)"):
        realblur_pairs(root, "R")
    (root / "RealBlur_R" / "input" / "0001.png").write_bytes(png(0))
    (root / "RealBlur_R" / "target" / "0001.png").write_bytes(png(0))
    with pytest.raises(PairingError, match="do not name a RealBlur scene and frame"):
        realblur_pairs(root, "R")


def test_structure_only_pairs_the_listed_pairs_the_tree_holds(tmp_path):
    """A miniature: a few listed pairs, not all 980; the training pair beside them in the same folders is
    never a test pair."""
    archive = tmp_path / "RealBlur.tar.gz"
    archive.write_bytes(realblur_tar(LISTED))
    record = _fetch("realblur", tmp_path / "RealBlur", archive=archive, verify="structure")
    assert record["sets"]["realblur-j"]["pairs"] == 3  # the three listed test pairs, not the training pair
    pairs = testsets.pairs("realblur-j", tmp_path / "RealBlur", "structure")
    assert {(p.seq, int(p.name[5:-4])) for p in pairs} == set(LISTED) and "scene001" not in {p.seq for p in pairs}


def test_changed_archive_does_not_match_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "realblur_test_list", lambda: list(LISTED))
    archive = tmp_path / "RealBlur.tar.gz"
    archive.write_bytes(realblur_tar(LISTED))
    _fetch("realblur", tmp_path / "RealBlur", archive=archive)
    archive.write_bytes(realblur_tar(LISTED, train=(("scene001", 3),)))
    with pytest.raises(FetchError, match="does not match the one recorded"):
        _fetch("realblur", tmp_path / "RealBlur", archive=archive)


@pytest.mark.parametrize("member, kind", [("../escape.png", "file"), ("RealBlur/../../x.png", "file"),
                                          (data.REALBLUR_FOLDERS["J"] + "/link", "symlink"),
                                          ("elsewhere/a.png", "file")])
def test_unsafe_tar_members_are_refused(tmp_path, member, kind):
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    archive = tmp_path / "RealBlur.tar.gz"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(FetchError, match="refusing|outside"):
        _fetch("realblur", tmp_path / "RealBlur", archive=archive)
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "x.png").exists()
    assert sorted(p.name for p in (tmp_path / "RealBlur").iterdir()) == []


def test_an_html_page_instead_of_the_archive_says_so(tmp_path):
    archive = tmp_path / "HIDE_dataset.zip"
    archive.write_bytes(b"<html>Dropbox sign-in</html>")
    with pytest.raises(FetchError, match="neither a zip nor a tar archive"):
        _fetch("hide", tmp_path / "HIDE", archive=archive)


def test_unpack_limit_refuses_an_oversized_archive(tmp_path, monkeypatch):
    archive = tmp_path / "HIDE_dataset.zip"
    archive.write_bytes(zip_bytes({f"HIDE_dataset/GT/{i}.png": bytes(1000) for i in range(20)}))
    monkeypatch.setattr(testsets, "TESTSETS", {**testsets.TESTSETS, "hide": testsets.TestSet(
        "hide", ("hide",), testsets.TESTSETS["hide"].sources, testsets.TESTSETS["hide"].top_level, (5000, 10), "x")})
    with pytest.raises(FetchError, match="exceed the limit"):
        _fetch("hide", tmp_path / "HIDE", archive=archive, unpack_limit=2)


# -- configuration and command line ----------------------------------------------------------------------
def test_the_paper_profile_fetches_the_test_sets_and_the_offline_ones_may_not():
    import yaml
    from snakemake.utils import validate

    repo = Path(__file__).resolve().parent.parent
    for profile in ("paper", "quick", "smoke"):
        cfg = yaml.safe_load((repo / "config" / f"{profile}.yaml").read_text())
        validate(cfg, str(repo / "config" / "schema.yaml"), set_default=False)
        assert ({"hide", "realblur"} <= set(cfg["data"])) == (profile == "paper")
    cfg["data"]["realblur"] = {"root": "x", "verify": "list"}
    with pytest.raises(Exception, match="list"):
        validate(cfg, str(repo / "config" / "schema.yaml"), set_default=False)


def test_fetch_and_prepare_realblur_through_the_command_line(tmp_path, capsys):
    archive = tmp_path / "RealBlur.tar.gz"
    archive.write_bytes(realblur_tar(LISTED))
    root, record = tmp_path / "RealBlur", tmp_path / "realblur.fetched.json"
    assert main(["fetch", "realblur", "--root", str(root), "--archive", str(archive), "--structure-only",
                 "--record", str(record), "--quiet"]) == 0
    assert json.loads(record.read_text())["sets"]["realblur-r"]["pairs"] == 3  # the listed pairs, not the training pair
    assert main(["prepare", "--dataset", "realblur", "--root", str(root), "--structure-only"]) == 0
    assert "realblur-j pairs: 3" in capsys.readouterr().out
    assert main(["prepare", "--dataset", "realblur", "--root", str(root)]) != 0  # against the official list
    assert "1,954 images of the 980 listed RealBlur-J test pairs missing" in capsys.readouterr().out
    assert main(["fetch", "realblur", "--root", str(tmp_path / "again"), "--archive", str(archive), "--quiet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "listed RealBlur-J test pairs missing" in err[0]


def test_published_numbers_name_their_source_and_this_suites_methods():
    import csv

    from benchmark import registry
    from benchmark.releases import RELEASES

    path = Path(__file__).resolve().parent.parent / "reports" / "generalisation_numbers.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["method", "row", "testset", "psnr", "ssim", "source", "note"]
    assert {r["testset"] for r in rows} == {"gopro", *testsets.TEST_SETS}
    assert all(20 < float(r["psnr"]) < 40 and 0.8 < float(r["ssim"]) < 1 and r["source"] for r in rows)
    assert len({(r["method"], r["testset"]) for r in rows}) == len(rows)
    ours = {m.name for m in registry.available()} | set(RELEASES)
    assert {"deepdeblur", "nafnet-64"} <= {r["method"] for r in rows} and all(
        r["method"] in ours or "not in this suite" in r["note"] for r in rows)
    nafnet = {r["testset"]: (float(r["psnr"]), float(r["ssim"])) for r in rows if r["method"] == "nafnet-64"}
    assert nafnet["realblur-j"] == (28.32, 0.857) and nafnet["realblur-r"] == (35.97, 0.951)  # J and R not swapped
