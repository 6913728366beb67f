"""Miniature archives with the real GOPRO_Large and Köhler layouts, and a local HTTP server on 127.0.0.1
that serves them (with ``Range`` support and a switch that cuts a response short). Nothing here touches
the network beyond the loopback interface."""

from __future__ import annotations

import io
import tempfile
import threading
import zipfile
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.synthetic import synthesise_gopro, synthesise_kohler

# Real sequence names of GOPRO_Large (research/deblur-facts.md section 5).
GOPRO_TRAIN_SEQUENCES = ("GOPR0372_07_00", "GOPR0374_11_00")
GOPRO_TEST_SEQUENCES = ("GOPR0384_11_00", "GOPR0396_11_00")


def png(seed: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


_png = png  # under its own name, for the functions below whose `size` makes a local `png`


def zip_bytes(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            z.writestr(info, "../../etc/passwd")
    return buf.getvalue()


def gopro_zip() -> bytes:
    """Noise images, two pairs in one train and one test sequence: enough for the fetch tests."""
    members = {}
    for split, seq in (("train", GOPRO_TRAIN_SEQUENCES[0]), ("test", GOPRO_TEST_SEQUENCES[0])):
        for k, name in enumerate(("000047.png", "000056.png")):
            for folder in ("blur", "blur_gamma", "sharp"):
                members[f"GOPRO_Large/{split}/{seq}/{folder}/{name}"] = png(k + len(folder))
    return zip_bytes(members)


def _zip_tree(root: Path, prefix: str = "") -> bytes:
    return zip_bytes({prefix + p.relative_to(root).as_posix(): p.read_bytes()
                      for p in sorted(root.rglob("*.png"))})


def trainable_gopro_zip(*, size: int = 64, train_pairs: int = 4, test_pairs: int = 2, seed: int = 11) -> bytes:
    """``GOPRO_Large.zip`` whose pairs are synthetic camera shake (real photos, so networks can train on
    them), under the real archive layout and real sequence names."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        synthesise_gopro(tree, seed=seed, train_pairs=train_pairs, test_pairs=test_pairs, size=size, n_subframes=5,
                         train_photos=("astronaut", "chelsea"), test_photos=("coffee", "grace_hopper"))
        for split, names in (("train", GOPRO_TRAIN_SEQUENCES), ("test", GOPRO_TEST_SEQUENCES)):
            for synthetic, real in zip(sorted((tree / split).iterdir()), names, strict=True):
                synthetic.rename(tree / split / real)
        return _zip_tree(tree, "GOPRO_Large/")


def kohler_archives(*, size: int = 48, seed: int = 12) -> dict[str, bytes]:
    """The five archives of Köhler et al.'s benchmark (``BlurryImages.zip``, ``GroundTruth_pngs_Image{1..4}.zip``)
    holding 4 motifs x 1 shake, each with its every sub-frame as a ground-truth frame."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        synthesise_kohler(tree, seed=seed, photos=("coffee", "grace_hopper", "rocket", "chelsea"), n_paths=1,
                          size=size, n_subframes=5)
        archives = {"BlurryImages.zip": zip_bytes({f"BlurryImages/{p.name}": p.read_bytes()
                                                   for p in sorted((tree / "BlurryImages").glob("*.png"))})}
        for i in range(1, 5):
            archives[f"GroundTruth_pngs_Image{i}.zip"] = _zip_tree(tree / f"Image{i}", f"Image{i}/")
        return archives


class Server:
    """Serves ``files`` (path -> bytes); honours ``Range: bytes=N-``; can cut the first response short.

    ``lies`` (path -> how) makes it a server not to trust: ``"whole-206"`` answers a range request with 206
    and the whole file (no Content-Range); ``"shifted-206"`` answers it with a Content-Range claiming the
    range asked for but the bytes from the file's start; ``"wrong-range"`` names another range;
    ``"no-length"`` sends 200 without Content-Length and never stops; ``"drip"`` sends one byte every
    ``drip_seconds``; ``"html"`` serves the file as a web page (``text/html``); ``"not-http"`` answers with
    a line that is not an HTTP status line; ``"drive"`` answers like Google Drive for a large file: an HTML
    page whose download form leads to ``path + "/confirmed"``.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate_once: set[str] = set()
        self.lies: dict[str, str] = {}
        self.drip_seconds = 0.5
        self.requests: list[tuple[str, str | None]] = []
        self.closed = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                path = self.path.partition("?")[0]
                lie = server.lies.get(path.removesuffix("/confirmed"))
                if lie == "not-http":
                    self.wfile.write(b"SSH-2.0-OpenSSH_9.2 not a web server\r\n\r\n")
                    return
                if lie == "drive":
                    if not path.endswith("/confirmed"):
                        return self._drive_page(path)
                    path = path.removesuffix("/confirmed")
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                if lie == "no-length":
                    return self._endless()
                if lie == "drip":
                    return self._drip(data)
                body = data[start:]
                self.send_response(206 if start else 200)
                if lie == "html":
                    self.send_header("Content-Type", "text/html")
                if start and lie == "whole-206":
                    body = data
                elif start and lie == "shifted-206":
                    body = data[: len(data) - start]
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                elif start and lie == "wrong-range":
                    body = data
                    self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
                elif start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if path in server.truncate_once:
                    server.truncate_once.discard(path)
                    body = body[: len(body) // 2]  # then the connection closes: a truncated download
                self.wfile.write(body)

            def _drive_page(self, path):
                page = (f'<html><head><title>Google Drive - Virus scan warning</title></head><body>'
                        f'<form id="download-form" action="{path}/confirmed" method="get">'
                        f'<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" '
                        f'value="1234"></form></body></html>').encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def _endless(self):
                self.send_response(200)
                self.end_headers()
                chunk = b"\0" * 65536
                try:
                    while not server.closed.is_set():
                        self.wfile.write(chunk)
                except OSError:  # the client gave up
                    pass

            def _drip(self, data):
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for byte in data:
                        if server.closed.wait(server.drip_seconds):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# -- HIDE and RealBlur (research/generalisation-testsets.md §1-2) --------------------------------------
HIDE_TEST = {"test-close-ups": ("1fromGOPR0950.png", "12fromGOPR1004.MP4.png"),
             "test-long-shot": ("109fromGOPR1096.MP4.png", "3fromGOPR0987.png")}
HIDE_TRAIN = ("5fromGOPR0872.png", "77fromGOPR1002.MP4.png")
REALBLUR_FOLDERS = {"J": "RealBlur-J_ECC_IMCORR_centroid_itensity_ref",
                    "R": "RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref"}


def hide_zip(*, flat: bool = False, drop: tuple[str, ...] = (), size: int = 8) -> bytes:
    """``HIDE_dataset.zip`` (train/, test/test-close-ups/, test/test-long-shot/, GT/ under HIDE_dataset/) or,
    ``flat``, Restormer's copy (test/HIDE/{input,target}/); members named in ``drop`` are left out; images of
    ``size`` x ``size`` pixels."""
    png = partial(_png, size=size)
    members = {}
    for k, (subset, name) in enumerate((s, n) for s, names in HIDE_TEST.items() for n in names):
        if flat:
            members |= {f"test/HIDE/input/{name}": png(k), f"test/HIDE/target/{name}": png(100 + k)}
        else:
            members |= {f"HIDE_dataset/test/{subset}/{name}": png(k), f"HIDE_dataset/GT/{name}": png(100 + k)}
    if not flat:
        for k, name in enumerate(HIDE_TRAIN):
            members |= {f"HIDE_dataset/train/{name}": png(200 + k), f"HIDE_dataset/GT/{name}": png(300 + k)}
    return zip_bytes({m: d for m, d in members.items() if m not in drop})


def realblur_tar(entries, *, variants: tuple[str, ...] = ("J", "R"), train=(("scene001", 2),),
                 drop: tuple[str, ...] = (), size: int = 8) -> bytes:
    """``RealBlur.tar.gz``: <folder>/<scene>/{blur/blur_K,gt/gt_K}.png for the listed ``entries`` (scene, K)
    and a few training pairs, per variant; members named in ``drop`` are left out; images of ``size`` pixels."""
    import tarfile

    png = partial(_png, size=size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for v in variants:
            for k, (scene, frame) in enumerate((*entries, *train)):
                for kind in ("blur", "gt"):
                    name = f"{REALBLUR_FOLDERS[v]}/{scene}/{kind}/{kind}_{frame}.png"
                    if name in drop:
                        continue
                    payload = png(k + (500 if kind == "gt" else 0) + (1000 if v == "R" else 0))
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def realblur_flat_zip(entries, variant: str, *, folder: str | None = None) -> bytes:
    """Restormer's copy of one variant: test/RealBlur_<variant>/{input,target}/<scene>_blur_<K>.png (``folder``
    replaces RealBlur_<variant>, to build a mislabelled copy)."""
    folder = folder or f"RealBlur_{variant}"
    return zip_bytes({f"test/{folder}/{side}/{scene}_blur_{k}.png": png(i + (500 if side == "target" else 0))
                      for i, (scene, k) in enumerate(entries) for side in ("input", "target")})
