"""Sun et al. (CVPR 2015) as their released code computes it (``Deblur_CNN_motion.m``): the patch CNN
over 73 motion labels, its confidences spread over the pixels, the MRF (:mod:`models.sun_mrf`) and the
non-uniform EPLL deconvolution (:mod:`models.sun_deconv`); plus the CNN's training examples and a
reader for the released MatConvNet model. The method's options and deviations are declared in
``baselines/sun.py``.

Confidences: the image is rotated by 0, 6, ..., 24 degrees (MATLAB's ``imrotate``, bilinear, 'loose'
box, uint8 output); on a grid of original pixels with stride round(34 / 6) = 6, kept ``wid_ex`` = 23
pixels from the border so that every rotated patch fits, the 34x34 patch around the grid point's
position in the rotated image (the code's rounded mapping) goes through the CNN; each patch's 73
probabilities are spread over the patch's window in the original image with the weight
exp(-0.005 ((a - 17)^2 + (b - 17)^2)), a, b = 1..34 (the window covers rows p - 17 .. p + 16 of a
grid point p, so its weights peak one pixel above and left of it, as in the code), and divided by the
summed weights. Only the MRF's nodes need these values, so only they are computed (the sums are
separable in rows and columns).
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import sun_deconv, sun_mrf

PATCH = 34
STRIDE = round(PATCH / 6)  # the code's ``inte``
WINDOW_DECAY = 0.005
LENGTHS = tuple(range(3, 26, 2))
ORIENTATIONS = tuple(range(0, 180, 30))
# (orientation in degrees from the row axis, length in pixels), in this suite's class order: no blur
# first (the code's re-ordering assumes it), then every length by every orientation.
BASE_LABELS = np.array([(0, 1)] + [(o, m) for m in LENGTHS for o in ORIENTATIONS], dtype=np.float64)
KERNEL_SIZE = 2 * 13 + 1  # the longest line (25 px) reaches 13 pixels from the centre


class SunCNN(nn.Module):
    """C1 96@7x7, 2x2 max-pool, C3 256@5x5, 2x2 max-pool, F5 1024, 73 classes, on 34x34 RGB patches.

    Buffers: ``labels`` (73 x 2, orientation and length of each class) and the input's affine map
    (``input_scale``, ``input_shift``) from the suite's [-1, 1] to what the weights expect: identity
    for a network trained here, 0..255 for the authors' MatConvNet model.
    """

    @property
    def min_side(self) -> int:
        """The smallest image side that the rotated patches around the outermost nodes fit in."""
        return 2 * border() + 1

    def __init__(self, classes: int = len(BASE_LABELS)) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 96, 7), nn.ReLU(True), nn.MaxPool2d(2),
                                      nn.Conv2d(96, 256, 5), nn.ReLU(True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(256 * 5 * 5, 1024), nn.ReLU(True),
                                        nn.Linear(1024, classes))
        self.register_buffer("labels", torch.from_numpy(BASE_LABELS.copy()))
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.register_buffer("input_shift", torch.tensor(0.0))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Patches in [-1, 1], N x 3 x 34 x 34 -> logits N x 73."""
        return self.classifier(self.features(patches * self.input_scale + self.input_shift))


def build(options: Mapping[str, Any]) -> SunCNN:
    return SunCNN()


# -- training examples -------------------------------------------------------------------------------
def kernel_image(mag: float, ori: float) -> np.ndarray:
    """The deconvolution's line kernel of a label as a 27x27 image (row offset, column offset), the
    blur the CNN learns to recognise."""
    ks, ls, weights = sun_deconv.line_kernel(mag, ori)
    image = np.zeros((KERNEL_SIZE, KERNEL_SIZE))
    np.add.at(image, (ks + KERNEL_SIZE // 2, ls + KERNEL_SIZE // 2), weights)
    return image


KERNEL_BANK = np.stack([kernel_image(m, o) for o, m in BASE_LABELS])


class PatchCrossEntropy(nn.Module):
    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__()

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)


PATCHES_PER_CROP = 16
NOISE_STD = 0.01  # on the [-1, 1] scale


def prepare_batch(blurred: torch.Tensor, sharp: torch.Tensor, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Training examples from sharp crops: 34x34 patches blurred by a label drawn uniformly from the
    73 (each patch is cut from a region 26 pixels larger, so the blur never sees a border), plus
    Gaussian noise; labels are class indices."""
    region = PATCH + KERNEL_SIZE - 1
    n, _, h, w = sharp.shape
    if h < region or w < region:  # small crops (the smoke profile): mirror them out to one region
        ph, pw = max(region - h, 0), max(region - w, 0)
        sharp = F.pad(sharp, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect")
        h, w = sharp.shape[-2:]
    count = n * PATCHES_PER_CROP
    labels = torch.randint(0, len(BASE_LABELS), (count,), generator=generator)
    source = torch.randint(0, n, (count,), generator=generator)
    tops = torch.randint(0, h - region + 1, (count,), generator=generator)
    lefts = torch.randint(0, w - region + 1, (count,), generator=generator)
    regions = torch.stack([sharp[s, :, t:t + region, left:left + region]
                           for s, t, left in zip(source.tolist(), tops.tolist(), lefts.tolist(), strict=True)])
    kernels = torch.from_numpy(KERNEL_BANK).to(sharp.dtype)[labels]
    # out[i, j] = sum_kl w(k, l) x[i + k, j + l]: the blur operator is a correlation (and the line symmetric)
    weight = kernels.repeat_interleave(3, dim=0)[:, None]
    patches = F.conv2d(regions.reshape(1, count * 3, region, region), weight, groups=count * 3)
    patches = patches.reshape(count, 3, PATCH, PATCH)
    patches = patches + NOISE_STD * torch.randn(patches.shape, generator=generator)
    return patches.clamp(-1, 1), labels


# -- the released model ------------------------------------------------------------------------------
class MatConvNetError(ValueError):
    """A file that is not the released MatConvNet model in the layout this reader knows."""


def _matlab_struct_fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in getattr(obj, "_fieldnames", [])}


def _read_mat(source: Path, member: str) -> dict[str, Any]:
    from scipy import io as sio

    source = Path(source)
    if source.suffix == ".zip":
        with zipfile.ZipFile(source) as z:
            names = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == member]
            if not names:
                raise MatConvNetError(f"{source}: no {member} inside")
            data = io.BytesIO(z.read(names[0]))
        return sio.loadmat(data, squeeze_me=True, struct_as_record=False)
    path = source if source.name == member else source.with_name(member)
    if not path.is_file():
        raise MatConvNetError(f"{path}: not found ({member} must lie beside the model file, as in the release)")
    return sio.loadmat(path, squeeze_me=True, struct_as_record=False)


# The released network's layers as this reader expects them: (type, filter shape H x W x Cin x Cout).
MATCONVNET_LAYOUT = (("conv", (7, 7, 3, 96)), ("relu", None), ("pool", None), ("conv", (5, 5, 96, 256)),
                     ("relu", None), ("pool", None), ("conv", (5, 5, 256, 1024)), ("relu", None),
                     ("conv", (1, 1, 1024, 73)))


def load_matconvnet(model: SunCNN, path: Path) -> None:
    """Load the released ``net-epoch-600.mat`` (MatConvNet beta16 ``net.layers``) and its class labels
    (``kernel_labels`` of ``kernels.mat``, beside it or in the same zip) strictly into ``model``.

    Conv filters are H x W x Cin x Cout (correlation, as torch); the fully connected layers are convs
    over the whole 5x5 map. Dropout and the final (softmax) loss are skipped; any other layer type, a
    stride, padding or pooling other than the architecture's, or a shape mismatch is an error. The
    network saw patches of 0..255 values (the demo feeds ``single`` uint8 patches), which the input
    map records."""
    net = _read_mat(path, "net-epoch-600.mat").get("net")
    if net is None:
        raise MatConvNetError(f"{path}: no variable 'net' (not a MatConvNet training snapshot)")
    layers = np.atleast_1d(_matlab_struct_fields(net).get("layers", np.array([])))
    found = []
    for layer in layers:
        fields = _matlab_struct_fields(layer)
        kind = str(fields.get("type", ""))
        if kind in ("dropout", "softmaxloss", "softmax", "loss"):
            continue
        if kind == "conv":
            if "weights" in fields:
                filters, biases = np.atleast_1d(fields["weights"])[:2]
            else:
                filters, biases = fields.get("filters"), fields.get("biases")
            for key, expected in (("stride", 1), ("pad", 0)):
                if np.any(np.asarray(fields.get(key, expected)) != expected):
                    raise MatConvNetError(f"{path}: conv layer {fields.get('name', '')!r} has {key} "
                                          f"{fields.get(key)} (the architecture has {expected})")
            found.append(("conv", np.asarray(filters, dtype=np.float32), np.asarray(biases, dtype=np.float32)))
        elif kind == "pool":
            shape = [np.asarray(fields.get(key, value)) for key, value in (("pool", 2), ("stride", 2), ("pad", 0))]
            if str(fields.get("method", "max")) != "max" or any(np.any(v != e) for v, e in zip(shape, (2, 2, 0),
                                                                                              strict=True)):
                raise MatConvNetError(f"{path}: pooling layer {fields.get('name', '')!r} is not 2x2 max with stride 2")
            found.append(("pool", None, None))
        elif kind == "relu":
            found.append(("relu", None, None))
        else:
            raise MatConvNetError(f"{path}: layer type {kind!r} is not part of Sun et al.'s architecture")
    kinds, expected = [k for k, _, _ in found], [k for k, _ in MATCONVNET_LAYOUT]
    if kinds != expected:
        raise MatConvNetError(f"{path}: layers {kinds} differ from the architecture {expected}")
    convs = []
    for (_, filters, biases), (_, shape) in zip(found, MATCONVNET_LAYOUT, strict=True):
        if filters is None:
            continue
        if filters.shape == tuple(d for d in shape if d != 1):  # the reader squeezed singleton dimensions
            filters = filters.reshape(shape)
        if filters.shape != shape or biases.size != shape[3]:
            raise MatConvNetError(f"{path}: filters {filters.shape} / biases {biases.size} where the architecture "
                                  f"has {shape} / {shape[3]}")
        convs.append((torch.from_numpy(np.ascontiguousarray(filters.transpose(3, 2, 0, 1))),
                      torch.from_numpy(biases.ravel().copy())))
    labels = np.asarray(_read_mat(path, "kernels.mat").get("kernel_labels"), dtype=np.float64)
    if labels.shape != (3, 73):
        raise MatConvNetError(f"{path}: kernel_labels of kernels.mat is {labels.shape}, expected 3 x 73 "
                              "(orientation, length, id)")
    labels = labels[:, np.argsort(labels[2], kind="stable")]
    if labels[1, 0] != 1:
        raise MatConvNetError(f"{path}: the first class of kernel_labels has length {labels[1, 0]:g}, not 1 "
                              "(the code's re-ordering keeps it as the no-blur label)")
    state = {"features.0.weight": convs[0][0], "features.0.bias": convs[0][1],
             "features.3.weight": convs[1][0], "features.3.bias": convs[1][1],
             "classifier.1.weight": convs[2][0].reshape(1024, -1), "classifier.1.bias": convs[2][1],
             "classifier.3.weight": convs[3][0].reshape(73, -1), "classifier.3.bias": convs[3][1],
             "labels": torch.from_numpy(labels[:2].T.copy()),
             "input_scale": torch.tensor(127.5), "input_shift": torch.tensor(127.5)}
    model.load_state_dict(state, strict=True)


# -- motion field ------------------------------------------------------------------------------------
def border(rotations: tuple[int, ...] = sun_mrf.ROTATIONS) -> int:
    """``wid_ex``: the half-width that a 34x34 patch can take in any of the rotated images."""
    widths = []
    for theta in rotations:
        o = -theta / 180 * math.pi
        widths += [PATCH / 2 * (math.cos(o) - math.sin(o)), PATCH / 2 * (math.sin(o) + math.cos(o))]
    return math.ceil(max(widths))


def _rotation_box(shape: tuple[int, int], theta: float) -> tuple[np.ndarray, np.ndarray]:
    """imrotate's 'loose' geometry (``getOutputBound``): the centred half-extents of the input (hiA)
    and of the output (hiB = 2 ceil(max |rotated corner| / 2), so the output is 2 hiB + 1 pixels)."""
    h, w = shape
    phi = theta * math.pi / 180
    hi_a = np.array([(h - 1) / 2, (w - 1) / 2])
    corners = np.array([[-hi_a[0], hi_a[1]], [hi_a[0], hi_a[1]]])
    rotated = np.stack([corners[:, 0] * math.cos(phi) - corners[:, 1] * math.sin(phi),
                        corners[:, 0] * math.sin(phi) + corners[:, 1] * math.cos(phi)], 1)
    return hi_a, np.ceil(np.abs(rotated).max(0) / 2) * 2


def imrotate_size(shape: tuple[int, int], theta: float) -> tuple[int, int]:
    """The size of :func:`imrotate`'s output."""
    if theta == 0:
        return shape
    size = 2 * _rotation_box(shape, theta)[1] + 1
    return int(size[0]), int(size[1])


def imrotate(image: np.ndarray, theta: float) -> np.ndarray:
    """MATLAB's ``imrotate(image, theta, 'bilinear')`` of a uint8 image (counter-clockwise, 'loose'
    box, as its ``tformarray`` path computes it): pixel centres rotate about the centres of both
    images, bilinear interpolation with zeros outside, rounded back to uint8. 0 degrees returns the
    image itself (MATLAB's shortcut); other multiples of 90 are not used here."""
    if theta == 0:
        return image
    h, w = image.shape[:2]
    phi = theta * math.pi / 180
    hi_a, hi_b = _rotation_box((h, w), theta)
    x = np.arange(2 * hi_b[0] + 1) - hi_b[0]  # output row, centred
    y = np.arange(2 * hi_b[1] + 1) - hi_b[1]
    u = x[:, None] * math.cos(phi) + y[None, :] * math.sin(phi) + hi_a[0]  # input row, 0-based
    v = -x[:, None] * math.sin(phi) + y[None, :] * math.cos(phi) + hi_a[1]
    src = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(torch.float64)[None]
    grid = torch.from_numpy(np.stack([2 * v / (w - 1) - 1, 2 * u / (h - 1) - 1], -1))[None]
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    return np.floor(out.permute(1, 2, 0).numpy() + 0.5).clip(0, 255).astype(np.uint8)


def patch_grid(shape: tuple[int, int], theta: float, stride: int = STRIDE,
               rotations: tuple[int, ...] = sun_mrf.ROTATIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                          np.ndarray]:
    """The code's patches for one rotation: grid rows p and columns q (1-based, original image), the
    1-based centre (cp, cq) of each patch in the rotated image, and which patches fit inside it."""
    r, c = shape
    wid = border(rotations)
    p = np.arange(wid + 1, r - wid + 1, stride)
    q = np.arange(wid + 1, c - wid + 1, stride)
    o = -theta / 180 * math.pi
    corner_r, corner_c = np.array([1, 1, r, r]), np.array([1, c, 1, c])
    x_tf = lambda rr, cc: (cc - (c + 1) / 2) * math.cos(o) - (rr - (r + 1) / 2) * math.sin(o)  # noqa: E731
    y_tf = lambda rr, cc: (cc - (c + 1) / 2) * math.sin(o) + (rr - (r + 1) / 2) * math.cos(o)  # noqa: E731
    sx = np.ptp(x_tf(corner_r, corner_c))
    sy = np.ptp(y_tf(corner_r, corner_c))
    pp, qq = np.meshgrid(p, q, indexing="ij")
    cq = sun_mrf.matlab_round(x_tf(pp, qq) + sx / 2) + 1
    cp = sun_mrf.matlab_round(y_tf(pp, qq) + sy / 2) + 1
    rot_size = imrotate_size(shape, theta)
    fits = (cp - PATCH / 2 > 0) & (cp + PATCH / 2 - 1 <= rot_size[0]) & (cq - PATCH / 2 > 0) & \
           (cq + PATCH / 2 - 1 <= rot_size[1])
    return p, q, cp.astype(np.int64), cq.astype(np.int64), fits


def _window_weights(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(pixels x patches): the code's weight of a pixel row (or column, 0-based) in the window of a
    patch at grid position ``centres`` (1-based): a = pixel - centre + 19 in 1..34."""
    a = pixels[:, None] - centres[None, :] + 19
    inside = (a >= 1) & (a <= PATCH)
    return np.where(inside, np.exp(-((a - PATCH / 2) ** 2) * WINDOW_DECAY), 0.0)


def covered(shape: tuple[int, int], stride: int = STRIDE,
            rotations: tuple[int, ...] = sun_mrf.ROTATIONS) -> np.ndarray:
    """Pixels inside the window of at least one patch of any rotation (where ``est_map_co`` > 0)."""
    r, c = shape
    cover = np.zeros(shape, bool)
    rows, cols = np.arange(r), np.arange(c)
    for theta in rotations:
        p, q, _, _, fits = patch_grid(shape, theta, stride, rotations)
        in_r = (_window_weights(rows, p) > 0).astype(float)
        in_c = (_window_weights(cols, q) > 0).astype(float)
        cover |= (in_r @ fits.astype(float) @ in_c.T) > 0
    return cover


@torch.no_grad()
def node_confidences(model: nn.Module, image: np.ndarray, stride: int = STRIDE, step: int = sun_mrf.NODE_STEP,
                     batch: int = 512) -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """The code's per-pixel confidences (``est_map ./ est_map_co``, rotation-major: 5 x 73 rows) at the
    MRF's nodes, float32, with the covered region and the nodes' rows and columns (0-based)."""
    rotations = sun_mrf.ROTATIONS
    shape = image.shape[:2]
    region = sun_mrf.valid_region(covered(shape, stride, rotations))
    node_r, node_c = sun_mrf.node_grid(region, step)
    device = next(model.parameters()).device
    classes = model.labels.shape[0]
    out = np.zeros((len(rotations) * classes, len(node_r), len(node_c)), np.float32)
    half = PATCH // 2
    for k, theta in enumerate(rotations):
        p, q, cp, cq, fits = patch_grid(shape, theta, stride, rotations)
        rotated = torch.from_numpy(np.ascontiguousarray(imrotate(image, theta).transpose(2, 0, 1))).to(device)
        pi, qi = np.nonzero(fits)
        # 1-based rows cp - 17 .. cp + 16 -> 0-based cp - 18 .. cp + 15
        offsets = torch.arange(PATCH, device=device)
        probs = torch.zeros(len(p), len(q), classes, dtype=torch.float64, device=device)
        for start in range(0, len(pi), batch):
            sl = slice(start, start + batch)
            top = torch.from_numpy(cp[pi[sl], qi[sl]] - half - 1).to(device)
            left = torch.from_numpy(cq[pi[sl], qi[sl]] - half - 1).to(device)
            rows = (top[:, None] + offsets)[:, None, :, None]
            cols = (left[:, None] + offsets)[:, None, None, :]
            patches = rotated[torch.arange(3, device=device)[None, :, None, None], rows, cols]
            x = patches.to(torch.float32) / 127.5 - 1
            probs[pi[sl], qi[sl]] = torch.softmax(model(x).float(), dim=1).double()
        a_r = torch.from_numpy(_window_weights(node_r, p)).to(device)
        a_c = torch.from_numpy(_window_weights(node_c, q)).to(device)
        valid = torch.from_numpy(fits.astype(np.float64)).to(device)
        num = torch.einsum("xi,ijl,yj->lxy", a_r, probs, a_c)
        den = a_r @ valid @ a_c.t()
        est = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))
        out[k * classes:(k + 1) * classes] = torch.nan_to_num(est, nan=0.0).float().cpu().numpy()
    return out, region, node_r, node_c


def motion_field(model: nn.Module, image: np.ndarray, options: Mapping[str, Any]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 H x W x 3 -> per-pixel (length, orientation) as the MRF chooses them."""
    if min(image.shape[:2]) < model.min_side:
        raise ValueError(f"image {image.shape[1]}x{image.shape[0]}: Sun et al.'s rotated 34x34 patches need at "
                         f"least {model.min_side} pixels on each side")
    labels, reorder = sun_mrf.extended_labels(model.labels.cpu().numpy())
    probs, region, _, _ = node_confidences(model, image, options["patch_stride"], options["mrf_step"])
    device = next(model.parameters()).device
    nodes = sun_mrf.mrf_labels(torch.from_numpy(probs[reorder]).to(device), labels)
    return sun_mrf.full_field(nodes.cpu().numpy(), labels, region, image.shape[:2])


def restore(model: nn.Module, blurred: np.ndarray, options: Mapping[str, Any], gmm: sun_deconv.GMM) -> np.ndarray:
    """The whole method on a uint8 H x W x 3 image with ``gmm`` as the patch prior."""
    mag, ori = motion_field(model, blurred, options)
    device = next(model.parameters()).device
    restored = sun_deconv.deconvolve(blurred.astype(np.float64) / 255, mag, ori, gmm, lam=options["lam"],
                                     betas=options["deconv_betas"], cg_tol=options["cg_tol"],
                                     cg_max_iter=options["cg_max_iter"], device=device)
    return np.clip(np.round(restored * 255), 0, 255).astype(np.uint8)
