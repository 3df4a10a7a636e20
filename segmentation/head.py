"""FFNetHead: the decode head of the system-level FFNet-seg segmentor (the authors' ffnet_head.py), for mmseg 1.x.

From the last three backbone stages (strides 8/16/32):

1. bicubic upsampling of each input to the stride-8 size, concatenation;
2. ``squeeze``: 1x1 conv + BN, GELU, 1x1 conv + BN to ``head_width`` channels;
3. ``head_blocks``: ``head_depth`` FFNet blocks whose token and channel mixers use re-parameterizable
   depthwise convs (9x9 ∥ 5x5 ∥ 1x9 ∥ 9x1 for kernel 9), no LayerScale, and a GELU after each residual
   addition; drop path rising linearly from 0 to ``drop_path``;
4. ``align``: 1x1 conv + BN to ``head_width * final_expansion_ratio`` channels, GELU;
5. mmseg's dropout + ``conv_seg`` classifier (output at stride 8).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import nn

from ffnet.core import ConvBN, reparameterize
from ffnet.segmentation.ffnet_seg import seg_ffnet_block, strip_branches


class FFNetHead(BaseDecodeHead):
    """``[(B, C_k, H/s_k, W/s_k) for the selected inputs] → (B, num_classes, H/s_0, W/s_0)``.

    Args:
        spatial_ks: depthwise kernel of the head blocks' token mixers.
        channel_ks: depthwise kernel of their channel mixers (re-parameterizable too).
        head_width: channels of the head blocks.
        head_depth: number of head blocks.
        expansion_ratio: FFN expansion of the head blocks.
        final_expansion_ratio: ``align`` widens to ``head_width * final_expansion_ratio`` (must equal
            ``channels``); ``None`` skips ``align`` (then ``channels == head_width``).
        drop_path: final stochastic-depth rate of the head blocks.
        deploy: build the re-parameterized form.
        **kwargs: :class:`mmseg.models.decode_heads.decode_head.BaseDecodeHead` arguments
            (``in_channels``, ``in_index``, ``channels``, ``num_classes``, ``dropout_ratio``, ``loss_decode``, …);
            ``input_transform`` is always ``'multiple_select'``.
    """

    def __init__(self, spatial_ks: int = 9, channel_ks: int = 9, head_width: int = 256, head_depth: int = 3,
                 expansion_ratio: float = 4, final_expansion_ratio: Optional[int] = 4, drop_path: float = 0.0,
                 deploy: bool = False, **kwargs):
        if kwargs.get("input_transform", "multiple_select") != "multiple_select":
            raise ValueError("FFNetHead concatenates its upsampled inputs itself: "
                             "use input_transform='multiple_select'")
        kwargs["input_transform"] = "multiple_select"
        super().__init__(**kwargs)
        out_width = head_width * final_expansion_ratio if final_expansion_ratio else head_width
        if self.channels != out_width:
            raise ValueError(f"channels ({self.channels}) must equal head_width * final_expansion_ratio ({out_width}), "
                             "the width that conv_seg classifies")
        concat = sum(self.in_channels)
        self.squeeze = nn.Sequential(ConvBN(2, concat, concat, 1), nn.GELU(), ConvBN(2, concat, head_width, 1))
        rates = torch.linspace(0, drop_path, head_depth, device="cpu").tolist() if head_depth else []
        self.head_blocks = nn.Sequential(*[
            seg_ffnet_block(head_width, spatial_ks, channel_ks, expansion_ratio, layer_scale=None, drop_path=rate,
                            channel_branches=strip_branches(channel_ks), post_act="gelu")
            for rate in rates
        ])
        self.align = (nn.Sequential(ConvBN(2, head_width, out_width, 1), nn.GELU()) if final_expansion_ratio
                      else nn.Identity())
        if deploy:
            reparameterize(self, fold_scales=True)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        features: List[torch.Tensor] = self._transform_inputs(inputs)
        size = features[0].shape[2:]
        upsampled = [features[0]] + [
            F.interpolate(f, size=size, mode="bicubic", align_corners=self.align_corners) for f in features[1:]
        ]
        x = self.squeeze(torch.cat(upsampled, dim=1))
        x = self.align(self.head_blocks(x))
        return self.cls_seg(x)
