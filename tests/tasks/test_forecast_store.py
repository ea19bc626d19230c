"""The forecast store: partitioned Parquet at any fsspec URI; a rerun of a day replaces, never duplicates."""

from __future__ import annotations

import pandas as pd
import pytest

from tickerflow.tasks.forecast_store import append_rows, read_store, store_rows
from tickerflow_model.config import ForecastStoreConfig
from tickerflow_model.quantiles import LEGACY_LEVELS as QUANTILE_LEVELS  # the seven levels the rows below spell out


def batch(base: str, value: float, quantiles: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    prices = pd.DataFrame(
        {
            "ticker": ["A/B", "A/B", "C"],
            "date": pd.to_datetime([f"{base}", f"{base}", f"{base}"]) - pd.to_timedelta([1, 0, 0], "D"),
            "close": [9.0, 10.0, 20.0],
        }
    )
    forecasts = pd.DataFrame(
        {
            "ticker": ["A/B", "C"],
            "date": pd.to_datetime(base) + pd.offsets.BDay(1),
            "horizon": 1,
            "forecast_close": [value, value * 2],
        }
    )
    if quantiles:
        for i, col in enumerate(("q05", "q10", "q25", "q50", "q75", "q90", "q95")):
            forecasts[col] = value + i
    return forecasts, prices


@pytest.mark.parametrize("uri", [None, "memory://tickerflow-test-store"])
def test_append_read_and_rerun_of_a_day(uri, tf_home):
    config = ForecastStoreConfig(uri=uri)
    for base, value in (("2024-01-02", 11.0), ("2024-01-03", 12.0), ("2024-01-03", 13.0)):  # the 3rd reruns a day
        forecasts, prices = batch(base, value, quantiles=base == "2024-01-03")
        levels = QUANTILE_LEVELS if base == "2024-01-03" else ()
        append_rows(store_rows(forecasts, prices, "m", "4", "gru", levels=levels), config)

    stored = read_store(config).sort_values(["base_date", "ticker"]).reset_index(drop=True)
    assert len(stored) == 4
    assert stored["forecast_close"].tolist() == [11.0, 22.0, 13.0, 26.0]
    assert stored["base_close"].tolist() == [10.0, 20.0, 10.0, 20.0]  # each ticker's last close
    assert stored["ticker"].tolist() == ["A/B", "C", "A/B", "C"]  # symbols are data, not folders
    assert stored["q05"].isna().tolist() == [True, True, False, False]
    assert stored["quantile_levels"].tolist() == [
        "",
        "",
        "0.05,0.1,0.25,0.5,0.75,0.9,0.95",
        "0.05,0.1,0.25,0.5,0.75,0.9,0.95",
    ]
    assert set(stored["model_version"]) == {"4"} and set(stored["forecaster"]) == {"gru"}
    assert len(read_store(config, since=pd.Timestamp("2024-01-03"))) == 2
    if uri is None:
        assert sorted(p.name for p in (tf_home / "forecast_store").iterdir()) == [
            "base_date=2024-01-02",
            "base_date=2024-01-03",
        ]


def test_the_store_keeps_the_model_levels_columns_and_refuses_forecasts_that_lack_them(tf_home):
    config = ForecastStoreConfig()
    forecasts, prices = batch("2024-01-03", 10.0, quantiles=False)
    levels = (0.1, 0.5, 0.9)
    for i, col in enumerate(("q10", "q50", "q90")):
        forecasts[col] = 10.0 + i
    append_rows(store_rows(forecasts, prices, "m", "5", "gru", levels=levels), config)
    stored = read_store(config)
    assert [c for c in stored.columns if c.startswith("q") and c != "quantile_levels"] == ["q10", "q50", "q90"]
    assert set(stored["quantile_levels"]) == {"0.1,0.5,0.9"}
    with pytest.raises(ValueError, match=r"lack the column\(s\) \['q05', 'q95'\]"):
        store_rows(forecasts, prices, "m", "5", "gru", levels=(0.05, 0.1, 0.5, 0.9, 0.95))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "someday", "--end", "2024-01-31"], "--start must be a date (YYYY-MM-DD), got 'someday'"),
        (["--start", "2024-01-01", "--end", "2024-01-31", "--retrain-every", "-2"], "--retrain-every must be >= 0"),
    ],
)
def test_replay_rejects_bad_arguments_in_one_line(argv, message, tmp_path, capsys):
    from tickerflow.cli import main

    assert main(["replay", "--data", str(tmp_path / "p.csv"), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_blank_store_uri_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="(?s)uri.*must not be blank"):
        ForecastStoreConfig(uri="  ")
    assert ForecastStoreConfig().uri is None  # unset: the home folder
