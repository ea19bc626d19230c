"""Names that more than one layer spells: defined once here. Standard library only."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

MODEL_NAME = "tickerflow-gru"  # the registered model: GRU versions and winning baselines alike
CHAMPION_ALIAS = "champion"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+-]+")


def data_label(source: str) -> str:
    """`data/sample/stocks_2000.csv.gz` -> `stocks_2000`; `s3://b/prices/*.parquet` -> `prices`."""
    source = str(source)
    if source.lower().startswith(("http://", "https://")):
        source = source.split("?", 1)[0]  # a query (a pre-signed URL's token) is no part of the name
    path = PurePosixPath(source.split("://", 1)[-1].rstrip("/"))
    while path.name and any(ch in path.name for ch in "*?[") and path.parent != path:
        path = path.parent  # a glob names its folder
    name = path.name
    for suffix in (".gz", ".csv", ".parquet", ".pq"):
        name = name.removesuffix(suffix)
    return _UNSAFE.sub("_", name).strip("_.") or "data"


def universe_model_name(source: str, base: str = MODEL_NAME) -> str:
    """The model a data set gets of its own when `base` serves other tickers: `tickerflow-gru-MSFT` for MSFT.csv."""
    return f"{base}-{data_label(source)}"
