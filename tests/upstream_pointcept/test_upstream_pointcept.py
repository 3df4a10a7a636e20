"""FFNet through upstream Pointcept's own code: its config loader, transforms, datasets, collate, model and
optimizer builders, criteria, trainer, evaluator hooks and tester (``ffnet pointcept train|test`` on CPU).

Runs only in .venv-pointcept with a Pointcept checkout on the path (``make test-pointcept``).
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pointcept
from pointcept.datasets import build_dataset, collate_fn, point_collate_fn
from pointcept.models import build_model
from pointcept.models.losses import build_criteria
from pointcept.utils.config import Config
from pointcept.utils.misc import intersection_and_union as pointcept_intersection_and_union
from pointcept.utils.optimizer import build_optimizer

from ffnet.pointcloud import pointcept as plugin
from ffnet.pointcloud.trainer import CONFIG_DIR

from pointcept_scenes import SCANNET_TRAIN, SCANNET_VAL, STUBS, scannet200_labels

POINTCEPT_ROOT = Path(pointcept.__file__).resolve().parents[1]
CONFIGS = ("scannet-ffnet", "scannet200-ffnet", "s3dis-ffnet")
# The release widths / 8 at the input, 64 channels out as the release (DefaultSegmentorV2's head input).
TINY_BACKBONE = dict(enc_channels=[4, 8, 16, 32, 64], dec_channels=[64, 8, 16, 32])
OTHER_DOMAINS = ("mmdet", "mmseg", "mmpretrain", "diffusers", "ffnet.classification", "ffnet.detection",
                 "ffnet.segmentation", "ffnet.superres", "ffnet.timeseries", "ffnet.generation")


def load(name: str, data_root: Path | None = None) -> Config:
    cfg = Config.fromfile(str(CONFIG_DIR / f"{name}.py"))
    if data_root is not None:
        for split in ("train", "val", "test"):
            cfg.data[split].data_root = str(data_root)
    return cfg


def tiny(model_cfg):
    model_cfg = dict(model_cfg)
    model_cfg["backbone"] = dict(model_cfg["backbone"], **TINY_BACKBONE)
    return model_cfg


# ---------------------------------------------------------------- config loading

@pytest.mark.parametrize("name, classes, dataset, views", [
    ("scannet-ffnet", 20, "ScanNetDataset", 13), ("scannet200-ffnet", 200, "ScanNet200Dataset", 13),
    ("s3dis-ffnet", 13, "S3DISDataset", 10),
])
def test_pointcept_config_loader_reads_our_configs(name, classes, dataset, views):
    cfg = load(name)
    assert type(cfg).__module__ == "pointcept.utils.config"
    assert cfg.model.type == "DefaultSegmentorV2" and cfg.model.backbone.type == "FFNet-v1m1"
    assert cfg.model.num_classes == cfg.data.num_classes == len(cfg.data.names) == classes
    assert {split: cfg.data[split].type for split in ("train", "val", "test")} == dict.fromkeys(
        ("train", "val", "test"), dataset)
    assert len(cfg.data.test.test_cfg.aug_transform) == views
    # the runtime keys Pointcept's trainer reads, from our own _base_runtime.py
    assert cfg.train.type == "DefaultTrainer" and cfg.test.type == "SemSegTester" and cfg.enable_wandb is False
    assert [hook.type for hook in cfg.hooks][-3:] == ["SemSegEvaluator", "CheckpointSaver", "PreciseEvaluator"]


# ---------------------------------------------------------------- transforms + datasets + collate

def test_scannet_train_pipeline_and_mixing_collate(scannet_root):
    cfg = load("scannet-ffnet", scannet_root)
    dataset = build_dataset(cfg.data.train)
    assert type(dataset).__name__ == "ScanNetDataset" and len(dataset) == len(SCANNET_TRAIN)
    raw = dataset.get_data(0)
    labels = np.load(Path(dataset.data_list[0]) / "segment20.npy")
    assert np.array_equal(raw["segment"], labels.astype(np.int32))

    samples = [dataset[i] for i in range(len(dataset))]
    for sample in samples:
        assert set(sample) == {"coord", "grid_coord", "segment", "feat", "offset"}
        assert sample["feat"].shape == (len(sample["coord"]), 6) and sample["feat"].dtype == torch.float32
        color = sample["feat"][:, :3]
        assert color.min() >= -1 and color.max() <= 1 and color.min() < 0  # NormalizeColorSymmetric: [-1, 1]
        assert set(sample["segment"].unique().tolist()) <= {0, 1, 4, 6}
        assert (sample["grid_coord"] >= 0).all() and sample["grid_coord"].dtype == torch.int64

    total = sum(len(s["coord"]) for s in samples)
    kept = point_collate_fn(samples, mix_prob=0.0)
    assert kept["offset"].tolist() == np.cumsum([len(s["coord"]) for s in samples]).tolist()
    mixed = point_collate_fn([dict(s) for s in samples], mix_prob=1.0)  # Pointcept's Mix3D: pairs merged
    assert mixed["offset"].tolist() == [total] and mixed["coord"].shape == (total, 3)
    # the shipped config's probability: both outcomes occur over a few draws (Pointcept draws with `random`)
    random.seed(0)
    offsets = {len(point_collate_fn([dict(s) for s in samples], mix_prob=cfg.mix_prob)["offset"]) for _ in range(40)}
    assert offsets == {1, 2}


def test_scannet200_reads_segment200(scannet_root):
    dataset = build_dataset(load("scannet200-ffnet", scannet_root).data.train)
    assert type(dataset).__name__ == "ScanNet200Dataset"
    raw = dataset.get_data(0)
    segment20 = np.load(Path(dataset.data_list[0]) / "segment20.npy")
    assert np.array_equal(raw["segment"], scannet200_labels(segment20).astype(np.int32))


def test_scannet_val_pipeline_keeps_the_inverse_map(scannet_root):
    dataset = build_dataset(load("scannet-ffnet", scannet_root).data.val)
    sample = dataset[0]
    points = len(np.load(scannet_root / "val" / SCANNET_VAL[0] / "coord.npy"))
    assert sample["origin_segment"].shape == (points,) and sample["inverse"].shape == (points,)
    assert len(sample["coord"]) < points  # voxelized at 2 cm
    agree = (sample["segment"][sample["inverse"]] == sample["origin_segment"]).float().mean()
    assert agree > 0.9  # each voxel keeps the label of one of its points
    batch = collate_fn([sample])
    assert batch["offset"].tolist() == [len(sample["coord"])]


def test_s3dis_layout_splits_names_and_test_fragments(s3dis_root):
    cfg = load("s3dis-ffnet", s3dis_root)
    train = build_dataset(cfg.data.train)  # Areas 1-4 and 6: the two rooms of Areas 1 and 2 here
    assert type(train).__name__ == "S3DISDataset" and len(train) == 2
    assert sorted(train.get_data_name(i) for i in range(len(train))) == ["Area_1-office_1", "Area_2-hallway_3"]
    raw = train.get_data(0)
    assert raw["segment"].shape == (1200,) and raw["instance"].max() == 11
    sample = train[0]
    assert sample["feat"].shape == (len(sample["coord"]), 6)

    test = build_dataset(cfg.data.test)  # Area 5, fragments for TTA voting
    assert len(test) == 1
    item = test[0]
    assert item["name"] == "Area_5-conferenceRoom_1" and item["segment"].shape == (1200,)
    fragments = item["fragment_list"]
    assert len(fragments) >= len(cfg.data.test.test_cfg.aug_transform)  # >= 1 fragment per view
    covered = np.zeros(1200, dtype=bool)
    for fragment in fragments:
        assert set(fragment) == {"coord", "grid_coord", "index", "feat", "offset"}
        covered[fragment["index"].numpy()] = True
    assert covered.all()  # GridSample's test mode: every point lands in some fragment


# ---------------------------------------------------------------- model and optimizer builders

@pytest.mark.parametrize("name, params", [
    ("scannet-ffnet", 103_212_436), ("scannet200-ffnet", 103_224_136), ("s3dis-ffnet", 103_211_981),
])
def test_build_model_parameter_counts_and_block_group(name, params):
    cfg = load(name)
    with torch.device("meta"):
        model = build_model(cfg.model)
    assert type(model).__name__ == "DefaultSegmentorV2" and isinstance(model.backbone, plugin.PointceptFFNet)
    assert sum(p.numel() for p in model.parameters()) == params
    optimizer = build_optimizer(cfg.optimizer, model, cfg.param_dicts)
    sizes = [sum(p.numel() for p in group["params"]) for group in optimizer.param_groups]
    assert sizes == [params - 102_742_848, 102_742_848]  # default group, then the "block" group
    assert [group["lr"] for group in optimizer.param_groups] == [0.006, 0.0006]


# ---------------------------------------------------------------- a training step, eval and test forward

def test_training_step_with_pointcept_criteria(scannet_root):
    cfg = load("scannet-ffnet", scannet_root)
    torch.manual_seed(0)
    model = build_model(tiny(cfg.model)).train()
    dataset = build_dataset(cfg.data.train)
    batch = point_collate_fn([dataset[i] for i in range(len(dataset))], mix_prob=0.0)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.param_dicts)

    out = model(dict(batch))
    criteria = build_criteria(cfg.model.criteria)  # CrossEntropy + Lovasz, Pointcept's own
    model.eval()
    with torch.no_grad():
        logits = model(dict(batch))["seg_logits"]
    model.train()
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    reference = criteria(logits, batch["segment"])
    assert reference.item() == pytest.approx(out["loss"].item(), rel=0.2)  # BN train vs eval statistics

    out["loss"].backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["seg_head.weight"].abs().sum() > 0
    assert sum(g.abs().sum() > 0 for g in grads.values()) > 0.9 * len(grads)
    before = model.seg_head.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model.seg_head.weight)


def test_full_size_forward_backward_on_cpu(scannet_root):
    """The shipped scannet-ffnet model (103 M parameters) through one step on a small scene."""
    cfg = load("scannet-ffnet", scannet_root)
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    sample = build_dataset(cfg.data.train)[0]
    out = model(point_collate_fn([sample]))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_eval_and_test_forward_paths(scannet_root):
    cfg = load("scannet-ffnet", scannet_root)
    model = build_model(tiny(cfg.model)).eval()
    val = collate_fn([build_dataset(cfg.data.val)[0]])
    with torch.no_grad():
        out = model(dict(val))  # labels present: loss and logits
    assert set(out) == {"loss", "seg_logits"} and out["seg_logits"].shape == (len(val["coord"]), 20)
    pred = out["seg_logits"].argmax(1)[val["inverse"]]
    assert pred.shape == val["origin_segment"].shape

    item = build_dataset(cfg.data.test)[0]
    fragment = collate_fn([item["fragment_list"][0]])
    with torch.no_grad():
        out = model(fragment)  # no labels: logits only
    assert set(out) == {"seg_logits"} and out["seg_logits"].shape == (len(fragment["index"]), 20)


# ---------------------------------------------------------------- the CPU shim of our launcher

def test_iou_counts_match_pointcepts_numpy_version():
    gen = torch.Generator().manual_seed(0)
    output = torch.randint(0, 20, (5000,), generator=gen)
    target = torch.randint(-1, 20, (5000,), generator=gen)
    ours = plugin.intersection_and_union(output, target, 20, -1)
    theirs = pointcept_intersection_and_union(output.numpy(), target.numpy(), 20, -1)
    for a, b in zip(ours, theirs):
        assert np.array_equal(a.numpy(), b.astype(np.float32))
    assert output.min() >= 0  # not modified in place (Pointcept's GPU version writes ignore_index into it)


def test_on_device_redirects_cuda_calls_and_restores():
    import pointcept.engines.hooks.evaluator as evaluator

    original = (torch.Tensor.cuda, torch.nn.Module.cuda, torch.load, evaluator.intersection_and_union_gpu)
    with plugin.on_device("cpu"):
        assert torch.ones(2).cuda(non_blocking=True).device.type == "cpu"
        assert next(torch.nn.Linear(2, 2).cuda().parameters()).device.type == "cpu"
        assert evaluator.intersection_and_union_gpu is plugin.intersection_and_union
    assert (torch.Tensor.cuda, torch.nn.Module.cuda, torch.load, evaluator.intersection_and_union_gpu) == original


def test_launch_refuses_what_cpu_cannot_do():
    argv = ["--config-file", str(CONFIG_DIR / "scannet-ffnet.py"), "--num-gpus", "2"]
    with pytest.raises(ValueError, match="one process"):
        plugin.launch("train", argv, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            plugin.launch("train", argv[:2], device="cuda")


# ---------------------------------------------------------------- stand-ins

def test_stand_ins_are_on_the_path_and_refuse_real_use():
    import pointops
    import torch_cluster
    import torch_scatter

    for module in (pointops, torch_cluster, torch_scatter):
        assert Path(module.__file__).parent == STUBS and "stand-in" in module.__doc__.lower()
    with pytest.raises(NotImplementedError, match="stand-in"):
        pointops.knn_query(1, torch.zeros(1, 3))
    with pytest.raises(NotImplementedError, match="stand-in"):
        torch_cluster.knn(torch.zeros(1, 3), torch.zeros(1, 3), 1)


def test_torch_scatter_stand_in_functions():
    from torch_scatter import scatter_min, scatter_softmax, segment_csr

    src = torch.tensor([[3, 1], [0, 5], [2, 2], [7, -1]])
    index = torch.tensor([1, 0, 1, 1])
    values, arg = scatter_min(src, index, dim=0)
    assert values.tolist() == [[0, 5], [2, -1]] and arg.tolist() == [[1, 1], [2, 3]]
    values, arg = scatter_min(src, index, dim=0, dim_size=3)  # an empty group: 0 and argmin = size
    assert values[2].tolist() == [0, 0] and arg[2].tolist() == [4, 4]

    feat = torch.arange(12.0).reshape(6, 2)
    indptr = torch.tensor([0, 2, 2, 6])
    assert segment_csr(feat, indptr, reduce="mean").tolist() == [[1, 2], [0, 0], [7, 8]]
    assert segment_csr(feat, indptr, reduce="sum").tolist() == [[2, 4], [0, 0], [28, 32]]

    logits = torch.randn(7, 3)
    groups = torch.tensor([0, 0, 2, 2, 2, 1, 0])
    soft = scatter_softmax(logits, groups, dim=0)
    for g in range(3):
        assert torch.allclose(soft[groups == g], logits[groups == g].softmax(0))


# ---------------------------------------------------------------- Pointcept's Trainer / Tester via `ffnet pointcept`

def run_ffnet(args: list[str], env: dict[str, str], cwd: Path) -> tuple[str, list[str]]:
    """``ffnet ARGS`` in a fresh interpreter; returns its output and the other-domain modules it imported."""
    driver = ("import json, sys\n"
              "from ffnet.main import main\n"
              "code = main(sys.argv[1:])\n"
              f"loaded = sorted(m for m in sys.modules if m.startswith({OTHER_DOMAINS!r}))\n"
              "print('LOADED-DOMAINS', json.dumps(loaded))\n"
              "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", driver, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("LOADED-DOMAINS")][-1]
    return proc.stdout + proc.stderr, json.loads(line.split(" ", 1)[1])


TINY_OPTIONS = ["model.backbone.enc_channels=[4,8,16,32,64]", "model.backbone.dec_channels=[64,8,16,32]",
                "epoch=2", "eval_epoch=2", "batch_size=1", "num_worker=1", "seed=0"]


def test_pointcept_trainer_and_tester_on_cpu_through_our_cli(scannet_root, pointcept_env, tmp_path):
    work = tmp_path / "train"
    env = dict(pointcept_env)
    env.pop("POINTCEPT_ROOT", None)
    output, loaded = run_ffnet(["pointcept", "train", "scannet-ffnet", "--pointcept-root", str(POINTCEPT_ROOT),
                                "--device", "cpu", "--data-root", str(scannet_root), "--work-dir", str(work),
                                "--options", *TINY_OPTIONS], env, tmp_path)
    assert loaded == [], f"`ffnet pointcept` imported other domains: {loaded}"
    log = (work / "train.log").read_text()
    # 2 epochs, each evaluated by SemSegEvaluator (IoU counted on CPU), then the precise test of model_best
    assert log.count("Train result:") == 2 and log.count("Val result: mIoU/mAcc/allAcc") == 3
    assert "Class_0-wall Result" in log and "Best validation mIoU updated" in log and "Testing on model_best" in log
    last = torch.load(work / "model" / "model_last.pth", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2 and last["scaler"] is None  # AMP off on CPU
    assert last["state_dict"]["seg_head.weight"].shape == (20, 64)
    assert any(key.startswith("backbone.net.") for key in last["state_dict"])
    assert last["scheduler"]["_step_count"] == 1 + 2 * len(SCANNET_TRAIN)  # 2 epochs x 2 iterations
    assert (work / "model" / "model_best.pth").is_file()
    # PreciseEvaluator: Pointcept's SemSegTester on model_best with the 13-view TTA
    points = len(np.load(scannet_root / "val" / SCANNET_VAL[0] / "coord.npy"))
    precise = np.load(work / "result" / f"{SCANNET_VAL[0]}_pred.npy")
    assert precise.shape == (points,) and 0 <= precise.min() and precise.max() < 20
    assert (work / "result" / "submit" / f"{SCANNET_VAL[0]}.txt").is_file()

    tested = tmp_path / "test"
    env["POINTCEPT_ROOT"] = str(POINTCEPT_ROOT)  # the checkout from the environment this time
    output, loaded = run_ffnet(["pointcept", "test", "scannet-ffnet", "--checkpoint",
                                str(work / "model" / "model_best.pth"), "--device", "cpu", "--data-root",
                                str(scannet_root), "--work-dir", str(tested), "--options", *TINY_OPTIONS],
                               env, tmp_path)
    assert loaded == []
    assert "Val result: mIoU" in (tested / "test.log").read_text()
    # the same weights, loaded from the file: the same TTA votes as the trainer's precise evaluation
    assert np.array_equal(np.load(tested / "result" / f"{SCANNET_VAL[0]}_pred.npy"), precise)


def test_pointcept_cli_needs_a_checkout(pointcept_env, tmp_path):
    env = dict(pointcept_env)
    env.pop("POINTCEPT_ROOT", None)
    proc = subprocess.run([sys.executable, "-m", "ffnet.main", "pointcept", "test", "scannet-ffnet",
                           "--checkpoint", "x.pth"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "POINTCEPT_ROOT" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "ffnet.main", "pointcept", "test", "scannet-ffnet",
                           "--checkpoint", "x.pth", "--pointcept-root", str(tmp_path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "is not a Pointcept checkout" in proc.stderr
