"""Reference cases for Sun et al. computed by their released code in GNU Octave, and the small GMM
those cases use.

Run once, by hand, to (re)make ``tests/data/sun/reference.npz`` (the command is in
``tests/data/sun/README.md``)::

    python tests/sun_reference.py --official DIR

``DIR`` holds the official files, fetched separately and never committed: ``motionBlurConv.cc`` and
``motionBlurConv_mirror.cc`` (Jian Sun's MEX sources, as in donggong1/motion-flow-syn@e43da13
``conv_opt/``), ``Deblur_CNN_motion.m``, ``fast_deconv_nonUniform_gmmprior.m``, ``Afun_gmm.m``,
``motion2magori.m``, ``immaxproduct.m`` and ``imgraphen.m`` (Ce Liu) from Sun et al.'s release, and
EPLL's ``aprxMAPGMM.m``, ``loggausspdf2.m`` and ``scol2im.m`` (Zoran & Weiss). The script compiles
the two C files with ``mkoctfile --mex`` and runs:

- ``operator``: ``motionBlurConv`` and ``motionBlurConv_mirror`` on a random image and a field of
  lengths 0-25 (fractional ones too) and orientations 0-180, among them 90 and the values the
  label -> vector -> ``motion2magori`` round trip produces;
- ``deconv``: ``fast_deconv_nonUniform_gmmprior`` (the demo's ``maxIter_in = 5``, ``maxIter_out = 1``)
  on a blurred photo crop with a two-region label field, with :func:`reference_gmm` saved as
  ``GSModel_8x8_200_2M_noDC_zeromean.mat`` (the published 200-component model is not needed to check
  the arithmetic);
- ``mrf``: the label extension and re-ordering, the MRF and the nearest-neighbour upsampling of
  ``Deblur_CNN_motion.m``, cut verbatim from the file between its own comments, on a confidence map
  given at the MRF's nodes (the CNN, MatConvNet and ``generateKernels``, whose kernels the code
  collects but never uses, are not needed for that part).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy import io

OUT = Path(__file__).resolve().parent / "data" / "sun" / "reference.npz"
SOURCES = ("motionBlurConv.cc", "motionBlurConv_mirror.cc", "Deblur_CNN_motion.m", "fast_deconv_nonUniform_gmmprior.m",
           "Afun_gmm.m", "motion2magori.m", "immaxproduct.m", "imgraphen.m", "aprxMAPGMM.m", "loggausspdf2.m",
           "scol2im.m")


def reference_gmm() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four zero-mean 8x8 patch Gaussians made by formula (weights, covariances, means in MATLAB's
    ``im2col`` order): smooth, horizontal and vertical structure, fine texture; the DC direction is
    projected out as in EPLL's ``noDC`` model."""
    rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    r, c = rows.ravel(order="F"), cols.ravel(order="F")  # im2col: column-major inside the patch
    dr, dc = np.abs(r[:, None] - r[None]), np.abs(c[:, None] - c[None])
    centre = np.eye(64) - np.full((64, 64), 1 / 64)
    covs = []
    for scale, lr, lc in ((0.01, 3.0, 3.0), (0.02, 1.0, 6.0), (0.02, 6.0, 1.0), (0.003, 0.7, 0.7)):
        covs.append(centre @ (scale * np.exp(-dr / lr - dc / lc)) @ centre)
    return np.array([0.4, 0.2, 0.2, 0.2]), np.stack(covs), np.zeros((4, 64))


def base_labels() -> np.ndarray:
    """The 73 base labels (orientation, length, id) in the order this suite's CNN uses: no blur, then
    lengths 3..25 by orientation 0..150."""
    labels = [(0, 1)] + [(o, m) for m in range(3, 26, 2) for o in range(0, 180, 30)]
    return np.array([[o for o, _ in labels], [m for _, m in labels], list(range(1, 74))], dtype=np.float64)


def _operator_case(rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, w = 23, 19
    mags = np.array([0, 1, 2, 3, 4.5, 7, 9.25, 12, 17, 25])
    oris = np.array([0, 6, 30, 45, 89.5, 90, 96, 135, 150, 174, 179.9])
    mag = rng.choice(mags, (h, w))
    ori = rng.choice(oris, (h, w))
    # a block with the field the deconvolution sees: labels through vectors and motion2magori
    lab_m = rng.choice(np.arange(3, 26, 2), (6, 6)).astype(float)
    lab_o = rng.choice(np.arange(0, 180, 6), (6, 6)).astype(float)
    u, v = lab_m * np.cos(lab_o / 180 * np.pi), lab_m * np.sin(lab_o / 180 * np.pi)
    m2 = np.sqrt(u**2 + v**2)
    o2 = np.arctan(v / np.where(u == 0, 1e-16, u)) * 180 / np.pi
    mag[:6, :6], ori[:6, :6] = m2, np.where(o2 < 0, o2 + 180, o2)
    return {"x": rng.random((h, w)), "y": rng.random((h, w)), "mag": mag, "ori": ori}


def _deconv_case(rng: np.random.Generator) -> dict[str, np.ndarray]:
    from skimage import data, transform

    sharp = transform.resize(data.astronaut()[30:190, 170:314], (40, 36), anti_aliasing=True)
    mag, ori = np.zeros((40, 36)), np.zeros((40, 36))
    mag[3:37, 2:18], ori[3:37, 2:18] = 9, 30
    mag[3:37, 18:34], ori[3:37, 18:34] = 15, 102
    mag[20:30, 10:20], ori[20:30, 10:20] = 1, 0
    return {"sharp": sharp, "mag": mag, "ori": ori, "noise": 0.005 * rng.standard_normal(sharp.shape)}


def _mrf_case(rng: np.random.Generator) -> dict[str, np.ndarray]:
    r, c = 33, 30
    valid = np.zeros((r, c), bool)
    valid[3:31, 2:29] = True  # rows 4..31, columns 3..29 (1-based), as the patches would cover
    node_r = np.arange(3, 31)[1::3]
    node_c = np.arange(2, 29)[1::3]
    n = len(node_r) * len(node_c)
    # CNN-like distributions per rotation block: a preferred base label that drifts across the grid,
    # quantised to multiples of 2^-10 so that ties (among them many zeros) occur.
    probs = rng.random((365, n)) ** 6
    pref = (np.arange(n) * 7 // n + 5) % 73
    for k in range(5):
        probs[73 * k + pref, np.arange(n)] += 3 + rng.random(n)
        probs[73 * k + (pref + 1) % 73, np.arange(n)] += 2 * rng.random(n)
    probs = probs.reshape(5, 73, n)
    probs /= probs.sum(1, keepdims=True)
    probs = np.round(probs.reshape(365, n) * 1024) / 1024
    return {"valid": valid, "node_r": node_r, "node_c": node_c, "probs": probs.astype(np.float32)}


# Octave's bicg (7.3) stops with flag 4 ("can't continue") whenever the residual's inner product does
# not shrink from one iteration to the next (its test `abs (prod_rs) <= abs (beta)`), which happens in
# the first handful of iterations here (relative residual 2e-3 after 5 of them); MATLAB's bicg, which
# the released code was written for, stops only on a true breakdown (rho or p'Aq zero) or at the
# tolerance. This textbook BiCG (Barrett et al., Templates, 1994, the algorithm MATLAB documents;
# unpreconditioned, shadow residual = the initial residual) shadows Octave's in the working folder.
# On the code's symmetric system its shadow sequences equal the primal ones, i.e. it is CG.
BICG = """function [x, flag, relres, iter] = bicg(afun, b, tol, maxit, m1, m2, x)
n2b = norm(b); tolb = tol * n2b; flag = 1; iter = 0;
r = b - afun(x, 'notransp'); rt = r; normr = norm(r);
if normr <= tolb, flag = 0; relres = normr / n2b; return; end
xmin = x; normrmin = normr; imin = 0; rho = 1;
for ii = 1:maxit
  rho1 = rho; rho = rt' * r;
  if rho == 0 || isinf(rho), flag = 4; break; end
  if ii == 1, p = r; pt = rt; else, beta = rho / rho1; p = r + beta * p; pt = rt + beta * pt; end
  q = afun(p, 'notransp'); qt = afun(pt, 'transp'); ptq = pt' * q;
  if ptq == 0 || isinf(ptq), flag = 4; break; end
  alpha = rho / ptq;
  x = x + alpha * p; r = r - alpha * q; rt = rt - alpha * qt; normr = norm(r); iter = ii;
  if normr <= tolb, flag = 0; break; end
  if normr < normrmin, normrmin = normr; xmin = x; imin = ii; end
end
if flag ~= 0, x = xmin; iter = imin; normr = normrmin; end
relres = normr / n2b;
"""


def _run(octave_dir: Path, script: str) -> None:
    (octave_dir / "case.m").write_text("pkg load image;\n" + script)
    subprocess.run(["octave-cli", "--no-window-system", "case.m"], cwd=octave_dir, check=True, capture_output=True)


def _segment(text: str, start: str, end: str) -> str:
    a = text.index(start)
    return text[a:text.index(end, a)]


def make(official: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2015)
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in SOURCES:
            shutil.copy(official / name, work / name)
        for name in ("motionBlurConv.cc", "motionBlurConv_mirror.cc"):
            subprocess.run(["mkoctfile", "--mex", name], cwd=work, check=True, capture_output=True)
        (work / "bicg.m").write_text(BICG)

        op = _operator_case(rng)
        io.savemat(work / "in.mat", op)
        _run(work, "load in.mat; Kx = motionBlurConv(x, mag, ori); KTy = motionBlurConv_mirror(y, mag, ori);\n"
                   "save('-v7', 'out.mat', 'Kx', 'KTy');\n")
        res = io.loadmat(work / "out.mat")
        out.update({f"operator_{k}": v for k, v in op.items()})
        out["operator_Kx"], out["operator_KTy"] = res["Kx"], res["KTy"]

        dc = _deconv_case(rng)
        weights, covs, means = reference_gmm()
        gs = {"nmodels": float(len(weights)), "mixweights": weights[:, None], "covs": covs.transpose(1, 2, 0),
              "means": means.T}
        io.savemat(work / "GSModel_8x8_200_2M_noDC_zeromean.mat", {"GS": gs})
        io.savemat(work / "in.mat", dc)
        _run(work, "load in.mat;\n"
                   "[bm, bo] = motion2magori(mag .* cos(ori / 180 * pi), mag .* sin(ori / 180 * pi));\n"
                   "blurred = zeros(size(sharp));\n"
                   "for ch = 1:3, blurred(:, :, ch) = motionBlurConv(sharp(:, :, ch), bm, bo); end\n"
                   "blurred = blurred + noise;\n"
                   "params.maxIter_out = 1; params.maxIter_in = 5;\n"
                   "kernelInit.mlhmag = mag; kernelInit.mlhori = ori;\n"
                   "res = fast_deconv_nonUniform_gmmprior(blurred, blurred, [], params, kernelInit);\n"
                   "save('-v7', 'out.mat', 'blurred', 'res');\n")
        res = io.loadmat(work / "out.mat")
        out.update({"deconv_mag": dc["mag"], "deconv_ori": dc["ori"], "deconv_blurred": res["blurred"],
                    "deconv_restored": res["res"]})

        mrf = _mrf_case(rng)
        r, c = mrf["valid"].shape
        est_map = np.zeros((365, r, c), np.float32)
        rr, cc = np.meshgrid(mrf["node_r"], mrf["node_c"], indexing="ij")
        est_map[:, rr.ravel(), cc.ravel()] = mrf["probs"] * 2  # divided by est_map_co = 2 below
        est_map_co = np.where(mrf["valid"], 2.0, 0.0)[None].repeat(365, 0)
        io.savemat(work / "in.mat", {"kernel_labels": base_labels(), "est_map": est_map, "est_map_co": est_map_co,
                                     "im": np.zeros((r, c, 3))})
        code = (official / "Deblur_CNN_motion.m").read_text()
        head = _segment(code, "ointe = 6;", "% generate the grids on original resolution")
        mrf_code = _segment(code, "valid_mask = squeeze(", "%% jointly estimate the blur kernel")
        (work / "generateKernels.m").write_text(
            "function k = generateKernels(oris, mags)\n% stand-in: the kernels are collected but never used\n"
            "k = cell(1, numel(oris));\n")
        _run(work, "load in.mat; est_map = single(est_map); [r, c, d] = size(im);\n" + head + mrf_code
             + "save('-v7', 'out.mat', 'kernel_labels_ext', 'reorder', 'IDX', 'idimg', 'mlhmag', 'mlhori', "
               "'mlhmag_full', 'mlhori_full', 'x_s', 'x_e', 'y_s', 'y_e', 'labelSet');\n")
        res = io.loadmat(work / "out.mat")
        out.update({f"mrf_{k}": v for k, v in mrf.items()})
        for key in ("kernel_labels_ext", "reorder", "IDX", "idimg", "mlhmag", "mlhori", "mlhmag_full", "mlhori_full",
                    "x_s", "x_e", "y_s", "y_e", "labelSet"):
            out[f"mrf_out_{key}"] = np.asarray(res[key])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="folder of the official files (see above)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    missing = [n for n in SOURCES if not (args.official / n).is_file()]
    if missing:
        raise SystemExit(f"{args.official}: missing {', '.join(missing)}")
    cases = make(args.official)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **cases)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
