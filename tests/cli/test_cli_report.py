"""The CLI's metrics table: point and distribution columns, every ticker or only the best and worst."""

from __future__ import annotations

from tickerflow.cli.metrics_table import TICKERS_SHOWN, format_metrics


def block(rmse: float, pinball: float | None = None) -> dict:
    out = {"rmse": rmse, "skill": 1 - rmse}
    if pinball is not None:
        out.update({"pinball": pinball, "coverage_80": 0.8, "coverage_90": 0.9})
    return out


def summary(n_tickers: int) -> dict:
    # the model's pinball improves on static_quantile by i% on ticker Ti
    per_ticker = {
        f"T{i:02d}": {
            "model": block(1.0, 1 - i / 100),
            "naive": block(1.0),
            "static_quantile": block(1.0, 1.0),
            "garch": block(1.0, 0.99),
        }
        for i in range(n_tickers)
    }
    return {
        "metrics": {"model": block(0.9, 0.5), "naive": block(1.0), "static_quantile": block(1.0, 0.6)},
        "per_ticker": per_ticker,
    }


def test_table_shows_distribution_scores_and_a_dash_where_a_forecaster_has_none():
    lines = format_metrics(**summary(3)).splitlines()
    assert lines[0].split() == ["scope", "forecaster", "rmse", "skill", "pinball", "coverage_80", "coverage_90"]
    naive = next(line for line in lines if line.split()[:2] == ["all", "naive"]).split()
    assert naive[2:] == ["1.0000", "0.0000", "-", "-", "-"]
    model = next(line for line in lines if line.split()[:2] == ["all", "model"]).split()
    assert model[4] == "0.5000"
    assert {line.split()[0] for line in lines[1:-1]} == {"all", "T00", "T01", "T02"}
    # every forecaster overall; per ticker the model beside naive and the rivals, not every baseline
    assert {line.split()[1] for line in lines[1:-1] if line.startswith("T00")} == {"model", "naive", "garch"}
    assert {line.split()[1] for line in lines[1:-1] if line.startswith("all")} == {"model", "naive", "static_quantile"}
    assert "metrics_per_ticker.csv" in lines[-1]


def test_many_tickers_show_only_the_best_and_the_worst():
    text = format_metrics(**summary(40))
    scopes = {line.split()[0] for line in text.splitlines()[1:-1]}
    best = {f"T{i:02d}" for i in range(40 - TICKERS_SHOWN, 40)}
    worst = {f"T{i:02d}" for i in range(TICKERS_SHOWN)}
    assert scopes == {"all"} | best | worst
    assert "of 40 tickers" in text.splitlines()[-1]


def test_tiny_values_show_their_digits_instead_of_zero():
    """Prices around 1e-300 have errors around 1e-301: 0.0000 would read as a perfect forecast."""
    tiny = {"metrics": {"model": {"rmse": 1.2345e-301, "skill": 0.0}, "naive": {"rmse": 2.5e-301, "skill": 0.0}}}
    model = next(
        line for line in format_metrics(**tiny, per_ticker={}).splitlines() if line.split()[:2] == ["all", "model"]
    ).split()
    assert model[2:] == ["1.234e-301", "0.0000"] or model[2:] == ["1.235e-301", "0.0000"]
