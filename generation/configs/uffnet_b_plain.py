# U-FFNet-B, plain variant: the image FFNet's token mixer as is (1x1 query projection, DW 7x7 keys,
# GELU, DW 7x7 values, no output projection), about 16.5 G MACs instead of 19.6 G.
_base_ = ["./_runtime.py"]
model = dict(backbone=dict(arch="U-DiT-B", mixers=[
    dict(type="ffnified", kernel_size=7, branch_kernels=[3], output_proj=False),
    dict(type="ffnified", kernel_size=7, branch_kernels=[3], output_proj=False),
    dict(type="attention", down_factor=2, downsampler_kernel=5),
    dict(type="ffnified", kernel_size=7, branch_kernels=[3], output_proj=False),
    dict(type="ffnified", kernel_size=7, branch_kernels=[3], output_proj=False),
]))
