"""Atomic writes (core): a dataset or file is whole or absent, and content hashes are stable."""

from __future__ import annotations

import pytest
from price_frames import make_prices

import tickerflow_model.window_dataset as window_mod
from tickerflow_model.atomic_io import atomic_directory, stable_hash
from tickerflow_model.config import WindowConfig
from tickerflow_model.window_dataset import build_window_dataset

CONFIG = WindowConfig(lookback=10, horizon=2, min_history=100, part_rows=300)  # one ticker per part
ODD_SYMBOLS = ("BRK.B", "^GSPC", "../../x", "A/B", "..", "C:\\evil", "EURUSD=X")


def test_stable_hash_ignores_key_order_and_sees_values():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_atomic_directory_leaves_nothing_on_error_and_replaces_on_success(tmp_path):
    area = tmp_path / "area"
    final = area / "ds"
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as scratch:
            (scratch / "half.parquet").write_text("half")
            raise RuntimeError("disk full")
    assert list(area.iterdir()) == []

    final.mkdir()
    (final / "old").write_text("old")
    with atomic_directory(final) as scratch:
        (scratch / "new").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new"] and [p.name for p in area.iterdir()] == ["ds"]


def test_window_build_interrupted_mid_write_leaves_no_readable_dataset(tf_home, monkeypatch):
    frame = make_prices(300, tickers=("AAA", "BBB", "CCC"))
    real = window_mod.write_part
    calls = []

    def crash_on_second_part(group, index, plan):
        calls.append(index)
        if index == 1:
            raise OSError("no space left on device")
        return real(group, index, plan)

    monkeypatch.setattr(window_mod, "write_part", crash_on_second_part)
    with pytest.raises(OSError, match="no space left"):
        build_window_dataset(frame, CONFIG, "src", tf_home / "windows")
    assert calls == [0, 1]  # the first part was on disk when it crashed
    assert list((tf_home / "windows").iterdir()) == []

    monkeypatch.setattr(window_mod, "write_part", real)
    ds = build_window_dataset(frame, CONFIG, "src", tf_home / "windows")
    assert len(ds.manifest["tickers"]) == 3


def test_write_file_atomic_keeps_the_old_file_when_a_write_fails(tmp_path):
    from tickerflow_model.atomic_io import write_file_atomic

    target = tmp_path / "out" / "forecasts.parquet"
    write_file_atomic(target, lambda tmp: tmp.write_bytes(b"first"))

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_file_atomic(target, broken)
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["forecasts.parquet"]
