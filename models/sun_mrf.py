"""Sun et al.'s motion labels and MRF as ``Deblur_CNN_motion.m`` computes them.

Labels: the CNN's 73 base labels (orientation, length) are extended by the image rotations 0, 6, ...,
24 degrees (label (o, l) of the image rotated by theta is (o + theta, l) of the original), then
re-ordered: the first base label (no blur), followed by every extended label longer than 1 sorted by
orientation (a stable sort; the code's key ``ori * 25 + ori`` never looks at the length), 361 in all.

MRF: on every third pixel of the region the patches cover (starting at its second row and column),
each node keeps 50 candidates, its labels at probability ranks 1-20 and round(21 : 341/30 : 361)
(a stable descending sort); the unary cost is minus the probability, the pairwise cost between 4-
neighbours is ||100 (m_p - m_q)||^2 with m = (l cos o, l sin o). Ce Liu's ``immaxproduct`` (min-sum
belief propagation, synchronous, 15 iterations, new messages weighted 0.5) picks one candidate per
node, computed here in single precision in the code's order of operations (MATLAB computes in
single there because the costs are single). The node labels are enlarged to the region by
``imresize(..., 'nearest')`` (MATLAB's index mapping); outside it the field is length 0 (no blur), and
wherever the length is 1 the orientation is set to 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch

ROTATIONS = (0, 6, 12, 18, 24)
CANDIDATES = 50
BP_ITERATIONS = 15
BP_DAMPING = 0.5
NODE_STEP = 3
PAIRWISE_SCALE = 100.0


def matlab_round(x: np.ndarray | float) -> np.ndarray:
    """MATLAB's round: halves away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def extended_labels(base: np.ndarray, rotations: tuple[int, ...] = ROTATIONS) -> tuple[np.ndarray, np.ndarray]:
    """``base`` (73, 2) of (orientation, length) -> (361, 2) labels in the code's order, and for each the
    row of the rotation-major (5 x 73) confidence stack it comes from."""
    base = np.asarray(base, dtype=np.float64)
    ext = np.concatenate([base + [theta, 0] for theta in rotations])
    ids = np.flatnonzero(ext[:, 1] > 1)
    key = ext[ids, 0] * 25 + ext[ids, 0]
    reorder = np.concatenate([[0], ids[np.argsort(key, kind="stable")]])
    return ext[reorder], reorder


def label_vectors(labels: np.ndarray) -> np.ndarray:
    """(n, 2) labels -> (n, 2) scaled motion vectors 100 (l cos o, l sin o) as the pairwise term uses."""
    o, m = labels[:, 0], labels[:, 1]
    return PAIRWISE_SCALE * np.stack([m * np.cos(o / 180 * np.pi), m * np.sin(o / 180 * np.pi)], 1)


def pairwise_costs(labels: np.ndarray) -> np.ndarray:
    """The code's D: squared distances of the scaled vectors, |a|^2 + |b|^2 - 2 a.b in double."""
    x = label_vectors(labels)
    sq = (x**2).sum(1)
    return sq[:, None] + sq[None, :] - 2 * (x @ x.T)


def candidate_ranks(n_labels: int = 361) -> np.ndarray:
    """``labelSet`` (0-based): ranks 1-20 and round(21 : (361 - 20) / 30 : 361)."""
    step = (n_labels - 20) / 30
    tail = 21 + step * np.arange(int(math.floor((n_labels - 21) / step + 1e-10)) + 1)
    return (matlab_round(np.concatenate([np.arange(1, 21), tail])) - 1).astype(np.int64)


def belief_propagation(unary: torch.Tensor, cm_h: torch.Tensor, cm_v: torch.Tensor,
                       iterations: int = BP_ITERATIONS, alpha: float = BP_DAMPING) -> torch.Tensor:
    """``immaxproduct``: unary (S, H, W), cm_h (S, S, H, W - 1) [left state x right state],
    cm_v (S, S, H - 1, W) [top state x bottom state], all float32 -> (H, W) state indices."""
    s, h, w = unary.shape
    zeros = lambda *shape: torch.zeros(shape, dtype=unary.dtype, device=unary.device)  # noqa: E731
    tb, bt, lr, rl = zeros(s, h - 1, w), zeros(s, h - 1, w), zeros(s, h, w - 1), zeros(s, h, w - 1)
    half = torch.tensor(alpha, dtype=unary.dtype)
    keep = torch.tensor(1 - alpha, dtype=unary.dtype)

    def send(belief: torch.Tensor, cm: torch.Tensor, sender_first: bool) -> torch.Tensor:
        # min over the sender's state of (sender's belief + compatibility[sender, receiver])
        costs = cm if sender_first else cm.transpose(0, 1)
        return (belief[:, None] + costs).amin(0)

    def marginals() -> torch.Tensor:
        m = zeros(s, h, w)
        m[:, 1:] += tb
        m[:, :-1] += bt
        m[:, :, 1:] += lr
        m[:, :, :-1] += rl
        return m + unary

    for _ in range(iterations):
        b = zeros(s, h - 1, w)  # top -> bottom
        b[:, 1:] += tb[:, :-1]
        b[:, :, :-1] += rl[:, :-1]
        b[:, :, 1:] += lr[:, :-1]
        tb1 = send(b + unary[:, :-1], cm_v, True)
        b = zeros(s, h - 1, w)  # bottom -> top
        b[:, :-1] += bt[:, 1:]
        b[:, :, :-1] += rl[:, 1:]
        b[:, :, 1:] += lr[:, 1:]
        bt1 = send(b + unary[:, 1:], cm_v, False)
        b = zeros(s, h, w - 1)  # left -> right
        b[:, :, 1:] += lr[:, :, :-1]
        b[:, :-1] += bt[:, :, :-1]
        b[:, 1:] += tb[:, :, :-1]
        lr1 = send(b + unary[:, :, :-1], cm_h, True)
        b = zeros(s, h, w - 1)  # right -> left
        b[:, :, :-1] += rl[:, :, 1:]
        b[:, :-1] += bt[:, :, 1:]
        b[:, 1:] += tb[:, :, 1:]
        rl1 = send(b + unary[:, :, 1:], cm_h, False)
        tb, bt = tb1 * half + tb * keep, bt1 * half + bt * keep
        lr, rl = lr1 * half + lr * keep, rl1 * half + rl * keep
    return marginals().argmin(0)


def mrf_labels(probs: torch.Tensor, labels: np.ndarray, iterations: int = BP_ITERATIONS,
               alpha: float = BP_DAMPING) -> torch.Tensor:
    """Node confidences (361, H, W) float32 -> (H, W) label indices into ``labels`` (the 361)."""
    n, h, w = probs.shape
    ranks = torch.from_numpy(candidate_ranks(n)).to(probs.device)
    values, order = torch.sort(probs.reshape(n, -1), dim=0, descending=True, stable=True)
    unary = -values[ranks].reshape(len(ranks), h, w)
    cand = order[ranks].reshape(len(ranks), h, w)
    d = torch.from_numpy(pairwise_costs(labels)).to(probs.device, torch.float32)
    cm_h = d[cand[:, :, :-1][:, None], cand[:, :, 1:][None]]  # (S, S, H, W - 1)
    cm_v = d[cand[:, :-1][:, None], cand[:, 1:][None]]  # (S, S, H - 1, W)
    best = belief_propagation(unary, cm_h, cm_v, iterations, alpha)
    return torch.gather(cand, 0, best[None])[0]


def valid_region(covered: np.ndarray) -> tuple[int, int, int, int]:
    """(first row, last row, first column, last column), 0-based inclusive, of the covered region as the
    code finds it: along the middle column and the middle row (MATLAB's round(r / 2), 1-based)."""
    r, c = covered.shape
    mid_r, mid_c = int(matlab_round(r / 2)) - 1, int(matlab_round(c / 2)) - 1
    cols = np.flatnonzero(covered[mid_r])
    rows = np.flatnonzero(covered[:, mid_c])
    if len(rows) == 0 or len(cols) == 0:
        raise ValueError(f"no pixel of the {r}x{c} image is covered by a patch")
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def node_grid(region: tuple[int, int, int, int], step: int = NODE_STEP) -> tuple[np.ndarray, np.ndarray]:
    """0-based rows and columns of the MRF's nodes: every ``step``-th pixel (the code's 3) from the
    region's second."""
    x_s, x_e, y_s, y_e = region
    return np.arange(x_s + 1, x_e + 1, step), np.arange(y_s + 1, y_e + 1, step)


def resize_nearest(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``imresize(values, shape, 'nearest')`` (MATLAB): output index x (1-based) reads input index
    floor(u + 1/2) with u = x / scale + (1 - 1 / scale) / 2, scale = out / in, per dimension."""
    out = values
    for axis, size in enumerate(shape):
        n = out.shape[axis]
        scale = size / n
        u = np.arange(1, size + 1) / scale + 0.5 * (1 - 1 / scale)
        index = np.clip(np.floor(u + 0.5).astype(np.int64), 1, n) - 1
        out = np.take(out, index, axis=axis)
    return out


def full_field(node_labels: np.ndarray, labels: np.ndarray, region: tuple[int, int, int, int],
               shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Node label indices -> per-pixel (length, orientation) maps of ``shape``: nearest-neighbour
    enlarged over the region, length 0 outside it, orientation 0 wherever the length is 1."""
    mag = labels[node_labels, 1]
    ori = np.where(mag == 1, 0.0, labels[node_labels, 0])
    x_s, x_e, y_s, y_e = region
    size = (x_e - x_s + 1, y_e - y_s + 1)
    full_mag, full_ori = np.zeros(shape), np.zeros(shape)
    full_mag[x_s:x_e + 1, y_s:y_e + 1] = resize_nearest(mag, size)
    full_ori[x_s:x_e + 1, y_s:y_e + 1] = resize_nearest(ori, size)
    return full_mag, full_ori
