"""The validate stage's cached result: a small verdict (no pickled frame), keyed on the suite's version."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
from price_frames import make_prices

from tickerflow.tasks import validate as validate_mod
from tickerflow.tasks.validate import validate, validation_id
from tickerflow_model.config import ValidateConfig


def test_the_cached_report_does_not_carry_the_frame():
    frame = make_prices(n_days=3000, tickers=("AAA", "BBB", "CCC"))
    report = validate_mod.ValidationReport(True, frame, [], 10, {}, "/d", "/d/index.html")
    restored = pickle.loads(pickle.dumps(report))
    assert restored.frame is None and restored.evaluated == 10
    assert len(pickle.dumps(report)) < 2_000 < frame.memory_usage(deep=True).sum()


def test_the_suite_version_is_part_of_the_key(monkeypatch):
    before = validation_id("abc", ValidateConfig(), 100)
    monkeypatch.setattr(validate_mod, "SUITE_VERSION", validate_mod.SUITE_VERSION + 1)
    assert validation_id("abc", ValidateConfig(), 100) != before


def test_a_cached_verdict_applies_to_the_frame_of_this_run(prefect_harness):
    from prefect import flow

    frame = pd.concat([make_prices(n_days=120), make_prices(n_days=10, tickers=("SHORT",), seed=3)], ignore_index=True)

    @flow
    def twice(frame):
        first = validate(frame, ValidateConfig(), 50, "hash-1")
        second_state = validate_mod.validate_prices(frame, ValidateConfig(), 50, "hash-1", return_state=True)
        second = validate(frame, ValidateConfig(), 50, "hash-1")
        return first, second_state.name, second

    first, second_state, second = twice(frame)
    assert second_state == "Cached"
    assert first.dropped_tickers == second.dropped_tickers == {"SHORT": 10}
    for report in (first, second):
        assert sorted(report.frame["ticker"].unique()) == ["AAA", "BBB"]
        np.testing.assert_array_equal(report.frame["close"], frame[frame["ticker"] != "SHORT"]["close"])
