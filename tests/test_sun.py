"""Sun et al.: the blur operator's conventions, the CNN's confidences against a line-by-line
transcription of Deblur_CNN_motion.m, imrotate's geometry, training examples, the MatConvNet reader,
the GMM sources and the method end to end. (The official-code cases are in test_sun_reference.py.)"""

import hashlib
import io
import math
import zipfile

import numpy as np
import pytest
import torch
from miniature import Server
from scipy import io as sio
from scipy import ndimage
from skimage import data

from benchmark import registry
from benchmark.epll import _training_patches, fetch_epll, fit_gmm, read_epll_model
from benchmark.fetch import FetchError
from models import sun, sun_deconv, sun_mrf
from models.sun_deconv import MotionBlur, line_kernel


def _delta(size: int = 31) -> torch.Tensor:
    x = torch.zeros(size, size, dtype=torch.float64)
    x[size // 2, size // 2] = 1
    return x


def test_delta_image_shows_the_operator_orientation_and_length():
    """Orientation 0 is a line along the rows (vertical), 90 along the columns, 45 runs from lower left to
    upper right; length 9 covers 9 pixels. A swapped row/column or a sign flip fails here."""
    c = 15
    for ori, expect in ((0, [(c + t, c) for t in range(-4, 5)]), (90, [(c, c + t) for t in range(-4, 5)])):
        out = MotionBlur(np.full((31, 31), 9.0), np.full((31, 31), float(ori)))(_delta()).numpy()
        support = sorted(zip(*np.nonzero(out > 1e-12), strict=True))
        assert support == sorted(expect), ori
        assert np.allclose(out[out > 0], 1 / 9)
    diag = MotionBlur(np.full((31, 31), 9.0), np.full((31, 31), 45.0))(_delta()).numpy()
    assert diag[c + 3, c - 3] > 0 and diag[c - 3, c + 3] > 0
    assert diag[c + 3, c + 3] == 0 and diag[c - 3, c - 3] == 0


def test_the_adjoint_of_a_delta_is_the_pixels_own_kernel():
    """K^T delta_p is row p of K, the kernel of pixel p; K delta_p is column p, its neighbours' kernels. With
    a horizontal line at p among vertical ones, a swapped adjoint shows the wrong line."""
    c = 15
    mag, ori = np.full((31, 31), 9.0), np.zeros((31, 31))
    ori[c, c] = 90
    blur = MotionBlur(mag, ori)
    own = blur.T(_delta()).numpy()
    assert sorted(zip(*np.nonzero(own > 1e-12), strict=True)) == [(c, c + t) for t in range(-4, 5)]
    spread = blur(_delta()).numpy()
    assert spread[c + 3, c] > 0 and spread[c, c + 3] == 0


def test_the_adjoint_is_exact_and_not_the_operator_itself():
    rng = np.random.default_rng(0)
    mag = rng.choice([0, 1, 3, 8.5, 17, 25], (24, 21))
    ori = rng.uniform(0, 180, (24, 21))
    blur = MotionBlur(mag, ori)
    x, y = (torch.from_numpy(rng.random((24, 21))) for _ in range(2))
    assert abs((blur(x) * y).sum() - (x * blur.T(y)).sum()) < 1e-12
    assert abs((blur(x) * y).sum() - (x * blur(y)).sum()) > 1e-3  # a spatially varying K is not symmetric
    assert torch.allclose(blur(torch.ones(24, 21, dtype=torch.float64)), torch.ones(24, 21, dtype=torch.float64))


def test_line_kernels_as_the_c_code_makes_them():
    ks, ls, w = line_kernel(2.0, 0.0)
    assert list(ks) == [-1, 0, 1] and list(ls) == [0, 0, 0] and np.allclose(w, [0.25, 0.5, 0.25])
    ks, _, w = line_kernel(3.0, 0.0)
    assert list(ks) == [-1, 0, 1] and np.allclose(w, 1 / 3)
    for mag, ori in ((0.0, 0.0), (1.0, 0.0), (1.0, 123.0)):  # no blur
        ks, ls, w = line_kernel(mag, ori)
        assert list(ks) == [0] and list(ls) == [0] and np.allclose(w, 1)
    m, o = sun_deconv.field_from_labels(np.array([3.0, 3.0]), np.array([90.0, 174.0]))
    assert np.allclose(m, 3) and np.allclose(o, [90, 174])


def test_the_cnn_learns_the_blur_the_deconvolution_undoes():
    """A training patch's blur (KERNEL_BANK, a correlation) equals the operator with that label's field."""
    image = np.random.default_rng(1).random((70, 70))
    for label in (5, 30, 72):
        ori, mag = sun.BASE_LABELS[label]
        kernel = torch.from_numpy(sun.KERNEL_BANK[label])[None, None]
        valid = torch.nn.functional.conv2d(torch.from_numpy(image)[None, None], kernel)[0, 0].numpy()
        full = MotionBlur(np.full((70, 70), mag), np.full((70, 70), ori))(torch.from_numpy(image)).numpy()
        assert np.allclose(valid, full[13:-13, 13:-13], atol=1e-12)


def test_73_labels_and_361_candidates_in_the_code_order():
    assert len(sun.BASE_LABELS) == 73 and tuple(sun.BASE_LABELS[0]) == (0, 1)
    labels, reorder = sun_mrf.extended_labels(sun.BASE_LABELS)
    assert labels.shape == (361, 2) and len(set(map(tuple, labels))) == 361
    assert tuple(labels[0]) == (0, 1) and list(labels[1:13, 1]) == list(range(3, 26, 2))
    assert np.array_equal(np.unique(labels[1:, 0]), np.arange(0, 180, 6))
    assert len(sun_mrf.candidate_ranks()) == 50
    assert sun.border() == 23 and sun.STRIDE == 6


def test_cnn_maps_34x34_patches_to_73_logits():
    model = sun.SunCNN()
    assert model(torch.zeros(4, 3, 34, 34)).shape == (4, 73)
    assert sum(p.numel() for p in model.parameters()) == 14_208 + 614_656 + 6_554_624 + 74_825  # 7.26 M


def test_imrotate_follows_matlabs_loose_bilinear_geometry():
    image = data.astronaut()[:47, :61]
    out = sun.imrotate(image, 24)
    phi = math.radians(24)
    hi_a = np.array([23.0, 30.0])
    corners = np.array([[-23.0, 30.0], [23.0, 30.0]])
    rot = np.abs(corners @ np.array([[math.cos(phi), math.sin(phi)], [-math.sin(phi), math.cos(phi)]]))
    hi_b = np.ceil(rot.max(0) / 2) * 2
    assert out.shape == (int(2 * hi_b[0] + 1), int(2 * hi_b[1] + 1), 3)
    # an independent bilinear resampler at the inverse-rotated output pixel centres
    x, y = np.meshgrid(np.arange(out.shape[0]) - hi_b[0], np.arange(out.shape[1]) - hi_b[1], indexing="ij")
    u = x * math.cos(phi) + y * math.sin(phi) + hi_a[0]
    v = -x * math.sin(phi) + y * math.cos(phi) + hi_a[1]
    expect = np.stack([ndimage.map_coordinates(image[..., ch].astype(float), [u, v], order=1, mode="grid-constant",
                                               cval=0) for ch in range(3)], -1)
    assert np.abs(out.astype(float) - np.floor(expect + 0.5)).max() <= 1
    # counter-clockwise: a bright dot right of the centre moves up
    dot = np.zeros((47, 61, 3), np.uint8)
    dot[23, 50] = 255
    r, c = np.unravel_index(sun.imrotate(dot, 24)[..., 0].argmax(), out.shape[:2])
    assert r < hi_b[0] and c > hi_b[1]
    assert sun.imrotate(image, 0) is image


def _transcribed_confidences(model, image, stride):
    """Deblur_CNN_motion.m's step 1, line by line (1-based positions, one patch at a time)."""
    r, c = image.shape[:2]
    ps, wid = 34, sun.border()
    grid_x, grid_y = np.meshgrid(np.arange(1, ps + 1), np.arange(1, ps + 1))
    weight_map = np.exp(-((grid_x - ps / 2) ** 2 + (grid_y - ps / 2) ** 2) * 0.005)
    est_map = np.zeros((365, r, c))
    est_co = np.zeros((365, r, c))
    cols, rows = np.meshgrid(np.arange(1, c + 1), np.arange(1, r + 1))
    for k, theta in enumerate(sun_mrf.ROTATIONS):
        imo = sun.imrotate(image, theta)
        o = -theta / 180 * np.pi
        x_tf = (cols - (c + 1) / 2) * np.cos(o) - (rows - (r + 1) / 2) * np.sin(o)
        y_tf = (cols - (c + 1) / 2) * np.sin(o) + (rows - (r + 1) / 2) * np.cos(o)
        x_tf1 = sun_mrf.matlab_round(x_tf + np.ptp(x_tf) / 2) + 1
        y_tf1 = sun_mrf.matlab_round(y_tf + np.ptp(y_tf) / 2) + 1
        for p in range(wid + 1, r - wid + 1, stride):
            for q in range(wid + 1, c - wid + 1, stride):
                cq, cp = int(x_tf1[p - 1, q - 1]), int(y_tf1[p - 1, q - 1])
                if cp - 17 > 0 and cp + 16 <= imo.shape[0] and cq - 17 > 0 and cq + 16 <= imo.shape[1]:
                    patch = imo[cp - 18:cp + 16, cq - 18:cq + 16].astype(np.float32)
                    x = torch.from_numpy(patch.transpose(2, 0, 1).copy())[None] / 127.5 - 1
                    with torch.no_grad():
                        est = torch.softmax(model(x), 1)[0].double().numpy()
                    block = slice(73 * k, 73 * k + 73)
                    est_map[block, p - 18:p + 16, q - 18:q + 16] += est[:, None, None] * weight_map
                    est_co[block, p - 18:p + 16, q - 18:q + 16] += weight_map
    covered = est_co.sum(0) > 0
    est_co[est_co == 0] = 1
    return est_map / est_co, covered


def test_confidences_at_the_nodes_match_a_transcription_of_the_code():
    torch.manual_seed(0)
    model = sun.SunCNN().eval()
    image = data.astronaut()[60:131, 200:265].copy()  # 71 x 65: a few patches per rotation
    probs, region, rows, cols = sun.node_confidences(model, image, stride=6)
    full, covered = _transcribed_confidences(model, image, 6)
    assert region == sun_mrf.valid_region(covered)
    assert np.allclose(probs, full[:, rows][:, :, cols], atol=1e-6)
    assert probs.shape == (365, len(rows), len(cols)) and probs.max() > 0


def test_training_examples_are_deterministic_and_labelled():
    sharp = torch.rand(2, 3, 64, 64) * 2 - 1
    a = sun.prepare_batch(sharp, sharp, torch.Generator().manual_seed(3))
    b = sun.prepare_batch(sharp, sharp, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (32, 3, 34, 34) and int(a[1].min()) >= 0 and int(a[1].max()) < 73
    small = sun.prepare_batch(sharp[..., :32, :32], sharp[..., :32, :32], torch.Generator().manual_seed(0))
    assert small[0].shape == (32, 3, 34, 34)


def test_the_cnn_fits_a_batch_of_training_examples():
    torch.manual_seed(0)
    model = sun.SunCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    photo = torch.from_numpy(data.astronaut()[::4, ::4].copy()).permute(2, 0, 1).float()[None] / 127.5 - 1
    x, y = sun.prepare_batch(None, photo[..., :64, :64], torch.Generator().manual_seed(0))
    start = torch.nn.functional.cross_entropy(model(x), y).item()
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * start


# -- the released MatConvNet model ---------------------------------------------------------------------
def _cell(*items):
    cell = np.empty(len(items), dtype=object)
    cell[:] = items
    return cell


def _seeded_matconvnet(tmp_path, seed=0, extra_layer=None):
    """A net-epoch-600.mat in MatConvNet beta16's layout (net.layers, weights = {filters, biases}) with
    random weights, and its kernels.mat (kernel_labels with ids, columns shuffled)."""
    rng = np.random.default_rng(seed)
    conv = lambda name, shape: {"type": "conv", "name": name, "stride": 1.0, "pad": 0.0,  # noqa: E731
                                "weights": _cell((rng.standard_normal(shape) * 0.01).astype(np.float32),
                                                 (rng.standard_normal(shape[3]) * 0.01).astype(np.float32))}
    pool = lambda name: {"type": "pool", "name": name, "method": "max", "pool": np.array([2.0, 2.0]),  # noqa: E731
                         "stride": 2.0, "pad": 0.0}
    layers = [conv("conv1", (7, 7, 3, 96)), {"type": "relu", "name": "relu1"}, pool("pool1"),
              conv("conv2", (5, 5, 96, 256)), {"type": "relu", "name": "relu2"}, pool("pool2"),
              conv("fc5", (5, 5, 256, 1024)), {"type": "relu", "name": "relu5"},
              {"type": "dropout", "name": "drop5", "rate": 0.5}, conv("fc6", (1, 1, 1024, 73)),
              {"type": "softmaxloss", "name": "loss"}]
    if extra_layer:
        layers.insert(2, extra_layer)
    sio.savemat(tmp_path / "net-epoch-600.mat", {"net": {"layers": _cell(*layers)}})
    labels = np.vstack([sun.BASE_LABELS.T, np.arange(1, 74)])
    order = np.r_[0, rng.permutation(np.arange(1, 73))]
    sio.savemat(tmp_path / "kernels.mat", {"kernel_labels": labels[:, order]})
    return tmp_path / "net-epoch-600.mat", layers


def _matconvnet_forward(layers, patch255):
    """vl_simplenn on one H x W x 3 patch: correlation convs, 2x2 max pools, ReLU."""
    from numpy.lib.stride_tricks import sliding_window_view

    x = patch255.astype(np.float64)
    for layer in layers:
        if layer["type"] == "conv":
            f, b = (np.asarray(a, np.float64) for a in layer["weights"])
            windows = sliding_window_view(x, f.shape[:2], axis=(0, 1))  # H' x W' x C x kh x kw
            x = np.einsum("ijcab,abco->ijo", windows, f) + b
        elif layer["type"] == "relu":
            x = np.maximum(x, 0)
        elif layer["type"] == "pool":
            h, w, ch = x.shape
            x = x.reshape(h // 2, 2, w // 2, 2, ch).max(axis=(1, 3))
    return x.ravel()


def test_the_released_model_loads_from_its_matconvnet_layout(tmp_path):
    path, layers = _seeded_matconvnet(tmp_path)
    model = sun.SunCNN()
    sun.load_matconvnet(model, path)
    assert np.array_equal(model.labels.numpy(), sun.BASE_LABELS)  # sorted back by id
    patch = np.random.default_rng(2).integers(0, 256, (34, 34, 3)).astype(np.float32)
    x = torch.from_numpy(patch.transpose(2, 0, 1).copy())[None] / 127.5 - 1
    with torch.no_grad():
        ours = model.double()(x.double())[0].numpy()
    assert np.allclose(ours, _matconvnet_forward(layers, patch), rtol=1e-5, atol=1e-5)  # [-1, 1] inputs: float32
    # the same files inside the release archive
    archive = tmp_path / "DLFE-78101.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("net-epoch-600.mat", "kernels.mat"):
            z.write(tmp_path / name, f"release/{name}")
    again = sun.SunCNN()
    sun.load_matconvnet(again, archive)
    assert all(torch.equal(a.double(), b) for a, b in zip(again.state_dict().values(), model.state_dict().values(),
                                                          strict=True))


def test_the_matconvnet_reader_refuses_another_architecture(tmp_path):
    path, _ = _seeded_matconvnet(tmp_path, extra_layer={"type": "normalize", "name": "lrn"})
    with pytest.raises(sun.MatConvNetError, match="layer type 'normalize'"):
        sun.load_matconvnet(sun.SunCNN(), path)
    (tmp_path / "kernels.mat").unlink()
    path, _ = _seeded_matconvnet(tmp_path)
    (tmp_path / "kernels.mat").unlink()
    with pytest.raises(sun.MatConvNetError, match="kernels.mat"):
        sun.load_matconvnet(sun.SunCNN(), path)


# -- the patch GMM ---------------------------------------------------------------------------------------
def _epll_zip(weights, covs) -> bytes:
    mat = io.BytesIO()
    sio.savemat(mat, {"GS": {"nmodels": float(len(weights)), "mixweights": weights[:, None],
                             "covs": covs.transpose(1, 2, 0), "means": np.zeros((64, len(weights)))}})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("epllcode/GSModel_8x8_200_2M_noDC_zeromean.mat", mat.getvalue())
        z.writestr("epllcode/aprxMAPGMM.m", "% the rest of the release")
    return out.getvalue()


def test_the_published_gmm_is_fetched_checked_and_read(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 64, 64))
    covs = a @ a.transpose(0, 2, 1) * 1e-3
    covs[1, 0, 5] += 1e-4  # not symmetric in one place: the reader must not transpose it
    good = _epll_zip(np.array([0.5, 0.3, 0.2]), covs)
    server = Server()
    try:
        server.files["/epllcode.zip"] = good
        record = fetch_epll(tmp_path / "w", mirrors=[server.url + "/epllcode.zip"], retries=0, quiet=True)
        assert record["checksums"]["epllcode.zip"] == hashlib.sha256(good).hexdigest()
        gmm = read_epll_model(tmp_path / "w" / "epllcode.zip")
        assert np.array_equal(gmm.covs, covs) and np.allclose(gmm.weights, [0.5, 0.3, 0.2])
        (tmp_path / "w" / "epllcode.zip").write_bytes(good[:-1] + b"x")  # changed since its first read
        with pytest.raises(FetchError, match="differs from the one recorded"):
            fetch_epll(tmp_path / "w", retries=0, quiet=True)
        local = tmp_path / "copy.zip"
        local.write_bytes(good)
        record = fetch_epll(tmp_path / "u", local=local, quiet=True)  # a local copy lands where gmm_file points
        assert record["path"] == str(tmp_path / "u" / "epllcode.zip") and (tmp_path / "u" / "epllcode.zip").exists()
        bad = io.BytesIO()
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("readme.txt", "no model here")
        server.files["/epllcode.zip"] = bad.getvalue()
        with pytest.raises(FetchError, match="no GSModel"):
            fetch_epll(tmp_path / "v", mirrors=[server.url + "/epllcode.zip"], retries=0, quiet=True)
        assert not (tmp_path / "v" / "epllcode.zip").exists()  # a useless download is not kept
    finally:
        server.close()


def test_the_offline_gmm_fit_is_deterministic_and_zero_mean():
    patches = _training_patches(600, 0)
    assert np.allclose(patches.mean(0), 0)
    a, b = fit_gmm(patches, 3, 3, 0), fit_gmm(patches, 3, 3, 0)
    assert np.array_equal(a.covs, b.covs) and np.isclose(a.weights.sum(), 1)
    assert a.covs.shape == (3, 64, 64) and not np.array_equal(a.covs, fit_gmm(patches, 3, 3, 1).covs)


# -- the method ------------------------------------------------------------------------------------------
def test_the_banner_names_what_a_profile_changes():
    method = registry.get("sun")
    assert method.notes(method.options({"gmm": "epll"})) == []  # the released code's values
    lines = method.notes(method.options({"gmm": "embedded", "cg_max_iter": 50, "deconv_betas": [50, 800]}))
    assert any("fitted here" in line for line in lines)
    assert any("CG iteration cap 50 (code: 300)" in line and "betas [50, 800]" in line for line in lines)


def test_restore_deblurs_with_a_field_from_the_cnn():
    method = registry.get("sun")
    options = method.options({"gmm": "embedded", "gmm_components": 2, "gmm_patches": 400, "gmm_iterations": 2,
                              "deconv_betas": [50.0, 800.0], "cg_max_iter": 20, "patch_stride": 12})
    torch.manual_seed(0)
    model = sun.SunCNN().eval()
    with torch.no_grad():
        model.classifier[3].bias[40] = 20.0  # a CNN sure of one blur: label 40 = (90 degrees, length 15)
    image = data.astronaut()[100:161, 150:203].copy()  # 61 x 53
    mag, ori = sun.motion_field(model, image, options)
    inside = mag > 0
    assert inside.any() and (mag[inside] == 15).all() and not inside.all()
    out = method.restore(model, image, options)
    assert out.shape == image.shape and out.dtype == np.uint8 and np.abs(out.astype(int) - image).mean() > 1
    with pytest.raises(ValueError, match="at least 47 pixels"):
        method.restore(model, image[:40], options)
