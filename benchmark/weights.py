"""Weights: load ours or the authors' released files strictly.

``deblurbench train`` writes ``{'generator': state_dict, ...}`` checkpoints or ``model.pt``;
the authors' releases keep their own layouts (a plain state dict for DeblurGAN, ``{'G': ...}`` inside
a zipped experiment folder for DeepDeblur, ``{'params': ...}`` for NAFNet), each read by its method's
``load_official``; a converted ``.safetensors`` copy loads directly. Every load is strict and refuses
a mismatch with the lists of missing and unexpected keys. Files are read with ``weights_only=True``.

The authors' releases and their fetching are :mod:`benchmark.releases`.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

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
        parts = [f"{kind} {_keys(keys)}" for kind, keys in (("missing keys", missing), ("unexpected keys", unexpected))
                 if keys]
        if shapes:
            parts.append(f"shape mismatches {shapes[:MAX_KEYS_SHOWN]}")
        raise WeightsError(f"{path}: does not match {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


class UnreadableWeights(WeightsError):
    """A file that is no readable torch file at all (as opposed to weights of another network)."""


def torch_file(source: Any, path: Path | str, map_location: Any = "cpu") -> Any:
    """``torch.load(..., weights_only=True)``, the one way this suite reads a torch file: our checkpoints,
    ``model.pt`` and the authors' releases. Nothing in the file is run; a refused or broken file is one
    :class:`UnreadableWeights` line naming the refused global or the format problem."""
    if isinstance(source, str | Path):
        with open(source, "rb") as f:
            magic = f.read(2)
        if magic != b"PK" and magic[:1] != b"\x80":  # a torch zip archive, or a (legacy) pickle
            raise UnreadableWeights(f"{path}: not a torch file (neither a torch zip archive nor a pickle); give "
                                    "the model.pt or checkpoint.pt that deblurbench train wrote, or a release")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing a file
            warnings.simplefilter("ignore")
            return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means the file is unusable
        refused = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))
        if refused:
            what = refused.group(1).split(" was not")[0].strip()
            reason = f"the weights-only loader refused it: {what}; nothing in it was run"
        else:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
        raise UnreadableWeights(f"{path}: not a readable torch file ({reason}); it may be cut short or of "
                                "another program") from err


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
        state = torch_file(io.BytesIO(data), f"{path}:{member}")
    else:
        state = torch_file(path, path)
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
    except UnreadableWeights:
        raise
    except WeightsError as err:
        if method.load_official is None:
            raise WeightsError(f"{err}; give the options it was trained with (--options) or other weights "
                               f"for method {method.name!r}") from err
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
