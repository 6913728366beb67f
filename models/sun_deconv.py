"""Sun et al.'s non-blind step as their released code computes it: the per-pixel line-kernel blur
(``motionBlurConv.cc``), its exact adjoint (``motionBlurConv_mirror.cc``), and the non-uniform
deconvolution of ``fast_deconv_nonUniform_gmmprior.m`` with EPLL's patch prior (``aprxMAPGMM.m``,
``loggausspdf2.m``, ``scol2im.m`` of Zoran & Weiss's release).

The deconvolution is one global problem per colour channel: for each beta of the continuation,
every overlapping 8x8 patch of the current estimate is replaced by the Wiener estimate of its most
likely GMM component (zero-mean patches, noise variance 1/beta), then

    (lambda K^T K + beta diag(counts)) x = lambda K^T y + beta sum_i P_i^T z_i

is solved by conjugate gradients (the code's ``bicg`` on this symmetric positive definite system:
tolerance 1e-5 on the relative residual, at most 300 iterations, warm-started) and x is clipped to
[0, 1]. The channels are solved side by side (one batched CG, each channel stopping on its own).

Array layout: images are (rows, columns) as MATLAB stores them; the C code's ``x`` offset ``k`` runs
along rows and ``y`` offset ``l`` along columns, so orientation 0 is a line along the rows (vertical
on screen) and 90 a line along the columns. GMM covariances are kept in MATLAB's ``im2col`` order
(column-major inside the 8x8 patch), the order of the published model file.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# The C code's constants: ``#define eps 2.2204e-16f`` (a float literal) and a line width of 1 pixel.
C_EPS = float(np.float32(2.2204e-16))
LINE_WIDTH = 1.0
PATCH = 8  # EPLL's patch size

# fast_deconv_nonUniform_gmmprior.m and the released demo (maxIter_in = 5 of betas = 50 * 2^k).
LAMBDA = 1.5e5
BETAS = (50.0, 100.0, 200.0, 400.0, 800.0)
CG_TOL = 1e-5
CG_MAX_ITER = 300


def motion2magori(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``motion2magori.m``: length sqrt(u^2 + v^2) and orientation atan(v / u) in degrees, moved into
    [0, 180); a zero ``u`` becomes 1e-16 first (so a zero vector has orientation 0)."""
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    m = np.sqrt(u**2 + v**2)
    u = np.where(u == 0, 1e-16, u)
    o = np.arctan(v / u) * 180 / np.pi
    return m, np.where(o < 0, o + 180, o)


def field_from_labels(mag: np.ndarray, ori: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (length, orientation) the deconvolution blurs with, from a label field: the code turns the
    field into motion vectors (mag cos, mag sin) and back through :func:`motion2magori`."""
    mag, ori = np.asarray(mag, dtype=np.float64), np.asarray(ori, dtype=np.float64)
    return motion2magori(mag * np.cos(ori / 180 * np.pi), mag * np.sin(ori / 180 * np.pi))


def line_kernel(mag: float, ori: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pixel's kernel as ``motionBlurConv.cc`` computes it: (row offsets, column offsets,
    weights normalised to sum 1), zero taps dropped. A line through the centre, ``mag`` pixels long,
    at ``ori`` degrees from the row axis, 1 pixel wide with linearly fading ends."""
    half = (mag - 1) / 2.0
    phi = math.fmod(ori, 180) / 180 * math.pi
    cos, sin = math.cos(phi), math.sin(phi)
    xsign = -1.0 if cos < 0 else 1.0
    sx = int(math.floor(abs(half * cos + LINE_WIDTH * xsign - mag * C_EPS)))
    sy = int(math.floor(abs(half * sin + LINE_WIDTH - mag * C_EPS)))
    ls, ks = np.meshgrid(np.arange(-sy, sy + 1), np.arange(-sx, sx + 1), indexing="ij")  # C loop order
    ls, ks = ls.ravel(), ks.ravel()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dist = ls * cos + ks * sin
        centre = np.sqrt((ls * ls + ks * ks).astype(np.float64))
        end = (np.abs(dist) <= LINE_WIDTH) & (centre >= half)
        to_end = half - np.abs((ks + dist * sin) / cos)
        dist = np.where(end, np.sqrt(dist**2 + to_end**2), dist)
    weight = np.maximum(LINE_WIDTH + C_EPS - np.abs(dist), 0.0)
    total = weight.sum()
    keep = weight > 0
    if total > 0:
        weight = weight / total
    return ks[keep], ls[keep], weight[keep]


class MotionBlur:
    """The spatially varying blur K of a (length, orientation) field and its adjoint K^T, as sparse
    matrices over the flattened (rows x columns) image; outside the image the nearest edge pixel is
    used (the C code's clamped offsets). ``K(x)`` and ``K.T(x)`` take tensors (..., rows, columns)."""

    def __init__(self, mag: np.ndarray, ori: np.ndarray, device: torch.device | str = "cpu") -> None:
        mag, ori = np.asarray(mag, dtype=np.float64), np.asarray(ori, dtype=np.float64)
        if mag.shape != ori.shape or mag.ndim != 2:
            raise ValueError(f"motion field: length {mag.shape} and orientation {ori.shape} must be equal 2-D maps")
        self.shape = mag.shape
        h, w = self.shape
        pairs, inverse = np.unique(np.stack([mag.ravel(), ori.ravel()], 1), axis=0, return_inverse=True)
        inverse = inverse.ravel()
        order = np.argsort(inverse, kind="stable")
        starts = np.searchsorted(inverse[order], np.arange(len(pairs) + 1))
        rows, cols, vals = [], [], []
        for u, (m, o) in enumerate(pairs):
            pixels = order[starts[u]:starts[u + 1]]
            dk, dl, wt = line_kernel(float(m), float(o))
            i, j = pixels // w, pixels % w
            src_i = np.clip(i[:, None] + dk[None], 0, h - 1)
            src_j = np.clip(j[:, None] + dl[None], 0, w - 1)
            rows.append(np.repeat(pixels, len(wt)))
            cols.append((src_i * w + src_j).ravel())
            vals.append(np.tile(wt, len(pixels)))
        index = torch.from_numpy(np.stack([np.concatenate(rows), np.concatenate(cols)]))
        values = torch.from_numpy(np.concatenate(vals))
        with warnings.catch_warnings():  # torch calls its CSR support beta; the products used here are plain
            warnings.simplefilter("ignore", UserWarning)
            coo = torch.sparse_coo_tensor(index, values, (h * w, h * w)).coalesce()
            self.matrix = coo.to_sparse_csr().to(device)
            self.matrix_t = coo.t().coalesce().to_sparse_csr().to(device)

    def _apply(self, matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"image {tuple(x.shape[-2:])} does not match the motion field {self.shape}")
        flat = x.reshape(-1, self.shape[0] * self.shape[1]).t()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return (matrix @ flat).t().reshape(x.shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """K x: ``motionBlurConv``."""
        return self._apply(self.matrix, x)

    def T(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 - the adjoint's usual name
        """K^T x: ``motionBlurConv_mirror``."""
        return self._apply(self.matrix_t, x)


@dataclass(frozen=True)
class GMM:
    """A zero-mean patch GMM as EPLL stores it (``GS.mixweights``, ``GS.covs``, ``GS.means``), in
    MATLAB's ``im2col`` pixel order; ``name`` says where it came from (shown in the report)."""

    weights: np.ndarray  # (K,)
    covs: np.ndarray  # (K, 64, 64)
    means: np.ndarray  # (K, 64)
    name: str

    def __post_init__(self) -> None:
        k = len(self.weights)
        d = PATCH * PATCH
        if self.covs.shape != (k, d, d) or self.means.shape != (k, d):
            raise ValueError(f"GMM {self.name}: expected {k} weights, {k}x{d}x{d} covariances and {k}x{d} means, "
                             f"got covariances {self.covs.shape} and means {self.means.shape}")


def _row_major(gmm: GMM) -> tuple[np.ndarray, np.ndarray]:
    """Covariances and means in the pixel order of ``F.unfold`` (row-major inside the patch)."""
    perm = np.arange(PATCH * PATCH).reshape(PATCH, PATCH).T.ravel()  # row-major index -> im2col index
    return gmm.covs[:, perm][:, :, perm], gmm.means[:, perm]


class PatchPrior:
    """``aprxMAPGMM`` at one noise level: the most likely component of each mean-removed patch
    (log mixing weight + ``loggausspdf2`` with covariance C_k + sigma^2 I), then its Wiener estimate
    (C_k + sigma^2 I)^-1 (C_k y + sigma^2 mu_k), the patch mean added back."""

    def __init__(self, gmm: GMM, noise_var: float, device: torch.device | str, chunk: int | None = None) -> None:
        covs, means = _row_major(gmm)
        covs = torch.from_numpy(covs).to(device, torch.float64)
        means = torch.from_numpy(means).to(device, torch.float64)
        eye = torch.eye(covs.shape[-1], dtype=torch.float64, device=device)
        noisy = covs + noise_var * eye
        chol = torch.linalg.cholesky(noisy)  # L L^T = C + sigma^2 I (the code's R = L^T)
        d = covs.shape[-1]
        self.whiten = torch.linalg.solve_triangular(chol, eye.expand_as(noisy), upper=False)  # L^-1
        # loggausspdf2.m (EPLL's copy): -(d log 2 pi + 2 sum log diag R + q) / 2, plus log w_k.
        self.offset = (torch.log(torch.from_numpy(gmm.weights).to(device, torch.float64))
                       - 0.5 * (d * math.log(2 * math.pi) + 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1))
                                .sum(-1)))
        self.gain = torch.linalg.solve(noisy, covs)  # (C + S)^-1 C
        self.bias = torch.linalg.solve(noisy, noise_var * means[..., None])[..., 0]  # (C + S)^-1 S mu
        self.chunk = chunk or (16384 if torch.device(device).type == "cuda" else 4096)

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, 64) patches -> (N, 64) estimates."""
        mean = patches.mean(1, keepdim=True)
        y = patches - mean
        k, d = self.whiten.shape[:2]
        stacked = self.whiten.reshape(k * d, d)
        best = torch.empty(len(y), dtype=torch.long, device=y.device)
        for start in range(0, len(y), self.chunk):
            q = (stacked @ y[start:start + self.chunk].t()).reshape(k, d, -1).square().sum(1)  # Mahalanobis
            best[start:start + self.chunk] = torch.argmax(self.offset[:, None] - 0.5 * q, dim=0)  # first maximum
        z = torch.empty_like(y)
        for component in torch.unique(best).tolist():
            members = torch.nonzero(best == component).flatten()
            z[members] = y[members] @ self.gain[component].t() + self.bias[component]
        return z + mean


def _patches(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(C, H, W) -> ((C * L, 64), C): every overlapping 8x8 patch (``im2col(x, [8 8])``)."""
    c = x.shape[0]
    cols = F.unfold(x[:, None], PATCH)  # (C, 64, L)
    return cols.transpose(1, 2).reshape(-1, PATCH * PATCH), c


def _fold(z: torch.Tensor, channels: int, shape: tuple[int, int]) -> torch.Tensor:
    """``scol2im(..., 'sum')``: patches summed back into (C, H, W)."""
    cols = z.reshape(channels, -1, PATCH * PATCH).transpose(1, 2)
    return F.fold(cols, shape, PATCH)[:, 0]


def conjugate_gradient(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, x0: torch.Tensor, tol: float,
                       max_iter: int) -> tuple[torch.Tensor, list[int]]:
    """CG on a batch of independent SPD systems (the first dimension); each stops when its residual
    falls to ``tol`` x its right-hand side's norm or after ``max_iter`` iterations. Where one did not
    converge, the iterate of smallest residual is returned (MATLAB's iterative solvers do the same).
    Returns the solution and the iterations each system took."""
    n = b.shape[0]
    flat = lambda t: t.reshape(n, -1)  # noqa: E731
    x = x0.clone()
    r = b - apply(x)
    norm_b = flat(b).norm(dim=1)
    norm_b = torch.where(norm_b == 0, torch.ones_like(norm_b), norm_b)
    rel = flat(r).norm(dim=1) / norm_b
    active = rel > tol
    best_x, best_rel = x.clone(), rel.clone()
    iterations = [0] * n
    p = r.clone()
    rho = flat(r).square().sum(1)
    for it in range(1, max_iter + 1):
        if not bool(active.any()):
            break
        ap = apply(p)
        alpha = rho / flat(p * ap).sum(1)
        alpha = torch.where(active, alpha, torch.zeros_like(alpha))
        shape = (n,) + (1,) * (b.dim() - 1)
        x = x + alpha.reshape(shape) * p
        r = r - alpha.reshape(shape) * ap
        rho_new = flat(r).square().sum(1)
        rel = rho_new.sqrt() / norm_b
        improved = active & (rel < best_rel)
        best_x[improved], best_rel[improved] = x[improved], rel[improved]
        for i in torch.nonzero(active).flatten().tolist():
            iterations[i] = it
        converged = active & (rel <= tol)
        best_x[converged] = x[converged]
        active = active & ~converged
        beta = torch.where(active, rho_new / rho, torch.zeros_like(rho))
        p = r + beta.reshape(shape) * p
        rho = torch.where(active, rho_new, rho)
    return best_x, iterations


def deconvolve(blurred: np.ndarray, mag: np.ndarray, ori: np.ndarray, gmm: GMM, *,
               lam: float = LAMBDA, betas: Sequence[float] = BETAS, cg_tol: float = CG_TOL,
               cg_max_iter: int = CG_MAX_ITER, device: torch.device | str = "cpu") -> np.ndarray:
    """``fast_deconv_nonUniform_gmmprior``: ``blurred`` (H, W, 3) float in [0, 1] and the label field
    (length, orientation in degrees, both H x W) -> the restored image (H, W, 3) in [0, 1], float64."""
    blurred = np.asarray(blurred, dtype=np.float64)
    if blurred.ndim != 3:
        raise ValueError(f"deconvolve: expected an H x W x C image, got shape {blurred.shape}")
    bmag, bori = field_from_labels(mag, ori)
    blur = MotionBlur(bmag, bori, device)
    y = torch.from_numpy(np.ascontiguousarray(blurred.transpose(2, 0, 1))).to(device)
    shape = tuple(y.shape[-2:])
    by = blur.T(y)
    x = y.clone()
    counts = _fold(torch.ones_like(_patches(y[:1])[0]), 1, shape)[0]
    for beta in betas:
        prior = PatchPrior(gmm, (beta ** -0.5) ** 2, device)  # noiseSD = beta^-0.5, SigmaNoise = noiseSD^2 I
        z, channels = _patches(x)
        rhs = lam * by + beta * _fold(prior(z), channels, shape)
        system = lambda v, beta=beta: lam * blur.T(blur(v)) + beta * counts * v  # noqa: E731 - Afun_gmm
        x, _ = conjugate_gradient(system, rhs, x, cg_tol, cg_max_iter)
        x = x.clamp(0, 1)
    return x.permute(1, 2, 0).cpu().numpy()
