"""The registered champion served by `mlflow models serve` over HTTP on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from tiny_models import MODEL

from tickerflow_model.quantiles import quantile_columns

SERVER_DEADLINE_S = 180  # mlflow + uvicorn start-up on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_ping(proc: subprocess.Popen, url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow models serve exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)  # polling interval, not synchronisation: the loop ends on the server's answer
    raise AssertionError(f"no answer from {url} within {deadline_s} s")


@pytest.mark.integration
@pytest.mark.parametrize("which", ["champion", "garch_champion"])
def test_mlflow_models_serve_forecasts_the_champion_over_http(which, request, tmp_path):
    """The GRU champion, and a garch baseline as champion (its pyfunc needs `arch` where it is served)."""
    champion = request.getfixturevalue(which)
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": champion.uri,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # uvicorn comes from the venv
    }
    cmd = [
        str(bin_dir / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{MODEL}@champion",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_ping(proc, f"http://127.0.0.1:{port}/ping", SERVER_DEADLINE_S)
        recent = champion.prices.groupby("ticker").tail(champion.forecaster.min_rows + 10)
        payload = {
            "dataframe_split": recent.assign(date=recent["date"].dt.strftime("%Y-%m-%d"))
            .astype({"ticker": str})
            .to_dict(orient="split", index=False)
        }
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", json=payload, timeout=60)
        assert response.status_code == 200, response.text[:2000]
        served = pd.DataFrame(response.json()["predictions"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()

    expected = champion.forecaster.forecast_frame(recent)
    qcols = quantile_columns()
    assert list(served.columns) == ["ticker", "date", "horizon", "forecast_close", *qcols, "base_price", "price_column"]
    np.testing.assert_allclose(served[qcols].to_numpy(), expected[qcols].to_numpy(), rtol=1e-6)
    assert (np.diff(served[qcols].to_numpy(), axis=1) >= 0).all()  # monotone, in price units
    assert len(served) == 2 * 3  # two tickers, horizon 3
    assert served["horizon"].tolist() == expected["horizon"].tolist()
    assert served["ticker"].tolist() == expected["ticker"].tolist()
    np.testing.assert_allclose(served["forecast_close"], expected["forecast_close"], rtol=1e-6)
    assert (pd.to_datetime(served["date"]) > recent["date"].max()).all()
    last = recent.groupby("ticker")["close"].last()
    if which == "garch_champion":
        assert champion.forecaster.spec.garch.keys() == {"AAA", "BBB"}  # fitted, not the EWMA fallback
    # the untrained net moves prices by a fraction of a daily volatility, not by levels
    assert ((served["forecast_close"] / served["ticker"].map(last) - 1).abs() < 0.2).all()
