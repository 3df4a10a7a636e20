"""FFNet-TS learns a real multivariate series: Seattle daily weather (2012–2015), shipped by vega_datasets."""
import pytest
import torch
from vega_datasets import local_data

from ffnet.timeseries.data import make_splits, read_series
from ffnet.timeseries.model import FFNetTS, FFNetTSConfig
from ffnet.timeseries.train import TrainConfig, repeat_last_value_loss, seed_everything, train_model, validation_loss


def test_trained_model_beats_repeat_last_value_on_validation(tmp_path):
    series = read_series(local_data.seattle_weather.filepath,
                         columns=["precipitation", "temp_max", "temp_min", "wind"])
    assert series.values.shape == (1461, 4)
    splits = make_splits(series, pred_len=96)
    baseline = repeat_last_value_loss(splits.val)
    seed_everything(0)
    # The released architecture at a small width (D = 8) so that it trains in seconds on a CPU.
    model = FFNetTS(FFNetTSConfig(num_variables=4, pred_len=96, dim=8, dropout=0.1))
    untrained = validation_loss(model, splits.val, 256, torch.device("cpu"))
    history = train_model(model, splits.train, splits.val,
                          TrainConfig(learning_rate=2e-3, batch_size=32, epochs=1, patience=1, lradj="constant"),
                          tmp_path, "cpu", progress=False)
    trained = validation_loss(model, splits.val, 32, torch.device("cpu"))
    assert trained == pytest.approx(history.best_val)  # the best-validation weights are restored
    assert trained < 0.8 * baseline, (trained, baseline)
    assert trained < 0.8 * untrained, (trained, untrained)
