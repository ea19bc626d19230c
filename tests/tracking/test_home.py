"""The home folder: its boundary, mapped window tasks that publish at commit, ticker symbols never paths."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from prefect.logging import disable_run_logger
from price_frames import make_prices

import tickerflow_model.window_dataset as window_mod
from tickerflow.tasks.ingest import write_snapshot
from tickerflow.tasks.window import commit_windows, plan_windows, write_window_part
from tickerflow.tracking.home import home_subdir
from tickerflow_model.config import WindowConfig
from tickerflow_model.price_files import load_prices
from tickerflow_model.window_dataset import build_window_dataset, load_window_dataset, read_split

CONFIG = WindowConfig(lookback=10, horizon=2, min_history=100, part_rows=300)  # one ticker per part
ODD_SYMBOLS = ("BRK.B", "^GSPC", "../../x", "A/B", "..", "C:\\evil", "EURUSD=X")


def _all_files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_home_subdir_refuses_to_leave_the_home(tf_home):
    assert home_subdir("windows", "abc") == tf_home / "windows" / "abc"
    with pytest.raises(ValueError, match="outside TICKERFLOW_HOME"):
        home_subdir("..", "elsewhere")


def test_mapped_window_tasks_publish_nothing_until_commit(tf_home):
    """Mapped part tasks write into a hidden scratch folder; only the commit task's rename publishes it."""
    frame = make_prices(300, tickers=("AAA", "BBB"))
    plan = plan_windows.fn(frame, CONFIG, "src")
    aaa, bbb = window_mod.part_groups(frame, plan)
    assert plan.parts == (("AAA",), ("BBB",))
    first = write_window_part.fn(aaa, 0, plan)

    # a run that dies here (the second part's task failed) left no dataset a later run would trust
    assert load_window_dataset(tf_home / "windows" / plan.dataset_id) is None
    assert os.path.basename(plan.scratch).startswith(".")

    second = write_window_part.fn(bbb, 1, plan)
    with disable_run_logger():
        ds = commit_windows.fn(plan, [first, second])
    assert load_window_dataset(tf_home / "windows" / plan.dataset_id).manifest == ds.manifest
    assert not os.path.exists(plan.scratch)


def test_ticker_symbols_are_data_never_paths(tf_home, tmp_path):
    """Even symbols validation would reject go nowhere outside the home and never name a file."""
    frame = make_prices(300, tickers=ODD_SYMBOLS)
    source = tmp_path / "in" / "odd.csv"
    source.parent.mkdir()
    frame.to_csv(source, index=False)
    outside_before = _all_files(tmp_path)

    loaded, source_hash, _ = load_prices(str(source))
    write_snapshot(loaded, source_hash)
    ds = build_window_dataset(loaded, CONFIG, source_hash, home_subdir("windows"))

    assert _all_files(tmp_path) == outside_before + sorted(
        os.path.relpath(os.path.join(tf_home, f), tmp_path) for f in _all_files(tf_home)
    )
    for path in _all_files(tf_home):
        assert not any(s in path for s in ("BRK", "GSPC", "evil", "EURUSD", "x.parquet")), path
    assert set(ds.manifest["tickers"]) == set(ODD_SYMBOLS)
    _, _, index = read_split(ds, "train")
    assert set(index["ticker"]) == set(ODD_SYMBOLS)
    snapshot = pd.read_parquet(tf_home / "raw" / source_hash / "prices.parquet")
    assert sorted(snapshot["ticker"].unique()) == sorted(ODD_SYMBOLS)
    assert np.isfinite(read_split(ds, "test")[0]).all()
