"""The authors' released GOPRO models (:data:`RELEASES`), and ``deblurbench fetch weights NAME``.

Each release is downloaded from the link its README publishes, after any mirror URLs of the configuration
(tried first), by the one download routine of :mod:`benchmark.fetch` (resumed, capped in size and time,
each source's failure named; Google Drive's confirmation page is followed as gdown reads it), or taken
from a local file. Its SHA-256 is checked against the lock file when one was recorded; it is recorded only
after the file has loaded strictly into the method's network (every tensor of the expected shape, floating
point and finite), so a corrupt or wrong file never locks its hash. A ``NAME.safetensors`` copy of the
loaded weights is cached beside it.

This module imports no torch until a file is loaded, so the workflow can list the releases when it
parses. Loading is :mod:`benchmark.weights`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark import registry
from benchmark.fetch import MAX_SECONDS, FetchError, _lock, _record, download, file_digest
from benchmark.files import write_text_atomic

if TYPE_CHECKING:
    import torch


def drive(file_id: str) -> str:
    return f"https://drive.google.com/uc?id={file_id}"


@dataclass(frozen=True)
class Release:
    """An authors' released GOPRO model: the method and options it loads into, and where it comes from."""

    name: str
    method: str
    filename: str
    urls: tuple[str, ...]
    source: str
    options: Mapping[str, Any] = field(default_factory=dict)


RELEASES = {r.name: r for r in (
    Release("deblurgan", "deblurgan", "latest_net_G.pth", (drive("1liKzdjMRHZ-i5MWhC72EL7UZLNPj5_8Y"),),
            "KupynOrest/DeblurGAN README (generator weights, Google Drive)"),
    Release("deepdeblur", "deepdeblur", "GOPRO_L1.zip", (drive("1AfZhyUXEA8_UdZco9EdtpWjTBAb8BbWv"),),
            "SeungjunNah/DeepDeblur-PyTorch README, GOPRO_L1 (zipped experiment, models/model-*.pt)"),
    Release("nafnet-32", "nafnet", "NAFNet-GoPro-width32.pth", (drive("1Fr2QadtDCEXg6iwWX8OzeZLbHOx2t5Bj"),),
            "megvii-research/NAFNet README, NAFNet-GoPro-width32", {"width": 32}),
    Release("nafnet-64", "nafnet", "NAFNet-GoPro-width64.pth", (drive("1S0PVRbyTakYY9a82kujgZLbMihfNBLfC"),),
            "megvii-research/NAFNet README, NAFNet-GoPro-width64", {"width": 64}),
    # Sun et al.'s MatConvNet model; the archive (or net-epoch-600.mat with kernels.mat beside it, given
    # under weights.files) is read by models.sun.load_matconvnet.
    Release("sun", "sun", "DLFE-78101.zip",
            ("http://gr.xjtu.edu.cn/c/document_library/get_file?folderId=2076150&name=DLFE-78101.zip",),
            "Sun et al.'s release (Jian Sun's page at XJTU, DLFE-78101.zip): net-epoch-600.mat and kernels.mat"),
)}


def release(name: str) -> Release:
    try:
        return RELEASES[name]
    except KeyError:
        raise FetchError(f"unknown release {name!r}; choose {', '.join(RELEASES)}") from None


def cached_path(root: Path, name: str) -> Path:
    """Where the converted ``.safetensors`` copy of a release lies."""
    return Path(root) / f"{name}.safetensors"


WEIGHTS_MAX_BYTES = 4 << 30  # the largest release, NAFNet-64, is about 270 MB


def fetch_weights(name: str, root: Path, *, mirrors: Sequence[str] = (), local: Path | None = None,
                  retries: int = 4, backoff: float = 2.0, quiet: bool = False, max_size: int | None = None,
                  max_time: float = MAX_SECONDS) -> dict[str, Any]:
    """Fetch (or take ``local``), check against the lock, load strictly, cache ``NAME.safetensors``,
    then record the SHA-256. Returns a record of the files, hash and source."""
    rel = release(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = Path(local) if local else root / "downloads" / rel.filename
    if local and not path.is_file():
        raise FetchError(f"{path}: no such file (the local copy of release {name})")
    if not local and not path.exists():
        download([*mirrors, *rel.urls], path, retries=retries, backoff=backoff, quiet=quiet,
                 max_bytes=max_size or WEIGHTS_MAX_BYTES, max_seconds=max_time)
    actual, locked = file_digest(path, "sha256"), _lock(root).get(rel.filename)
    if locked and actual != locked:
        raise FetchError(f"{path}: SHA-256 {actual} differs from the one recorded in {root / 'checksums.lock.json'} "
                         f"({locked}); the file changed since its first successful load")
    from benchmark.weights import WeightsError  # torch comes in here, to load the file

    method = registry.get(rel.method)
    options = method.options(rel.options)
    model = method.build(options)
    try:
        method.load_official(model, path)
    except (WeightsError, ValueError, RuntimeError) as err:
        if not local:  # a bad download is removed so that the next try starts clean
            path.unlink(missing_ok=True)
        raise FetchError(f"release {name}: {err}") from err
    cache = cached_path(root, name)
    _save_safetensors(model, cache)
    _record(root, rel.filename, actual)
    return {"release": name, "method": rel.method, "options": dict(rel.options), "path": str(path),
            "weights": str(cache), "source": rel.source, "checksums": {rel.filename: actual}}


def _save_safetensors(model: torch.nn.Module, dest: Path) -> None:
    from safetensors.torch import save_file

    tmp = dest.with_name(dest.name + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, dest)


def run(args: Any) -> int:
    """``deblurbench fetch weights NAME [--root DIR] [--mirror URL]... [--archive FILE] [--record JSON]``."""
    import json

    if not args.release:
        raise FetchError(f"fetch weights: name the release ({', '.join(RELEASES)})")
    record = fetch_weights(args.release, args.root or Path("weights"), mirrors=args.mirror, local=args.archive,
                           retries=args.retries, backoff=args.backoff, quiet=args.quiet, max_size=args.max_size,
                           max_time=args.max_time)
    if args.record:
        write_text_atomic(args.record, json.dumps(record, indent=2))
    print(json.dumps(record["checksums"], indent=2))
    return 0
