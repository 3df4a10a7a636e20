"""The FFNet point model of the authors' release: a PTv3 skeleton with FFNet blocks on submanifold convs.

Stem (SubMConv 5³ → BN → GELU), five encoder stages (grid pooling, then FFNet blocks), four decoder
levels (additive unpooling, then FFNet blocks), and a Linear segmentation head. Every block is the
core's :class:`~ffnet.core.block.FFNetBlock` on the 3D sparse backend:

* token mixer (pre-LN): ``Linear(C, C)`` → Conv → BN → act → Conv → BN (FFNified attention);
* channel mixer (pre-LN): Conv → BN → ``Linear(C, 4C)`` → act → ``Linear(4C, C)`` (ConvNeXt-style);

where Conv is a dense ``3×3×3`` submanifold conv with bias and BN has ``eps=1e-3, momentum=0.01``.
"""
from __future__ import annotations

import copy
from typing import Mapping, Sequence, Union

import torch
from timm.layers import trunc_normal_
from torch import nn

from ffnet.core import FFNetBlock, backend, convnext_channel_mixer, ffnified_attention
from ffnet.core.sparse import BACKENDS, SubMConv3d, spconv_available
from ffnet.pointcloud.pooling import GridPooling, GridUnpooling
from ffnet.pointcloud.structure import PointCloud, merge_duplicate_voxels, point_cloud_from_dict

StageInts = Union[int, Sequence[int]]

#: The release configs (``configs/{scannet,scannet200,s3dis}/*-ffnet.py``); S3DIS uses ``act="relu"``.
RELEASE_ARCH = dict(
    in_channels=6, stride=(2, 2, 2, 2), enc_depths=(2, 2, 2, 6, 2), enc_channels=(32, 64, 128, 256, 512),
    dec_depths=(2, 2, 2, 2), dec_channels=(64, 64, 128, 256), enc_ks=3, dec_ks=3, stem_ks=5, mlp_ratio=4,
    drop_path=0.3, act="gelu",
)
#: The paper's text (Sec. 4.3 / App. F.3): four stages, stem 6 → 64, decoder depth 1.
PAPER_ARCH = dict(
    RELEASE_ARCH, stride=(2, 2, 2), enc_depths=(2, 2, 6, 2), enc_channels=(64, 128, 256, 512),
    dec_depths=(1, 1, 1), dec_channels=(64, 128, 256),
)
#: Ablation: the release layout with depthwise 5³ token-mixer convs and a depthwise 3³ channel-mixer conv,
#: as the 2D FFNet does (possible here because the PyTorch sparse backend supports groups; spconv does not).
DEPTHWISE_ARCH = dict(RELEASE_ARCH, enc_ks=5, dec_ks=5, channel_ks=3, depthwise=True)
ARCHS = {"release": RELEASE_ARCH, "paper": PAPER_ARCH, "depthwise": DEPTHWISE_ARCH}


def _per_stage(value: StageInts, num: int, name: str) -> tuple[int, ...]:
    values = (value,) * num if isinstance(value, int) else tuple(value)
    if len(values) != num:
        raise ValueError(f"{name} needs one value per stage ({num}), got {value}")
    return values


def ffnet_point_block(
    channels: int,
    kernel_size: int = 3,
    channel_kernel_size: int | None = None,
    *,
    mlp_ratio: float = 4,
    act: str = "gelu",
    drop_path: float = 0.0,
    depthwise: bool = False,
    bn_eps: float = 1e-3,
    bn_momentum: float = 0.01,
) -> FFNetBlock:
    """The release's FFBlock as a core :class:`FFNetBlock` on sparse features ``(N, C) → (N, C)``.

    Parameters (dense, ``k = 3``): ``90·C² + 19·C``.
    """
    conv = dict(depthwise=depthwise, conv_bias=True, act=act, bn_eps=bn_eps, bn_momentum=bn_momentum)
    token_mixer = ffnified_attention(3, channels, kernel_size, conv_bn=True, query_bn=False, **conv)
    channel_mixer = convnext_channel_mixer(3, channels, mlp_ratio, channel_kernel_size or kernel_size, bn=True,
                                           **conv)
    return FFNetBlock(token_mixer, channel_mixer, channels=channels, spatial_dims=3, norm="ln", norm_eps=1e-5,
                      drop_path=drop_path)


class Embedding(nn.Module):
    """Stem: ``SubMConv3d(C_in → C, k, bias=False)`` → BN → GELU."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int = 5, bn_eps: float = 1e-3,
                 bn_momentum: float = 0.01):
        super().__init__()
        self.conv = backend.conv(3, in_channels, channels, kernel_size, bias=False)
        self.norm = backend.batch_norm(3, channels, eps=bn_eps, momentum=bn_momentum)
        self.act = backend.activation("gelu", 3)

    def forward(self, point: PointCloud) -> PointCloud:
        return PointCloud(point.coord, self.act(self.norm(self.conv(point.sparse))))


class EncoderStage(nn.Module):
    """Optional grid pooling (``down``), then FFNet blocks; returns the stage output and the pooling map."""

    def __init__(self, blocks: list[nn.Module], down: GridPooling | None = None):
        super().__init__()
        self.down = down
        self.blocks = nn.ModuleList(blocks)

    def forward(self, point: PointCloud) -> tuple[PointCloud, torch.Tensor | None]:
        inverse = None
        if self.down is not None:
            point, inverse = self.down(point)
        sparse = point.sparse
        for block in self.blocks:
            sparse = block(sparse)
        return PointCloud(point.coord, sparse), inverse


class DecoderStage(nn.Module):
    """Additive unpooling (``up``) onto the saved encoder output, then FFNet blocks."""

    def __init__(self, up: GridUnpooling, blocks: list[nn.Module]):
        super().__init__()
        self.up = up
        self.blocks = nn.ModuleList(blocks)

    def forward(self, coarse: PointCloud, skip: PointCloud, inverse: torch.Tensor) -> PointCloud:
        point = self.up(coarse, skip, inverse)
        sparse = point.sparse
        for block in self.blocks:
            sparse = block(sparse)
        return PointCloud(point.coord, sparse)


class FFNetPointBackbone(nn.Module):
    """FFNet point backbone: Pointcept's point dict → full-resolution :class:`PointCloud`, ``dec_channels[0]`` features.

    Input keys: ``coord`` ``(N, 3)``, ``grid_coord`` ``(N, 3)`` int, ``feat`` ``(N, in_channels)``,
    ``offset`` ``(B,)`` (or ``batch`` ``(N,)``). Output points are the input points, in input order.
    Points sharing a voxel (Mix3D merges two scenes in one sample) are averaged into that voxel for
    the network and all read its output (see :func:`~ffnet.pointcloud.structure.merge_duplicate_voxels`).

    Args:
        stride: pooling cell size per downsampling (the release: 2, i.e. ``2×2×2`` cells).
        enc_ks, dec_ks: submanifold kernel of the blocks, one int or one per stage.
        channel_ks: the channel mixer's kernel when it differs from the token mixer's.
        depthwise: depthwise (``groups=C``) convs in the blocks instead of dense ones.
        act: ``"gelu"`` (ScanNet) or ``"relu"`` (the release's S3DIS config) inside the blocks.
        sparse_backend: ``"auto"`` (spconv on CUDA when installed, else PyTorch), ``"torch"`` or ``"spconv"``.
    """

    def __init__(
        self,
        in_channels: int = 6,
        stride: Sequence[int] = (2, 2, 2, 2),
        enc_depths: Sequence[int] = (2, 2, 2, 6, 2),
        enc_channels: Sequence[int] = (32, 64, 128, 256, 512),
        dec_depths: Sequence[int] = (2, 2, 2, 2),
        dec_channels: Sequence[int] = (64, 64, 128, 256),
        enc_ks: StageInts = 3,
        dec_ks: StageInts = 3,
        channel_ks: int | None = None,
        stem_ks: int = 5,
        mlp_ratio: float = 4,
        drop_path: float = 0.3,
        act: str = "gelu",
        depthwise: bool = False,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
        sparse_backend: str = "auto",
    ):
        super().__init__()
        num_stages = len(enc_depths)
        if not (len(enc_channels) == num_stages == len(stride) + 1 == len(dec_depths) + 1 == len(dec_channels) + 1):
            raise ValueError(
                f"inconsistent stage lists: {num_stages} encoder depths need {num_stages} enc_channels, "
                f"{num_stages - 1} strides and {num_stages - 1} decoder depths/channels; got enc_channels="
                f"{tuple(enc_channels)}, stride={tuple(stride)}, dec_depths={tuple(dec_depths)}, "
                f"dec_channels={tuple(dec_channels)}"
            )
        if act not in ("gelu", "relu"):
            raise ValueError(f"act must be 'gelu' or 'relu', got {act!r}")
        enc_ks = _per_stage(enc_ks, num_stages, "enc_ks")
        dec_ks = _per_stage(dec_ks, num_stages - 1, "dec_ks")
        self.in_channels = in_channels
        self.out_channels = dec_channels[0]
        norms = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        block = dict(mlp_ratio=mlp_ratio, act=act, depthwise=depthwise, **norms)

        self.embedding = Embedding(in_channels, enc_channels[0], stem_ks, **norms)
        enc_rates = torch.linspace(0, drop_path, sum(enc_depths), device="cpu").tolist()
        self.enc = nn.ModuleList()
        for s in range(num_stages):
            rates = enc_rates[sum(enc_depths[:s]):sum(enc_depths[:s + 1])]
            down = GridPooling(enc_channels[s - 1], enc_channels[s], stride[s - 1], **norms) if s else None
            blocks = [ffnet_point_block(enc_channels[s], enc_ks[s], channel_ks, drop_path=r, **block) for r in rates]
            self.enc.append(EncoderStage(blocks, down))

        dec_rates = torch.linspace(0, drop_path, sum(dec_depths), device="cpu").tolist()
        widths = list(dec_channels) + [enc_channels[-1]]
        self.dec = nn.ModuleList()
        for s in reversed(range(num_stages - 1)):
            rates = dec_rates[sum(dec_depths[:s]):sum(dec_depths[:s + 1])][::-1]
            up = GridUnpooling(widths[s + 1], enc_channels[s], widths[s], **norms)
            blocks = [ffnet_point_block(widths[s], dec_ks[s], channel_ks, drop_path=r, **block) for r in rates]
            self.dec.append(DecoderStage(up, blocks))

        self.apply(_init_weights)
        set_sparse_backend(self, sparse_backend)

    def forward(self, data: Mapping | PointCloud) -> PointCloud:
        point = data if isinstance(data, PointCloud) else point_cloud_from_dict(data)
        if point.feat.shape[1] != self.in_channels:
            raise ValueError(
                f"feat has {point.feat.shape[1]} channels but the backbone expects in_channels={self.in_channels} "
                "(the release uses color (3) + normal (3))"
            )
        full = point
        point, duplicates = merge_duplicate_voxels(point)
        point = self.embedding(point)
        outputs, inverses = [], []
        for stage in self.enc:
            point, inverse = stage(point)
            outputs.append(point)
            inverses.append(inverse)
        point = outputs.pop()
        for level, stage in zip(reversed(range(len(self.dec))), self.dec):
            point = stage(point, outputs[level], inverses[level + 1])
        if duplicates is not None:
            return full.replace(point.feat[duplicates])
        return point

def _init_weights(module: nn.Module) -> None:
    """The release's init: truncated normal (std 0.02) for Linear and sparse conv weights, zero biases, BN 1/0."""
    if isinstance(module, (nn.Linear, SubMConv3d)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def set_sparse_backend(model: nn.Module, sparse_backend: str) -> nn.Module:
    """Switch every :class:`SubMConv3d` of ``model`` to ``"auto"``, ``"torch"`` or ``"spconv"`` (in place).

    ``"spconv"`` needs spconv installed and dense convs (spconv has no groups); on CPU it is forward only.
    """
    if sparse_backend not in BACKENDS:
        raise ValueError(f"unknown sparse backend {sparse_backend!r}: use one of {BACKENDS}")
    convs = [m for m in model.modules() if isinstance(m, SubMConv3d)]
    if sparse_backend == "spconv":
        if not spconv_available():
            raise ImportError("sparse_backend='spconv' needs spconv: pip install spconv-cu120 (or your CUDA's build)")
        if any(conv.groups != 1 for conv in convs):
            raise ValueError(
                "spconv has no grouped convolution: the depthwise model needs sparse_backend 'torch' or 'auto'")
    for conv in convs:
        conv.backend = sparse_backend
    return model


def build_backbone(arch: str = "release", **overrides) -> FFNetPointBackbone:
    """A backbone from :data:`ARCHS` (``"release"``, ``"paper"``, ``"depthwise"``) with keyword overrides."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}: choose one of {sorted(ARCHS)}")
    return FFNetPointBackbone(**{**copy.deepcopy(ARCHS[arch]), **overrides})


class FFNetPointSegmentor(nn.Module):
    """Backbone → ``Linear(backbone_out_channels, num_classes)`` → criteria, like Pointcept's ``DefaultSegmentorV2``.

    ``forward(input_dict)`` returns ``{"loss"}`` in training, ``{"loss", "seg_logits"}`` in eval when
    ``input_dict`` has ``segment``, else ``{"seg_logits"}``; ``seg_logits`` is ``(N, num_classes)``.

    Args:
        backbone: a module, or a config ``dict(type="FFNet-v1m1", **kwargs)`` (``type`` may also be an
            arch name from :data:`ARCHS`).
        criteria: loss configs, e.g. ``[dict(type="CrossEntropyLoss", ignore_index=-1), dict(type="LovaszLoss",
            mode="multiclass", ignore_index=-1)]``.
    """

    def __init__(self, num_classes: int, backbone_out_channels: int = 64, backbone: nn.Module | Mapping | None = None,
                 criteria: Sequence[Mapping] | None = None):
        super().__init__()
        from ffnet.pointcloud.losses import Criteria

        self.num_classes = num_classes
        self.seg_head = nn.Linear(backbone_out_channels, num_classes)
        self.backbone = backbone if isinstance(backbone, nn.Module) else build_backbone_from_config(backbone or {})
        if getattr(self.backbone, "out_channels", backbone_out_channels) != backbone_out_channels:
            raise ValueError(
                f"backbone_out_channels={backbone_out_channels} but the backbone outputs {self.backbone.out_channels}"
            )
        self.criteria = Criteria(criteria) if criteria else None

    def forward(self, input_dict: Mapping) -> dict:
        seg_logits = self.seg_head(self.backbone(input_dict).feat)
        out = {}
        if self.training or "segment" in input_dict:
            if self.criteria is None:
                raise ValueError("this segmentor has no criteria: pass criteria=[...] to compute a loss")
            out["loss"] = self.criteria(seg_logits, input_dict["segment"])
        if not self.training:
            out["seg_logits"] = seg_logits
        return out


BACKBONE_TYPES = ("FFNet-v1m1", *ARCHS)


def build_backbone_from_config(config: Mapping) -> FFNetPointBackbone:
    """``dict(type="FFNet-v1m1", **kwargs)`` (release defaults) or ``dict(type="paper" | "depthwise", **overrides)``."""
    config = dict(config)
    kind = config.pop("type", "FFNet-v1m1")
    if kind not in BACKBONE_TYPES:
        raise ValueError(f"unknown backbone type {kind!r}: use one of {BACKBONE_TYPES}")
    return FFNetPointBackbone(**config) if kind == "FFNet-v1m1" else build_backbone(kind, **config)


def build_segmentor(config: Mapping) -> FFNetPointSegmentor:
    """A segmentor from a Pointcept model config ``dict(type="DefaultSegmentorV2", num_classes, backbone, ...)``."""
    config = dict(config)
    kind = config.pop("type", "DefaultSegmentorV2")
    if kind != "DefaultSegmentorV2":
        raise ValueError(f"the standalone trainer builds DefaultSegmentorV2 models, got type {kind!r}")
    return FFNetPointSegmentor(**config)
