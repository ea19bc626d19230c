"""The chronological split: one calendar cut into train / validation / test, with a purge gap.

The split is by date, the same for every ticker: the first `train_fraction` of the trading days is the
training period, the next `val_fraction` validation, the rest test. No training window's input or
target day lies after the training period; a validation window's targets start more than `purge_gap`
business days after it and end inside the validation period; the same holds between validation and test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import TickerflowError


class WindowError(TickerflowError, ValueError):
    """No ticker has enough history to window, or the requested price column is missing."""


@dataclass(frozen=True)
class SplitDates:
    """Last day of the training and of the validation period, and the purge gap after each."""

    train_end: np.datetime64
    val_end: np.datetime64
    purge_gap: int

    def first_target_after(self, period_end: np.datetime64) -> np.datetime64:
        """Targets of the next split must fall strictly after this day."""
        day = np.datetime64(period_end, "D")
        return np.busday_offset(day, self.purge_gap, roll="forward").astype("datetime64[ns]")

    def to_dict(self) -> dict:
        return {
            "train_end": str(np.datetime64(self.train_end, "D")),
            "val_end": str(np.datetime64(self.val_end, "D")),
            "purge_gap_business_days": self.purge_gap,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SplitDates":
        return cls(
            np.datetime64(d["train_end"], "ns"), np.datetime64(d["val_end"], "ns"), int(d["purge_gap_business_days"])
        )


def split_dates(
    dates: pd.Series | np.ndarray, train_fraction: float, val_fraction: float, purge_gap: int
) -> SplitDates:
    """Cut the calendar of all trading days (every ticker's) into train / val / test periods."""
    days = np.unique(np.asarray(dates, dtype="datetime64[ns]"))
    n_train = max(int(len(days) * train_fraction), 1)
    n_val = max(int(len(days) * val_fraction), 1)
    if n_train + n_val >= len(days):
        raise WindowError(f"{len(days)} trading days are too few to split into train, validation and test")
    return SplitDates(days[n_train - 1], days[n_train + n_val - 1], purge_gap)


def assign_splits(dates: np.ndarray, base_index: np.ndarray, horizon: int, cut: SplitDates) -> dict[str, np.ndarray]:
    """Boolean masks over windows, from the dates of their first and last target day.

    train: every target (so every input) is on or before the training period's last day.
    val: targets start after train_end + purge gap and end on or before val_end. test: likewise after val_end.
    """
    first_target = dates[base_index + 1]
    last_target = dates[base_index + horizon]
    return {
        "train": last_target <= cut.train_end,
        "val": (first_target > cut.first_target_after(cut.train_end)) & (last_target <= cut.val_end),
        "test": first_target > cut.first_target_after(cut.val_end),
    }


def training_rows(dates: np.ndarray | pd.DataFrame, cut: SplitDates) -> int:
    """How many of a ticker's days (in date order) lie in the training period: a prefix of them.

    Takes the ticker's dates, or its rows as a frame with a `date` column.
    """
    if isinstance(dates, pd.DataFrame):
        dates = dates["date"].to_numpy("datetime64[ns]")
    return int(np.searchsorted(dates, cut.train_end, side="right"))
