"""ImageNet training glue and configs on the real mmengine Runner, with real photos from scikit-image."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

mmengine = pytest.importorskip("mmengine")
skimage_data = pytest.importorskip("skimage.data")

import timm  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS  # noqa: E402
from PIL import Image  # noqa: E402

import ffnet.classification.training as training  # noqa: E402
from ffnet.engine.runner import add_test_arguments, add_train_arguments, build_runner, load_into_runner  # noqa: E402

CONFIG_DIR = Path(training.__file__).parent / "configs"
CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.py") if not p.name.startswith("_"))
PHOTOS = ("astronaut", "coffee", "chelsea")
# Train-time parameter counts of the authors' models (the authors' release).
TRAIN_TIME_PARAMS = {"ffnet_1": 13_775_656, "ffnet_2": 27_208_408, "ffnet_3": 48_817_896, "ffnet_4": 79_868_968}
# The authors' release: (model, drop-path, mixup alpha, eval crop_pct) per config.
RECIPES = {
    "ffnet_1_8xb128_in1k": ("ffnet_1", 0.1, 0.2, 0.9), "ffnet_2_8xb128_in1k": ("ffnet_2", 0.15, 0.2, 0.9),
    "ffnet_3_8xb128_in1k": ("ffnet_3", 0.35, 0.8, 0.95), "ffnet_4_8xb128_in1k": ("ffnet_4", 0.4, 0.8, 0.95),
    "ffnet_1_8xb128_distill_in1k": ("ffnet_1", 0.02, 0.8, 0.9),
    "ffnet_2_8xb128_distill_in1k": ("ffnet_2", 0.08, 0.8, 0.9),
    "ffnet_3_8xb128_distill_in1k": ("ffnet_3", 0.2, 0.8, 0.95), "ffnet_3_384_finetune": ("ffnet_3", 0.4, 0.8, 1.0),
    "ffnet_4_384_finetune": ("ffnet_4", 0.5, 0.8, 1.0),
}
TINY = dict(model_name="ffnet_1", num_classes=len(PHOTOS), depths=[1, 1, 1, 1])


def write_photo_folder(root: Path, per_class: dict[str, int], size: int = 80) -> Path:
    """An ImageNet-layout folder: one class per scikit-image photo, images are different crops of it."""
    for split, count in per_class.items():
        for name in PHOTOS:
            photo = getattr(skimage_data, name)()
            height, width = photo.shape[:2]
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                scale = 0.55 + 0.1 * i + (0.05 if split == "val" else 0.0)
                ch, cw = int(height * scale), int(width * scale)
                y, x = (height - ch) * (i % 2), (width - cw) * ((i // 2) % 2)
                Image.fromarray(photo[y:y + ch, x:x + cw]).resize((size, size)).save(folder / f"{i}.jpg")
    return root


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory) -> Path:
    return write_photo_folder(tmp_path_factory.mktemp("photos"), {"train": 4, "val": 2})


def tiny_options(data_root: Path, batch_size: int, max_epochs: int) -> list[str]:
    """--cfg-options that shrink ffnet_1_8xb128_in1k.py to 3 classes, 64x64 inputs, one block per stage."""
    opts = [
        f"model.model.num_classes={len(PHOTOS)}", "+model.model.depths=[1,1,1,1]",
        f"train_cfg.max_epochs={max_epochs}", "val_evaluator.topk=[1]", "test_evaluator.topk=[1]",
        "default_hooks.logger.interval=1",
        "randomness.seed=0",
    ]
    for split in ("train", "val", "test"):
        opts += [f"{split}_dataloader.batch_size={batch_size}", f"{split}_dataloader.num_workers=0",
                 f"{split}_dataloader.persistent_workers=False", f"{split}_dataloader.pin_memory=False",
                 f"{split}_dataloader.dataset.data_root={data_root}",
                 f"{split}_dataloader.dataset.transform.input_size=64"]
    return opts


def train_args(work_dir: Path, options: list[str], *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(["ffnet_1_8xb128_in1k.py", "--work-dir", str(work_dir), *extra,
                              "--cfg-options", *options])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_and_builds_its_model(config: Path):
    cfg = Config.fromfile(str(config))
    model_cfg = cfg.model.copy()
    model_cfg.model = {k: v for k, v in cfg.model.model.items() if k != "checkpoint"}
    model_cfg.distillation = None
    name = model_cfg.model["model_name"]
    with torch.device("meta"):
        model = MODELS.build(model_cfg)
    assert isinstance(model, training.TimmImageClassifier)
    assert sum(p.numel() for p in model.parameters()) == TRAIN_TIME_PARAMS[name]
    recipe = (name, cfg.model.model.drop_path_rate, cfg.model.batch_augment.mixup_alpha,
              cfg.val_dataloader.dataset.transform.crop_pct)
    assert recipe == RECIPES[config.stem]
    assert cfg.test_dataloader.dataset.transform.crop_pct == recipe[-1]
    assert cfg.model.batch_augment.cutmix_alpha == 1.0 and cfg.model.label_smoothing == 0.1
    assert cfg.train_dataloader.dataset.type == "TimmImageFolder"
    assert cfg.optim_wrapper.optimizer.type == "AdamW"
    if "finetune" in config.stem:
        assert cfg.train_dataloader.dataset.transform.input_size == 384
        assert cfg.val_dataloader.dataset.transform.crop_pct == 1.0
        assert cfg.optim_wrapper.optimizer.lr == 5e-6 and cfg.train_cfg.max_epochs == 30
        assert "checkpoint" in cfg.model.model
    else:
        assert cfg.train_dataloader.dataset.transform.auto_augment == "rand-m9-mstd0.5-inc1"
        assert cfg.train_cfg.max_epochs == cfg.cosine_epochs + cfg.cooldown_epochs == 320
    if "distill" in config.stem:
        assert cfg.model.distillation.teacher == "regnety_160" and cfg.model.distillation.kind == "hard"


def test_optimizer_groups_and_loss_going_down_on_real_photos(photo_root: Path):
    """The config's AdamW groups (no decay on 1-D params) fit a batch of real photos."""
    torch.manual_seed(0)
    cfg = Config.fromfile(str(CONFIG_DIR / "ffnet_1_8xb128_in1k.py"))
    model = training.TimmImageClassifier(model=TINY, batch_augment=None, label_smoothing=0.0)
    optim_wrapper = mmengine.optim.build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): g["weight_decay"] for g in optim_wrapper.optimizer.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        assert decay[id(param)] == (0.0 if param.ndim == 1 else 0.05), name

    dataset = training.TimmImageFolder(str(photo_root), "train", dict(input_size=64, is_training=False))
    assert dataset.metainfo["classes"] == tuple(sorted(PHOTOS))
    batch = mmengine.dataset.default_collate([dataset[i] for i in range(len(dataset))])
    losses = [model.train_step(batch, optim_wrapper)["loss"].item() for _ in range(12)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_train_two_iterations_then_resume_continues(photo_root: Path, tmp_path: Path):
    work_dir = tmp_path / "run"
    # 12 training photos, batch 6: two iterations per epoch.
    runner = build_runner(train_args(work_dir, tiny_options(photo_root, 6, max_epochs=1)))
    runner.train()
    assert (runner.epoch, runner.iter) == (1, 2)
    checkpoint = work_dir / "epoch_1.pth"
    assert checkpoint.is_file()
    assert not [p for p in work_dir.iterdir() if ".tmp" in p.name], "checkpoints are written atomically"
    top1 = runner.message_hub.get_scalar("val/accuracy/top1").current()
    assert 0.0 <= top1 <= 100.0

    # The Runner's checkpoint is a timm checkpoint: timm keys, loadable strictly by timm.
    state = training.read_state_dict(checkpoint)
    timm.create_model(**TINY).load_state_dict(state, strict=True)

    resumed = build_runner(train_args(work_dir, tiny_options(photo_root, 6, max_epochs=2), "--resume"))
    resumed.train()
    assert (resumed.epoch, resumed.iter) == (2, 4)
    after = training.read_state_dict(work_dir / "epoch_2.pth")
    assert any(not torch.equal(state[k], after[k]) for k in state)

    # ffnet test: the config's test loop on a checkpoint.
    parser = argparse.ArgumentParser()
    add_test_arguments(parser)
    test_args = parser.parse_args(["ffnet_1_8xb128_in1k.py", "--checkpoint", str(work_dir / "epoch_2.pth"),
                                   "--work-dir", str(tmp_path / "test"), "--cfg-options", *tiny_options(photo_root, 6, 1)])
    runner = build_runner(test_args, "test")
    assert load_into_runner(runner, test_args.checkpoint).startswith(f"loaded {work_dir / 'epoch_2.pth'}: all ")
    assert all(torch.equal(runner.model.model.state_dict()[k], v) for k, v in after.items())
    metrics = runner.test()
    assert set(metrics) == {"accuracy/top1"} and 0.0 <= metrics["accuracy/top1"] <= 100.0

    # Fine-tuning configs start from such a checkpoint through timm's loader.
    finetune = Config.fromfile(str(CONFIG_DIR / "ffnet_3_384_finetune.py"))
    finetune.model.model = dict(TINY, checkpoint=str(work_dir / "epoch_2.pth"), drop_path_rate=0.4)
    model = MODELS.build(finetune.model)
    for key, value in model.model.state_dict().items():
        assert torch.equal(value, after[key]), key


def test_distillation_is_deit_hard_distillation(photo_root: Path, tmp_path: Path):
    torch.manual_seed(0)
    teacher = timm.create_model("resnet10t", num_classes=len(PHOTOS)).eval()
    teacher_file = tmp_path / "teacher.pth"
    torch.save({"model": teacher.state_dict()}, teacher_file)  # DeiT's checkpoint layout
    model = training.TimmImageClassifier(
        model=TINY, batch_augment=None, label_smoothing=0.1,
        distillation=dict(teacher="resnet10t", checkpoint=str(teacher_file), alpha=0.5, kind="hard"))
    assert not any(k.startswith(("distillation", "teacher")) for k in model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model.model.parameters())

    dataset = training.TimmImageFolder(str(photo_root), "val", dict(input_size=64, is_training=False))
    batch = mmengine.dataset.default_collate([dataset[i] for i in range(len(dataset))])
    model.train()
    torch.manual_seed(1)
    losses = model(batch["inputs"], batch["data_samples"], mode="loss")
    torch.manual_seed(1)
    logits = model.model(batch["inputs"])
    with torch.no_grad():
        teacher_labels = teacher(batch["inputs"]).argmax(1)
    expected_base = F.cross_entropy(logits, batch["data_samples"], label_smoothing=0.1)
    torch.testing.assert_close(losses["loss_cls"], 0.5 * expected_base)
    torch.testing.assert_close(losses["loss_distill"], 0.5 * F.cross_entropy(logits, teacher_labels))

    with pytest.raises(FileNotFoundError, match="TEACHER_CHECKPOINT"):
        training.TimmImageClassifier(model=TINY, distillation=dict(teacher="resnet10t",
                                                                   checkpoint=str(tmp_path / "missing.pth")))


def test_bad_inputs_give_clear_errors(photo_root: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="IMAGENET_ROOT"):
        training.TimmImageFolder(str(tmp_path / "nowhere"), "train", dict(input_size=64))
    with pytest.raises(FileNotFoundError, match="model.model.checkpoint"):
        training.TimmImageClassifier(model=dict(TINY, checkpoint=str(tmp_path / "missing.pth")))
    model = training.TimmImageClassifier(model=TINY, batch_augment=dict(mixup_alpha=0.2, cutmix_alpha=1.0))
    with pytest.raises(ValueError, match="even batch size"):
        model(torch.randn(3, 3, 64, 64), torch.tensor([0, 1, 2]), mode="loss")
    metric = training.TopKAccuracy(topk=(1, 5))
    with pytest.raises(ValueError, match="topk"):
        metric.process(None, [dict(logits=torch.randn(3), label=0)])


def test_top_k_accuracy_counts_hits():
    metric = training.TopKAccuracy(topk=(1, 2))
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    labels = [0, 2, 0, 1]  # top-1 hits: sample 0; top-2 hits: samples 0 and 1
    metric.process(None, [dict(logits=row, label=label) for row, label in zip(logits, labels)])
    assert metric.compute_metrics(metric.results) == {"top1": 25.0, "top2": 50.0}


DDP_SCRIPT = """
import argparse, os, sys
import torch
from ffnet.engine.runner import add_train_arguments, build_runner

parser = argparse.ArgumentParser()
add_train_arguments(parser)
args = parser.parse_args(sys.argv[1:])
runner = build_runner(args)
rank = os.environ["RANK"]
model = runner.model.module
initial = {k: v.clone() for k, v in model.state_dict().items()}
runner.train()
final = {k: v.clone() for k, v in model.state_dict().items()}
torch.save(dict(initial=initial, final=final, iter=runner.iter), os.path.join(args.work_dir, f"rank{rank}.pt"))
"""


def test_ddp_two_processes_on_cpu_agree(photo_root: Path, tmp_path: Path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    work_dir = tmp_path / "ddp"
    # 12 photos over 2 ranks with batch 2: 3 iterations; constant lr so the step is visible.
    options = tiny_options(photo_root, 2, max_epochs=1) + ["param_scheduler=[]"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         "ffnet_1_8xb128_in1k.py", "--launcher", "pytorch", "--work-dir", str(work_dir), "--cfg-options", *options],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [torch.load(work_dir / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["iter"] == ranks[1]["iter"] == 3
    for key, value in ranks[0]["final"].items():
        assert torch.equal(value, ranks[1]["final"][key]), f"ranks disagree on {key}"
    weights = [k for k, v in ranks[0]["final"].items() if v.dtype.is_floating_point and "running" not in k]
    assert any(not torch.equal(ranks[0]["initial"][k], ranks[0]["final"][k]) for k in weights)
    assert np.isfinite([float(v.float().abs().max()) for v in ranks[0]["final"].values()]).all()
