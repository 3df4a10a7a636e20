"""Published long-term forecasting numbers (look-back 96, averaged over horizons 96/192/336/720).

From the paper's text version (arXiv 2406.02021): (MSE, MAE). The paper reports only averages:
no per-horizon or per-ETT-subset numbers exist for FFNet-TS. "ETT" is the mean of ETTh1, ETTh2,
ETTm1 and ETTm2. The iTransformer column is copied by the paper from the iTransformer paper.
"""
from __future__ import annotations

PAPER_AVERAGES: dict[str, dict[str, tuple[float, float]]] = {
    "ETT": {"FFNet-TS": (0.376, 0.390), "iTransformer": (0.383, 0.399)},
    "ECL": {"FFNet-TS": (0.182, 0.277), "iTransformer": (0.178, 0.270)},
    "Exchange": {"FFNet-TS": (0.359, 0.403), "iTransformer": (0.360, 0.403)},
    "Traffic": {"FFNet-TS": (0.494, 0.328), "iTransformer": (0.428, 0.282)},
    "Weather": {"FFNet-TS": (0.244, 0.274), "iTransformer": (0.258, 0.278)},
}

# The release's figure (docs/forecasting_results.png, an earlier paper version) differs here.
RELEASE_FIGURE_FFNET: dict[str, tuple[float, float]] = {
    "ECL": (0.184, 0.278),
    "Exchange": (0.343, 0.392),
    "Traffic": (0.517, 0.338),
}

ETT_SUBSETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2")

__all__ = ["PAPER_AVERAGES", "RELEASE_FIGURE_FFNET", "ETT_SUBSETS"]
