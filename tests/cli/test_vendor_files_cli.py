"""A vendor's file through the real command line: the rows set aside and the split adjusted are one line each
on the console of a run that succeeds, and the same file's unadjusted split refuses a forecast in one line."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from cli_processes import cli_env, tickerflow

pytestmark = pytest.mark.slow

NULL_DAYS = 3
SPLIT_AT = 400  # AAPL's row from which the file's prices are at the new level


def _vendor_file(small_sample_csv, path) -> tuple[str, str, str]:
    """The sample's AAPL and MSFT as a vendor without an adjusted close writes them: three `null` days, a
    dividend line, and AAPL's prices before one day four times higher (an unadjusted 4:1 split)."""
    raw = pd.read_csv(small_sample_csv).drop(columns=["Adj Close"]).reset_index(drop=True)
    aapl = raw.index[raw["Ticker"] == "AAPL"]
    before = aapl[:SPLIT_AT]
    raw.loc[before, ["Open", "High", "Low", "Close"]] *= 4
    raw.loc[before, "Volume"] /= 4
    split_day = raw.loc[aapl[SPLIT_AT], "Date"]
    ratio = raw.loc[aapl[SPLIT_AT], "Close"] / raw.loc[aapl[SPLIT_AT - 1], "Close"]
    text = raw.astype(object)
    text.loc[aapl[100 : 100 + NULL_DAYS], ["Open", "High", "Low", "Close", "Volume"]] = "null"
    msft_day = raw.loc[raw.index[raw["Ticker"] == "MSFT"][200], "Date"]
    dividend = pd.DataFrame([{"Ticker": "MSFT", "Date": msft_day, "Open": "0.23 Dividend"}])
    pd.concat([text, dividend]).to_csv(path, index=False)
    return split_day, msft_day, f"{ratio:.3g}"


def test_a_vendor_file_is_cleaned_with_a_line_each_and_its_split_refused_in_one_line(tmp_path, small_sample_csv):
    data = tmp_path / "vendor.csv"
    split_day, dividend_day, ratio = _vendor_file(small_sample_csv, data)
    (tmp_path / "adjust.yaml").write_text(yaml.safe_dump({"ingest": {"splits": "adjust"}}))
    env = cli_env(tmp_path / "home")

    run = tickerflow(["run", "--data", str(data), "--epochs", "1", "--config", "adjust.yaml"], env, tmp_path)

    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stderr.splitlines()
    for words in (
        f"vendor.csv: dropped {NULL_DAYS} rows with no price",
        f"vendor.csv: set aside 1 dividend/split line, which are not prices: MSFT {dividend_day} (0.23 Dividend)",
        f"adjusted 1 probable unadjusted split (ingest.splits: adjust): AAPL 4:1 on {split_day}",
    ):
        said = [line for line in lines if words in line]
        assert len(said) == 1 and "WARNING" in said[0], run.stderr[-3000:]

    out = tmp_path / "f.parquet"
    forecast = tickerflow(["forecast", "--data", str(data), "--out", str(out)], env, tmp_path)

    console = forecast.stdout + forecast.stderr
    assert forecast.returncode == 1, console[-3000:]
    said = [line for line in forecast.stderr.splitlines() if line.startswith("tickerflow forecast: IngestError: ")]
    assert len(said) == 1, console[-3000:]
    assert "ticker AAPL goes from " in said[0] and f" on {split_day} (ratio {ratio}, " in said[0], said[0]
    assert "near a 4:1 split's 0.25" in said[0] and "ingest.splits: adjust" in said[0], said[0]
    assert "Traceback" not in console and console.count(said[0].split(": ", 2)[-1]) == 1, console[-3000:]
    assert not out.exists() and "--splits adjust" in said[0]

    forecast = tickerflow(["forecast", "--data", str(data), "--out", str(out), "--splits", "adjust"], env, tmp_path)

    assert forecast.returncode == 0, forecast.stderr[-3000:]
    assert f"AAPL 4:1 on {split_day}" in forecast.stderr and out.exists()
    aapl = pd.read_parquet(out).query("ticker == 'AAPL'")
    last_close = pd.read_csv(data).query("Ticker == 'AAPL'")["Close"].dropna().iloc[-1]
    assert aapl["base_price"].tolist() == pytest.approx([last_close] * len(aapl))  # after the split: as written
