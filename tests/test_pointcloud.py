"""FFNet point model: parameter counts, grid pooling, Pointcept I/O, training, backends, losses, metrics, plugin."""
import random

import numpy as np
import pytest
import torch
from mmengine.config import Config

from ffnet.pointcloud.data import ScanNetDataset, collate_fn, point_collate_fn
from ffnet.pointcloud.losses import Criteria, LovaszLoss
from ffnet.pointcloud.model import FFNetPointSegmentor, build_backbone, build_segmentor, set_sparse_backend
from ffnet.pointcloud.pooling import GridPooling, GridUnpooling, grid_cells
from ffnet.pointcloud.structure import PointCloud, merge_duplicate_voxels, point_cloud_from_dict
from ffnet.pointcloud.synthetic import synthetic_room, write_scannet_scene
from ffnet.pointcloud.tester import intersection_and_union, segmentation_metrics
from ffnet.pointcloud.trainer import CONFIG_DIR, FFNetPointSegModel
from ffnet.core.sparse import SparseTensor

TINY = dict(enc_channels=(4, 8, 16, 32, 64), dec_channels=(8, 8, 16, 32))  # the release layout at width / 8


@pytest.fixture(scope="module")
def scannet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("scannet")
    for i in range(2):
        write_scannet_scene(root / "train" / f"scene000{i}_00", synthetic_room(1500, seed=i))
    return root


def load_batch(root, transform, names=("train",)):
    dataset = ScanNetDataset(split=names[0], data_root=root, transform=transform)
    return collate_fn([dataset[i] for i in range(len(dataset))])


def val_transform():
    return Config.fromfile(str(CONFIG_DIR / "scannet-ffnet.py")).data.val.transform


# ---------------------------------------------------------------- parameter counts (the released configs)

@pytest.mark.parametrize("config, expected", [
    ("scannet-ffnet.py", 103_212_436), ("scannet200-ffnet.py", 103_224_136), ("s3dis-ffnet.py", 103_211_981),
    ("scannet-ffnet-paper.py", 94_552_532),
])
def test_parameter_counts_of_configs(config, expected):
    cfg = Config.fromfile(str(CONFIG_DIR / config))
    with torch.device("meta"):
        model = FFNetPointSegModel(cfg.model)
    named = dict(model.named_parameters())
    assert sum(p.numel() for p in named.values()) == expected
    if config != "scannet-ffnet-paper.py":
        blocks = sum(p.numel() for name, p in named.items() if "block" in name)
        assert blocks == 102_742_848  # the lr-0.0006 "block" group
        assert sum(p.numel() for name, p in named.items() if name.startswith("segmentor.backbone")) == 103_211_136


def test_block_closed_form_and_depthwise_variant():
    with torch.device("meta"):
        release, depthwise = build_backbone("release"), build_backbone("depthwise")
    for channels in (32, 512):
        block = release.enc[0 if channels == 32 else 4].blocks[0]
        assert sum(p.numel() for p in block.parameters()) == 90 * channels**2 + 19 * channels
    # depthwise: LN 4C, Linear C²+C, two dw 5³ convs + BN, dw 3³ conv + BN, FFN 8C²+5C
    def dw_block(c):
        return 4 * c + c * c + c + 2 * (125 * c + c + 2 * c) + (27 * c + c + 2 * c) + 8 * c * c + 5 * c
    enc, dec = (32, 64, 128, 256, 512), (64, 64, 128, 256)
    blocks = sum(d * dw_block(c) for d, c in zip((2, 2, 2, 6, 2), enc)) + sum(2 * dw_block(c) for c in dec)
    other = sum(p.numel() for n, p in depthwise.named_parameters() if "block" not in n)
    assert sum(p.numel() for p in depthwise.parameters()) == blocks + other
    assert other == 469_588 - 1300  # stem, poolings and unpoolings are those of the release


# ---------------------------------------------------------------- pooling

def morton(grid: torch.Tensor, bits: int = 10) -> torch.Tensor:
    code = torch.zeros(grid.shape[0], dtype=torch.long)
    for b in range(bits):
        for axis in range(3):
            code |= ((grid[:, axis] >> b) & 1) << (3 * b + axis)
    return code


def random_voxels(n=600, extent=30, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    batch_index = torch.randint(0, batch, (n, 1), generator=gen)
    coords = torch.cat([batch_index, torch.randint(0, extent, (n, 3), generator=gen)], 1)
    return torch.unique(coords, dim=0)


def test_grid_cells_are_the_2x2x2_cells_and_the_code_shift_clusters():
    coords = random_voxels()
    inverse, cells, counts = grid_cells(coords)
    torch.testing.assert_close(cells[inverse], torch.cat([coords[:, :1], coords[:, 1:] // 2], 1))
    assert len(torch.unique(cells, dim=0)) == len(cells) and counts.sum() == len(coords)
    # the release clusters on (batch, z-order code) >> 3: the same partition
    code = (coords[:, 0] << 40) | morton(coords[:, 1:])
    _, by_code = torch.unique(code >> 3, return_inverse=True)
    pairs = torch.unique(torch.stack([inverse, by_code], 1), dim=0)
    assert len(pairs) == len(cells) == int(by_code.max()) + 1


def test_pooling_max_mean_and_unpooling_back():
    torch.manual_seed(0)
    coords = random_voxels()
    point = PointCloud(torch.randn(len(coords), 3), SparseTensor(coords, torch.randn(len(coords), 5)))
    pool, unpool = GridPooling(5, 7).eval(), GridUnpooling(7, 5, 6).eval()
    for bn in (pool.norm, unpool.proj[1], unpool.proj_skip[1]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    with torch.no_grad():
        coarse, inverse = pool(point)
        projected = pool.proj(point.feat)
        cell_of = {tuple(c): i for i, c in enumerate(coarse.sparse.coords.tolist())}
        for i, (b, x, y, z) in enumerate(coords.tolist()):
            assert inverse[i] == cell_of[(b, x // 2, y // 2, z // 2)]
        for cell in range(len(coarse)):
            members = inverse == cell
            expected = pool.act(pool.norm(projected[members].amax(0, keepdim=True)))[0]
            torch.testing.assert_close(coarse.feat[cell], expected)
            torch.testing.assert_close(coarse.coord[cell], point.coord[members].mean(0))
        up = unpool(coarse, point, inverse)
        torch.testing.assert_close(up.feat, unpool.proj_skip(point.feat) + unpool.proj(coarse.feat)[inverse])
    assert up.sparse.cache is point.sparse.cache  # the decoder reuses the encoder level's neighbour maps


# ---------------------------------------------------------------- the backbone on Pointcept's collated dict

def test_backbone_consumes_pointcept_batch_and_returns_full_resolution(scannet_root):
    batch = load_batch(scannet_root, val_transform())
    assert {"coord", "grid_coord", "feat", "offset"} <= set(batch) and batch["feat"].shape[1] == 6
    torch.manual_seed(0)
    model = build_backbone("release", enc_channels=TINY["enc_channels"], dec_channels=(64, 8, 16, 32)).eval()
    with torch.no_grad():
        out = model({k: batch[k] for k in ("coord", "grid_coord", "feat", "offset")})
    assert out.feat.shape == (len(batch["coord"]), 64)
    torch.testing.assert_close(out.coord, batch["coord"])
    torch.testing.assert_close(out.offset, batch["offset"])
    # each scene is independent of the other one in the batch
    first = int(batch["offset"][0])
    alone = {k: batch[k][:first] for k in ("coord", "grid_coord", "feat")}
    with torch.no_grad():
        single = model(dict(alone, offset=torch.tensor([first])))
    torch.testing.assert_close(single.feat, out.feat[:first], rtol=1e-4, atol=1e-6)


def test_full_model_forward_backward_and_learning(scannet_root):
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    cfg = Config.fromfile(str(CONFIG_DIR / "scannet-ffnet.py"))
    dataset = ScanNetDataset(split="train", data_root=scannet_root, transform=cfg.data.train.transform)
    full = FFNetPointSegmentor(20, 8, dict(type="FFNet-v1m1", **TINY), cfg.model.criteria)
    loss = full(point_collate_fn([dataset[0], dataset[1]], mix_prob=0.8))["loss"]
    loss.backward()
    grads = {n: p.grad for n, p in full.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert all(g.abs().sum() > 0 for n, g in grads.items() if "weight" in n)

    model = FFNetPointSegmentor(20, 8, dict(type="FFNet-v1m1", enc_depths=(1,) * 5, dec_depths=(1,) * 4, **TINY),
                                cfg.model.criteria)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.05)
    losses = []
    for _ in range(8):
        loss = model(point_collate_fn([dataset[0], dataset[1]]))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-2:]) < 0.75 * losses[0], losses


def test_mix3d_duplicates_are_merged_per_voxel():
    coords = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1], [0, 2, 1, 1], [1, 1, 1, 1]])
    feat = torch.tensor([[1.0], [3.0], [5.0], [7.0]])
    point = PointCloud(torch.arange(12.0).reshape(4, 3), SparseTensor(coords, feat))
    merged, inverse = merge_duplicate_voxels(point)
    assert len(merged) == 3 and inverse[0] == inverse[1]
    torch.testing.assert_close(merged.feat[inverse[0]], torch.tensor([2.0]))
    torch.testing.assert_close(merged.coord[inverse[0]], torch.tensor([1.5, 2.5, 3.5]))
    model = build_backbone("release", **TINY).eval()
    data = dict(coord=point.coord, grid_coord=coords[:, 1:], feat=torch.randn(4, 6), offset=torch.tensor([3, 4]))
    with torch.no_grad():
        out = model(data)
    assert len(out) == 4
    torch.testing.assert_close(out.feat[0], out.feat[1])


def test_point_dict_errors():
    good = dict(coord=torch.rand(5, 3), grid_coord=torch.arange(15).reshape(5, 3), feat=torch.rand(5, 6),
                offset=torch.tensor([5]))
    with pytest.raises(KeyError, match="grid_coord"):
        point_cloud_from_dict({k: v for k, v in good.items() if k != "grid_coord"})
    with pytest.raises(ValueError, match="NaN"):
        point_cloud_from_dict(dict(good, coord=torch.full((5, 3), float("nan"))))
    with pytest.raises(ValueError, match="offset"):
        point_cloud_from_dict(dict(good, offset=torch.tensor([3, 4])))
    with pytest.raises(ValueError, match="empty point cloud"):
        point_cloud_from_dict({k: v[:0] for k, v in good.items() if k != "offset"} | dict(offset=torch.tensor([0])))
    with pytest.raises(ValueError, match="in_channels=6"):
        build_backbone("release", **TINY)(dict(good, feat=torch.rand(5, 3)))


# ---------------------------------------------------------------- sparse backends

def test_spconv_forward_equals_torch_backend(scannet_root):
    pytest.importorskip("spconv.pytorch")
    batch = load_batch(scannet_root, val_transform())
    torch.manual_seed(0)
    model = build_backbone("release", **TINY).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():
        reference = model(batch).feat
        set_sparse_backend(model, "spconv")
        spconv_out = model(batch).feat
    assert (spconv_out - reference).abs().max() <= 1e-4 * reference.abs().max()
    with pytest.raises(ValueError, match="spconv has no grouped"):
        set_sparse_backend(build_backbone("depthwise", **TINY), "spconv")


# ---------------------------------------------------------------- losses and metrics

def test_lovasz_and_cross_entropy_match_hand_computed_values():
    probs = torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.5, 0.5]])
    target = torch.tensor([0, 0, 1, -1])
    # class 0: sorted errors 0.6, 0.3, 0.2 with Lovász weights 1/2, 1/6, 1/3; class 1: 0.6, 0.3, 0.2 with 1/2, 1/2, 0
    expected_lovasz = ((0.6 / 2 + 0.3 / 6 + 0.2 / 3) + (0.6 / 2 + 0.3 / 2)) / 2
    torch.testing.assert_close(LovaszLoss(ignore_index=-1)(probs.log(), target), torch.tensor(expected_lovasz))
    expected_ce = -(np.log(0.8) + np.log(0.4) + np.log(0.7)) / 3
    criteria = Criteria([dict(type="CrossEntropyLoss", ignore_index=-1),
                         dict(type="LovaszLoss", mode="multiclass", ignore_index=-1, loss_weight=2.0)])
    torch.testing.assert_close(criteria(probs.log(), target), torch.tensor(expected_ce + 2 * expected_lovasz,
                                                                           dtype=torch.float32))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        criteria(probs.log(), torch.tensor([0, 2, 1, -1]))


def test_metrics_match_hand_computed_confusion_matrix():
    target = np.array([0, 0, 0, 1, 1, 2, 2, 2, -1, -1])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1, 2])
    # confusion (rows: target, cols: pred) = [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    intersection, union, area = intersection_and_union(pred, target, 3, ignore_index=-1)
    np.testing.assert_array_equal(intersection, [2, 1, 2])
    np.testing.assert_array_equal(union, [4, 3, 4])
    np.testing.assert_array_equal(area, [3, 2, 3])
    metrics = segmentation_metrics(intersection, union, area)
    assert metrics["mIoU"] == pytest.approx((0.5 + 1 / 3 + 0.5) / 3)
    assert metrics["mAcc"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert metrics["allAcc"] == pytest.approx(5 / 8)


# ---------------------------------------------------------------- registration

def plugin_backbone_check(registry):
    model = registry.build(dict(type="FFNet-v1m1", enc_channels=TINY["enc_channels"], dec_channels=(64, 8, 16, 32)))
    coords = random_voxels(200, 12, batch=1)[:, 1:]
    data = dict(coord=coords.float() * 0.02, grid_coord=coords, feat=torch.randn(len(coords), 6),
                offset=torch.tensor([len(coords)]))
    out = model.eval()(data)
    assert out["feat"].shape == (len(coords), 64) and out["grid_coord"] is coords


def test_plugin_registers_into_an_mmengine_registry():
    from mmengine.registry import Registry

    from ffnet.pointcloud import pointcept

    models, transforms = Registry("models"), Registry("transforms")
    pointcept.register(models, transforms)
    assert transforms.get("NormalizeColorSymmetric") is not None
    plugin_backbone_check(models)


def test_plugin_registers_into_pointcept_when_importable():
    pytest.importorskip("pointcept", reason="upstream Pointcept is not importable here; `make test-pointcept` "
                                            "runs this test in .venv-pointcept with POINTCEPT_ROOT on the path")
    from ffnet.pointcloud import pointcept

    assert pointcept.POINTCEPT_MODELS.get("FFNet-v1m1") is pointcept.PointceptFFNet
    plugin_backbone_check(pointcept.POINTCEPT_MODELS)


def test_segmentor_from_config_builds_release_head():
    cfg = Config.fromfile(str(CONFIG_DIR / "s3dis-ffnet.py"))
    assert cfg.model.backbone.act == "relu" and cfg.data.test.test_cfg.aug_transform.__len__() == 10
    model = build_segmentor(dict(cfg.model, backbone=dict(cfg.model.backbone, **TINY), backbone_out_channels=8))
    assert model.seg_head.out_features == 13
    assert any(isinstance(m, torch.nn.ReLU) for m in model.backbone.enc.modules())


def release_state_dict(enc=(4, 8, 16, 32, 64), dec=(8, 8, 16, 32), depths=(2, 2, 2, 6, 2), classes=20):
    """Keys and shapes of the release's DefaultSegmentorV2 + FFNet (PointSequential indices, spconv kernels)."""
    gen = torch.Generator().manual_seed(0)
    state = {}

    def add(key, *shape):
        state[key] = torch.randn(*shape, generator=gen)

    def bn(prefix, c):
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            add(f"{prefix}.{leaf}", c)
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

    def block(prefix, c):
        add(f"{prefix}.norm1.0.weight", c), add(f"{prefix}.norm1.0.bias", c)
        add(f"{prefix}.token_mixer.0.weight", c, c), add(f"{prefix}.token_mixer.0.bias", c)
        for conv, norm in (("token_mixer.1", "token_mixer.2"), ("token_mixer.4", "token_mixer.5"),
                           ("channel_mixer.0", "channel_mixer.1")):
            add(f"{prefix}.{conv}.weight", c, 3, 3, 3, c), add(f"{prefix}.{conv}.bias", c)
            bn(f"{prefix}.{norm}", c)
        add(f"{prefix}.norm2.0.weight", c), add(f"{prefix}.norm2.0.bias", c)
        add(f"{prefix}.channel_mixer.2.fc1.weight", 4 * c, c), add(f"{prefix}.channel_mixer.2.fc1.bias", 4 * c)
        add(f"{prefix}.channel_mixer.2.fc2.weight", c, 4 * c), add(f"{prefix}.channel_mixer.2.fc2.bias", c)

    add("backbone.embedding.stem.conv.weight", enc[0], 5, 5, 5, 6)
    bn("backbone.embedding.stem.norm", enc[0])
    for s, (c, d) in enumerate(zip(enc, depths)):
        if s:
            add(f"backbone.enc.enc{s}.down.proj.weight", c, enc[s - 1]), add(f"backbone.enc.enc{s}.down.proj.bias", c)
            bn(f"backbone.enc.enc{s}.down.norm.0", c)
        for i in range(d):
            block(f"module.backbone.enc.enc{s}.block{i}", c)
    widths = list(dec) + [enc[-1]]
    for s in range(len(dec)):
        for proj, c_in in (("proj", widths[s + 1]), ("proj_skip", enc[s])):
            add(f"backbone.dec.dec{s}.up.{proj}.0.weight", dec[s], c_in)
            add(f"backbone.dec.dec{s}.up.{proj}.0.bias", dec[s])
            bn(f"backbone.dec.dec{s}.up.{proj}.1", dec[s])
        for i in range(2):
            block(f"backbone.dec.dec{s}.block{i}", dec[s])
    add("seg_head.weight", classes, dec[0]), add("seg_head.bias", classes)
    return state


def test_release_checkpoint_converts_onto_the_segmentor():
    from ffnet.pointcloud.checkpoint import convert_release_state_dict

    release = release_state_dict()
    model = FFNetPointSegmentor(20, 8, dict(type="FFNet-v1m1", **TINY))
    model.load_state_dict(convert_release_state_dict({"state_dict": release}), strict=True)
    kernel = release["backbone.dec.dec0.block1.token_mixer.4.weight"]  # (out, kx, ky, kz, in)
    ours = model.backbone.dec[3].blocks[1].token_mixer.mixer.aggregate.conv.weight  # decoder level 0 is built last
    torch.testing.assert_close(ours[2, 5, 0, 1, 2], kernel[2, 0, 1, 2, 5])
    with pytest.raises(ValueError, match="unexpected key"):
        convert_release_state_dict({"backbone.enc.enc0.block0.token_mixer.3.weight": torch.zeros(1)})
