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
import zlib
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
    """``load_state_dict(strict=True)`` (DataParallel's ``module.`` prefix accepted), checked first: the
    missing and unexpected keys, any shape difference, a tensor of another kind than the network's (booleans
    or integers where it has floating-point weights: ``load_state_dict`` would cast them silently, and a
    network of 0s and 1s restores every image to a flat colour) and NaN or infinite values are refused in
    one WeightsError line, before the network is touched. Every weights file this suite reads comes
    through here."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    shared = sorted(set(own) & set(state))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shared if state[k].shape != own[k].shape]
    kinds = [f"{k} {str(state[k].dtype).removeprefix('torch.')} vs {str(own[k].dtype).removeprefix('torch.')}"
             for k in shared if _kind(state[k]) != _kind(own[k])]
    if missing or unexpected or shapes:
        parts = [f"{kind} {_keys(keys)}" for kind, keys in (("missing keys", missing), ("unexpected keys", unexpected))
                 if keys]
        if shapes:
            parts.append(f"shape mismatches {shapes[:MAX_KEYS_SHOWN]}")
        raise WeightsError(f"{path}: does not match {type(model).__name__}: " + "; ".join(parts))
    if kinds:
        raise UnusableWeights(f"{path}: {len(kinds)} tensors hold another kind of value than the network's weights "
                              f"(e.g. {', '.join(kinds[:3])}); not weights of this network: give its trained file")
    bad = [k for k in shared if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all())]
    if bad:
        more = f" and {len(bad) - 1} more tensors" if len(bad) > 1 else ""
        raise UnusableWeights(f"{path}: weights hold NaN or Inf values ({bad[0]}{more}); the file is unusable: "
                              "retrain or take another checkpoint")
    model.load_state_dict(state, strict=True)


def _kind(tensor: torch.Tensor) -> str:
    """floating point, complex, bool or integer: what load_state_dict may not turn into one another."""
    if tensor.is_floating_point():
        return "float"
    if tensor.is_complex():
        return "complex"
    return "bool" if tensor.dtype == torch.bool else "integer"


class UnreadableWeights(WeightsError):
    """A file that is no readable torch file at all (as opposed to weights of another network)."""


class UnusableWeights(WeightsError):
    """Weights of the network's layout whose values cannot be used (NaN, Inf, booleans for floats): no
    other reading of the file would help."""


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
    """The last-epoch ``models/model-N.pt`` of a zipped DeepDeblur experiment folder (its CRC checked)."""
    with zipfile.ZipFile(path) as z:
        found = [(int(m.group(1)), name) for name in z.namelist()
                 if (m := re.search(r"(?:^|/)models/model-(\d+)\.pt$", name))]
        if not found:
            raise WeightsError(f"{path}: a zip without models/model-<epoch>.pt inside")
        name = max(found)[1]
        try:
            return name, z.read(name)
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:
            raise UnreadableWeights(f"{path}: its member {name} cannot be read ({err}); the zip is damaged, "
                                    "fetch it again") from err


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
    try:
        zipped = zipfile.is_zipfile(path) and not _is_torch_zip(path)
        if zipped:
            member, data = _zip_member(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise UnreadableWeights(f"{path}: not a readable zip archive ({err}); it may be cut short") from err
    state = torch_file(io.BytesIO(data), f"{path}:{member}") if zipped else torch_file(path, path)
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


def _load_any(method: Any, model: nn.Module, path: Path) -> None:
    if path.suffix == ".safetensors":
        strict_load(model, read_state(path), path)
        return
    try:
        state = read_state(path, key="generator")
        strict_load(model, state, path)
        return
    except (UnreadableWeights, UnusableWeights):
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
