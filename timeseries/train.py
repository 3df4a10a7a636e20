"""Training and evaluation, as the release's ``exp/exp_FFNet.py`` runs them.

* loss ``MSELoss`` on the horizon; Adam (default betas, no weight decay);
* learning rate per epoch (schedule ``type3`` as executed, see :func:`learning_rate_at`);
* early stopping on the validation loss (mean of per-batch MSEs, patience from the script,
  delta 0), best weights restored before testing; at most ``epochs`` epochs;
* test metrics: MSE and MAE over all windows × T × M on standardized values.

Each epoch writes a resume state atomically (``train_state.pt``: weights, optimizer, RNG, early
stopping counters, best weights; plain dicts, lists, numbers, strings and tensors only, so it loads
weights-only); rerunning with the same ``run_dir`` continues the run. ``fit`` holds ``run_dir``
with :class:`ffnet.engine.files.RunLock`: a second run into the same folder is refused. The
final checkpoint (``checkpoint.pt``) holds what ``ffnet ts forecast`` needs: config, weights,
scaler, column names.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ffnet.engine.checkpoints import load_file, load_state_dict
from ffnet.engine.files import RunLock, save_atomic
from ffnet.timeseries.baselines import evaluate_baselines
from ffnet.timeseries.data import ForecastSplits, ForecastWindows, Series, Standardizer, make_splits
from ffnet.timeseries.model import FFNetTS, FFNetTSConfig
from ffnet.timeseries.presets import preset_for

CHECKPOINT_FORMAT = "ffnet-ts/1"
STATE_FILE = "train_state.pt"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 1e-4
    batch_size: int = 512
    epochs: int = 100
    patience: int = 20
    seed: int = 2021
    lradj: str = "type3"
    num_workers: int = 0

    def __post_init__(self):
        if self.lradj not in ("type3", "constant", "plateau"):
            raise ValueError(f"unknown lradj {self.lradj!r}: use 'type3' (the release's), 'plateau' (the custom "
                             "preset's) or 'constant'")
        if self.batch_size < 1 or self.epochs < 1 or self.patience < 1:
            raise ValueError("batch_size, epochs and patience must be positive")


def paper_configs(dataset: str, num_variables: int, horizon: int, seq_len: int = 96,
                  seed: int = 2021) -> tuple[FFNetTSConfig, TrainConfig]:
    """Model and training settings of the release's script for ``dataset`` at ``horizon``."""
    preset = preset_for(dataset, horizon)
    model = FFNetTSConfig(num_variables=num_variables, pred_len=horizon, seq_len=seq_len, ffn_ratio=preset.ffn_ratio,
                          dropout=preset.dropout, head_dropout=preset.head_dropout)
    train = TrainConfig(learning_rate=preset.learning_rate, batch_size=preset.batch_size, patience=preset.patience,
                        seed=seed, lradj=preset.lradj, epochs=preset.epochs)
    return model, train


def learning_rate_at(epoch: int, config: TrainConfig, history: "TrainHistory | None" = None) -> float:
    """Learning rate of 1-based ``epoch``.

    ``type3`` as the release executes it: epoch 1 runs at lr/25 (constructing ``OneCycleLR``
    sets the optimizer to its initial lr, max_lr/25), epochs 2–4 at lr, then ×0.9 per epoch.
    ``plateau``: the previous epoch's lr, halved when the epochs without validation improvement
    (``history.bad_epochs``) reach a positive multiple of 2.
    """
    lr = config.learning_rate
    if config.lradj == "constant":
        return lr
    if config.lradj == "plateau":
        if history is None or not history.epochs:
            return lr
        previous = history.epochs[-1]["lr"]
        return previous / 2 if history.bad_epochs and history.bad_epochs % 2 == 0 else previous
    if epoch == 1:
        return lr / 25
    return lr if epoch <= 4 else lr * 0.9 ** (epoch - 4)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def loader(windows: ForecastWindows, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
           num_workers: int = 0) -> DataLoader:
    return DataLoader(windows, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=False,
                      num_workers=num_workers)


@torch.no_grad()
def validation_loss(model: nn.Module, windows: ForecastWindows, batch_size: int, device: torch.device) -> float:
    """Mean over batches of the batch MSE (the release's ``vali``)."""
    model.eval()
    losses = [nn.functional.mse_loss(model(x.to(device)), y.to(device)).item()
              for x, y in loader(windows, batch_size)]
    return float(np.mean(losses))


@torch.no_grad()
def evaluate(model: nn.Module, windows: ForecastWindows, batch_size: int, device: torch.device) -> dict[str, float]:
    """MSE and MAE over all windows × horizon × variables (standardized values)."""
    model.eval()
    squared = absolute = 0.0
    count = 0
    for x, y in loader(windows, batch_size):
        error = (model(x.to(device)) - y.to(device)).double()
        squared += error.square().sum().item()
        absolute += error.abs().sum().item()
        count += error.numel()
    return {"mse": squared / count, "mae": absolute / count}


def repeat_last_value_loss(windows: ForecastWindows, batch_size: int = 1024) -> float:
    """Validation loss (mean of per-batch MSEs) of forecasting every step as the last observed value."""
    losses = [nn.functional.mse_loss(x[:, -1:, :].expand_as(y), y).item() for x, y in loader(windows, batch_size)]
    return float(np.mean(losses))


def train_one_epoch(model: nn.Module, windows: ForecastWindows, optimizer: torch.optim.Optimizer,
                    config: TrainConfig, epoch: int, device: torch.device, progress: bool = True,
                    max_batches: int | None = None) -> float:
    """One pass over the shuffled training windows (or its first ``max_batches``); returns the mean batch loss."""
    model.train()
    generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    batches = loader(windows, config.batch_size, shuffle=True, generator=generator, num_workers=config.num_workers)
    losses = []
    for step, (x, y) in enumerate(tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not progress)):
        if max_batches is not None and step >= max_batches:
            break
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x.to(device)), y.to(device))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses))


@dataclass
class TrainHistory:
    epochs: list[dict] = field(default_factory=list)
    best_val: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.epochs)


def _state_signature(model: FFNetTS, config: TrainConfig, train: ForecastWindows, val: ForecastWindows,
                     data_id: dict | None) -> dict:
    signature = asdict(config)
    signature.pop("epochs")  # a run may be continued with a larger epoch budget
    signature.pop("num_workers")
    signature["model"] = model.config.to_dict()
    signature["windows"] = [len(train), len(val)]
    signature["data"] = data_id
    return json.loads(json.dumps(signature))  # plain types, as they come back from a weights-only load


def train_model(model: FFNetTS, train: ForecastWindows, val: ForecastWindows, config: TrainConfig,
                run_dir: str | Path, device: torch.device | str | None = None, progress: bool = True,
                data_id: dict | None = None) -> TrainHistory:
    """Train with early stopping, resuming from ``run_dir/train_state.pt`` when present.

    A resume state is only used if the model, the training settings (except the epoch budget), the
    window counts and ``data_id`` (e.g. dataset name and columns) match. On return ``model`` holds
    the best-validation weights.
    """
    device = torch.device(device) if device is not None else default_device()
    run_dir = Path(run_dir)
    state_path = run_dir / STATE_FILE
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history = TrainHistory()
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    signature = _state_signature(model, config, train, val, data_id)
    if state_path.is_file():
        state = load_file(state_path, map_location=device)
        if state["signature"] != signature:
            raise ValueError(f"{run_dir} holds a run with other settings ({state['signature']}); use another run "
                             "directory or delete it to start over")
        load_state_dict(model, state["model"], source=str(state_path))
        optimizer.load_state_dict(state["optimizer"])
        best_weights = state["best_model"]
        history = TrainHistory(**state["history"])
        torch.set_rng_state(state["rng"].cpu())
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([r.cpu() for r in state["cuda_rng"]])
    bar = tqdm(total=config.epochs, initial=min(history.epochs_run, config.epochs), desc="train", unit="epoch",
               disable=not progress)
    while history.epochs_run < config.epochs and not history.stopped_early:
        epoch = history.epochs_run + 1
        lr = learning_rate_at(epoch, config, history)
        for group in optimizer.param_groups:
            group["lr"] = lr
        start = time.perf_counter()
        train_loss = train_one_epoch(model, train, optimizer, config, epoch, device, progress)
        seconds = time.perf_counter() - start
        val_loss = validation_loss(model, val, config.batch_size, device)
        history.epochs.append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
                               "seconds": seconds})
        if val_loss <= history.best_val:
            history.best_val, history.best_epoch, history.bad_epochs = val_loss, epoch, 0
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            history.bad_epochs += 1
            history.stopped_early = history.bad_epochs >= config.patience
        save_atomic({"signature": signature, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "best_model": best_weights, "history": json.loads(json.dumps(asdict(history))),
                     "rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                    state_path)
        bar.update(1)
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=f"{history.best_val:.4f}")
    bar.close()
    model.load_state_dict(best_weights)
    return history


@dataclass
class RunResult:
    """One trained configuration: validation/test metrics and where its checkpoint is."""

    dataset: str
    horizon: int
    seed: int
    val_loss: float
    test_mse: float
    test_mae: float
    best_epoch: int
    epochs_run: int
    train_seconds: float
    checkpoint: str
    baselines: dict | None = None  # evaluate_baselines() on the same test windows


def fit(series: Series, model_config: FFNetTSConfig, train_config: TrainConfig, run_dir: str | Path,
        device: torch.device | str | None = None, progress: bool = True, baselines: bool = True,
        season: int | None = None) -> RunResult:
    """Split and scale ``series``, train (resumable), test, and write ``run_dir/checkpoint.pt``.

    With ``baselines`` the four reference forecasters of :mod:`ffnet.timeseries.baselines`
    (seasonal period ``season``, or detected) are fitted and tested on the same windows.
    """
    device = torch.device(device) if device is not None else default_device()
    if len(series.columns) != model_config.num_variables:
        raise ValueError(f"the model expects {model_config.num_variables} variables, {series.name} has "
                         f"{len(series.columns)}")
    splits = make_splits(series, model_config.pred_len, model_config.seq_len)
    seed_everything(train_config.seed)
    model = FFNetTS(model_config)
    data_id = {"dataset": series.name, "columns": series.columns, "rows": len(series.values)}
    with RunLock(run_dir):
        history = train_model(model, splits.train, splits.val, train_config, run_dir, device, progress, data_id)
        metrics = evaluate(model, splits.test, train_config.batch_size, device)
        reference = evaluate_baselines(splits, "test", season, train_config.seed) if baselines else None
        checkpoint = Path(run_dir) / CHECKPOINT_FILE
        save_checkpoint(checkpoint, model, splits, train_config, metrics, history, reference)
    return RunResult(series.name, model_config.pred_len, train_config.seed, history.best_val, metrics["mse"],
                     metrics["mae"], history.best_epoch, history.epochs_run,
                     sum(e["seconds"] for e in history.epochs), str(checkpoint), reference)


def save_checkpoint(path: str | Path, model: FFNetTS, splits: ForecastSplits, train_config: TrainConfig | None,
                    metrics: dict[str, float] | None, history: TrainHistory | None = None,
                    baselines: dict | None = None) -> None:
    """The deployable checkpoint: config, weights, the train-fitted scaler and the column names."""
    series = splits.series
    save_atomic({
        "format": CHECKPOINT_FORMAT,
        "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "scaler": splits.scaler.to_dict(),
        "columns": series.columns,
        "date_column": series.date_column,
        "dataset": series.name,
        "layout": series.layout,
        "train_config": None if train_config is None else asdict(train_config),
        "metrics": None if metrics is None else {k: float(v) for k, v in metrics.items()},
        "history": None if history is None else json.loads(json.dumps(asdict(history))),
        "baselines": baselines,
    }, path)


@dataclass
class LoadedCheckpoint:
    model: FFNetTS
    scaler: Standardizer
    columns: list[str]
    date_column: str
    info: dict


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> LoadedCheckpoint:
    """Load a ``checkpoint.pt`` written by :func:`fit` (or ``ffnet ts convert``), in eval mode."""
    path = Path(path)
    payload = load_file(path, map_location=device)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an FFNet-TS checkpoint of this package (no scaler or column names); a raw "
                         "state_dict such as the authors' checkpoint.pth must first be converted with "
                         "`ffnet ts convert --authors-checkpoint FILE --data NAME --data-root DIR --out C`")
    model = FFNetTS(FFNetTSConfig.from_dict(payload["model_config"]))
    load_state_dict(model, payload["state_dict"], source=str(path))
    model.to(device).eval()
    return LoadedCheckpoint(model, Standardizer.from_dict(payload["scaler"]), list(payload["columns"]),
                            payload["date_column"], payload)


__all__ = [
    "TrainConfig", "paper_configs", "learning_rate_at", "seed_everything", "default_device", "validation_loss",
    "evaluate", "repeat_last_value_loss", "train_one_epoch", "TrainHistory",
    "train_model", "RunResult", "fit", "save_checkpoint", "LoadedCheckpoint", "load_checkpoint",
]
