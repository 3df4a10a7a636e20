"""ffnet.superres with the mmengine Runner: shipped configs through `ffnet superres train/test`, resume,
weights-only loading of the Runner's checkpoints, the authors' checkpoints in testing, and a real-data
learning test on scikit-image photos."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from ffnet.superres.data import BENCHMARK_SETS, bicubic_downscale, bicubic_resize, read_rgb, write_rgb
from ffnet.superres.metrics import psnr_y


def write_pair(hr: np.ndarray, hr_dir: Path, lr_dir: Path, name: str, scale: int) -> None:
    write_rgb(hr, hr_dir / f"{name}.png")
    write_rgb(bicubic_downscale(hr, scale), lr_dir / f"{name}x{scale}.png")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """DIV2K and benchmark layouts (x2) with small crops of real photos."""
    root = tmp_path_factory.mktemp("sr_data")
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.rocket(), skimage.data.chelsea()]
    for i, photo in enumerate(photos[:2]):
        write_pair(photo[100:164, 120:184], root / "DIV2K/DIV2K_train_HR",
                   root / "DIV2K/DIV2K_train_LR_bicubic/X2", f"{i + 1:04d}", 2)
    for i, name in enumerate(BENCHMARK_SETS):
        photo = photos[i % len(photos)]
        write_pair(photo[50:91, 60:109], root / f"benchmark/{name}/HR", root / f"benchmark/{name}/LR_bicubic/X2",
                   f"img{i}", 2)
    return root


def run_cli(*argv) -> int:
    from ffnet.main import main

    return main(["superres", *map(str, argv)])


TINY = ["+model.generator.dim=8", "+model.generator.depth=1", "train_dataloader.batch_size=2",
        "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
        "train_dataloader.dataset.patch_size=16", "val_dataloader.num_workers=0", "test_dataloader.num_workers=0",
        "train_cfg.val_interval=2", "default_hooks.checkpoint.interval=2", "default_hooks.logger.interval=1",
        "param_scheduler.0.T_max=4", "param_scheduler.0.end=4"]


def latest_log(work_dir: Path) -> str:
    return sorted(work_dir.glob("*/*.log"))[-1].read_text()


def logged_test_metrics(log: str) -> dict[str, float]:
    line = [ln for ln in log.splitlines() if "Iter(test)" in ln][-1]
    return {k: float(v) for k, v in re.findall(r"(\S+/PSNR|\S+/SSIM): ([\d.]+)", line)}


def test_shipped_config_trains_resumes_and_tests(data_root, tmp_path, capsys):
    from ffnet.engine.checkpoints import load_file
    from ffnet.superres.checkpoint import generator_state_dict

    work = tmp_path / "work"
    config = "ffnetsr_light_div2k_x2_release.py"
    assert run_cli("train", config, "--data-root", data_root, "--work-dir", work,
                   "--cfg-options", "train_cfg.max_iters=2", *TINY) == 0
    assert (work / "iter_2.pth").is_file() and list(work.glob("best_PSNR_iter_2.pth"))
    assert not list(work.glob("*.tmp*"))
    first = generator_state_dict(work / "iter_2.pth")

    assert run_cli("train", config, "--data-root", data_root, "--work-dir", work, "--resume",
                   "--cfg-options", "train_cfg.max_iters=4", *TINY) == 0
    log = latest_log(work)
    assert "Iter(train) [3/4]" in log and "Iter(train) [1/4]" not in log  # continued, not restarted
    # the Runner's checkpoints (message hub, optimizer, schedulers) load weights-only, without the trust opt-in
    checkpoint = load_file(work / "iter_4.pth", trust=False)
    assert checkpoint["meta"]["iter"] == 4 and "message_hub" in checkpoint and "optimizer" in checkpoint
    assert load_file(work / "best_PSNR_iter_4.pth", trust=False)["meta"]["iter"] == 4
    trained = generator_state_dict(checkpoint)
    assert any(not torch.equal(trained[k], first[k]) for k in first)

    assert run_cli("test", config, "--checkpoint", work / "iter_4.pth", "--data-root", data_root,
                   "--work-dir", tmp_path / "test_ours", "--cfg-options", *TINY[:2],
                   "test_dataloader.num_workers=0") == 0
    ours = logged_test_metrics(latest_log(tmp_path / "test_ours"))
    assert set(ours) == {f"{name}/{m}" for name in BENCHMARK_SETS for m in ("PSNR", "SSIM")}

    # The same weights in the authors' BasicSR layout give the same scores.
    from test_superres import to_authors_layout

    authors_file = tmp_path / "FFNetSR_x2.pth"
    torch.save({"params": to_authors_layout(trained)}, authors_file)
    assert run_cli("test", config, "--checkpoint", authors_file, "--data-root", data_root, "--work-dir",
                   tmp_path / "test_authors", "--cfg-options", *TINY[:2], "test_dataloader.num_workers=0") == 0
    assert logged_test_metrics(latest_log(tmp_path / "test_authors")) == ours
    assert f"loaded {authors_file}: all 16 generator tensors" in capsys.readouterr().out


    # one line, exit status 2: a checkpoint of another scale
    assert run_cli("test", "ffnetsr_light_div2k_x4_release.py", "--checkpoint", work / "iter_4.pth",
                   "--data-root", data_root) == 2
    assert "iter_4.pth: is a x2 model but the config tests x4" in capsys.readouterr().err


def test_small_ffnet_sr_beats_bicubic_on_a_held_out_photo(tmp_path):
    """Trained on crops of four photos for 300 iterations, scored on a fifth (PSNR on Y, border 2)."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    import ffnet.superres.engine  # noqa: F401  (registers the model, dataset and metric)

    scale, root = 2, tmp_path / "photos"
    train = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.rocket(),
             skimage.data.immunohistochemistry()]
    for i, photo in enumerate(train):
        write_pair(photo, root / "train/HR", root / "train/LR/X2", f"p{i}", scale)
    held_out = skimage.data.chelsea()
    write_pair(held_out, root / "test/HR", root / "test/LR/X2", "chelsea", scale)

    loader = dict(num_workers=0, collate_fn=dict(type="default_collate"))
    cfg = Config(dict(
        model=dict(type="FFNetSRModel", generator=dict(variant="ffnet_sr_light", scale=scale, dim=16, depth=2),
                   fft_weight=0.02),
        work_dir=str(tmp_path / "work"),
        train_dataloader=dict(batch_size=16, sampler=dict(type="InfiniteSampler", shuffle=True), **loader,
                              dataset=dict(type="PairedImageFolder", data_root=str(root), scale=scale, patch_size=32,
                                           augment=True, cache_images=True,
                                           folders=[dict(name="train", hr="train/HR", lr="train/LR/X{scale}")])),
        test_dataloader=dict(batch_size=1, sampler=dict(type="DefaultSampler", shuffle=False), **loader,
                             dataset=dict(type="PairedImageFolder", data_root=str(root), scale=scale,
                                          folders=[dict(name="held_out", hr="test/HR", lr="test/LR/X{scale}")])),
        test_evaluator=dict(type="SRPSNRSSIM"),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=300),
        test_cfg=dict(type="TestLoop"),
        optim_wrapper=dict(optimizer=dict(type="Adam", lr=2e-3, betas=(0.9, 0.99))),
        param_scheduler=[dict(type="CosineAnnealingLR", T_max=300, eta_min=1e-5, by_epoch=False)],
        default_hooks=dict(logger=dict(type="LoggerHook", interval=100),
                           checkpoint=dict(type="CheckpointHook", interval=300, by_epoch=False)),
        randomness=dict(seed=0), log_processor=dict(by_epoch=False),
    ))
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()

    hr = held_out[: held_out.shape[0] // scale * scale, : held_out.shape[1] // scale * scale]
    bicubic = bicubic_resize(read_rgb(root / "test/LR/X2/chelseax2.png"), scale)
    bicubic_psnr = psnr_y(bicubic, hr, scale)
    assert 30 < bicubic_psnr < 40
    assert metrics["held_out/PSNR"] > bicubic_psnr + 0.1, (metrics, bicubic_psnr)
