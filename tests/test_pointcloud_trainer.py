"""Standalone trainer: Pointcept config → mmengine Runner, OneCycle groups, checkpoints, resume, TTA test, predict."""
import argparse

import numpy as np
import pytest
import torch

from ffnet.pointcloud import commands
from ffnet.pointcloud.synthetic import synthetic_room, write_scannet_scene
from ffnet.pointcloud.trainer import build_runner, load_pointcept_config, to_runner_config

TINY = {
    "model.backbone.enc_channels": (4, 8, 16, 32, 64), "model.backbone.dec_channels": (8, 8, 16, 32),
    "model.backbone.enc_depths": (1, 1, 1, 1, 1), "model.backbone.dec_depths": (1, 1, 1, 1),
    "model.backbone_out_channels": 8, "epoch": 2, "eval_epoch": 2, "batch_size": 2, "num_worker": 0,
    "data.test.test_cfg.aug_transform": [[dict(type="RandomRotateTargetAngle", angle=[1 / 2], axis="z", p=1)]],
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("scannet")
    for i in range(2):
        write_scannet_scene(root / "train" / f"scene000{i}_00", synthetic_room(1200, seed=i))
    write_scannet_scene(root / "val" / "scene0100_00", synthetic_room(900, seed=7))
    return root


def test_runner_config_follows_pointcept_semantics():
    cfg = load_pointcept_config("scannet-ffnet")
    runner_cfg = to_runner_config(cfg, "work", world_size=4)
    assert runner_cfg.train_dataloader.batch_size == 3 and runner_cfg.train_dataloader.dataset.loop == 8
    assert runner_cfg.train_cfg.max_epochs == 100
    scheduler = runner_cfg.param_scheduler[0]
    assert scheduler.eta_max[:2] == [0.006, 0.0006] and scheduler.pct_start == 0.05 and scheduler.total_steps == 100
    assert runner_cfg.train_dataloader.collate_fn.mix_prob == 0.8
    assert runner_cfg.get("sync_bn") == ("torch" if torch.cuda.is_available() else None)
    assert runner_cfg.optim_wrapper.paramwise_cfg.param_dicts == [dict(keyword="block", lr=0.0006)]
    s3dis = to_runner_config(load_pointcept_config("s3dis-ffnet"), "work")
    assert s3dis.train_dataloader.dataset.loop == 2 and s3dis.train_cfg.max_epochs == 1500
    with pytest.raises(ValueError, match="must divide by world size"):
        to_runner_config(cfg, "work", world_size=5)


def test_train_resume_test_and_predict(tmp_path, data_root):
    work = tmp_path / "work"
    runner = build_runner("scannet-ffnet", work, options=TINY, data_root=str(data_root))
    runner.train()
    groups = runner.optim_wrapper.optimizer.param_groups
    assert len(groups) == 2
    in_block_group = {id(p) for p in groups[1]["params"]}
    names = {n: id(p) in in_block_group for n, p in runner.model.named_parameters()}
    assert all(("block" in n) == is_block for n, is_block in names.items()) and any(names.values())
    assert groups[0]["max_lr"] == pytest.approx(0.006) and groups[1]["max_lr"] == pytest.approx(0.0006)
    assert groups[1]["lr"] == pytest.approx(0.0006 / 10 / 1000)  # OneCycle ends at initial / final_div_factor
    assert (work / "epoch_1.pth").is_file() and (work / "epoch_2.pth").is_file()
    assert list(work.glob("best_mIoU_epoch_*.pth"))
    assert not list(work.glob("*.tmp*"))  # checkpoints are written atomically

    first = torch.load(work / "epoch_2.pth", weights_only=False)
    (work / "epoch_2.pth").unlink()
    resumed = build_runner("scannet-ffnet", work, options=TINY, data_root=str(data_root),
                           resume=str(work / "epoch_1.pth"))
    resumed.train()
    second = torch.load(work / "epoch_2.pth", weights_only=False)
    assert second["meta"]["epoch"] == 2 and second["meta"]["iter"] == first["meta"]["iter"] == 2

    tester = build_runner("scannet-ffnet", work, options=TINY, data_root=str(data_root),
                          load_from=str(work / "epoch_2.pth"))
    metrics = tester.test()
    assert set(metrics) == {"mIoU", "mAcc", "allAcc"} and 0 <= metrics["allAcc"] <= 1
    assert len(np.load(work / "result" / "scene0100_00_pred.npy")) == 900

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    out = tmp_path / "pred"
    args = parser.parse_args(["pc", "predict", "--checkpoint", str(work / "epoch_2.pth"),
                              "--scene", str(data_root / "val" / "scene0100_00"), "--out", str(out)])
    args.func(args)
    labels = np.load(out / "scene0100_00_pred.npy")
    assert labels.shape == (900,) and labels.min() >= 0 and labels.max() < 20
    assert (out / "scene0100_00_pred.png").stat().st_size > 10_000
