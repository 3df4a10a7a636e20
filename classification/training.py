"""mmengine glue for ImageNet-style training of timm models (FFNet or any other timm model).

Registered in mmengine's root registries (so any ``default_scope`` finds them):

* ``MODELS``: ``TimmImageClassifier`` — a ``BaseModel`` around ``timm.create_model`` that applies
  timm Mixup/CutMix, computes the (soft-target) cross-entropy and, optionally, DeiT distillation.
* ``DATASETS``: ``TimmImageFolder`` — an ``ImageFolder`` split (``<data_root>/<split>/<class>/*.jpg``)
  with a timm ``create_transform`` pipeline.
* ``METRICS``: ``TopKAccuracy`` — top-k accuracy in percent (``accuracy/top1``, ``accuracy/top5``).

Checkpoints written by the Runner with this model hold the timm model's own state-dict keys
(no wrapper prefix), so ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=...)``,
``ffnet export`` and the fine-tuning configs read them directly, and timm-format checkpoints (the
authors' ``*.pth.tar``) load into the Runner unchanged.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import timm
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from timm.data import ImageDataset, Mixup, create_transform
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torch.utils.data import Dataset

import ffnet.classification  # noqa: F401  (registers ffnet_1..4 with timm)
from ffnet.engine.checkpoints import load_weights

_MODEL_PREFIX = "model."


def read_state_dict(path: str | os.PathLike, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The model weights stored in a checkpoint file (weights-only; see ``ffnet.engine.checkpoints``).

    Understands timm checkpoints (``state_dict``, or ``state_dict_ema`` when ``use_ema``), DeiT /
    torchvision ones (``model``), mmengine ones (``state_dict``; with ``EMAHook`` this already holds
    the EMA weights) and bare state dicts, with ``module.`` prefixes removed.
    """
    return load_weights(path, prefer_ema=use_ema)


def create_timm_model(model_name: str, checkpoint: str | os.PathLike | None = None, use_ema: bool = False,
                      **kwargs: Any) -> nn.Module:
    """``timm.create_model(model_name, **kwargs)``, loading ``checkpoint`` through timm's loader.

    The checkpoint goes through the model's own checkpoint filter (timm ``pretrained_cfg``), so a
    release checkpoint and one written by ``ffnet train`` both load. When the checkpoint's classifier
    has a different number of classes than the model, timm drops it (the head starts fresh).
    """
    if checkpoint is None:
        return timm.create_model(model_name, **kwargs)
    state_dict = read_state_dict(checkpoint, use_ema=use_ema)
    overlay = dict(state_dict=state_dict)
    classifier = timm.models.get_pretrained_cfg_value(model_name, "classifier")
    if isinstance(classifier, str) and f"{classifier}.weight" in state_dict:
        overlay["num_classes"] = state_dict[f"{classifier}.weight"].shape[0]
    return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)


def _strip_model_prefix(module, state_dict, prefix, local_metadata) -> None:
    """State-dict post-hook: ``<prefix>model.<key>`` → ``<prefix><key>`` (timm's own keys)."""
    inner = prefix + _MODEL_PREFIX
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner):]] = state_dict.pop(key)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is None:
        return
    for key in [k for k in metadata if k.startswith(inner) or k == inner[:-1]]:
        renamed = prefix + key[len(inner):] if key.startswith(inner) else prefix[:-1]
        metadata[renamed] = metadata.pop(key)


def _add_model_prefix(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                      error_msgs) -> None:
    """Load pre-hook, the inverse of :func:`_strip_model_prefix`."""
    inner = prefix + _MODEL_PREFIX
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + key[len(prefix):]] = state_dict.pop(key)


class _Distillation:
    """DeiT distillation through the student's single head (the authors' DeiT distillation recipe).

    ``loss = (1 - alpha) * base_loss + alpha * distill_loss`` with ``distill_loss`` the cross-entropy
    to the teacher's argmax (``kind='hard'``) or the temperature-``tau`` KL divergence (``'soft'``).
    The teacher is frozen, in eval mode, and kept out of the student's module tree (so it is not
    optimised, averaged by EMA, wrapped by DDP or saved in checkpoints).
    """

    def __init__(self, teacher: str, checkpoint: str, num_classes: int, alpha: float = 0.5, tau: float = 1.0,
                 kind: str = "hard"):
        if kind not in ("hard", "soft"):
            raise ValueError(f"distillation kind must be 'hard' or 'soft', got {kind!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"distillation alpha must be in [0, 1], got {alpha}")
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(
                f"distillation teacher checkpoint not found: {checkpoint}. Put the teacher's weights there "
                "(DeiT's regnety_160 release file for the paper's recipe) or point the config at them with "
                "TEACHER_CHECKPOINT=/path/to/file or --cfg-options model.distillation.checkpoint=/path/to/file")
        self.teacher = create_timm_model(teacher, checkpoint=checkpoint, num_classes=num_classes).eval()
        self.teacher.requires_grad_(False)
        self.alpha, self.tau, self.kind = alpha, tau, kind

    def __deepcopy__(self, memo: dict) -> "_Distillation":
        """The EMA copy of the student shares the frozen teacher."""
        return self

    def loss(self, inputs: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
        """``inputs (B, 3, H, W)`` (the same mixed batch the student saw), ``student_logits (B, K)``."""
        teacher = self.teacher
        if next(teacher.parameters()).device != inputs.device:
            teacher.to(inputs.device)
        with torch.no_grad():
            teacher_logits = teacher(inputs)
        if self.kind == "hard":
            return F.cross_entropy(student_logits, teacher_logits.argmax(dim=1))
        tau = self.tau
        kl = F.kl_div(F.log_softmax(student_logits / tau, dim=1), F.log_softmax(teacher_logits / tau, dim=1),
                      reduction="sum", log_target=True)
        return kl * tau * tau / student_logits.numel()


@MODELS.register_module()
class TimmImageClassifier(BaseModel):
    """A timm classifier trained by the mmengine Runner.

    Args:
        model: ``timm.create_model`` arguments, e.g. ``dict(model_name='ffnet_1', drop_path_rate=0.1)``;
            an optional ``checkpoint`` path initialises it through timm's loader (fine-tuning).
        batch_augment: timm ``Mixup`` arguments (``mixup_alpha``, ``cutmix_alpha``, ``prob``,
            ``switch_prob``, ``mode``); ``None`` for no Mixup/CutMix.
        label_smoothing: folded into the Mixup targets, or into the hard-label cross-entropy.
        distillation: ``dict(teacher=timm name, checkpoint=path, alpha=0.5, tau=1.0, kind='hard')``.
        data_preprocessor: mmengine data preprocessor config (moves the batch to the device).

    Batches are ``dict(inputs=(B, 3, H, W) float, data_samples=(B,) int64 labels)``.
    """

    def __init__(self, model: dict, batch_augment: dict | None = None, label_smoothing: float = 0.1,
                 distillation: dict | None = None, data_preprocessor: dict | None = None):
        super().__init__(data_preprocessor=data_preprocessor)
        checkpoint = model.get("checkpoint")
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise FileNotFoundError(
                f"model checkpoint not found: {checkpoint}. Point the config at the weights to start from "
                "(the environment variable named in its header, or --cfg-options model.model.checkpoint=/path)")
        self.model = create_timm_model(**model)
        self.num_classes = self.model.num_classes
        self.label_smoothing = label_smoothing
        self.mixup = None
        if batch_augment:
            self.mixup = Mixup(**batch_augment, label_smoothing=label_smoothing, num_classes=self.num_classes)
        self.soft_target_loss = SoftTargetCrossEntropy()
        self.distillation = None
        if distillation:
            self.distillation = _Distillation(**distillation, num_classes=self.num_classes)
        self.register_state_dict_post_hook(_strip_model_prefix)
        self.register_load_state_dict_pre_hook(_add_model_prefix)

    def init_weights(self) -> None:
        """timm initialised the model (and loaded any checkpoint) at construction: keep it."""

    def forward(self, inputs: torch.Tensor, data_samples: torch.Tensor | None = None, mode: str = "tensor"):
        if mode == "tensor":
            return self.model(inputs)
        if data_samples is None:
            raise ValueError(f"mode={mode!r} needs labels in data_samples")
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            logits = self.model(inputs)
            return [dict(logits=row, label=label) for row, label in zip(logits, data_samples)]
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")

    def loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Soft-target CE on Mixup/CutMix targets (or label-smoothed CE), plus distillation."""
        if self.mixup is not None:
            if inputs.shape[0] % 2:
                raise ValueError(
                    f"Mixup/CutMix pairs images within a batch and needs an even batch size per process, got "
                    f"{inputs.shape[0]}: use an even train_dataloader.batch_size with drop_last=True")
            inputs, targets = self.mixup(inputs, labels)
        else:
            targets = labels
        logits = self.model(inputs)
        if targets.dim() == 2:
            base = self.soft_target_loss(logits, targets)
        else:
            base = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        if self.distillation is None:
            return dict(loss_cls=base)
        alpha = self.distillation.alpha
        return dict(loss_cls=(1 - alpha) * base, loss_distill=alpha * self.distillation.loss(inputs, logits))


@DATASETS.register_module()
class TimmImageFolder(Dataset):
    """One split of an ImageNet-layout folder, ``<data_root>/<split>/<class name>/<image>``.

    ``transform`` holds ``timm.data.create_transform`` arguments. Items are
    ``dict(inputs=(3, H, W) float tensor, data_samples=int label)``; classes are the sorted
    sub-folder names (``metainfo['classes']``).
    """

    def __init__(self, data_root: str, split: str, transform: dict):
        root = Path(data_root) / split
        if not root.is_dir():
            raise FileNotFoundError(
                f"image folder not found: {root}. data_root must hold train/ and val/ folders with one sub-folder "
                "per class (the ImageNet layout); set it with IMAGENET_ROOT=/path/to/imagenet or "
                f"--cfg-options {split}_dataloader.dataset.data_root=/path/to/imagenet")
        self.images = ImageDataset(str(root), transform=create_transform(**transform))
        class_to_idx = self.images.reader.class_to_idx
        self.metainfo = dict(classes=tuple(sorted(class_to_idx, key=class_to_idx.get)))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image, label = self.images[index]
        return dict(inputs=image, data_samples=label)


@METRICS.register_module()
class TopKAccuracy(BaseMetric):
    """Top-k accuracy in percent over the predictions of :class:`TimmImageClassifier`."""

    default_prefix = "accuracy"

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = "cpu", prefix: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(int(k) for k in topk)
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f"topk must be positive integers, got {topk}")

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        logits = torch.stack([s["logits"] for s in data_samples]).float().cpu()
        labels = torch.as_tensor([int(s["label"]) for s in data_samples])
        if max(self.topk) > logits.shape[1]:
            raise ValueError(f"topk={self.topk} asks for more classes than the model predicts ({logits.shape[1]}); "
                             "set val_evaluator.topk / test_evaluator.topk accordingly")
        ranked = logits.topk(max(self.topk), dim=1).indices
        hits = ranked == labels[:, None]
        for row in hits:
            self.results.append(tuple(bool(row[:k].any()) for k in self.topk))

    def compute_metrics(self, results: list) -> dict[str, float]:
        hits = torch.tensor(results, dtype=torch.float64)
        return {f"top{k}": float(hits[:, i].mean() * 100) for i, k in enumerate(self.topk)}
