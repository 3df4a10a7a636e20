# The authors' option files (options/train/*.yaml): Adam, 500k iterations, cosine to 1e-5, FFT weight 0.02,
# LR patches of 192 / scale pixels (gt_size 192), batch 16 x 4 GPUs.
fft_weight = 0.02
optim_wrapper = dict(type="OptimWrapper",
                     optimizer=dict(type="Adam", lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0))
max_iters = 500_000
param_scheduler = [dict(type="CosineAnnealingLR", T_max=max_iters, eta_min=1e-5, by_epoch=False,
                        begin=0, end=max_iters)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=5000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
auto_scale_lr = dict(base_batch_size=64, enable=False)
