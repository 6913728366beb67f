"""The 8x8 patch GMM of Sun et al.'s deconvolution: EPLL's published model, or one fitted here.

- ``epll``: Zoran & Weiss's ``GSModel_8x8_200_2M_noDC_zeromean.mat`` (200 zero-mean components learnt
  from 2 million patches), the file ``fast_deconv_nonUniform_gmmprior.m`` loads; it ships inside the
  EPLL release ``epllcode.zip``. ``deblurbench fetch epll-gmm`` downloads that archive (resume, retries,
  mirrors: :func:`benchmark.fetch.download`); no checksum is published, so its SHA-256 is recorded in
  the folder's ``checksums.lock.json`` once the model inside has been read, and checked on every later
  fetch (as the GOPRO archive's).
- ``embedded``: offline profiles cannot download it, so a smaller zero-mean GMM is fitted by EM on 8x8
  patches (each colour channel a grey image, the patch mean removed) of the photos the synthetic
  training split is made from: seeded, deterministic, a few seconds. The report names it.

Both are returned as :class:`models.sun_deconv.GMM` in MATLAB's ``im2col`` order (column-major
inside the patch), the order of the published file.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.fetch import MAX_SECONDS, FetchError, _lock, _record, download, file_digest
from benchmark.files import temporary_sibling

EPLL_URL = "https://people.csail.mit.edu/danielzoran/epllcode.zip"  # the EPLL release (Zoran & Weiss, ICCV 2011)
EPLL_ARCHIVE = "epllcode.zip"
EPLL_MAX_BYTES = 200 * 2**20  # the release (code, a few .mat models) is tens of MB: a larger answer is not it
EPLL_MODEL = "GSModel_8x8_200_2M_noDC_zeromean.mat"
PATCH = 8


def read_epll_model(path: Path):
    """The GMM of EPLL's ``GS`` struct (``nmodels``, ``mixweights``, ``covs`` 64x64xK, ``means`` 64xK),
    from the ``.mat`` file or from inside ``epllcode.zip``."""
    from models.sun_deconv import GMM

    weights, covs, means = _epll_arrays(Path(path))
    return GMM(weights, covs, means, f"EPLL {EPLL_MODEL} ({len(weights)} components)")


def _epll_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights K, covariances K x 64 x 64, means K x 64) of the model file; scipy only (the fetch job
    imports no torch)."""
    from scipy import io as sio

    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == EPLL_MODEL]
                if not names:
                    raise FetchError(f"{path}: no {EPLL_MODEL} inside (not the EPLL release)")
                source: Any = io.BytesIO(z.read(names[0]))
        else:
            source = path
        data = sio.loadmat(source, squeeze_me=True, struct_as_record=False)
    except (OSError, zipfile.BadZipFile, ValueError, NotImplementedError) as err:
        raise FetchError(f"{path}: cannot read the EPLL model ({err})") from err
    gs = data.get("GS")
    if gs is None:
        raise FetchError(f"{path}: no variable 'GS' (not EPLL's GMM file)")
    try:
        weights = np.asarray(gs.mixweights, dtype=np.float64).ravel()
        covs = np.asarray(gs.covs, dtype=np.float64)
        means = np.asarray(gs.means, dtype=np.float64)
    except AttributeError as err:
        raise FetchError(f"{path}: GS lacks a field of EPLL's model ({err})") from err
    k = len(weights)
    try:
        covs = covs.reshape(PATCH * PATCH, PATCH * PATCH, k).transpose(2, 0, 1)
        means = means.reshape(PATCH * PATCH, k).T
    except ValueError as err:
        raise FetchError(f"{path}: GS.covs {covs.shape} / GS.means {means.shape} do not hold {k} 8x8 "
                         "components") from err
    return weights, np.ascontiguousarray(covs), np.ascontiguousarray(means)


def fetch_epll(root: Path, *, mirrors: Sequence[str] = (), local: Path | None = None, retries: int = 4,
               backoff: float = 2.0, quiet: bool = False, max_bytes: int | None = None,
               max_seconds: float = MAX_SECONDS) -> dict[str, Any]:
    """Download (or copy ``local``) ``epllcode.zip`` into ``root``, check it against the lock, read the
    model, then record its SHA-256. A download whose model cannot be read is removed. The download is
    capped at ``max_bytes`` (default :data:`EPLL_MAX_BYTES`) and ``max_seconds`` per source."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = Path(local) if local else root / EPLL_ARCHIVE
    if local and not path.is_file():
        raise FetchError(f"{path}: no such file (the local copy of {EPLL_ARCHIVE})")
    if not local and not path.exists():
        download([*mirrors, EPLL_URL], path, retries=retries, backoff=backoff, quiet=quiet,
                 max_bytes=max_bytes or EPLL_MAX_BYTES, max_seconds=max_seconds)
    actual, locked = file_digest(path, "sha256"), _lock(root).get(EPLL_ARCHIVE)
    if locked and actual != locked:
        raise FetchError(f"{path}: SHA-256 {actual} differs from the one recorded in {root / 'checksums.lock.json'} "
                         f"({locked}); the file changed since its first successful read")
    try:
        components = len(_epll_arrays(path)[0])
    except FetchError:
        if not local:
            path.unlink(missing_ok=True)
        raise
    target = root / EPLL_ARCHIVE
    if local and not (target.exists() and target.samefile(path)):  # where Sun et al.'s gmm_file points
        tmp = temporary_sibling(target)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _record(root, EPLL_ARCHIVE, actual)
    return {"dataset": "epll-gmm", "path": str(target), "model": f"{EPLL_MODEL} ({components} components)",
            "source": EPLL_URL, "checksums": {EPLL_ARCHIVE: actual}}


def _training_patches(count: int, seed: int) -> np.ndarray:
    """``count`` 8x8 patches (64 x count, im2col order, mean removed) drawn uniformly from every
    colour channel of the synthetic training split's photos, in [0, 1]."""
    from benchmark.synthetic import TRAIN_PHOTOS, load_photo

    rng = np.random.default_rng([seed, 8])
    photos = [load_photo(name) for name in TRAIN_PHOTOS]
    which = rng.integers(0, len(photos), count)
    out = np.empty((PATCH * PATCH, count))
    for i, photo in enumerate(photos):
        picked = np.flatnonzero(which == i)
        h, w, c = photo.shape
        top = rng.integers(0, h - PATCH + 1, len(picked))
        left = rng.integers(0, w - PATCH + 1, len(picked))
        channel = rng.integers(0, c, len(picked))
        rows = top[:, None, None] + np.arange(PATCH)[None, :, None]
        cols = left[:, None, None] + np.arange(PATCH)[None, None, :]
        patches = photo[rows, cols, channel[:, None, None]].astype(np.float64) / 255
        out[:, picked] = patches.transpose(0, 2, 1).reshape(len(picked), -1).T  # column-major inside
    return out - out.mean(0, keepdims=True)


def fit_gmm(patches: np.ndarray, components: int, iterations: int, seed: int, floor: float = 1e-6):
    """EM for a zero-mean Gaussian mixture on columns of ``patches`` (means fixed at 0, as the noDC
    model's); ``floor`` x I keeps each covariance invertible in the direction the mean removal zeroes.
    Starts from a seeded random partition. Runs in torch on one CPU thread whatever the caller's
    setting (multithreaded BLAS crawls on a shared machine, and one thread makes the fit identical in
    every job)."""
    import torch

    from models.sun_deconv import GMM

    d, n = patches.shape
    rng = np.random.default_rng([seed, 9])
    resp = torch.zeros(components, n, dtype=torch.float64)
    resp[torch.from_numpy(rng.integers(0, components, n)), torch.arange(n)] = 1.0
    x = torch.from_numpy(np.ascontiguousarray(patches))
    eye = torch.eye(d, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(iterations + 1):
            weight = resp.sum(1) + 1e-12
            covs = torch.stack([(x * r) @ x.T for r in resp]) / weight[:, None, None] + floor * eye
            mix = weight / n
            chol = torch.linalg.cholesky(covs)
            z = torch.linalg.solve_triangular(chol, x.expand(components, d, n), upper=False)
            logp = (torch.log(mix)[:, None] - torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)[:, None]
                    - 0.5 * z.square().sum(1))
            resp = torch.softmax(logp, dim=0)
    finally:
        torch.set_num_threads(threads)
    return GMM(mix.numpy(), covs.numpy(), np.zeros((components, d)),
               f"fitted here: {components} zero-mean components, EM ({iterations} iterations) on {n} 8x8 patches of "
               "the synthetic training photos")


@functools.lru_cache(maxsize=4)
def embedded_gmm(components: int, patches: int, iterations: int, seed: int):
    return fit_gmm(_training_patches(patches, seed), components, iterations, seed)


@functools.lru_cache(maxsize=2)
def _published(path: str):
    return read_epll_model(Path(path))


def gmm_for(options: Mapping[str, Any]):
    """The GMM Sun et al.'s options name: ``gmm: epll`` (the file at ``gmm_file``, fetched by
    ``deblurbench fetch epll-gmm``) or ``gmm: embedded`` (fitted on the embedded training photos)."""
    if options["gmm"] == "epll":
        path = Path(options["gmm_file"])
        if not path.is_file():
            raise FetchError(f"{path}: EPLL's published GMM is not there; run `deblurbench fetch epll-gmm --root "
                             f"{path.parent}` (the workflow does when sun's gmm is 'epll'), or set gmm: embedded")
        return _published(str(path))
    if options["gmm"] == "embedded":
        return embedded_gmm(options["gmm_components"], options["gmm_patches"], options["gmm_iterations"],
                            options["gmm_seed"])
    raise ValueError(f"sun: gmm = {options['gmm']!r}; choose 'epll' (the published model) or 'embedded'")
