"""Standalone trainer: Pointcept config → mmengine Runner, OneCycle groups, checkpoints, resume, TTA test, predict;
the run lock of the work dir; safe checkpoint loads (weights-only, stored configs read as data, strict weights)."""
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config

from ffnet.engine.checkpoints import config_from_text, load_file
from ffnet.engine.errors import CheckpointError, RunFolderBusy
from ffnet.main import main
from ffnet.pointcloud.model import build_segmentor
from ffnet.pointcloud.predict import predict_scene
from ffnet.pointcloud.synthetic import synthetic_room, write_release_scene, write_scannet_scene
from ffnet.pointcloud.trainer import (build_runner, describe_point_state_dict, load_pointcept_config, to_runner_config,
                                      train)

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


_HOLD = ("import sys, time; from ffnet.engine.files import RunLock; RunLock(sys.argv[1]).acquire(); "
         "print('held', flush=True); time.sleep(120)")


def test_train_resume_test_and_predict(tmp_path, data_root, capsys):
    work = tmp_path / "work"
    # a second run on a held work dir is refused, naming the holder; a killed holder's lock is taken over
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(work)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=f"is in use by another run \\(pid {holder.pid} on "):
            train("scannet-ffnet", work, options=TINY, data_root=str(data_root))
        assert not list(work.glob("*.pth"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    runner = train("scannet-ffnet", work, options=TINY, data_root=str(data_root))
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

    first = load_file(work / "epoch_2.pth")  # mmengine's checkpoints load weights-only (no trust needed)
    text = first["meta"]["cfg"]
    assert config_from_text(text, "epoch_2.pth").to_dict() == Config.fromstring(text, ".py").to_dict()
    (work / "epoch_2.pth").unlink()
    train("scannet-ffnet", work, options=TINY, data_root=str(data_root), resume=str(work / "epoch_1.pth"))
    second = load_file(work / "epoch_2.pth")
    assert second["meta"]["epoch"] == 2 and second["meta"]["iter"] == first["meta"]["iter"] == 2

    tester = build_runner("scannet-ffnet", work, options=TINY, data_root=str(data_root),
                          load_from=str(work / "epoch_2.pth"))
    for key, value in tester.model.state_dict().items():  # loaded strictly when the runner is built
        assert torch.equal(value, second["state_dict"][key])
    metrics = tester.test()
    assert set(metrics) == {"mIoU", "mAcc", "allAcc"} and 0 <= metrics["allAcc"] <= 1
    assert len(np.load(work / "result" / "scene0100_00_pred.npy")) == 900
    with pytest.raises(CheckpointError, match=r"epoch_2.pth: does not fit the segmentor of scannet200-ffnet: .* the "
                                              r"file looks like the FFNet point model \(5 encoder stages, stem width 4, "
                                              r"20 classes\); use the config or model that matches it"):
        build_runner("scannet200-ffnet", tmp_path / "other", options=TINY, data_root=str(data_root),
                     load_from=str(work / "epoch_2.pth"))

    out = tmp_path / "pred"
    assert main(["pointcloud", "predict", "--checkpoint", str(work / "epoch_2.pth"), "--scene",
                 str(data_root / "val" / "scene0100_00"), "--out", str(out), "--device", "cpu"]) == 0
    labels = np.load(out / "scene0100_00_pred.npy")
    assert labels.shape == (900,) and labels.min() >= 0 and labels.max() < 20
    assert (out / "scene0100_00_pred.png").stat().st_size > 10_000
    assert sorted(p.name for p in out.iterdir()) == ["scene0100_00_pred.npy", "scene0100_00_pred.png"]


@pytest.mark.parametrize("config, expected", [
    ("scannet-ffnet", "the FFNet point model (the release layout, 20 classes), config scannet-ffnet"),
    ("scannet200-ffnet", "the FFNet point model (the release layout, 200 classes), config scannet200-ffnet"),
    ("s3dis-ffnet", "the FFNet point model (the release layout, 13 classes), config s3dis-ffnet"),
    ("scannet-ffnet-paper", "the FFNet point model (the paper layout, 20 classes), config scannet-ffnet-paper"),
    ("scannet-ffnet-dw", "the FFNet point model (the release layout, depthwise, 20 classes), config scannet-ffnet-dw"),
])
def test_describer_names_the_shipped_config_from_parameter_shapes(config, expected):
    with torch.device("meta"):
        segmentor = build_segmentor(load_pointcept_config(config).model)
    state = segmentor.state_dict()
    assert describe_point_state_dict(state) == expected
    assert describe_point_state_dict({f"segmentor.{k}": v for k, v in state.items()}) == expected


# ---------------------------------------------------------------------------------------------------------------
# Files from elsewhere: a crafted pickle runs nothing, on any point-cloud load path


class Payload:
    """Unpickling this runs ``Path.touch(marker)``: what a crafted file runs under the full unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def tiny_checkpoint(path):
    """A checkpoint as `ffnet pointcloud train` writes it (segmentor weights, the Runner config as text)."""
    cfg = load_pointcept_config("scannet-ffnet", TINY)
    torch.manual_seed(0)
    segmentor = build_segmentor(cfg.model)
    state = {f"segmentor.{k}": v for k, v in segmentor.state_dict().items()}
    torch.save({"state_dict": state, "meta": {"cfg": to_runner_config(cfg, "work").pretty_text}}, path)
    return path


def test_crafted_checkpoints_and_scenes_run_nothing(tmp_path, data_root, capsys):
    marker, crafted = tmp_path / "ran", tmp_path / "crafted.pth"
    torch.save({"state_dict": {"segmentor.seg_head.weight": torch.zeros(2, 2)}, "extra": Payload(marker)}, crafted)
    load_file(crafted, trust=True)  # the payload is live: the full unpickler runs it
    assert marker.exists()
    marker.unlink()
    scene = data_root / "val" / "scene0100_00"
    good = tiny_checkpoint(tmp_path / "good.pth")
    crafted_scene = tmp_path / "scene0200_00.pth"
    write_release_scene(crafted_scene, synthetic_room(300, seed=1))
    torch.save({**load_file(crafted_scene), "extra": Payload(marker)}, crafted_scene)

    out = tmp_path / "pred"
    for checkpoint, scene_path, refused in ((crafted, scene, crafted), (good, crafted_scene, crafted_scene)):
        capsys.readouterr()
        assert main(["pointcloud", "predict", "--checkpoint", str(checkpoint), "--scene", str(scene_path),
                     "--out", str(out), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ffnet pointcloud predict: error: {refused}: refused to load: ")
        assert "--trust-checkpoint" in err and err.count("\n") == 1
        with pytest.raises(CheckpointError, match=f"{refused}: refused to load: .*--trust-checkpoint"):
            predict_scene(checkpoint, scene_path, out)
    assert not marker.exists() and not out.exists()


def test_stored_config_is_read_as_data_not_run(tmp_path, data_root):
    marker, path = tmp_path / "ran", tiny_checkpoint(tmp_path / "code_in_config.pth")
    checkpoint = load_file(path)
    checkpoint["meta"]["cfg"] = f"_ = __import__('pathlib').Path({str(marker)!r}).touch()\n" + checkpoint["meta"]["cfg"]
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"code_in_config.pth: the config stored in it \(meta\['cfg'\]\) is not "
                                              r"plain data \(malformed node.*--trust-checkpoint"):
        predict_scene(path, data_root / "val" / "scene0100_00", tmp_path / "pred")
    assert not marker.exists()
    torch.save({"state_dict": checkpoint["state_dict"]}, path)
    with pytest.raises(CheckpointError, match="code_in_config.pth: carries no config .* pass --config"):
        predict_scene(path, data_root / "val" / "scene0100_00", tmp_path / "pred")
