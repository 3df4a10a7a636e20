# DF2K = DIV2K + Flickr2K training pairs; same evaluation as data_div2k.py.
_base_ = ["./data_div2k.py"]

train_dataloader = dict(dataset=dict(folders=[
    dict(name="DIV2K", hr="DIV2K/DIV2K_train_HR", lr="DIV2K/DIV2K_train_LR_bicubic/X{scale}"),
    dict(name="Flickr2K", hr="Flickr2K/Flickr2K_HR", lr="Flickr2K/Flickr2K_LR_bicubic/X{scale}"),
]))
