"""Ingest: read price files into the canonical frame and snapshot the raw input as Parquet.

Sources are a file, a folder, a glob or an fsspec URI (`file://`, `s3://...`; S3 endpoints and
credentials come from the usual AWS / fsspec environment, never from the config, which is logged).
Each file is read in one of three layouts, detected from its columns (long, single-ticker, wide);
the formats, layouts and date rules are the core's (`tickerflow_model.price_files` and
`tickerflow_model.canonical_prices`), and so are the rows set aside (days without data, dividend and
split lines) and the unadjusted-split check (`ingest.splits`). This stage adds the config, the lines
that say what was set aside at WARNING, the raw snapshot under the home and the task's retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.tasks import exponential_backoff

from tickerflow.run_log import run_logger
from tickerflow.tasks.retries import retry_unless
from tickerflow.tracking.home import home_subdir
from tickerflow_model.atomic_io import atomic_directory
from tickerflow_model.config import IngestConfig
from tickerflow_model.price_files import IngestError, read_prices
from tickerflow_model.words import counted


@dataclass(frozen=True)
class IngestResult:
    frame: pd.DataFrame
    source_hash: str
    snapshot_path: str
    files: tuple[str, ...]
    layouts: tuple[str, ...] = ()


# ---- snapshot ------------------------------------------------------------------------------------
def write_snapshot(frame: pd.DataFrame, source_hash: str) -> Path:
    """Raw snapshot under `raw/<hash>/prices.parquet`, one row group per ticker, written atomically.

    Tickers partition the file by row group, not by folder: symbols never become path fragments.
    """
    final = home_subdir("raw", source_hash)
    if (final / "prices.parquet").exists():
        return final
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    codes = pd.factorize(frame["ticker"])[0]  # the frame is sorted, so each ticker is one run of rows
    bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])
    with atomic_directory(final) as scratch:
        with pq.ParquetWriter(scratch / "prices.parquet", table.schema, compression="zstd") as writer:
            for start, stop in zip(bounds[:-1], bounds[1:]):
                writer.write_table(table.slice(start, stop - start))
    return final


# ---- task ----------------------------------------------------------------------------------------
# Retry transient storage errors (network, S3 throttling); a bad file fails at once.
retry_unless_bad_input = retry_unless(IngestError)


@task(
    name="ingest",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_unless_bad_input,
)
def ingest(config: IngestConfig) -> IngestResult:
    logger = run_logger()
    set_aside: list[str] = []  # rows set aside, splits adjusted or kept: a line each
    frame, source_hash, files, layouts = read_prices(
        config.source, config.ticker, config.max_rows, config.max_bytes, splits=config.splits, on_note=set_aside.append
    )
    for path, layout in zip(files, layouts):
        logger.info("%s: %s layout", path, layout)
    for line in set_aside:
        logger.warning(line)
    snapshot = write_snapshot(frame, source_hash)
    logger.info(
        "ingested %s, %s (%s) from %s; columns %s; source hash %s",
        counted(len(frame), "row"),
        counted(frame["ticker"].nunique(), "ticker"),
        ", ".join(sorted(frame["ticker"].dropna().unique())),
        counted(len(files), "file"),
        list(frame.columns),
        source_hash,
    )
    return IngestResult(
        frame=frame, source_hash=source_hash, snapshot_path=str(snapshot), files=tuple(files), layouts=tuple(layouts)
    )
