"""ffnet.superres: architecture, checkpoints, loss, metrics, bicubic LR, data, tiling, upscale CLI."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ffnet.core import is_reparameterized, reparameterize
from ffnet.engine.checkpoints import describe_state_dict, load_file
from ffnet.engine.errors import CheckpointError
from ffnet.superres.checkpoint import generator_state_dict, load_generator, save_as_mmengine_checkpoint
from ffnet.superres.data import PairedImageFolder, bicubic_downscale, bicubic_resize, make_lr_folder, read_rgb
from ffnet.superres.losses import SRLoss, fft_l1
from ffnet.superres.metrics import psnr_y, ssim_y, tensor_to_uint8
from ffnet.superres.models import FFNetSR, build_model, ffnet_sr, ffnet_sr_light
from ffnet.superres.upscale import OutputBuffer, upscale_file, upscale_image, upscale_tiled, write_png_bands
from helpers import write_malicious_checkpoint


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- architecture

@pytest.mark.parametrize("variant, scale, expected", [
    ("ffnet_sr", 2, 2_381_580), ("ffnet_sr", 3, 2_394_555), ("ffnet_sr", 4, 2_412_720),
    ("ffnet_sr_light", 2, 1_789_452), ("ffnet_sr_light", 3, 1_802_427), ("ffnet_sr_light", 4, 1_820_592),
])
def test_parameter_counts_match_spec(variant, scale, expected):
    model = build_model(variant, scale)
    assert n_params(model) == expected
    depth = 48 if variant == "ffnet_sr" else 36
    assert expected == 2_688 + depth * 49_344 + 864 * 3 * scale**2 + 3 * scale**2


def test_block_is_the_core_block_without_normalization():
    from ffnet.core import FFNetBlock, MetaMixer

    block = ffnet_sr_light(2).body[0]
    assert isinstance(block, FFNetBlock)
    assert n_params(block) == 49_344
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)) for m in block.modules())
    token, channel = block.token_mixer.mixer, block.channel_mixer.mixer
    assert isinstance(token, MetaMixer) and isinstance(channel, MetaMixer)
    assert token.query_proj.kernel_size == (1, 1) and token.compat.groups == 96 and token.aggregate.kernel_size == (3, 3)
    assert channel.query_proj.groups == 96 and channel.compat.out_channels == 192


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(7, 9), (13, 5), (1, 1)])
def test_output_shapes_every_scale_odd_sizes(scale, size):
    model = ffnet_sr(scale).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_anchor_skip_is_nearest_neighbour_upsampling(scale):
    model = FFNetSR(scale, dim=8, depth=1).eval()
    torch.nn.init.zeros_(model.reconstruction_conv.weight)
    torch.nn.init.zeros_(model.reconstruction_conv.bias)
    x = torch.rand(1, 3, 5, 7)
    with torch.no_grad():
        assert torch.equal(model(x), F.interpolate(x, scale_factor=scale, mode="nearest"))


def test_rejects_non_rgb_batches_and_unknown_scales():
    model = FFNetSR(2, dim=8, depth=1)
    with pytest.raises(ValueError, match=r"RGB batch of shape \(B, 3, H, W\)"):
        model(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="scale must be one of"):
        FFNetSR(5)
    with pytest.raises(ValueError, match="unknown FFNet-SR variant"):
        build_model("ffnet_sr_huge", 2)


def test_reparameterize_keeps_released_model_unchanged():
    model = FFNetSR(4, dim=16, depth=3).eval()
    x = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        before = model(x)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        reparameterize(model)
        after = model(x)
    assert torch.equal(before, after)
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_reparameterize_folds_bn_variant_with_random_statistics():
    """The authors' ``norm='BN'`` option: conv → BN in each mixer, folded by the core."""
    torch.manual_seed(0)
    model = FFNetSR(2, dim=16, depth=2, norm="bn")
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.rand(2, 3, 9, 10)
    with torch.no_grad():
        before = model(x)
        reparameterize(model)
        after = model(x)
    assert is_reparameterized(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    # the deployed BN model has the plain layout and reloads as such
    reloaded = load_generator(model.state_dict()).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), before, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- authors' checkpoints

def to_authors_layout(state: dict) -> dict:
    """Our FFNetSR keys → the release's (the authors' BasicSR release), written out explicitly."""
    ours_to_authors = {"mixer.query_proj": "0", "mixer.compat": "1", "mixer.aggregate": "3"}
    out = {}
    for key, value in state.items():
        if key.startswith("shallow_conv."):
            out["proj." + key.split(".", 1)[1]] = value
        elif key.startswith("reconstruction_conv."):
            out["conv_bef_up." + key.split(".", 1)[1]] = value
        else:
            _, block, mixer, *middle, leaf = key.split(".")
            out[f"body.{block}.{mixer}.{ours_to_authors['.'.join(middle)]}.{leaf}"] = value
    return out


@pytest.mark.parametrize("param_key", ["params", "params_ema"])
def test_loads_authors_basicsr_checkpoint(tmp_path, param_key):
    torch.manual_seed(0)
    ours = FFNetSR(3, dim=16, depth=2).eval()
    authors = to_authors_layout(ours.state_dict())
    assert "body.1.token_mixer.3.weight" in authors and "body.0.channel_mixer.1.bias" in authors
    assert len(authors) == 4 + 2 * 12
    path = tmp_path / "FFNetSR_x3.pth"
    torch.save({param_key: {"module." + k: v for k, v in authors.items()}}, path)
    loaded = load_generator(path).eval()
    assert loaded.architecture() == dict(scale=3, dim=16, depth=2, expansion=2.0, norm=None)
    x = torch.rand(1, 3, 8, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x), ours(x))


def test_authors_checkpoint_prefers_params_and_reports_bad_files(tmp_path):
    a, b = FFNetSR(2, dim=8, depth=1), FFNetSR(2, dim=8, depth=1)
    checkpoint = {"params": to_authors_layout(a.state_dict()), "params_ema": to_authors_layout(b.state_dict())}
    assert torch.equal(load_generator(checkpoint).shallow_conv.weight, a.shallow_conv.weight)
    assert torch.equal(load_generator(checkpoint, "params_ema").shallow_conv.weight, b.shallow_conv.weight)
    with pytest.raises(CheckpointError, match=r"has no 'ema' entry \(it holds \['params', 'params_ema'\]\)"):
        load_generator(checkpoint, "ema")
    with pytest.raises(CheckpointError, match="missing.pth: checkpoint not found"):
        load_generator(tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="not an FFNet-SR state dict.*looks like no architecture"):
        load_generator({"fc.weight": torch.zeros(2, 2)})


def test_describer_and_registered_layout_name_what_a_file_holds():
    ours = FFNetSR(2, dim=16, depth=2).state_dict()
    assert describe_state_dict(ours) == "FFNet-SR x2 (width 16, depth 2)"
    assert describe_state_dict(to_authors_layout(FFNetSR(2).state_dict())) == (
        "FFNet-SR x2 (width 96, depth 48: ffnet_sr), in the authors' BasicSR layout")
    assert describe_state_dict({"generator." + k: v for k, v in ours.items()}) == "FFNet-SR x2 (width 16, depth 2)"
    # the engine's strict loader converts the authors' layout by itself
    from ffnet.engine.checkpoints import load_state_dict

    model = FFNetSR(2, dim=16, depth=2)
    report = load_state_dict(model, to_authors_layout(ours))
    assert report.converter == "the authors' FFNet-SR release (BasicSR keys)"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ours.items())


def test_loading_is_strict_and_says_what_the_file_is(tmp_path):
    state = FFNetSR(3, dim=8, depth=2).state_dict()
    del state["body.1.token_mixer.mixer.compat.weight"]
    path = tmp_path / "cut.pth"
    torch.save({"params": to_authors_layout(state)}, path)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: does not fit FFNet-SR x3: 1 missing "
                                                      "(body.1.token_mixer.mixer.compat.weight)")
    assert "looks like FFNet-SR x3 (width 8, depth 2)" in message


@pytest.mark.parametrize("loader", [load_generator, generator_state_dict])
def test_public_loaders_refuse_a_malicious_checkpoint(tmp_path, loader):
    marker = tmp_path / "pwned"
    evil = write_malicious_checkpoint(tmp_path / "evil.pth", marker)
    with pytest.raises(CheckpointError, match=r"evil.pth: refused to load: .*pathlib.*--trust-checkpoint"):
        loader(evil)
    assert not marker.exists()


def test_mmengine_model_init_from_refuses_a_malicious_checkpoint(tmp_path):
    from ffnet.superres.engine import FFNetSRModel

    marker = tmp_path / "pwned"
    evil = write_malicious_checkpoint(tmp_path / "evil.pth", marker)
    model = FFNetSRModel(dict(variant="ffnet_sr_light", scale=2, dim=8, depth=1), init_from=str(evil))
    with pytest.raises(CheckpointError, match="evil.pth: refused to load"):
        model.init_weights()
    assert not marker.exists()


def test_mmengine_checkpoint_round_trip(tmp_path):
    model = FFNetSR(4, dim=8, depth=2)
    path = save_as_mmengine_checkpoint(model, tmp_path / "sub" / "model.pth")
    assert [p.name for p in path.parent.iterdir()] == ["model.pth"]  # no temporary file left
    assert sorted(load_file(path)) == ["meta", "state_dict"]  # weights-only
    loaded = load_generator(path)
    assert loaded.architecture() == model.architecture()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------- loss

def test_fft_loss_matches_the_release_formula():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 10, 7), torch.rand(2, 3, 10, 7)
    p, t = np.fft.rfft2(pred.double().numpy()), np.fft.rfft2(target.double().numpy())
    reference = np.mean(np.abs(np.stack([p.real - t.real, p.imag - t.imag], axis=-1)))
    assert fft_l1(pred, target).item() == pytest.approx(reference, rel=1e-5)
    losses = SRLoss(fft_weight=0.05)(pred, target)
    assert losses["loss_l1"].item() == pytest.approx(np.abs(pred.numpy() - target.numpy()).mean(), rel=1e-6)
    assert losses["loss_fft"].item() == pytest.approx(0.05 * reference, rel=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        fft_l1(pred, target[..., :6])


# ---------------------------------------------------------------- metrics

def basicsr_y(image: np.ndarray) -> np.ndarray:
    """BT.601 'MATLAB' luma as BasicSR's ``bgr2ycbcr(y_only=True)`` computes it, in [16, 235]."""
    rgb = image.astype(np.float64) / 255.0
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def basicsr_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """BasicSR's ``_ssim``: 11x11 Gaussian window (σ 1.5, OpenCV's getGaussianKernel), 'valid'
    region (its filter2D output cropped by 5), population statistics, constants for peak 255."""
    from scipy.signal import correlate2d

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    window = np.outer(g, g)
    filt = lambda x: correlate2d(x, window, mode="valid")  # noqa: E731
    mu1, mu2 = filt(a), filt(b)
    s11, s22, s12 = filt(a * a) - mu1**2, filt(b * b) - mu2**2, filt(a * b) - mu1 * mu2
    return float(np.mean(((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))))


def test_psnr_y_hand_computed_pair():
    """Gray images have Y = 16 + 219 v / 255; only the centre (inside the border) differs."""
    target = np.full((20, 24, 3), 100, np.uint8)
    prediction = target.copy()
    prediction[4:-4, 4:-4] = 110  # 12 x 16 = 192 changed pixels
    dy = 219 * 10 / 255
    mse_no_crop = 192 * dy**2 / (20 * 24)
    mse_crop2 = 192 * dy**2 / (16 * 20)
    assert psnr_y(prediction, target, 0) == pytest.approx(10 * math.log10(255**2 / mse_no_crop), abs=1e-10)
    assert psnr_y(prediction, target, 2) == pytest.approx(10 * math.log10(255**2 / mse_crop2), abs=1e-10)
    assert psnr_y(target, target, 2) == float("inf")


def test_ssim_y_constant_images_closed_form():
    """For constant images SSIM = (2 μx μy + C1) / (μx² + μy² + C1)."""
    a, b = np.full((32, 32, 3), 50, np.uint8), np.full((32, 32, 3), 90, np.uint8)
    ya, yb = 16 + 219 * 50 / 255, 16 + 219 * 90 / 255
    c1 = (0.01 * 255) ** 2
    assert ssim_y(a, b, 4) == pytest.approx((2 * ya * yb + c1) / (ya**2 + yb**2 + c1), abs=1e-12)


def test_psnr_ssim_y_match_basicsr_formulas_on_a_photo():
    import skimage.data

    target = skimage.data.astronaut()[100:196, 150:262]
    rng = np.random.default_rng(0)
    prediction = np.clip(target.astype(int) + rng.integers(-12, 13, target.shape), 0, 255).astype(np.uint8)
    border = 4
    yt, yp = basicsr_y(target)[4:-4, 4:-4], basicsr_y(prediction)[4:-4, 4:-4]
    psnr_ref = 10 * np.log10(255**2 / np.mean((yt - yp) ** 2))
    assert psnr_y(prediction, target, border) == pytest.approx(psnr_ref, abs=1e-8)
    assert ssim_y(prediction, target, border) == pytest.approx(basicsr_ssim(yp, yt), abs=1e-8)
    assert 0.5 < ssim_y(prediction, target, border) < 0.99


def test_metric_input_errors():
    with pytest.raises(ValueError, match="differ in size"):
        psnr_y(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="8-bit RGB"):
        psnr_y(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), 0)
    with pytest.raises(ValueError, match="too small to crop"):
        ssim_y(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), 4)
    image = tensor_to_uint8(torch.tensor([-0.5, 0.5, 1.5]).reshape(3, 1, 1))
    assert image.reshape(-1).tolist() == [0, 128, 255]


# ---------------------------------------------------------------- MATLAB bicubic

def matlab_imresize_reference(image: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(uint8_image, scale, 'bicubic')`` from its algorithm (``contributions``), in float64.

    Per axis: output index x (1-based) maps to u = x / scale + 0.5 (1 - 1 / scale); when
    shrinking the cubic kernel (a = -0.5) is widened to h(t) = scale · cubic(scale · t) with
    width 4 / scale; weights are normalized; out-of-range indices mirror symmetrically. Rows are
    resized first; a uint8 image is rounded (half away from zero) and clipped after each axis.
    """
    def cubic(t):
        t = np.abs(t)
        return ((1.5 * t**3 - 2.5 * t**2 + 1) * (t <= 1)
                + (-0.5 * t**3 + 2.5 * t**2 - 4 * t + 2) * ((t > 1) & (t <= 2)))

    def weights(in_len, out_len):
        antialias = scale < 1
        kernel = (lambda t: scale * cubic(scale * t)) if antialias else cubic
        width = 4 / scale if antialias else 4
        x = np.arange(1, out_len + 1)
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = np.floor(u - width / 2)
        taps = int(np.ceil(width)) + 2
        idx = left[:, None] + np.arange(taps)[None, :]
        w = kernel(u[:, None] - idx)
        w /= w.sum(axis=1, keepdims=True)
        mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
        cols = mirror[np.mod(idx.astype(int) - 1, 2 * in_len)]
        matrix = np.zeros((out_len, in_len))
        for row in range(out_len):
            np.add.at(matrix[row], cols[row], w[row])
        return matrix

    to_uint8 = lambda x: np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)  # noqa: E731
    h, w = image.shape[:2]
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    rows = to_uint8(np.einsum("oh,hwc->owc", weights(h, out_h), image.astype(np.float64)))
    return to_uint8(np.einsum("pw,owc->opc", weights(w, out_w), rows.astype(np.float64)))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_downscale_matches_matlab_algorithm(scale):
    import skimage.data

    rng = np.random.default_rng(scale)
    for hr in (rng.integers(0, 256, (25, 38, 3), dtype=np.uint8), skimage.data.coffee()[:101, :143]):
        h, w = hr.shape[:2]
        lr = bicubic_downscale(hr, scale)
        assert lr.shape == (h // scale, w // scale, 3)
        np.testing.assert_array_equal(lr, matlab_imresize_reference(hr[: h - h % scale, : w - w % scale], 1 / scale))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_upscale_matches_matlab_algorithm(scale):
    """x2/x4 weights are dyadic, so exact .5 ties occur and MATLAB's rounding is exercised."""
    import skimage.data

    lr = skimage.data.chelsea()[:40, :50]
    np.testing.assert_array_equal(bicubic_resize(lr, scale), matlab_imresize_reference(lr, scale))


# ---------------------------------------------------------------- data

def write_png(array: np.ndarray, path, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_make_lr_folder_and_whole_image_pairs(tmp_path):
    import skimage.data

    hr = skimage.data.coffee()[:61, :83]
    write_png(hr, tmp_path / "HR" / "cup.png")
    written = make_lr_folder(tmp_path / "HR", tmp_path / "LR", scales=(2, 3, 4))
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "LR/X2/cupx2.png", "LR/X3/cupx3.png", "LR/X4/cupx4.png"]
    for scale in (2, 3, 4):
        dataset = PairedImageFolder(str(tmp_path), dict(name="mine", hr="HR", lr="LR/X{scale}"), scale)
        item = dataset[0]
        lr_h, lr_w = 61 // scale, 83 // scale
        assert item["inputs"].shape == (3, lr_h, lr_w)
        assert item["data_samples"]["gt"].shape == (3, lr_h * scale, lr_w * scale)
        assert item["data_samples"]["dataset"] == "mine" and item["data_samples"]["name"] == "cup"
        assert np.array_equal(tensor_to_uint8(item["inputs"]), bicubic_downscale(hr, scale))


def test_random_crops_and_augmentation_keep_pairs_aligned(tmp_path):
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    write_png(lr, tmp_path / "LR" / "X3" / "ax3.png")
    write_png(lr.repeat(3, 0).repeat(3, 1), tmp_path / "HR" / "a.png")  # HR = nearest-upscaled LR
    dataset = PairedImageFolder(str(tmp_path), dict(hr="HR", lr="LR/X{scale}"), 3, patch_size=8, augment=True)
    shapes = set()
    for _ in range(12):
        item = dataset[0]
        lr_patch, hr_patch = item["inputs"], item["data_samples"]["gt"]
        assert lr_patch.shape == (3, 8, 8) and hr_patch.shape == (3, 24, 24)
        assert torch.equal(hr_patch, lr_patch.repeat_interleave(3, 1).repeat_interleave(3, 2))
        shapes.add(tuple(lr_patch[0, 0, :2].tolist()))
    assert len(shapes) > 1  # crops and flips vary


def test_dataset_errors_name_the_problem(tmp_path):
    rng = np.random.default_rng(0)
    write_png(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), tmp_path / "HR" / "a.png")
    write_png(rng.integers(0, 256, (21, 20, 3), dtype=np.uint8), tmp_path / "LR" / "X2" / "ax2.png")
    folders = dict(hr="HR", lr="LR/X{scale}")
    with pytest.raises(ValueError, match="LR/HR size mismatch"):
        PairedImageFolder(str(tmp_path), folders, 2)
    with pytest.raises(FileNotFoundError, match="ffnet superres make-lr"):
        PairedImageFolder(str(tmp_path), folders, 4)
    write_png(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), tmp_path / "LR" / "X2" / "ax2.png")
    with pytest.raises(ValueError, match="smaller than the LR patch size"):
        PairedImageFolder(str(tmp_path), folders, 2, patch_size=32)
    write_png(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), tmp_path / "HR" / "a.png", "RGBA")
    with pytest.raises(ValueError, match="RGBA image"):
        PairedImageFolder(str(tmp_path), folders, 2)[0]
    write_png(rng.integers(0, 256, (40, 40), dtype=np.uint8), tmp_path / "HR" / "a.png", "L")
    gray_hr = PairedImageFolder(str(tmp_path), folders, 2)[0]["data_samples"]["gt"]
    assert torch.equal(gray_hr[0], gray_hr[1])  # replicated, the benchmark convention
    with pytest.raises(ValueError, match="grayscale image"):
        PairedImageFolder(str(tmp_path), folders, 2, allow_gray=False)[0]


# ---------------------------------------------------------------- tiling and the upscale command

def random_model(scale: int, dim: int = 8, depth: int = 3) -> FFNetSR:
    """Non-trivial weights, so that the context of every tile matters."""
    torch.manual_seed(0)
    model = FFNetSR(scale, dim=dim, depth=depth).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("scale", [2, 3])
def test_tiled_upscale_equals_untiled(scale):
    model = random_model(scale)
    image = np.random.default_rng(scale).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    lr = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        whole = model(lr)
    tiled = upscale_tiled(model, lr, tile=16)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
    without_context = upscale_tiled(model, lr, tile=16, overlap=0)
    assert (without_context - whole).abs().max() > 1e-3  # the overlap is what makes tiles exact
    # the 8-bit path: the same tiles, rounded straight into a uint8 array
    out = np.zeros((37 * scale, 45 * scale, 3), np.uint8)
    upscale_image(model, image, out, tile=16)
    np.testing.assert_array_equal(out, tensor_to_uint8(tiled[0]))


def test_png_bands_round_trip_through_pil(tmp_path):
    import skimage.data

    image = skimage.data.astronaut()[:101, :77]
    for band_rows in (1, 7, 500):
        with open(tmp_path / f"{band_rows}.png", "wb") as f:
            write_png_bands(image, f, band_rows=band_rows)
        with Image.open(tmp_path / f"{band_rows}.png") as decoded:
            assert decoded.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(decoded), image)


def test_large_upscale_holds_no_full_size_float_array(tmp_path):
    """2048² -> 4096² with a tiny network: tensor memory stays at the tile's scale, numpy memory below the
    8-bit output (mapped to a temporary file), and the written PNG equals one untiled pass."""
    import tracemalloc

    from ffnet.engine.bench import peak_memory_bytes

    model = random_model(2, dim=4, depth=1)
    size, tile = 2048, 256
    y, x = np.mgrid[:size, :size]
    image = np.stack([(x * 7) % 256, (y * 5) % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    write_png(image, tmp_path / "big.png")
    full_float_output = (2 * size) ** 2 * 3 * 4  # 201 MB: what one float32 output would take
    output_uint8 = full_float_output // 4
    tracemalloc.start()
    try:
        tensor_peak = peak_memory_bytes(lambda: upscale_file(model, tmp_path / "big.png", tmp_path / "out.png",
                                                             tile=tile, in_memory_limit=output_uint8 // 8))
        _, numpy_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one tile with its context: (256 + 2·5)² LR pixels; its largest tensors are the 3·s² = 12-channel
    # residual, the anchor and the (3, 532, 532) output, 3.4 MB each in float32; a float32 copy of the
    # whole input alone would be 50 MB
    tile_output = (2 * (tile + 2 * model.receptive_radius)) ** 2 * 3 * 4
    assert 0 < tensor_peak < 8 * tile_output < size * size * 3 * 4, tensor_peak
    # numpy/Python: the 8-bit input (12.6 MB) and one PNG band's filter temporaries, not the 50 MB output
    assert numpy_peak < size * size * 3 + 24 * 2**20 < output_uint8, numpy_peak
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png", "out.png"]  # buffer file removed
    # the same pixels as the float path, whose tiles equal one pass (test_tiled_upscale_equals_untiled)
    tiled = upscale_tiled(model, torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, tile=tile)
    np.testing.assert_array_equal(read_rgb(tmp_path / "out.png"), tensor_to_uint8(tiled[0]))


def test_output_buffer_maps_large_outputs_to_a_removed_file(tmp_path):
    with OutputBuffer((64, 50, 3), tmp_path, "out.png", in_memory_limit=64 * 50 * 3) as small:
        assert not small.mapped
    with OutputBuffer((64, 50, 3), tmp_path, "out.png", in_memory_limit=1000) as big:
        assert big.mapped and big.path.parent == tmp_path and big.path.name.endswith(".ffnet-tmp")
        big.array[:] = 7
        big.release(0, 64)  # pages handed back; the values stay in the file
        assert int(big.array.sum()) == 7 * 64 * 50 * 3
    assert not list(tmp_path.iterdir())


def run_cli(*argv) -> int:
    from ffnet.main import main

    return main(["superres", *map(str, argv)])


def cli_error(capsys, *argv) -> str:
    """The one stderr line of a refused ``ffnet superres`` command (exit status 2)."""
    assert run_cli(*argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"ffnet superres {argv[0]}: error: ")
    return lines[0]


@pytest.fixture
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = FFNetSR(2, dim=8, depth=2).eval()
    return model, save_as_mmengine_checkpoint(model, tmp_path / "x2.pth")


def test_upscale_command(tmp_path, capsys, tiny_checkpoint):
    import skimage.data

    model, checkpoint = tiny_checkpoint
    image = skimage.data.chelsea()[:45, :67]
    write_png(image, tmp_path / "in.png")
    assert run_cli("upscale", "--scale", 2, "--checkpoint", checkpoint, "--tile", 16, "--device", "cpu",
                   tmp_path / "in.png", tmp_path / "out.png") == 0
    assert "x2" in capsys.readouterr().out
    out = read_rgb(tmp_path / "out.png")
    with torch.no_grad():
        expected = tensor_to_uint8(model(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)[0])
    assert out.shape == (90, 134, 3)
    # equal up to float rounding: tiles and one pass may differ in the last bit, which can flip a rounding
    difference = np.abs(out.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and np.count_nonzero(difference) <= 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png", "x2.pth"]

    args = ("--checkpoint", checkpoint, "--device", "cpu")
    assert "x2.pth: trained for x2, not x4; pass --scale 2" in cli_error(
        capsys, "upscale", "--scale", 4, *args, tmp_path / "in.png", tmp_path / "o.png")


@pytest.mark.parametrize("case", ["not an image", "truncated", "grayscale", "rgba", "16-bit", "cmyk", "missing",
                                  "no output folder", "unknown format"])
def test_upscale_refuses_bad_files_in_one_line(tmp_path, capsys, tiny_checkpoint, case):
    _, checkpoint = tiny_checkpoint
    rng = np.random.default_rng(0)
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    expected = {
        "not an image": "in.png: not an image file PIL can read",
        "truncated": "in.png: the image is truncated or corrupt",
        "grayscale": "in.png: grayscale image (mode L); FFNet-SR needs 8-bit RGB images - convert it",
        "rgba": "in.png: RGBA image; FFNet-SR needs 8-bit RGB",
        "16-bit": "in.png: grayscale image (mode I;16); FFNet-SR needs 8-bit RGB",
        "cmyk": "in.jpg: image mode CMYK, not 8-bit RGB; FFNet-SR needs 8-bit RGB images - convert it",
        "missing": "in.png: no such image file; check the path",
        "no output folder": f"the output folder {tmp_path / 'missing'} does not exist; create it first",
        "unknown format": "out.xyz: unknown image format '.xyz'",
    }[case]
    if case == "not an image":
        source.write_text("name,value\na,1\n")
    elif case == "truncated":
        write_png(rgb, source)
        source.write_bytes(source.read_bytes()[:200])
    elif case == "grayscale":
        write_png(rgb[..., 0], source, "L")
    elif case == "rgba":
        write_png(np.dstack([rgb, rgb[..., :1]]), source, "RGBA")
    elif case == "16-bit":
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(source)
    elif case == "cmyk":
        source = tmp_path / "in.jpg"
        Image.fromarray(rgb).convert("CMYK").save(source)
    elif case == "no output folder":
        write_png(rgb, source)
        target = tmp_path / "missing" / "out.png"
    elif case == "unknown format":
        write_png(rgb, source)
        target = tmp_path / "out.xyz"
    line = cli_error(capsys, "upscale", "--scale", 2, "--checkpoint", checkpoint, "--device", "cpu", source, target)
    assert expected in line
    assert not target.exists() and not list(tmp_path.glob(".*ffnet-tmp"))


def test_convert_command_writes_a_loadable_checkpoint(tmp_path):
    model = FFNetSR(4, dim=8, depth=1)
    torch.save({"params": to_authors_layout(model.state_dict())}, tmp_path / "authors.pth")
    assert run_cli("convert", "--checkpoint", tmp_path / "authors.pth", "--out", tmp_path / "ours.pth") == 0
    assert run_cli("convert", tmp_path / "authors.pth", tmp_path / "old_form.pth") == 0  # the old positional form
    for name in ("ours.pth", "old_form.pth"):
        state = load_file(tmp_path / name)["state_dict"]
        assert torch.equal(state["generator.reconstruction_conv.weight"], model.reconstruction_conv.weight)


def malicious_commands(tmp_path, evil):
    image = tmp_path / "in.png"
    write_png(np.zeros((16, 16, 3), np.uint8), image)
    return {
        "upscale": ["upscale", image, tmp_path / "out.png", "--scale", 2, "--checkpoint", evil, "--device", "cpu"],
        "convert": ["convert", "--checkpoint", evil, "--out", tmp_path / "c.pth"],
        "test": ["test", "ffnetsr_light_div2k_x2_release.py", "--checkpoint", evil, "--work-dir", tmp_path / "w"],
        "train": ["train", "ffnetsr_light_div2k_x2_release.py", "--init-from", evil, "--work-dir", tmp_path / "w"],
    }


@pytest.mark.parametrize("verb", ["upscale", "convert", "test", "train"])
def test_commands_refuse_a_malicious_checkpoint(tmp_path, capsys, verb):
    marker = tmp_path / "pwned"
    evil = write_malicious_checkpoint(tmp_path / "evil.pth", marker)
    line = cli_error(capsys, *malicious_commands(tmp_path, evil)[verb])
    assert f"{evil}: refused to load: it needs the Python global pathlib" in line
    assert "--trust-checkpoint" in line
    assert not marker.exists()
    assert not (tmp_path / "w").exists() and not (tmp_path / "c.pth").exists()


# ---------------------------------------------------------------- mmengine model

def head_keys(model) -> list[str]:
    return list(model.generator.state_dict())


def test_mmengine_model_modes_and_init_from_x2(tmp_path, capsys):
    from ffnet.superres.engine import FFNetSRModel

    torch.manual_seed(0)
    x2 = FFNetSRModel(dict(variant="ffnet_sr_light", scale=2, dim=8, depth=2))
    checkpoint = save_as_mmengine_checkpoint(x2.generator, tmp_path / "x2.pth")
    x4 = FFNetSRModel(dict(variant="ffnet_sr_light", scale=4, dim=8, depth=2), init_from=str(checkpoint))
    head = x4.generator.reconstruction_conv.weight.clone()
    x4.init_weights()
    for key, value in x2.generator.state_dict().items():
        if key.startswith("reconstruction_conv"):
            assert x4.generator.state_dict()[key].shape != value.shape
        else:
            assert torch.equal(x4.generator.state_dict()[key], value)
    assert torch.equal(x4.generator.reconstruction_conv.weight, head)
    summary = capsys.readouterr().err.strip().splitlines()
    assert summary == [f"partial load of {checkpoint} into the FFNet-SR x4 generator: {len(head_keys(x2)) - 2} "
                       "tensors loaded, skipped 2 of the wrong shape (reconstruction_conv.weight: file (12, 8, 3, 3) "
                       "vs model (48, 8, 3, 3), reconstruction_conv.bias: file (12,) vs model (48,))"]
    # anything else that does not fit is an error: here one block too many in the file
    deeper = save_as_mmengine_checkpoint(FFNetSR(2, dim=8, depth=3), tmp_path / "x2_depth3.pth")
    with pytest.raises(CheckpointError, match=r"x2_depth3.pth: does not fit the FFNet-SR x4 generator: 12 unexpected "
                                              r"\(body.2.*looks like FFNet-SR x2 \(width 8, depth 3\)"):
        FFNetSRModel(dict(variant="ffnet_sr_light", scale=4, dim=8, depth=2), init_from=str(deeper)).init_weights()

    lr, hr = torch.rand(2, 3, 6, 5), torch.rand(2, 3, 24, 20)
    losses = x4(lr, dict(gt=hr), mode="loss")
    assert set(losses) == {"loss_l1", "loss_fft"}
    predictions = x4(lr, dict(gt=hr, name=["a", "b"], dataset=["S", "S"]), mode="predict")
    assert [p["name"] for p in predictions] == ["a", "b"] and predictions[0]["pred"].shape == (3, 24, 20)
    with pytest.raises(ValueError, match="needs data_samples"):
        x4(lr, None, mode="loss")
