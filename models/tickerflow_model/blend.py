"""The blend: the GRU's and garch's quantiles averaged, a forecaster of its own that the gate can pick.

Quantile averaging (Vincentization: Lichtendahl, Grushka-Cockayne & Winkler 2013) of two forecasters whose
errors differ: the network reads the range, the gap, long memory and the market; GJR-GARCH-t reads the
returns' own recursion. Each level's cumulative log return is the mean of the two, so the blend's quantiles
stay non-decreasing, and priced on the same base it is the geometric mean of the two price quantiles. Equal
weights, fixed: a weight fit on the validation split would chase the calmer years (docs/BENCHMARKS.md, "The
levers").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic_io import stable_hash
from .baselines import BaselineForecaster
from .forecaster import Forecaster
from .quantiles import quantile_columns

BLEND = "blend"  # the forecaster's name in an evaluation, and its `forecaster` tag in the registry
WEIGHT = 0.5  # the GRU's share of each quantile's log return; garch has the rest
GRU_FOLDER, GARCH_FOLDER, SPEC_FILE = "gru", "garch", "blend.json"


def blend_quantiles(gru: np.ndarray, garch: np.ndarray, weight: float = WEIGHT) -> np.ndarray:
    """(..., Q) cumulative log-return quantiles of the two -> the blend's, the same shape."""
    return weight * np.asarray(gru) + (1.0 - weight) * np.asarray(garch)


@dataclass(frozen=True)
class BlendSpec:
    """What the blend's forecast needs besides its two parts: the weight, and the levels and price both share."""

    weight: float
    quantiles: tuple[float, ...]
    price_column: str

    @property
    def levels(self) -> tuple[float, ...]:
        return self.quantiles


class BlendForecaster:
    """The GRU and the garch baseline, forecasting together: prices in, the averaged quantiles in prices out."""

    def __init__(self, gru: Forecaster, garch: BaselineForecaster, weight: float = WEIGHT) -> None:
        if tuple(gru.spec.quantiles) != tuple(garch.spec.levels):
            raise ValueError(f"the GRU's levels {gru.spec.quantiles} and garch's {garch.spec.levels} must be the same")
        self.gru, self.garch = gru, garch
        self.spec = BlendSpec(weight, tuple(gru.spec.quantiles), gru.spec.price_column)

    @property
    def min_rows(self) -> int:
        return max(self.gru.min_rows, self.garch.min_rows)

    def digest(self) -> str:
        return stable_hash(
            {"kind": BLEND, "weight": self.spec.weight, "parts": [self.gru.digest(), self.garch.digest()]}
        )

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.gru.save(folder / GRU_FOLDER)
        self.garch.save(folder / GARCH_FOLDER)
        (folder / SPEC_FILE).write_text(json.dumps({"weight": self.spec.weight}))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> BlendForecaster:
        folder = Path(folder)
        weight = float(json.loads((folder / SPEC_FILE).read_text())["weight"])
        return cls(Forecaster.load(folder / GRU_FOLDER), BaselineForecaster.load(folder / GARCH_FOLDER), weight)

    def forecast_frame(self, prices: pd.DataFrame, all_dates: bool = False) -> pd.DataFrame:
        """Raw prices -> the same columns as either part's, for the tickers and days both forecast."""
        keys = ["ticker", "date", "horizon", *(["base_date"] if all_dates else [])]
        gru = self.gru.forecast_frame(prices, all_dates)
        garch = self.garch.forecast_frame(prices, all_dates)
        both = gru.merge(garch, on=keys, suffixes=("", "_garch"), validate="one_to_one")
        if both.empty:
            raise ValueError(f"no ticker has the {self.min_rows} rows of history the blend needs")
        base = both["base_price"].to_numpy(np.float64)[:, None]  # (rows, 1): both priced on the same close
        w = self.spec.weight
        for column in ["forecast_close", *quantile_columns(self.spec.quantiles)]:
            mine, theirs = both[column].to_numpy(np.float64), both[f"{column}_garch"].to_numpy(np.float64)
            both[column] = base[:, 0] * np.exp(
                blend_quantiles(np.log(mine / base[:, 0]), np.log(theirs / base[:, 0]), w)
            )
        return both[list(gru.columns)]
