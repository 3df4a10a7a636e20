"""MetaMixer core: conv backends (1D, 2D, 3D sparse), re-parameterization, mixers, FFNet block."""
from ffnet.core import backend
from ffnet.core.block import FFNetBlock, Residual
from ffnet.core.fusion import FusedConv2d, fuse_conv_activation, fuse_for_inference
from ffnet.core.metamixer import (
    MetaMixer,
    SelfAttention,
    conv_unit,
    convnext_channel_mixer,
    ffn,
    ffnified_attention,
)
from ffnet.core.reparam import (
    ConvBN,
    PreBNPointwiseSkip,
    RepConv,
    Reparameterizable,
    is_reparameterized,
    reparameterize,
    scale_output_channels,
)

__all__ = [
    "backend", "FFNetBlock", "FusedConv2d", "fuse_conv_activation", "fuse_for_inference", "Residual", "MetaMixer", "SelfAttention", "conv_unit", "convnext_channel_mixer", "ffn",
    "ffnified_attention", "ConvBN", "PreBNPointwiseSkip", "RepConv", "Reparameterizable", "is_reparameterized",
    "reparameterize", "scale_output_channels",
]
