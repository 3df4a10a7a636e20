"""Training, EMA, resume, latent extraction, sampling and FID plumbing, with tiny models on real photos;
safe checkpoint loads (weights-only, stored configs read as data) and the run lock of the work dir.

The VAE is a tiny randomly initialised diffusers AutoencoderKL saved with ``save_pretrained`` and
loaded back by path; images are crops of scikit-image's sample photos.
"""
import argparse
import json
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from PIL import Image
from skimage import data as skdata
from skimage.transform import resize
from torch import nn

from ffnet.engine.checkpoints import load_file
from ffnet.engine.errors import CheckpointError
from ffnet.generation.autoencoder import FrozenAutoencoder
from ffnet.generation.convert import convert_official_checkpoint
from ffnet.generation.data import LatentFolder, load_image, to_signed
from ffnet.generation.diffusion import sample
from ffnet.generation.fid import compute_metrics, evaluate_checkpoint
from ffnet.generation.sample import load_generator, stored_config
from ffnet.generation.training import CONFIG_DIR, LatentDiffusion
from ffnet.main import main

PHOTOS = {"astronaut": skdata.astronaut, "coffee": skdata.coffee, "chelsea": skdata.chelsea}
SMALL_MIXER = dict(type="ffnified", kernel_size=3, branch_kernels=[], output_proj=True)
TINY_BACKBONE = dict(arch="U-DiT-S", width=16, num_heads=2, depths=[1, 1, 1, 1, 1], num_classes=3,
                     mixers=[SMALL_MIXER, SMALL_MIXER, "attention", SMALL_MIXER, SMALL_MIXER])


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=32)
    path = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """3 classes x 2 crops (40x48) of scikit-image photos, ImageNet folder layout."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, load in PHOTOS.items():
        photo = load()
        (root / name).mkdir()
        for i in range(2):
            top, left = rng.integers(0, photo.shape[0] - 120), rng.integers(0, photo.shape[1] - 144)
            crop = resize(photo[top:top + 120, left:left + 144], (40, 48), anti_aliasing=True)
            Image.fromarray((crop * 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def write_config(path):
    path.write_text(
        f"_base_ = [{str(CONFIG_DIR / '_runtime.py')!r}]\n"
        f"model = dict(backbone={TINY_BACKBONE!r}, sample_size=16)\n"
        "train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(image_size=32))\n"
        "default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))\n")
    return path


_HOLD = ("import sys, time; from ffnet.engine.files import RunLock; RunLock(sys.argv[1]).acquire(); "
         "print('held', flush=True); time.sleep(120)")


def test_train_extract_resume_ema_and_sample(tmp_path, tiny_vae, image_folder, capsys):
    config, work = write_config(tmp_path / "tiny.py"), tmp_path / "work"
    train = ["generation", "train", str(config), "--work-dir", str(work), "--data", str(image_folder),
             "--vae", str(tiny_vae), "--max-iters", "2"]
    # a second run on a held work dir is refused, naming the holder; a killed holder's lock is taken over
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(work)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert main(train) == 2
        error = capsys.readouterr().err
        assert error.startswith("ffnet generation train: error: ") and f"pid {holder.pid}" in error
        assert error.count("\n") == 1 and not (work / "iter_1.pth").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(train) == 0
    # mmengine's checkpoints of `generation train` load weights-only (no trust needed)
    first = load_file(work / "iter_2.pth")
    assert first["meta"]["iter"] == 2
    assert first["meta"]["dataset_meta"]["classes"] == ("astronaut", "chelsea", "coffee")
    assert not any(k.startswith("autoencoder") for k in first["state_dict"])  # the VAE stays out of checkpoints
    # the stored config is read as data and equals what executing it gives
    text = first["meta"]["cfg"]
    assert stored_config(first, "iter_2.pth").to_dict() == Config.fromstring(text, ".py").to_dict()

    # latents extracted once (both flips), then training resumes on them
    latents = tmp_path / "latents"
    assert main(["generation", "extract-latents", "--data", str(image_folder), "--vae", str(tiny_vae),
                 "--out", str(latents), "--image-size", "32", "--batch-size", "4", "--num-workers", "0",
                 "--device", "cpu"]) == 0
    meta = json.loads((latents / "meta.json").read_text())
    assert meta["views"] == 2 and meta["classes"] == ["astronaut", "chelsea", "coffee"]
    assert sorted(p.name for p in latents.iterdir()) == ["labels.npy", "meta.json", "moments.npy"]
    moments = np.load(latents / "moments.npy")
    assert moments.shape == (6, 2, 8, 16, 16)
    vae = FrozenAutoencoder(tiny_vae)
    image = to_signed(load_image(image_folder / "astronaut" / "0.png", 32))[None]
    expected = vae.moments(image)[0]
    torch.testing.assert_close(torch.from_numpy(moments[0, 0]).float(), expected, atol=2e-2, rtol=2e-3)
    torch.testing.assert_close(torch.from_numpy(moments[0, 1]).float(), vae.moments(image.flip(-1))[0],
                               atol=2e-2, rtol=2e-3)
    item = LatentFolder(latents)[0]
    assert item["latents"].shape == (4, 16, 16) and item["labels"] == 0

    assert main(["generation", "train", str(config), "--work-dir", str(work), "--latents", str(latents),
                 "--vae", str(tiny_vae), "--max-iters", "3", "--resume"]) == 0
    second = load_file(work / "iter_3.pth")
    assert second["meta"]["iter"] == 3
    assert int(second["optimizer"]["state"][0]["step"]) == 3  # AdamW state carried over
    # checkpoints hold the EMA in state_dict and the raw weights in ema_state_dict; the resumed
    # EMA continues from the saved one: ema_3 = ema_2 + 1e-4 (raw_3 - ema_2)
    momentum, moved = 1e-4, 0
    for key, ema_3 in second["state_dict"].items():
        if not key.startswith("backbone."):
            continue
        raw_3, ema_2 = second["ema_state_dict"][f"module.{key}"], first["state_dict"][key]
        torch.testing.assert_close(ema_3, ema_2 + momentum * (raw_3 - ema_2), rtol=0, atol=1e-7)
        moved += int(not torch.equal(raw_3, ema_3))
    assert moved > 0

    generator = load_generator(work / "iter_3.pth")
    for key, value in generator.backbone.state_dict().items():  # the EMA weights, strictly loaded
        assert torch.equal(value, second["state_dict"][f"backbone.{key}"])
    grid = tmp_path / "grid.png"
    assert main(["generation", "sample", "--checkpoint", str(work / "iter_3.pth"), "--classes", "0", "2",
                 "--num", "2", "--steps", "4", "--cfg-scale", "1.5", "--out", str(grid), "--device", "cpu"]) == 0
    with Image.open(grid) as png:
        assert png.size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)  # 2x2 decoded 32 px samples, 2 px padding
    assert not list(tmp_path.glob(".*ffnet-tmp"))

    capsys.readouterr()
    assert main(["generation", "sample", "--checkpoint", str(work / "iter_3.pth"), "--classes", "7", "--num", "1",
                 "--steps", "2", "--out", str(grid), "--device", "cpu"]) == 2
    assert "class id(s) [7] out of range: this model has 3 classes" in capsys.readouterr().err
    assert main(["generation", "sample", "--checkpoint", str(work / "iter_3.pth"), "--vae",
                 str(tmp_path / "missing"), "--classes", "1", "--out", str(grid), "--device", "cpu"]) == 2
    assert "no AutoencoderKL at" in capsys.readouterr().err


def test_missing_paths_and_inputs_give_clear_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no AutoencoderKL at .* pass --vae a local folder"):
        LatentDiffusion(TINY_BACKBONE, vae_path=str(tmp_path / "no_vae"))
    with pytest.raises(CheckpointError, match="c.pth: checkpoint not found"):
        evaluate_checkpoint(tmp_path / "c.pth", tmp_path, 4, inception=tmp_path / "missing.pth")
    model = LatentDiffusion(TINY_BACKBONE)
    save_checkpoint(model, tmp_path / "c.pth", TINY_BACKBONE)
    with pytest.raises(FileNotFoundError, match="Inception weights not found .* pass --inception"):
        evaluate_checkpoint(tmp_path / "c.pth", tmp_path, 4, inception=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="no autoencoder to encode them"):
        model(torch.tensor([0]), images=torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.tensor([0]), latents=torch.zeros(1, 4, 12, 12))
    with pytest.raises(FileNotFoundError, match="extract-latents"):
        LatentFolder(tmp_path)
    assert main(["generation", "train", "udit_s", "--work-dir", str(tmp_path / "work")]) == 2
    assert "ffnet generation train: error: no training data: give --data DIR" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


class PooledColours(nn.Module):
    """FID features of uint8 images: the 2x2 average colours, ``(N, 3, H, W) → (N, 12)``."""

    def forward(self, images):
        return F.adaptive_avg_pool2d(images.float() / 255, 2).flatten(1)


class NearestPrototype(nn.Module):
    """IS logits: negative squared distance of the pooled colours to each class's mean, ``(N, K)``."""

    def __init__(self, prototypes):
        super().__init__()
        self.register_buffer("prototypes", prototypes)
        self.features = PooledColours()

    def forward(self, images):
        return -50 * torch.cdist(self.features(images), self.prototypes) ** 2


def photo_patches(size=16, crop=8):
    """Per class, all crop x crop patches (in [-1, 1]) of the photo shrunk to size x size."""
    patches = []
    for load in PHOTOS.values():
        small = torch.from_numpy(resize(load(), (size, size), anti_aliasing=True)).permute(2, 0, 1).float() * 2 - 1
        patches.append(small.unfold(1, crop, 1).unfold(2, crop, 1).permute(1, 2, 0, 3, 4).reshape(-1, 3, crop, crop))
    return patches


def save_checkpoint(model, path, backbone_cfg):
    """A checkpoint in the layout `ffnet generation train` writes (config text in meta, weights under backbone.)."""
    from mmengine.config import Config

    cfg = Config(dict(model=dict(type="LatentDiffusion", backbone=backbone_cfg, sample_size=8)))
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()},
                "meta": {"cfg": cfg.pretty_text}}, path)


def test_pixel_space_learning_moves_samples_toward_the_photos(tmp_path):
    """Class-conditional diffusion on 8x8 patches of three photos: the loss falls and FID/IS improve."""
    torch.manual_seed(0)
    patches = photo_patches()
    backbone = dict(TINY_BACKBONE, width=8, in_channels=3)
    model = LatentDiffusion(backbone, sample_size=8)
    reference = tmp_path / "reference"
    reference.mkdir()
    for c, class_patches in enumerate(patches):
        for i in range(0, len(class_patches), 6):
            Image.fromarray(((class_patches[i].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()).save(
                reference / f"{c}_{i}.png")
    prototypes = torch.stack([PooledColours()(((p + 1) * 127.5).round().byte()).mean(0) for p in patches])
    features = (PooledColours(), NearestPrototype(prototypes))

    def score(name):
        save_checkpoint(model, tmp_path / name, backbone)
        return evaluate_checkpoint(tmp_path / name, reference, num=24, inception=None, num_steps=20, cfg_scale=1.0,
                                   batch_size=24, is_splits=2, features=features, num_workers=0)

    untrained = score("untrained.pth")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        labels = torch.randint(0, 3, (16,), generator=generator)
        picks = [torch.randint(len(patches[c]), (), generator=generator) for c in labels.tolist()]
        images = torch.stack([patches[c][i] for c, i in zip(labels.tolist(), picks)])
        terms = model(labels, images=images)
        loss = terms["loss_mse"] + terms["loss_vb"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    trained = score("trained.pth")
    assert trained["num_generated"] == 24 and trained["num_reference"] == untrained["num_reference"]
    assert trained["fid"] < 0.5 * untrained["fid"]
    assert trained["inception_score"] > untrained["inception_score"]

    # class-conditional: each class's samples are closest to that photo's mean colours
    model.eval()
    labels = torch.arange(3).repeat_interleave(8)
    samples = sample(model.backbone, labels, (3, 8, 8), model.scheduler, num_steps=20, cfg_scale=1.0,
                     generator=torch.Generator().manual_seed(1))
    logits = NearestPrototype(prototypes)(((samples.clamp(-1, 1) + 1) * 127.5).round().byte())
    # chance is 1/3; the training patches themselves are classified right 85 % of the time
    assert (logits.argmax(1) == labels).float().mean() > 0.5


def test_compute_metrics_on_identical_and_shifted_sets():
    """FID through torchmetrics with a custom feature module: 0 for identical sets, larger when shifted."""
    generator = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (32, 3, 8, 8), generator=generator, dtype=torch.uint8)
    prototypes = PooledColours()(real[:3])
    features = (PooledColours(), NearestPrototype(prototypes))
    same = compute_metrics([real], [real], *features, is_splits=2)
    shifted = compute_metrics([(real.int() // 2).byte()], [real], *features, is_splits=2)
    assert same["fid"] == pytest.approx(0.0, abs=1e-3)
    assert shifted["fid"] > 0.01 and shifted["num_generated"] == 32


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints from elsewhere: weights-only loads, configs read as data, strict weights


class Payload:
    """Unpickling this runs ``Path.touch(marker)``: what a crafted checkpoint runs under the full unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def assert_refused(err: str, path, command: str) -> None:
    """One error line from ``ffnet generation <command>`` naming ``path`` and the trust opt-in."""
    assert err.startswith(f"ffnet generation {command}: error: {path}: refused to load: ") and err.count("\n") == 1
    assert "--trust-checkpoint" in err


def test_crafted_checkpoints_run_nothing_on_any_load_path(tmp_path, capsys):
    marker, crafted = tmp_path / "ran", tmp_path / "crafted.pth"
    model = LatentDiffusion(TINY_BACKBONE)
    save_checkpoint(model, crafted, TINY_BACKBONE)
    checkpoint = load_file(crafted)
    torch.save({**checkpoint, "extra": Payload(marker)}, crafted)
    load_file(crafted, trust=True)  # the payload is live: the full unpickler runs it
    assert marker.exists()
    marker.unlink()

    out = tmp_path / "out"
    runs = {
        "sample": ["--checkpoint", str(crafted), "--classes", "0", "--out", str(out), "--device", "cpu"],
        "fid": ["--checkpoint", str(crafted), "--ref", str(tmp_path), "--num", "2", "--device", "cpu"],
        "convert": ["--checkpoint", str(crafted), "--out", str(out)],
    }
    for command, args in runs.items():
        capsys.readouterr()
        assert main(["generation", command, *args]) == 2
        assert_refused(capsys.readouterr().err, crafted, command)
    assert main(["gen", "convert-udit", str(crafted), str(out), "--arch", "U-DiT-S"]) == 2  # the old spelling
    notice, error = capsys.readouterr().err.splitlines()
    assert "'ffnet gen convert-udit' is deprecated" in notice
    assert_refused(error + "\n", crafted, "convert")
    assert main(["generation", "convert", "--out", str(out)]) == 2
    assert "error: give the official checkpoint with --checkpoint FILE" in capsys.readouterr().err
    for load in (lambda: load_generator(crafted), lambda: convert_official_checkpoint(crafted, out),
                 lambda: evaluate_checkpoint(crafted, tmp_path, 2, None, features=(nn.Identity(), nn.Identity()))):
        with pytest.raises(CheckpointError, match=f"{crafted}: refused to load: .* pass --trust-checkpoint"):
            load()
    assert not marker.exists() and not out.exists()


def test_stored_config_is_read_as_data_not_run(tmp_path, monkeypatch):
    marker, path = tmp_path / "ran", tmp_path / "code_in_config.pth"
    save_checkpoint(LatentDiffusion(TINY_BACKBONE), path, TINY_BACKBONE)
    checkpoint = load_file(path)
    checkpoint["meta"]["cfg"] = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n" + checkpoint["meta"]["cfg"]
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"code_in_config.pth: the config stored in it \(meta\['cfg'\]\) is not "
                                              r"plain data \(line 1 .*--trust-checkpoint"):
        load_generator(path)
    checkpoint["meta"]["cfg"] = "model = dict(backbone=dict(arch=__import__('os').getcwd()))"
    with pytest.raises(CheckpointError, match="is not plain data"):
        stored_config(checkpoint, str(path))
    assert not marker.exists()
    monkeypatch.setenv("FFNET_TRUST_CHECKPOINTS", "1")  # trusted: mmengine executes the text, as it always did
    checkpoint["meta"]["cfg"] = f"_ = __import__('pathlib').Path({str(marker)!r}).touch()\nmodel = dict()"
    stored_config(checkpoint, str(path))
    assert marker.exists()


def test_weights_must_fit_and_errors_say_what_the_file_holds(tmp_path):
    narrow = tmp_path / "narrow.pth"
    save_checkpoint(LatentDiffusion(dict(TINY_BACKBONE, width=8)), narrow, TINY_BACKBONE)  # config says width 16
    with pytest.raises(CheckpointError, match=r"narrow.pth: does not fit the U-DiT-S backbone of its stored config: "
                                              r".* of the wrong shape .* the file looks like a U-DiT-family backbone "
                                              r"of width 8 \(depths \(1, 1, 1, 1, 1\), ffnified 3x3 \+ output "
                                              r"projection mixers around a attention bottleneck; train-time, 3 classes"):
        load_generator(narrow)
    with pytest.raises(CheckpointError, match="narrow.pth: not an official U-DiT checkpoint .*width 8"):
        convert_official_checkpoint(narrow, tmp_path / "out.pth")

    # an official DiT-style file: EMA weights preferred, the argparse namespace allowed, no config inside
    official = tmp_path / "U-DiT-S-400k.pt"
    stem = torch.randn(96, 4, 3, 3)
    torch.save({"model": {"x_embedder.proj.weight": torch.zeros(96, 4, 3, 3)}, "ema": {"x_embedder.proj.weight": stem},
                "args": argparse.Namespace(model="U-DiT-S")}, official)
    with pytest.raises(CheckpointError, match="U-DiT-S-400k.pt: is an official U-DiT-S checkpoint, which carries no "
                                              "config; convert it first: ffnet generation convert --checkpoint"):
        load_generator(official)
    with pytest.raises(CheckpointError, match=r"U-DiT-S-400k.pt: does not fit U-DiT-S: 1130 missing \("):
        convert_official_checkpoint(official, tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()
