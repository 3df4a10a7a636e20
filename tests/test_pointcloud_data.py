"""Point-cloud data: on-disk layouts, the configs' pipelines, test fragments and voting, Mix3D, bad scenes."""
import pathlib

import numpy as np
import pytest
import torch
from mmengine.config import Config

from ffnet.engine.checkpoints import load_file
from ffnet.engine.errors import CheckpointError
from ffnet.pointcloud.data import S3DISDataset, ScanNet200Dataset, ScanNetDataset, SceneError, point_collate_fn
from ffnet.pointcloud.synthetic import synthetic_room, write_release_scene, write_scannet_scene
from ffnet.pointcloud.tester import vote_fragments
from ffnet.pointcloud.trainer import CONFIG_DIR
from ffnet.pointcloud.transforms import Compose, GridSample


@pytest.fixture(scope="module")
def scene():
    return synthetic_room(1200, seed=3)


@pytest.fixture(scope="module")
def config():
    return Config.fromfile(str(CONFIG_DIR / "scannet-ffnet.py"))


def test_upstream_npy_and_release_pth_layouts_read_the_same(tmp_path, scene):
    write_scannet_scene(tmp_path / "val" / "scene0001_00", scene)
    write_release_scene(tmp_path / "val" / "scene0002_00.pth", scene)
    dataset = ScanNetDataset(split="val", data_root=tmp_path)
    assert [dataset.get_data_name(i) for i in range(2)] == ["scene0001_00", "scene0002_00"]
    npy, pth = dataset.get_data(0), dataset.get_data(1)
    for key in ("coord", "color", "normal", "segment"):
        np.testing.assert_allclose(npy[key], pth[key])
    assert npy["coord"].dtype == np.float32 and npy["segment"].dtype == np.int64
    assert ScanNet200Dataset(split="val", data_root=tmp_path).get_data(0)["segment"].max() < 200


class Payload:
    """Unpickling this runs ``Path.touch(marker)``: what a crafted scene file runs under the full unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_release_pth_scenes_are_read_weights_only(tmp_path, scene, monkeypatch):
    marker = tmp_path / "ran"
    path = write_release_scene(tmp_path / "val" / "scene0003_00.pth", scene)
    torch.save({**load_file(path), "extra": Payload(marker)}, path)
    dataset = ScanNetDataset(split="val", data_root=tmp_path)
    with pytest.raises(CheckpointError, match=f"{path}: refused to load: it needs the Python global .*pass "
                                              "--trust-checkpoint"):
        dataset.get_data(0)
    assert not marker.exists()
    monkeypatch.setenv("FFNET_TRUST_CHECKPOINTS", "1")  # the user's explicit opt-in reads it (and runs it)
    np.testing.assert_allclose(dataset.get_data(0)["coord"], scene["coord"])
    assert marker.exists()


def test_s3dis_rooms_are_named_by_area(tmp_path, scene):
    room = tmp_path / "Area_5" / "office_1"
    write_scannet_scene(room, scene)
    (room / "segment20.npy").rename(room / "segment.npy")
    dataset = S3DISDataset(split="Area_5", data_root=tmp_path)
    assert dataset.get_data_name(0) == "Area_5-office_1"
    assert set(np.unique(dataset.get_data(0)["segment"])) <= set(range(13))


def test_config_train_pipeline_and_color_ranges(tmp_path, scene, config):
    write_scannet_scene(tmp_path / "train" / "scene0000_00", scene)
    dataset = ScanNetDataset(split="train", data_root=tmp_path, transform=config.data.train.transform, loop=3)
    assert len(dataset) == 3
    sample = dataset[0]
    assert set(sample) == {"coord", "grid_coord", "segment", "offset", "feat"}
    assert sample["feat"].shape == (len(sample["coord"]), 6) and sample["grid_coord"].dtype == torch.int64
    assert len(torch.unique(sample["grid_coord"], dim=0)) == len(sample["grid_coord"])  # one point per voxel
    color = sample["feat"][:, :3]
    assert color.min() >= -1 and color.max() <= 1 and color.min() < 0  # the release's [-1, 1]
    upstream = Compose([dict(type="NormalizeColor")])(dict(color=scene["color"].astype(np.float32)))["color"]
    assert upstream.min() >= 0 and upstream.max() <= 1


def test_grid_sample_train_test_and_inverse(scene):
    coord = scene["coord"].astype(np.float32)
    data = dict(coord=coord, segment=scene["segment"].astype(np.int64))
    train = GridSample(0.05, mode="train", return_grid_coord=True, return_inverse=True)(dict(data))
    voxels = np.unique(np.floor(coord / 0.05).astype(int), axis=0)
    assert len(train["coord"]) == len(voxels)
    # every original point maps to the sampled point of its own voxel
    grid = np.floor(coord / 0.05).astype(int)
    sampled = np.floor(train["coord"] / 0.05).astype(int)
    np.testing.assert_array_equal(sampled[train["inverse"]], grid)
    fragments = GridSample(0.05, mode="test", return_grid_coord=True)(dict(data))
    counts = np.unique(grid, axis=0, return_counts=True)[1]
    assert len(fragments) == counts.max()
    covered = np.unique(np.concatenate([f["index"] for f in fragments]))
    np.testing.assert_array_equal(covered, np.arange(len(coord)))
    with pytest.raises(ValueError, match="grid_size must be a positive"):
        GridSample(grid_size=0)


def test_fragment_voting_covers_every_original_point(tmp_path, scene, config):
    write_scannet_scene(tmp_path / "val" / "scene0001_00", scene)
    test_cfg = dict(config.data.test.test_cfg)
    test_cfg["aug_transform"] = test_cfg["aug_transform"][:2]
    dataset = ScanNetDataset(split="val", data_root=tmp_path, transform=config.data.test.transform, test_mode=True,
                             test_cfg=test_cfg)
    item = dataset[0]
    assert item["name"] == "scene0001_00" and len(item["segment"]) == len(scene["coord"])
    assert len(item["fragment_list"]) >= 2
    assert set(item["fragment_list"][0]) == {"coord", "grid_coord", "index", "offset", "feat"}
    calls = []

    def predict(batch):
        calls.append(len(batch["coord"]))
        return batch["feat"][:, :3] * 10

    votes = vote_fragments(predict, item["fragment_list"], len(item["segment"]), 3)
    assert len(calls) == len(item["fragment_list"])
    per_point = votes.sum(1)
    assert (per_point >= 2 - 1e-5).all()  # every point is voted by every view at least once
    torch.testing.assert_close(per_point.sum(), torch.tensor(float(sum(calls))))
    with pytest.raises(RuntimeError, match="in no fragment"):
        vote_fragments(predict, item["fragment_list"][:0], len(item["segment"]), 3)


def test_mix3d_collate_merges_pairs():
    samples = [dict(coord=torch.zeros(n, 3), offset=torch.tensor([n])) for n in (3, 4, 5, 6, 7)]
    assert point_collate_fn(samples, mix_prob=0.0)["offset"].tolist() == [3, 7, 12, 18, 25]
    assert point_collate_fn(samples, mix_prob=1.0)["offset"].tolist() == [7, 18, 25]


def write_scene(root, name, scene, drop=(), **replace):
    folder = write_scannet_scene(root / "val" / name, {**scene, **replace})
    for asset in drop:
        (folder / f"{asset}.npy").unlink()
    return ScanNetDataset(split="val", data_root=root)


@pytest.mark.parametrize("case, message", [
    ("empty", "has no points"),
    ("single", "has a single point"),
    ("nan", "NaN/inf coordinates"),
    ("no_color", "missing color.npy"),
    ("no_normal", "missing normal.npy"),
    ("labels", r"labels outside \[0, 20\)"),
])
def test_bad_scenes_raise_clear_errors(tmp_path, scene, case, message):
    name = f"scene_{case}"
    if case == "empty":
        dataset = write_scene(tmp_path, name, {k: v[:0] for k, v in scene.items()})
    elif case == "single":
        dataset = write_scene(tmp_path, name, {k: v[:1] for k, v in scene.items()})
    elif case == "nan":
        coord = scene["coord"].copy()
        coord[5] = np.nan
        dataset = write_scene(tmp_path, name, scene, coord=coord)
    elif case in ("no_color", "no_normal"):
        dataset = write_scene(tmp_path, name, scene, drop=[case[3:]])
    else:
        segment = scene["segment"].copy()
        segment[:4] = 25
        dataset = write_scene(tmp_path, name, scene, segment=segment)
    with pytest.raises(SceneError, match=message) as error:
        dataset.get_data(0)
    assert name in str(error.value)


def test_missing_split_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ScanNetDataset(split="train", data_root=tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="no scenes found"):
        ScanNetDataset(split="train", data_root=tmp_path)
