"""FFNet-TS model, authors' checkpoint filter, TSLib data protocol and bad-input errors (fast, CPU)."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ffnet.core import FFNetBlock, MetaMixer, RepConv, is_reparameterized, reparameterize
from ffnet.main import main
from ffnet.timeseries import commands
from ffnet.timeseries.data import (
    HORIZONS,
    STANDARD_DATASETS,
    Standardizer,
    dataset_spec,
    future_dates,
    load_standard,
    make_splits,
    read_series,
    series_from_frame,
    split_borders,
)
from ffnet.timeseries.forecast import forecast_csv
from ffnet.timeseries.grid import grid_rows
from ffnet.timeseries.model import (
    ChannelFFNOutput,
    CrossVariableFFN,
    FFNetTS,
    FFNetTSConfig,
    RevIN,
    config_from_authors_state_dict,
    convert_authors_state_dict,
    count_parameters,
    create_model,
    load_authors_state_dict,
)
from ffnet.timeseries.presets import preset_for
from ffnet.timeseries.train import evaluate, load_checkpoint, paper_configs
from helpers import randomize_bn


# ------------------------------------------------------------------------------------------ model

def test_default_config_shapes_and_exact_parameter_count():
    model_config, _ = paper_configs("ETTh1", 7, 96)
    model = FFNetTS(model_config).eval()
    assert count_parameters(model) == 499_104
    breakdown = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    assert breakdown == {"revin": 0, "patch_embed": 448, "blocks": 111_680 + 91_968, "head": 295_008}
    assert sum(p.numel() for p in model.blocks[0].token_mixer.parameters()) == 111_680
    x = torch.randn(4, 96, 7)
    assert model(x).shape == (4, 96, 7)
    reparameterize(model)
    assert count_parameters(model) == 495_520
    assert model(x).shape == (4, 96, 7)


@pytest.mark.parametrize("m, horizon, ratio, expected", [
    (7, 720, 2, 2_416_656), (7, 96, 8, 692_640), (7, 96, 12, 821_664), (21, 96, 12, 2_136_992),
    (21, 720, 12, 4_054_544), (321, 96, 12, 114_725_792), (321, 720, 12, 116_643_344),
    (862, 96, 12, 725_423_904), (862, 720, 12, 727_341_456),
])
def test_parameter_counts_of_every_released_config(m, horizon, ratio, expected):
    with torch.device("meta"):
        model = FFNetTS(FFNetTSConfig(num_variables=m, pred_len=horizon, ffn_ratio=ratio))
    assert count_parameters(model) == expected


def test_block_is_the_core_block_on_the_1d_backend():
    config = FFNetTSConfig(num_variables=3, dim=8, ffn_ratio=4)
    block = FFNetTS(config).blocks[0]
    assert isinstance(block, FFNetBlock)
    token = block.token_mixer.mixer.metamixer
    channel = block.channel_mixer.mixer.metamixer
    assert isinstance(token, MetaMixer) and isinstance(channel, MetaMixer)
    assert isinstance(token.query_proj, CrossVariableFFN)
    assert token.query_proj.fc1.groups == 8 and token.query_proj.fc2.groups == 3
    for conv in (token.compat, token.aggregate):
        assert isinstance(conv, nn.Conv1d) and conv.kernel_size == (51,) and conv.groups == 24 and conv.bias is not None
    assert isinstance(channel.query_proj.conv, RepConv)
    assert channel.query_proj.conv.main.conv.kernel_size == (51,)
    assert channel.query_proj.conv.branches[0].conv.kernel_size == (5,)
    assert channel.compat.groups == 3 and channel.aggregate.fc2.groups == 8
    assert isinstance(channel.activation[0], nn.Dropout) and channel.activation[0].p == 0.7
    assert isinstance(channel.activation[1], nn.GELU)


def test_fold_matches_eval_model_with_random_bn_statistics():
    model = randomize_bn(FFNetTS(FFNetTSConfig(num_variables=5, pred_len=24, ffn_ratio=3))).eval()
    x = torch.randn(6, 96, 5) * 4 + 2
    with torch.no_grad():
        before = model(x)
        reparameterize(model)
        after = model(x)
    assert is_reparameterized(model)
    assert (before - after).abs().max() <= 1e-5 * before.abs().max()


def test_revin_round_trip_and_statistics():
    x = torch.randn(5, 96, 3) * torch.tensor([1.0, 10.0, 0.1]) + torch.tensor([0.0, -50.0, 3.0])
    for affine in (False, True):
        revin = RevIN(3, affine=affine)
        if affine:
            revin.affine_weight.data.uniform_(0.5, 2.0)
            revin.affine_bias.data.uniform_(-1.0, 1.0)
        y, stats = revin.normalize(x)
        assert torch.allclose(revin.denormalize(y, stats), x, atol=1e-4)
        if not affine:
            assert y.mean(dim=1).abs().max() < 1e-5
            assert (y.std(dim=1, unbiased=False) - 1).abs().max() < 1e-3


def test_cviffn_is_a_cross_variable_ffn_per_feature():
    """Reference: for each feature d, a dense M → 2M map across variables, then 2 slots × D → D per variable."""
    m, d, n = 3, 4, 5
    ffn = randomize_bn(CrossVariableFFN(m, d)).eval()
    x = torch.randn(2, m, d, n)
    w1 = ffn.fc1.weight[:, :, 0].reshape(d, 2 * m, m)  # [feature, hidden slot, variable]
    b1 = ffn.fc1.bias.reshape(d, 2 * m)
    hidden = F.gelu(torch.einsum("dhm,bmdn->bhdn", w1, x) + b1.T[None, :, :, None])  # (B, 2M, D, N)
    w2 = ffn.fc2.weight[:, :, 0].reshape(m, d, 2, d)  # [variable, out feature, slot, in feature]
    out = torch.einsum("gosi,bgsin->bgon", w2, hidden.reshape(2, m, 2, d, n)) + ffn.fc2.bias.reshape(m, d)[..., None]
    bn = ffn.norm
    out = (out - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + bn.eps) * bn.weight[:, None] \
        + bn.bias[:, None]
    with torch.no_grad():
        assert torch.allclose(ffn(x.reshape(2, m * d, n)).reshape(2, m, d, n), out, atol=1e-5)


def test_ciffn_second_layer_mixes_all_variables_per_feature_group():
    """Reference: output feature g of variable m' reads hidden features [g·r, (g+1)·r) of every variable."""
    m, d, r, n = 3, 4, 2, 5
    layer = ChannelFFNOutput(m, d, r * d).eval()
    hidden = torch.randn(2, m, r * d, n)
    w = layer.fc2.weight[:, :, 0].reshape(d, m, r, m)  # [group g, out variable, j, in variable]
    grouped = hidden.reshape(2, m, d, r, n)  # feature f = g·r + j
    out = torch.einsum("gojm,bmgjn->bogn", w, grouped) + layer.fc2.bias.reshape(d, m).T[None, :, :, None]
    with torch.no_grad():
        assert torch.allclose(layer(hidden.reshape(2, m * r * d, n)).reshape(2, m, d, n), out, atol=1e-5)


# ------------------------------------------------------------------- authors' checkpoint filter

# Our key → the release's key (ETTh1 layout, `Model` wrapper adds "model.").
OURS_TO_AUTHORS = {
    "patch_embed.conv": "downsample_layers.0.0",
    "patch_embed.norm": "downsample_layers.0.1",
    "blocks.0.token_mixer.mixer.metamixer.query_proj.fc1": "stages.0.blocks.0.token_mixer.ffnpw1",
    "blocks.0.token_mixer.mixer.metamixer.query_proj.fc2": "stages.0.blocks.0.token_mixer.ffnpw2",
    "blocks.0.token_mixer.mixer.metamixer.query_proj.norm": "stages.0.blocks.0.token_mixer.norm",
    "blocks.0.token_mixer.mixer.metamixer.compat": "stages.0.blocks.0.token_mixer.dw1",
    "blocks.0.token_mixer.mixer.metamixer.aggregate": "stages.0.blocks.0.token_mixer.dw2",
    "blocks.0.channel_mixer.mixer.metamixer.query_proj.conv.main.conv":
        "stages.0.blocks.0.channel_mixer.dw.lkb_origin.conv",
    "blocks.0.channel_mixer.mixer.metamixer.query_proj.conv.main.bn":
        "stages.0.blocks.0.channel_mixer.dw.lkb_origin.bn",
    "blocks.0.channel_mixer.mixer.metamixer.query_proj.conv.branches.0.conv":
        "stages.0.blocks.0.channel_mixer.dw.small_conv.conv",
    "blocks.0.channel_mixer.mixer.metamixer.query_proj.conv.branches.0.bn":
        "stages.0.blocks.0.channel_mixer.dw.small_conv.bn",
    "blocks.0.channel_mixer.mixer.metamixer.query_proj.conv": "stages.0.blocks.0.channel_mixer.dw.lkb_reparam",
    "blocks.0.channel_mixer.mixer.metamixer.query_proj.norm": "stages.0.blocks.0.channel_mixer.norm",
    "blocks.0.channel_mixer.mixer.metamixer.compat": "stages.0.blocks.0.channel_mixer.ffnpw1",
    "blocks.0.channel_mixer.mixer.metamixer.aggregate.fc2": "stages.0.blocks.0.channel_mixer.ffnpw2",
    "head.linear": "head.linear",
}


def _bn(prefix: str, channels: int) -> dict:
    return {f"{prefix}.weight": torch.ones(channels), f"{prefix}.bias": torch.zeros(channels),
            f"{prefix}.running_mean": torch.zeros(channels), f"{prefix}.running_var": torch.ones(channels),
            f"{prefix}.num_batches_tracked": torch.tensor(0)}


def unused_modules_state(dim: int = 64) -> dict:
    """The release's never-run modules (one stage, no multi-scale fusion, time marks ignored)."""
    state = {}
    for i in (1, 2, 3):
        state.update(_bn(f"downsample_layers.{i}.0", dim))
        state[f"downsample_layers.{i}.1.weight"] = torch.randn(dim, dim, 2)
        state[f"downsample_layers.{i}.1.bias"] = torch.randn(dim)
    state.update({"te_patch.0.weight": torch.randn(4, 1, 4), "te_patch.0.bias": torch.randn(4),
                  "te_patch.1.weight": torch.randn(dim, 4, 1), "te_patch.1.bias": torch.randn(dim),
                  "lat_layer.0.weight": torch.randn(dim, dim, 1), "lat_layer.0.bias": torch.randn(dim),
                  "smooth_layer.0.weight": torch.randn(dim, dim, 3), "smooth_layer.0.bias": torch.randn(dim),
                  "up_sample_conv.0.0.weight": torch.randn(dim, dim, 2), "up_sample_conv.0.0.bias": torch.randn(dim)})
    state.update(_bn("te_patch.2", dim))
    state.update(_bn("up_sample_conv.0.1", dim))
    return state


def to_authors_layout(state_dict: dict) -> dict:
    out = {}
    for key, value in state_dict.items():
        module, leaf = key.rsplit(".", 1)
        out[f"model.{OURS_TO_AUTHORS[module]}.{leaf}"] = value
    out.update({f"model.{k}": v for k, v in unused_modules_state().items()})
    return out


def _parameter_count(state_dict: dict) -> int:
    return sum(v.numel() for k, v in state_dict.items() if not k.endswith(("running_mean", "running_var", "tracked")))


def test_authors_checkpoint_loads_with_unused_modules_dropped():
    source = randomize_bn(FFNetTS(FFNetTSConfig(num_variables=7))).eval()
    authors = to_authors_layout(source.state_dict())
    assert _parameter_count(authors) == 549_620  # the release's state dict, 50,516 of it unused
    config = config_from_authors_state_dict(authors)
    assert config == FFNetTSConfig(num_variables=7)
    loaded = load_authors_state_dict(FFNetTS(config), authors).eval()
    x = torch.randn(3, 96, 7)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_authors_merged_checkpoint_loads_into_the_folded_model():
    source = reparameterize(randomize_bn(FFNetTS(FFNetTSConfig(num_variables=7, pred_len=48))).eval())
    authors = to_authors_layout(source.state_dict())
    assert "model.stages.0.blocks.0.channel_mixer.dw.lkb_reparam.weight" in authors
    loaded = load_authors_state_dict(FFNetTS(config_from_authors_state_dict(authors)), authors).eval()
    x = torch.randn(2, 96, 7)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_authors_checkpoint_errors():
    authors = to_authors_layout(FFNetTS(FFNetTSConfig(num_variables=7)).state_dict())
    with pytest.raises(ValueError, match="unrecognised keys"):
        convert_authors_state_dict({**authors, "model.extra_layer.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="decomposition"):
        convert_authors_state_dict({"model_res.head.linear.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="does not fit"):
        load_authors_state_dict(FFNetTS(FFNetTSConfig(num_variables=7, pred_len=192)), authors)


# ------------------------------------------------------------------------------ data protocol

def _frame(rows: int, columns: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.standard_normal((rows, columns)), columns=[f"v{i}" for i in range(columns - 1)] + ["OT"])
    frame.insert(0, "date", pd.date_range("2016-07-01", periods=rows, freq="h"))
    return frame


def test_split_borders_are_the_standard_ones():
    assert split_borders(17_420, "ett_hour") == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}
    assert split_borders(69_680, "ett_minute") == {"train": (0, 34560), "val": (34464, 46080),
                                                   "test": (45984, 57600)}
    # Table 11 of the paper lists segment length − 96 + 1: Weather (36792, 5271, 10540), ECL (18317, 2633, 5261).
    for rows, expected in ((52_696, (36_792, 5_271, 10_540)), (26_304, (18_317, 2_633, 5_261))):
        borders = split_borders(rows, "custom")
        assert tuple(end - start - 96 + 1 for start, end in borders.values()) == expected


def test_etth1_sized_windows_and_train_only_scaling():
    frame = _frame(17_420, 7)
    frame.loc[8640:, "OT"] += 1000.0  # a shift after the train border must not leak into the scaler
    series = series_from_frame(frame, layout="ett_hour", name="ETTh1-like")
    splits = make_splits(series, pred_len=96)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8449, 2785, 2785)
    train_rows = frame.iloc[:8640, 1:].to_numpy()
    np.testing.assert_allclose(splits.scaler.mean, train_rows.mean(axis=0))
    np.testing.assert_allclose(splits.scaler.std, train_rows.std(axis=0))
    x, y = splits.test[0]
    expected = (frame.iloc[11424 + 96:11424 + 192, 1:].to_numpy() - train_rows.mean(0)) / train_rows.std(0)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-4)
    assert y[:, -1].mean() > 500  # OT's shift is visible in standardized units, not absorbed by the scaler


def test_standardizer_constant_column_and_round_trip():
    values = np.stack([np.arange(10.0), np.full(10, 3.0)], axis=1)
    scaler = Standardizer.fit(values)
    assert scaler.std[1] == 1.0
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(values)), values)
    assert Standardizer.from_dict(scaler.to_dict()).mean.tolist() == scaler.mean.tolist()


def test_custom_csv_moves_target_last(tmp_path):
    frame = _frame(300, 3)[["date", "OT", "v0", "v1"]]
    frame.to_csv(tmp_path / "mine.csv", index=False)
    series = read_series(tmp_path / "mine.csv")
    assert series.columns == ["v0", "v1", "OT"]
    np.testing.assert_allclose(series.values[:, -1], frame["OT"].to_numpy())


def test_standard_dataset_lookup(tmp_path):
    (tmp_path / "ETT-small").mkdir()
    _frame(14_400, 7).to_csv(tmp_path / "ETT-small" / "ETTh2.csv", index=False)
    series = load_standard(tmp_path, "etth2")
    assert series.name == "ETTh2" and series.layout == "ett_hour" and len(series.columns) == 7
    assert dataset_spec("electricity").name == "ECL"
    with pytest.raises(FileNotFoundError, match="no ETTh1.csv"):
        load_standard(tmp_path, "ETTh1")
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_spec("ILI")
    _frame(14_400, 5).to_csv(tmp_path / "ETTh1.csv", index=False)
    with pytest.raises(ValueError, match="right file"):
        load_standard(tmp_path, "ETTh1")


# ------------------------------------------------------------------------------- bad input

def test_nan_values_are_reported_not_dropped():
    frame = _frame(300, 3)
    frame.loc[17, "v1"] = np.nan
    frame.loc[40, "v1"] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf\) in \{'v1': 2\}, first at row 17"):
        series_from_frame(frame)


def test_non_numeric_column(tmp_path):
    frame = _frame(300, 3)
    frame["weather"] = "rain"
    frame.to_csv(tmp_path / "w.csv", index=False)
    with pytest.raises(ValueError, match=r"\['weather'\] are not numeric.*--columns"):
        read_series(tmp_path / "w.csv")
    assert read_series(tmp_path / "w.csv", columns=["v0", "OT"]).columns == ["v0", "OT"]


def test_missing_date_column_and_unsorted_dates():
    frame = _frame(300, 3)
    with pytest.raises(ValueError, match="no 'date' column"):
        series_from_frame(frame.rename(columns={"date": "time"}))
    assert series_from_frame(frame.rename(columns={"date": "time"}), date_column="time").date_column == "time"
    with pytest.raises(ValueError, match="not in increasing order"):
        series_from_frame(frame.iloc[::-1])


def test_series_shorter_than_lookback_plus_horizon():
    series = series_from_frame(_frame(1000, 3))
    make_splits(series, pred_len=96)  # 100 validation rows: enough for 96
    with pytest.raises(ValueError, match=r"too short for look-back 96 \+ horizon 192"):
        make_splits(series, pred_len=192)
    with pytest.raises(ValueError, match="needs 14400 rows"):
        split_borders(10_000, "ett_hour")


def test_model_rejects_wrong_input_shape():
    model = FFNetTS(FFNetTSConfig(num_variables=3, dim=8, pred_len=8))
    with pytest.raises(ValueError, match=r"expected input \(batch, 96, 3\)"):
        model(torch.randn(2, 96, 4))


# ------------------------------------------------------------------- presets, CLI, grid table

def test_presets_follow_the_release_scripts():
    assert preset_for("ETTh2", 720) == preset_for("etth2", 720)
    assert (preset_for("ETTh2", 720).dropout, preset_for("ETTh2", 720).head_dropout) == (0.85, 0.5)
    assert preset_for("ETTm2", 336).dropout == 0.7 and preset_for("ETTm1", 96).head_dropout == 0.0
    assert preset_for("Traffic", 96).learning_rate == 5e-5 and preset_for("ECL", 720).patience == 2
    assert (preset_for("Weather", 336).batch_size, preset_for("Weather", 96).batch_size) == (512, 256)
    assert preset_for("Exchange", 96).ffn_ratio == 1 and not preset_for("Exchange", 96).from_release


def test_cli_lists_match_the_data_module():
    assert set(commands.STANDARD) == set(STANDARD_DATASETS) and commands.HORIZONS == HORIZONS


def _cell(dataset, horizon, seed, mse, mae):
    return {"dataset": dataset, "horizon": horizon, "seed": seed, "test_mse": mse, "test_mae": mae}


def test_grid_table_aggregates_seeds_and_horizons():
    cells = [_cell("Weather", h, s, 0.1 * i + s - 2021, 0.2 * i) for i, h in enumerate(HORIZONS) for s in (2021, 2022)]
    cells += [_cell("ETTh1", 96, 2021, 0.4, 0.41)]
    rows = grid_rows(cells)
    assert [r["Dataset"] for r in rows] == ["ETTh1", "ETTh1"] + ["Weather"] * 5
    etth1_avg, weather_96, weather_avg = rows[1], rows[2], rows[-1]
    assert etth1_avg["Horizon"] == "avg(96)" and etth1_avg["Paper FFNet-TS MSE"] == ""
    assert weather_96["Seeds"] == "2" and weather_96["MSE"] == 0.5 and weather_96["MSE std"] == round(2 ** -0.5, 4)
    assert weather_avg["Horizon"] == "avg" and weather_avg["MSE"] == round(0.5 + 0.15, 4)
    assert (weather_avg["Paper FFNet-TS MSE"], weather_avg["Paper iTransformer MAE"]) == (0.244, 0.278)
    ett = [_cell(d, h, 2021, 0.3, 0.3) for d in ("ETTh1", "ETTh2", "ETTm1", "ETTm2") for h in HORIZONS]
    assert grid_rows(ett)[-1]["Dataset"] == "ETT (4 subsets)"
    assert grid_rows(ett)[-1]["Paper FFNet-TS MSE"] == 0.376


def test_future_dates_follow_the_series_frequency():
    monthly = pd.date_range("2020-01-01", periods=24, freq="MS")
    assert future_dates(monthly, 2).tolist() == [pd.Timestamp("2022-01-01"), pd.Timestamp("2022-02-01")]
    gappy = pd.DatetimeIndex(["2020-01-01", "2020-01-02", "2020-01-04", "2020-01-05"])  # no nameable frequency
    assert future_dates(gappy, 2).tolist() == [pd.Timestamp("2020-01-06"), pd.Timestamp("2020-01-07")]


def test_cli_module_imports_without_torch():
    code = "import sys, ffnet.timeseries.commands; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_registry_builds_the_default_model():
    assert count_parameters(create_model("ffnet_ts", num_variables=7)) == 499_104
    with pytest.raises(ValueError, match="unknown model"):
        create_model("patchtst", num_variables=7)


def test_convert_command_makes_an_authors_checkpoint_forecastable(tmp_path):
    frame = _frame(14_400, 7)
    frame.to_csv(tmp_path / "ETTh1.csv", index=False)
    config = FFNetTSConfig(num_variables=7, pred_len=24, dim=8, ffn_ratio=2)  # narrow, read off the weights
    source = randomize_bn(FFNetTS(config)).eval()
    torch.save(to_authors_layout(source.state_dict()), tmp_path / "checkpoint.pth")
    out = tmp_path / "converted.pt"
    main(["timeseries", "convert", "--checkpoint", str(tmp_path / "checkpoint.pth"), "--data", "ETTh1",
          "--data-root", str(tmp_path), "--out", str(out)])
    loaded = load_checkpoint(out)
    assert loaded.model.config.dim == 8 and loaded.model.config.pred_len == 24
    expected = evaluate(source, make_splits(read_series(tmp_path / "ETTh1.csv", layout="ett_hour"), 24).test,
                        512, torch.device("cpu"))
    assert loaded.info["metrics"] == pytest.approx(expected)
    forecast = forecast_csv(out, tmp_path / "ETTh1.csv")
    assert forecast.shape == (24, 8) and forecast["date"].iloc[0] == pd.Timestamp("2018-02-21 00:00")
