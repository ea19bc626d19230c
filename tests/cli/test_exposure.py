"""Secrets stay secret, servers stay on loopback unless asked, forecasts land where they are sent."""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import fsspec
import numpy as np
import pandas as pd
import pytest
from price_frames import make_prices

from tickerflow_model.price_files import IngestError, read_prices
from tickerflow_model.redaction import hold, redact_text, redact_uri, reveal

SECRET = "s3cr3t-pa55"
TOKEN = "AKIAEXAMPLESIG123"


@pytest.mark.parametrize(
    "uri, expected",
    [
        (f"https://ana:{SECRET}@data.example.com/prices/a.csv", "https://***@data.example.com/prices/a.csv"),
        (
            f"https://bucket.s3.amazonaws.com/a.csv?X-Amz-Credential=K&X-Amz-Signature={TOKEN}",
            "https://bucket.s3.amazonaws.com/a.csv?X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        (f"http://u:{SECRET}@127.0.0.1:5000", "http://***@127.0.0.1:5000"),
        ("s3://bucket/prices/*.parquet", "s3://bucket/prices/*.parquet"),
        ("data/sample/x.csv.gz", "data/sample/x.csv.gz"),
    ],
)
def test_redact_uri_keeps_scheme_host_and_path(uri, expected):
    assert redact_uri(uri) == expected


def test_redact_text_finds_uris_inside_messages():
    message = f"403 Forbidden for url 'https://ana:{SECRET}@h.example/a.csv?token={TOKEN}' after 3 tries"
    out = redact_text(message)
    assert SECRET not in out and TOKEN not in out and "https://***@h.example/a.csv?token=***" in out


class _PriceServer(BaseHTTPRequestHandler):
    body = b""

    def _authorised(self) -> bool:
        expected = "Basic " + base64.b64encode(f"ana:{SECRET}".encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="prices"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_HEAD(self):  # noqa: N802 - http.server's naming
        if self._authorised():
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()

    def do_GET(self):  # noqa: N802
        if self._authorised():
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def price_server():
    handler = type("Handler", (_PriceServer,), {"body": make_prices(n_days=30).to_csv(index=False).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_source_with_basic_auth_reads_through_fsspec(price_server):
    uri = f"http://ana:{SECRET}@{price_server}/prices.csv?X-Amz-Signature={TOKEN}"
    frame, _, files, _ = read_prices(hold(uri))  # the redacted form, as the flow receives it
    assert sorted(frame["ticker"].unique()) == ["AAA", "BBB"] and len(frame) == 60
    assert files == [f"http://***@{price_server}/prices.csv?X-Amz-Signature=***"]


def test_refused_credentials_are_a_clear_error_without_the_secret(price_server):
    uri = f"http://ana:wrong-{SECRET}@{price_server}/prices.csv"
    with pytest.raises(IngestError) as err:
        read_prices(uri)
    assert "401" in str(err.value) and SECRET not in str(err.value) and f"http://***@{price_server}" in str(err.value)


def test_cli_config_carries_only_the_redacted_source():
    from tickerflow.cli.config_file import load_config

    uri = f"https://ana:{SECRET}@data.example.com/prices.csv?sig={TOKEN}"
    config = load_config(None, data=uri)
    dumped = config.model_dump_json()
    assert SECRET not in dumped and TOKEN not in dumped
    assert reveal(config.ingest.source) == uri


def test_mlflow_params_and_tags_never_hold_credentials(prefect_harness, mlflow_store):
    """A deployment can pass a credentialed URI as the parameter itself: still redacted in MLflow."""
    import mlflow
    from prefect import flow

    from tickerflow.reporting.training import start_training_run
    from tickerflow_model.config import IngestConfig, PipelineConfig

    uri = f"https://ana:{SECRET}@data.example.com/prices.csv?X-Amz-Signature={TOKEN}"

    @flow
    def start(config):
        return start_training_run(config)

    run_id = start(PipelineConfig(ingest=IngestConfig(source=uri))).run_id
    run = mlflow.MlflowClient(mlflow_store).get_run(run_id)
    recorded = str(run.data.params) + str(run.data.tags)
    assert SECRET not in recorded and TOKEN not in recorded
    assert run.data.tags["data.source"] == "https://***@data.example.com/prices.csv?X-Amz-Signature=***"


def test_run_url_redacts_a_tracking_uri_with_credentials(monkeypatch):
    import tickerflow.tracking.store as tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"https://ana:{SECRET}@mlflow.example.com/")
    fake = SimpleNamespace(get_run=lambda run_id: SimpleNamespace(info=SimpleNamespace(experiment_id="7")))
    monkeypatch.setattr(tracking.mlflow, "MlflowClient", lambda *a, **k: fake)
    assert tracking.run_url("abc") == "https://***@mlflow.example.com/#/experiments/7/runs/abc"


def test_local_dask_cluster_dashboard_binds_loopback():
    from tickerflow.runtime.task_runners import build_task_runner
    from tickerflow_model.config import RunnerConfig

    runner = build_task_runner(RunnerConfig(kind="dask", n_workers=1))
    assert runner.cluster_kwargs["dashboard_address"].startswith("127.0.0.1:")


@pytest.mark.parametrize(
    "host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("10.1.2.3", False)]
)
def test_is_loopback(host, loopback):
    from tickerflow.runtime.servers import is_loopback

    assert is_loopback(host) is loopback


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("127.0.0.1", False)])
def test_ui_on_a_non_loopback_host_warns_about_authentication(host, warned, monkeypatch, capsys):
    import tickerflow.cli.servers as ops_cli

    class NotStarted:
        url = "http://x"

        def start(self):
            raise ops_cli.ServerError("not started in this test")

    monkeypatch.setattr(ops_cli, "prefect_server", lambda *a, **k: NotStarted())
    monkeypatch.setattr(ops_cli, "mlflow_server", lambda *a, **k: NotStarted())
    assert ops_cli.ui(host=host, prefect_port=1, mlflow_port=2, startup_timeout=1.0) == ops_cli.EXIT_NOT_STARTED
    err = capsys.readouterr().err
    assert ("no authentication" in err) is warned
    assert err.splitlines()[-1] == "tickerflow ui: not started in this test"


# ---- forecast output --------------------------------------------------------------------------------
def test_forecasts_go_to_an_fsspec_uri_and_relative_paths_under_home(tf_home):
    from tickerflow.tasks.forecast import write_parquet_atomic

    frame = pd.DataFrame({"ticker": ["AAA"], "forecast_close": [1.5]})
    written = write_parquet_atomic(frame, "memory://bucket/daily/x.parquet")
    assert written == "memory://bucket/daily/x.parquet"
    with fsspec.open(written, "rb") as fh:
        assert pd.read_parquet(fh).equals(frame)
    local = write_parquet_atomic(frame, "out/x.parquet")
    assert local == str(tf_home / "out" / "x.parquet") and pd.read_parquet(local).equals(frame)


def test_non_finite_forecasts_are_never_written():
    from tickerflow.tasks.forecast import LoadedModel, forecast_batch

    class Model:
        def predict(self, prices):
            return pd.DataFrame(
                {
                    "ticker": ["AAA", "BBB"],
                    "date": pd.to_datetime(["2020-01-02"] * 2),
                    "horizon": [1, 1],
                    "forecast_close": [np.inf, 2.0],
                }
            )

    model = LoadedModel("models:/m/1", "1", Model())
    model.__class__ = type(
        "Fixed",
        (LoadedModel,),
        {
            "min_rows": property(lambda self: 2),
            "levels": property(lambda self: ()),
            "takes": property(lambda self: ["date", "ticker", "close"]),
        },
    )
    batch = forecast_batch(model, make_prices(n_days=5), {})
    assert batch.frame["ticker"].tolist() == ["BBB"] and "not a finite number" in batch.skipped["AAA"]


def test_ui_does_not_print_tracking_credentials(monkeypatch, capsys):
    import tickerflow.cli.servers as ops_cli

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"https://ana:{SECRET}@mlflow.example.com")
    assert ops_cli.ui(host="127.0.0.1", prefect_port=1, mlflow_port=2, startup_timeout=1.0) != 0
    err = capsys.readouterr().err
    assert SECRET not in err and "https://***@mlflow.example.com" in err


def test_run_names_of_a_presigned_url_carry_no_token():
    from tickerflow.reporting.run_labels import data_label

    assert data_label(f"https://***@h.example/prices/daily.csv?X-Amz-Signature={TOKEN}") == "daily"
