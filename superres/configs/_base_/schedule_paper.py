# The paper's recipe (Appendix F.2, "following SMFANet"): AdamW, lr 1e-3 with cosine annealing, 1M
# iterations, batch 64, LR patches 64x64, FFT weight 0.05. The paper gives no AdamW betas/weight
# decay nor a final lr: torch's AdamW defaults and the release's eta_min 1e-5 are used.
fft_weight = 0.05
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3))
max_iters = 1_000_000
param_scheduler = [dict(type="CosineAnnealingLR", T_max=max_iters, eta_min=1e-5, by_epoch=False,
                        begin=0, end=max_iters)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=5000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
auto_scale_lr = dict(base_batch_size=64, enable=False)
