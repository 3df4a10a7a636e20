# U-FFNet-L: U-DiT-L with FFNified attention in the encoder and decoder levels; the bottleneck keeps
# attention. The mixer per level (encoder1, encoder2, bottleneck, decoder2, decoder1) is this config value.
_base_ = ["./_runtime.py"]
model = dict(backbone=dict(arch="U-DiT-L", mixers=[
    dict(type="ffnified", kernel_size=15, branch_kernels=[3], output_proj=True),
    dict(type="ffnified", kernel_size=15, branch_kernels=[3], output_proj=True),
    dict(type="attention", down_factor=2, downsampler_kernel=5),
    dict(type="ffnified", kernel_size=15, branch_kernels=[3], output_proj=True),
    dict(type="ffnified", kernel_size=15, branch_kernels=[3], output_proj=True),
]))
