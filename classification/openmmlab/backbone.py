"""The FFNet-1..4 dense-prediction backbone for OpenMMLab detectors and segmentors (the authors' detection and UperNet configs).

The stem and stages are those of :mod:`ffnet.classification` (the same modules, so ImageNet
checkpoints load unchanged); the classifier's final BatchNorm and head are dropped, and each
output stage gets a channels-first LayerNorm (eps 1e-6, keys ``norm0`` … ``norm3``) as in the
authors' mmdet/mmseg wrapper. Registered as ``type='FFNet'`` in mmdet's and mmseg's ``MODELS`` by
``ffnet.detection`` / ``ffnet.segmentation`` (this module registers nothing itself).

State-dict keys: ``stem.*``, ``stages.S.downsample.*``, ``stages.S.blocks.B.*`` (the
classification layout) plus ``normS.*``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from ffnet.classification import (
    VARIANTS,
    FFNet as FFNetClassifier,
    authors_to_own,
    checkpoint_filter_fn,
    create_ffnet,
    describe_checkpoint,
)
from ffnet.core import reparameterize
from ffnet.core.backend import ChannelsFirstLayerNorm
from ffnet.engine.errors import CheckpointError


def read_weights(filename: str) -> Dict[str, torch.Tensor]:
    """The weights in checkpoint ``filename``: a local path, an ``http(s)://`` URL (downloaded once into
    torch's hub cache) or any mmengine file backend (``s3://`` …); read by
    :func:`ffnet.engine.checkpoints.load_weights`.
    """
    from ffnet.engine.checkpoints import load_weights

    if "://" not in filename:
        path = Path(filename).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained checkpoint not found: {filename}. Download the ImageNet checkpoint (e.g. "
                "https://github.com/ysj9909/FFNet/releases) and set model.backbone.init_cfg.checkpoint to its path, "
                "or set model.backbone.init_cfg=None to start from random weights"
            )
        return load_weights(path)
    if filename.startswith(("http://", "https://")):
        from torch.hub import download_url_to_file, get_dir

        cached = Path(get_dir()) / "checkpoints" / Path(urlparse(filename).path).name
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            download_url_to_file(filename, str(cached), progress=False)
        return load_weights(cached)
    from mmengine.fileio import get_local_path

    with get_local_path(filename) as local:
        return load_weights(local)


def _groups(keys: Iterable[str]) -> str:
    """``'norm.*, head.*'``: the top-level modules of ``keys``."""
    return ", ".join(dict.fromkeys(k.split(".")[0] + ".*" for k in keys))


def describe_backbone(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """``'ffnet_2 (train-time)'`` for the stem and stages of an FFNet backbone state dict (ours or the
    authors' layout; output norms and any classifier ignored), else ``None``."""
    state = authors_to_own(state)
    if not any(k.startswith("stem.") for k in state):
        return None
    body = {k: v for k, v in state.items() if k.startswith(("stem.", "stages."))}
    stem = body.get("stem.conv1.conv.weight", body.get("stem.conv1.weight"))
    last = max((int(k.split(".")[1]) for k in body if k.startswith("stages.")), default=-1)
    width = next((v.shape[0] for k, v in body.items()
                  if k.startswith(f"stages.{last}.blocks.") and k.endswith("aggregate.bias")), None)
    if stem is None or width is None:
        return None
    body.update(_neutral_final_norm(width))
    return describe_checkpoint(body)


def _neutral_final_norm(width: int) -> Dict[str, torch.Tensor]:
    """A neutral final BatchNorm for a backbone-only state dict, so the classifier checks see a whole model."""
    return {"norm.weight": torch.ones(width), "norm.bias": torch.zeros(width), "norm.running_mean": torch.zeros(width),
            "norm.running_var": torch.ones(width), "norm.num_batches_tracked": torch.zeros((), dtype=torch.long)}


class FFNet(BaseModule):
    """FFNet-1..4 multi-scale feature extractor ``(B, 3, H, W) → tuple of (B, C_i, H/2^(i+2), W/2^(i+2))``.

    Args:
        arch: ``'ffnet_1'`` … ``'ffnet_4'`` (widths, depths and kernels of the paper's Table 1).
        out_indices: stages whose outputs are returned (0-3, strides 4/8/16/32); stages after the
            last one are not built.
        drop_path_rate: final stochastic-depth rate (linear over all blocks, as in classification).
        layer_scale_init_value: LayerScale init for FFNet-3/4 (their default is 1e-6; the authors'
            detection/segmentation configs use 1.0, overwritten by the checkpoint). ``None``: the
            variant's default. FFNet-1/2 have no LayerScale.
        depths: blocks per stage, to override the variant's (a pretrained checkpoint then no longer fits).
        out_norm: ``'ln'`` (channels-first LayerNorm, eps 1e-6, after every output) or ``None``.
        frozen_stages: ``-1`` trains everything; ``k >= 0`` freezes the stem and stages ``0..k-1``
            (their parameters and BatchNorm statistics).
        norm_eval: keep every BatchNorm of the backbone in eval mode during training.
        with_cp: gradient checkpointing of the blocks (timm ``checkpoint_seq``).
        deploy: build the re-parameterized form (``ffnet.core.reparameterize``), which loads deployed
            checkpoints and train-time ones (folded on load).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL, prefix=None)`` loads an FFNet
            classification checkpoint (the authors' release in train-time layout, or one written by
            ``ffnet train``) through :func:`ffnet.classification.checkpoint_filter_fn`; ``prefix``
            (e.g. ``'backbone.'``) selects the backbone of a detector/segmentor checkpoint.
    """

    def __init__(
        self,
        arch: str = "ffnet_2",
        out_indices: Sequence[int] = (0, 1, 2, 3),
        drop_path_rate: float = 0.0,
        layer_scale_init_value: Optional[float] = None,
        depths: Optional[Sequence[int]] = None,
        out_norm: Optional[str] = "ln",
        frozen_stages: int = -1,
        norm_eval: bool = False,
        with_cp: bool = False,
        deploy: bool = False,
        init_cfg: Optional[dict] = None,
    ):
        super().__init__(init_cfg=init_cfg)
        if arch not in VARIANTS:
            raise ValueError(f"unknown FFNet arch {arch!r}: choose one of {', '.join(VARIANTS)}")
        variant = VARIANTS[arch]
        num_stages = len(variant["widths"])
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(i < 0 or i >= num_stages for i in out_indices) or len(set(out_indices)) != len(
                out_indices):
            raise ValueError(f"out_indices must be distinct stage indices in 0..{num_stages - 1}, got {out_indices}")
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f"frozen_stages must be in -1..{num_stages}, got {frozen_stages}")
        if out_norm not in ("ln", None):
            raise ValueError(f"out_norm must be 'ln' or None, got {out_norm!r}")
        overrides: Dict[str, Any] = {}
        if layer_scale_init_value is not None:
            if variant["layer_scale"] is None:
                raise ValueError(f"{arch} has no LayerScale (only ffnet_3 and ffnet_4 do); "
                                 "remove layer_scale_init_value from the backbone config")
            overrides["layer_scale"] = float(layer_scale_init_value)
        if depths is not None:
            if len(depths) != num_stages:
                raise ValueError(f"depths needs {num_stages} entries, got {list(depths)}")
            overrides["depths"] = tuple(int(d) for d in depths)
        classifier = create_ffnet(arch, num_classes=0, drop_path_rate=drop_path_rate, **overrides)
        self.arch = arch
        self.arch_args = dict(classifier.arch_args)
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.deploy = deploy
        self.widths = tuple(self.arch_args["widths"])
        self.out_channels = tuple(self.widths[i] for i in out_indices)
        self.stem = classifier.stem
        self.stages = nn.Sequential(*list(classifier.stages)[: max(out_indices) + 1])
        for i in out_indices:
            self.add_module(f"norm{i}", ChannelsFirstLayerNorm(self.widths[i], eps=1e-6) if out_norm else nn.Identity())
        if with_cp:
            for stage in self.stages:
                stage.grad_checkpointing = True
        if deploy:
            reparameterize(self, fold_scales=True)
        self._freeze_stages()

    # -- training mode --------------------------------------------------------------------------------------------

    def _frozen_modules(self) -> Sequence[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules = [self.stem] + list(self.stages[: self.frozen_stages])
        modules += [getattr(self, f"norm{i}") for i in self.out_indices if i < self.frozen_stages]
        return modules

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> "FFNet":
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    # -- weights --------------------------------------------------------------------------------------------------

    def init_weights(self) -> None:
        """Load ``init_cfg``'s pretrained checkpoint (type ``'Pretrained'``), else mmengine's initialisers."""
        if isinstance(self.init_cfg, dict) and self.init_cfg.get("type") == "Pretrained":
            checkpoint = self.init_cfg.get("checkpoint")
            if not checkpoint:
                raise ValueError("init_cfg=dict(type='Pretrained') needs checkpoint=PATH_OR_URL; "
                                 "set model.backbone.init_cfg=None to start from random weights")
            self.load_pretrained(checkpoint, prefix=self.init_cfg.get("prefix"))
            self._is_init = True
            return
        super().init_weights()

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None) -> None:
        """Load the stem and stages from an FFNet classification checkpoint (ours or the authors' ImageNet
        release), or with ``prefix='backbone.'`` a detector's or segmentor's backbone.

        A deliberate partial load: the classifier's ``norm``/``head`` are dropped and output norms missing
        from the file keep their initialisation; one line says what was skipped.
        """
        state = read_weights(checkpoint)
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not state:
                raise CheckpointError(f"{checkpoint} has no keys starting with prefix {prefix!r}; "
                                      "fix init_cfg.prefix (or drop it for an ImageNet checkpoint)")
        elif not any(k.startswith(("stem.", "patch_embed.")) for k in state):
            nested = sorted({k.split(".")[0] + "." for k in state if ".stem." in k or ".patch_embed." in k})
            hint = f" It holds a backbone under {nested[0]!r}: add prefix={nested[0]!r} to init_cfg." if nested else ""
            raise CheckpointError(f"{checkpoint} is not an FFNet checkpoint (no stem weights at the top level).{hint}")
        state = authors_to_own(state)
        loaded = self.load_classifier_state(state, source=checkpoint)
        own = self.state_dict()
        for key, value in state.items():
            if key.split(".")[0] in {f"norm{i}" for i in range(4)} and key in own:
                if own[key].shape != value.shape:
                    raise CheckpointError(f"{checkpoint}: {key} has shape {tuple(value.shape)}, the {self.arch} "
                                          f"backbone {tuple(own[key].shape)}; use the checkpoint of this variant")
                loaded[key] = value
        self.load_state_dict(loaded, strict=False)
        not_used = [k for k in state if k not in loaded and not k.startswith(("stem.", "stages."))]
        kept = [k for k in own if k not in loaded]
        print_log(f"{checkpoint}: loaded {len(loaded)} of the {len(own)} tensors of the {self.arch} backbone; "
                  f"skipped {len(not_used)} tensors of the file ({_groups(not_used) or 'none'}); "
                  f"{len(kept)} keep their initialisation ({_groups(kept) or 'none'})", logger="current")

    def load_classifier_state(self, state: Dict[str, torch.Tensor],
                              source: str = "checkpoint") -> Dict[str, torch.Tensor]:
        """This backbone's stem/stage tensors from a classification-layout state dict (folded to match a
        ``deploy=True`` backbone).

        Raises :class:`~ffnet.engine.errors.CheckpointError` when the checkpoint is another variant, or
        folded while this backbone is train-time.
        """
        with torch.device("meta"):
            skeleton = FFNetClassifier(**self.arch_args, num_classes=0)
            if self.deploy:
                reparameterize(skeleton, fold_scales=True)
        state = {k: v for k, v in state.items() if not k.startswith("norm") or k.startswith("norm.")}
        if not self.deploy and not any(".bn." in k for k in state):
            raise CheckpointError(f"{source} holds re-parameterized (deployed) FFNet weights, which cannot be "
                                  f"un-folded into the train-time {self.arch} backbone: load the train-time "
                                  "checkpoint, or build the backbone with deploy=True for inference")
        if not any(k.startswith(("norm.", "head.")) for k in state):
            state.update(_neutral_final_norm(self.widths[-1]))
        try:
            converted = checkpoint_filter_fn(state, skeleton)
        except ValueError as err:
            raise CheckpointError(f"{source} does not fit the {self.arch} backbone: {err}") from None
        own = self.state_dict()
        wanted = [k for k in own if k.startswith(("stem.", "stages."))]
        missing = [k for k in wanted if k not in converted]
        if missing:
            raise CheckpointError(f"{source} lacks {len(missing)} tensors of the {self.arch} backbone, e.g. "
                                  f"{missing[:3]}; use a whole {self.arch} checkpoint")
        mismatched = [k for k in wanted if converted[k].shape != own[k].shape]
        if mismatched:
            raise CheckpointError(f"{source}: shapes differ from the {self.arch} backbone for {mismatched[:3]}; "
                                  "use the checkpoint of this variant")
        return {k: converted[k] for k in wanted}

    # -- forward --------------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """``(B, 3, H, W)`` (H, W ≥ 32) → one contiguous ``(B, C_i, H_i, W_i)`` map per ``out_indices`` entry.

        Contiguous: the LayerNorm leaves channels-last strides, which the FPN's convs keep, and mmcv's
        RoIAlign (CPU and CUDA) indexes its input as contiguous NCHW memory.
        """
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f"norm{i}")(x).contiguous())
        return tuple(outs)
