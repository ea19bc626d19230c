"""The ingest stage's limits are checked in its config, and an inf price read by ingest fails validation.
The inputs that used to fool ingest are tested in the core (tests/core/test_price_files.py)."""

from __future__ import annotations

import pytest

from tickerflow_model.config import IngestConfig
from tickerflow_model.price_files import read_prices


def _csv(tmp_path, text: str, name: str = "p.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("field, value", [("max_rows", 0), ("max_bytes", -1)])
def test_limits_are_validated_in_the_config(field, value):
    with pytest.raises(
        ValueError, match=f"{field}\n +Input should be greater than or equal to 1 .*input_value={value}"
    ):
        IngestConfig(**{field: value})


def test_inf_prices_fail_validation(tmp_path):
    from tickerflow.tasks.validate import run_suite
    from tickerflow_model.config import ValidateConfig

    frame, _, _, _ = read_prices(_csv(tmp_path, "Date,Ticker,Close\n2020-01-02,AAA,1\n2020-01-03,AAA,inf\n"))
    report = run_suite(frame, ValidateConfig(), 1, tmp_path / "docs")
    assert not report.success
    assert any(f.column == "close" and "close=inf" in f.line() for f in report.critical)
