"""Weights: load ours or the authors' released files strictly, and fetch the authors' GOPRO releases.

Loading. ``deblurbench train`` writes ``{'generator': state_dict, ...}`` checkpoints or ``model.pt``;
the authors' releases keep their own layouts (a plain state dict for DeblurGAN, ``{'G': ...}`` inside
a zipped experiment folder for DeepDeblur, ``{'params': ...}`` for NAFNet), each read by its method's
``load_official``; a converted ``.safetensors`` copy loads directly. Every load is strict and refuses
a mismatch with the lists of missing and unexpected keys. Files are read with ``weights_only=True``.

Fetching (``deblurbench fetch weights NAME``). Each release is downloaded from the link its README
publishes (Google Drive files go through ``gdown``, which handles Drive's confirmation page), after any
mirror URLs of the configuration (tried first, with the resumable download of :mod:`benchmark.fetch`),
or taken from a local file. Its SHA-256 is checked against the lock file when one was recorded; it is
recorded only after the file has loaded strictly into the method's network, so a corrupt or wrong
download never locks a bad hash. A ``NAME.safetensors`` copy of the loaded weights is cached beside it.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.fetch import FetchError, _lock, _record, download, file_digest
from benchmark.files import write_text_atomic

MAX_KEYS_SHOWN = 8


class WeightsError(ValueError):
    """A weights file that does not fit; the message names the file and what is wrong."""


def _keys(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:MAX_KEYS_SHOWN])
    return f"[{shown}{', ...' if len(keys) > MAX_KEYS_SHOWN else ''}] ({len(keys)})"


def strict_load(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path | str) -> None:
    """``load_state_dict(strict=True)`` (DataParallel's ``module.`` prefix accepted), refusing a mismatch
    with the missing and unexpected key lists and any shape differences."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
              if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing keys {_keys(missing)}", f"unexpected keys {_keys(unexpected)}"]
        if shapes:
            parts.append(f"shape mismatches {shapes[:MAX_KEYS_SHOWN]}")
        raise WeightsError(f"{path}: does not match {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def _torch_load(source: Any, path: Path | str) -> Any:
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means the file is unusable
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({str(err).splitlines()[0]})") from err


def _zip_member(path: Path) -> tuple[str, bytes]:
    """The last-epoch ``models/model-N.pt`` of a zipped DeepDeblur experiment folder."""
    with zipfile.ZipFile(path) as z:
        found = [(int(m.group(1)), name) for name in z.namelist()
                 if (m := re.search(r"(?:^|/)models/model-(\d+)\.pt$", name))]
        if not found:
            raise WeightsError(f"{path}: a zip without models/model-<epoch>.pt inside")
        name = max(found)[1]
        return name, z.read(name)


def read_state(path: Path, key: str | None = None) -> Mapping[str, torch.Tensor]:
    """The state dict of an official release: a ``.safetensors`` file, a torch file (``key`` picks the
    entry of a wrapping dict when present), or a zip holding a ``models/model-N.pt`` torch file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as err:  # noqa: BLE001
            raise WeightsError(f"{path}: not a readable safetensors file ({err})") from err
    if zipfile.is_zipfile(path) and not _is_torch_zip(path):
        member, data = _zip_member(path)
        state = _torch_load(io.BytesIO(data), f"{path}:{member}")
    else:
        state = _torch_load(path, path)
    if key is not None and isinstance(state, Mapping) and key in state:
        state = state[key]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a state dict{f' or {{{key!r}: state_dict}}' if key else ''}, "
                           f"found {type(state).__name__}")
    return state


def _is_torch_zip(path: Path) -> bool:
    """torch.save writes a zip too: one top folder holding ``data.pkl``."""
    with zipfile.ZipFile(path) as z:
        return any(name.endswith("/data.pkl") and name.count("/") == 1 for name in z.namelist())


def load_weights(method: Any, model: nn.Module, path: Path) -> None:
    """Weights written by ``deblurbench train`` (final or checkpoint), a ``.safetensors`` copy, or the
    authors' release in its own layout (the method's ``load_official``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    _load_any(method, model, path)
    require_finite(model, path)


def _load_any(method: Any, model: nn.Module, path: Path) -> None:
    if path.suffix == ".safetensors":
        strict_load(model, read_state(path), path)
        return
    try:
        state = read_state(path, key="generator")
        strict_load(model, state, path)
        return
    except WeightsError as err:
        if method.load_official is None:
            raise WeightsError(f"{path}: does not fit method {method.name!r}: {err}") from err
        ours = err
    try:
        method.load_official(model, path)
    except (WeightsError, ValueError, KeyError, RuntimeError) as err:
        raise WeightsError(f"neither our weights ({ours}) nor the official release of {method.name!r} ({err})") from err


def require_finite(model: nn.Module, path: Path) -> None:
    """Weights holding NaN or Inf restore every image to black: refuse them at load."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{path}: weights hold NaN or Inf values ({name}); the file is unusable: "
                               "retrain or take another checkpoint")


# -- the authors' releases -------------------------------------------------------------------------
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
)}


def release(name: str) -> Release:
    try:
        return RELEASES[name]
    except KeyError:
        raise FetchError(f"unknown release {name!r}; choose {', '.join(RELEASES)}") from None


def _download_drive(url: str, dest: Path, quiet: bool) -> None:
    import gdown  # only here: its confirmation step is what Google Drive needs

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    result = gdown.download(url, str(part), quiet=quiet, resume=True)
    if result is None:
        raise FetchError(f"{dest.name}: Google Drive download failed ({url})")
    part.replace(dest)


def _download(urls: Sequence[str], dest: Path, *, retries: int, backoff: float, quiet: bool) -> None:
    """Mirrors and plain URLs with :func:`benchmark.fetch.download`; Google Drive links with gdown."""
    errors = []
    plain = [u for u in urls if "drive.google.com" not in u]
    if plain:
        try:
            download(plain, dest, retries=retries, backoff=backoff, quiet=quiet)
            return
        except FetchError as err:
            errors.append(str(err))
    for url in (u for u in urls if "drive.google.com" in u):
        try:
            _download_drive(url, dest, quiet)
            return
        except Exception as err:  # noqa: BLE001 - gdown raises its own types; try the next source
            errors.append(f"{url}: {err}")
    raise FetchError(f"{dest.name}: every source failed:\n  " + "\n  ".join(errors))


def cached_path(root: Path, name: str) -> Path:
    """Where the converted ``.safetensors`` copy of a release lies."""
    return Path(root) / f"{name}.safetensors"


def fetch_weights(name: str, root: Path, *, mirrors: Sequence[str] = (), local: Path | None = None,
                  retries: int = 4, backoff: float = 2.0, quiet: bool = False) -> dict[str, Any]:
    """Fetch (or take ``local``), check against the lock, load strictly, cache ``NAME.safetensors``,
    then record the SHA-256. Returns a record of the files, hash and source."""
    from benchmark import registry

    rel = release(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = Path(local) if local else root / "downloads" / rel.filename
    if local and not path.is_file():
        raise FetchError(f"{path}: no such file (the local copy of release {name})")
    if not local and not path.exists():
        _download([*mirrors, *rel.urls], path, retries=retries, backoff=backoff, quiet=quiet)
    actual, locked = file_digest(path, "sha256"), _lock(root).get(rel.filename)
    if locked and actual != locked:
        raise FetchError(f"{path}: SHA-256 {actual} differs from the one recorded in {root / 'checksums.lock.json'} "
                         f"({locked}); the file changed since its first successful load")
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


def _save_safetensors(model: nn.Module, dest: Path) -> None:
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
                           retries=args.retries, backoff=args.backoff, quiet=args.quiet)
    if args.record:
        write_text_atomic(args.record, json.dumps(record, indent=2))
    print(json.dumps(record["checksums"], indent=2))
    return 0
