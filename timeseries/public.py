"""Real public series that ship inside Python packages, for trying the ``custom`` defaults.

Nothing is downloaded: the data are files inside ``vega_datasets`` and ``statsmodels``.

| name | frequency | variables | rows | source |
| --- | --- | --- | --- | --- |
| ``seattle-temps`` | hourly | 1 (temp) | 8,759 | vega_datasets ``seattle-temps`` (2010) |
| ``city-temps`` | hourly | 2 (Seattle, San Francisco) | 8,759 | vega_datasets ``seattle-temps`` + ``sf-temps`` |
| ``seattle-weather`` | daily | 4 (precipitation, temp max/min, wind) | 1,461 | vega_datasets ``seattle-weather`` |
| ``co2`` | weekly | 1 (co2) | 2,284 | statsmodels ``co2`` (Mauna Loa; 59 missing weeks interpolated linearly) |
"""
from __future__ import annotations

import pandas as pd

from ffnet.timeseries.data import Series, series_from_frame

PUBLIC_SERIES = ("seattle-temps", "city-temps", "seattle-weather", "co2")


def _vega(name: str) -> pd.DataFrame:
    try:
        from vega_datasets import local_data
    except ImportError:
        raise ValueError("the public series need the vega_datasets package: pip install 'ffnet[timeseries]'") from None
    return local_data(name)


def public_frame(name: str) -> pd.DataFrame:
    """The series ``name`` as a frame with a ``date`` column and numeric columns."""
    if name == "seattle-temps":
        return _vega("seattle-temps")[["date", "temp"]]
    if name == "city-temps":
        seattle = _vega("seattle-temps").rename(columns={"temp": "seattle"})
        sf = _vega("sf-temps").rename(columns={"temp": "san_francisco"})
        return seattle.merge(sf, on="date", validate="one_to_one")[["date", "seattle", "san_francisco"]]
    if name == "seattle-weather":
        return _vega("seattle-weather")[["date", "precipitation", "temp_max", "temp_min", "wind"]]
    if name == "co2":
        from statsmodels.datasets import co2

        frame = co2.load_pandas().data.interpolate(method="linear")
        return frame.rename_axis("date").reset_index()
    raise ValueError(f"unknown public series {name!r}: choose from {', '.join(PUBLIC_SERIES)}")


def load_public(name: str) -> Series:
    """A validated :class:`~ffnet.timeseries.data.Series` of one public series (70/10/20 split)."""
    return series_from_frame(public_frame(name), name=name, target=None, source=f"the public series {name!r}")


__all__ = ["PUBLIC_SERIES", "public_frame", "load_public"]
