"""The registered model takes dates as users have them: strings from pd.read_csv, datetimes, UTC offsets."""

from __future__ import annotations

import io
import os

import mlflow
import numpy as np
import pandas as pd
import pytest
from tiny_models import MODEL


@pytest.fixture(scope="module")
def loaded(champion):  # noqa: F811
    mlflow.set_tracking_uri(champion.uri)
    mlflow.set_registry_uri(champion.uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # later tests must not inherit this store
        os.environ.pop(name, None)
    recent = champion.prices.groupby("ticker").tail(champion.forecaster.min_rows + 5).reset_index(drop=True)
    return model, recent, champion.forecaster.forecast_frame(recent)


def test_signature_types_date_as_any(loaded):
    model, _, _ = loaded
    spec = {c.name: str(c.type) for c in model.metadata.get_input_schema().inputs}
    assert spec["date"] == "Any"


@pytest.mark.parametrize(
    "as_given",
    [
        pytest.param(lambda f: pd.read_csv(io.StringIO(f.to_csv(index=False))), id="pd.read_csv"),
        pytest.param(lambda f: f, id="datetimes"),
        pytest.param(lambda f: f.assign(date=f["date"].dt.strftime("%Y-%m-%d")), id="iso-strings"),
        pytest.param(lambda f: f.assign(date=f["date"].dt.strftime("%Y-%m-%dT00:00+09:00")), id="offset-strings"),
        pytest.param(lambda f: f.assign(date=f["date"].dt.tz_localize("Asia/Tokyo")), id="tz-aware"),
    ],
)
def test_the_registered_model_accepts_dates_as_users_have_them(loaded, as_given):
    model, recent, expected = loaded
    out = model.predict(as_given(recent.astype({"ticker": str})))
    np.testing.assert_allclose(out["forecast_close"], expected["forecast_close"], rtol=1e-6)
    assert pd.to_datetime(out["date"]).tolist() == expected["date"].tolist()


def test_dates_that_are_not_iso_are_a_clear_error(loaded):
    model, recent, _ = loaded
    bad = recent.astype({"ticker": str}).assign(date="last tuesday")
    with pytest.raises(Exception, match="ISO dates"):
        model.predict(bad)
