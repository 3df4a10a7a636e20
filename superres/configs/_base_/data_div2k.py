# DIV2K training pairs and the five benchmark sets; `data_root` holds DIV2K/, Flickr2K/, benchmark/.
data_root = "data"
scale = 2

train_folders = [dict(name="DIV2K", hr="DIV2K/DIV2K_train_HR", lr="DIV2K/DIV2K_train_LR_bicubic/X{scale}")]
benchmark_sets = ["Set5", "Set14", "B100", "Urban100", "Manga109"]
test_folders = [dict(name=n, hr=f"benchmark/{n}/HR", lr=f"benchmark/{n}/LR_bicubic/X{{scale}}") for n in benchmark_sets]

train_dataloader = dict(
    batch_size=16,  # per GPU; the release trains on 4 GPUs (64 in total)
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type="PairedImageFolder", data_root=data_root, folders=train_folders, scale=scale,
                 patch_size=96, augment=True),
)
# The release validates on Urban100 every 5,000 iterations (PSNR on Y, border = scale).
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type="PairedImageFolder", data_root=data_root, folders=[test_folders[3]], scale=scale),
)
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type="PairedImageFolder", data_root=data_root, folders=test_folders, scale=scale),
)
val_evaluator = dict(type="SRPSNRSSIM")  # crop border = scale
test_evaluator = dict(type="SRPSNRSSIM")
