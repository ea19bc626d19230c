"""Validate: a Great Expectations suite over the canonical frame, with Data Docs and a summary.

Two severities. Critical expectations stop the run: nothing downstream runs and nothing is
written. Warning expectations (stale prices, implausible one-day moves, long gaps, rows that
arrived out of date order) are reported and the run continues. Tickers with too little history
for a train/val/test split are dropped with a warning that names them.

Checks that compare a row with the previous row of its ticker (moves, stale runs, gaps) run in
GX on derived `check_*` columns computed here, so they appear in Data Docs like any other.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from prefect import task
from prefect.cache_policies import CachePolicy

from tickerflow.run_log import DETAIL, run_logger
from tickerflow.tracking.home import home_subdir, tickerflow_home
from tickerflow_model.atomic_io import stable_hash
from tickerflow_model.config import ValidateConfig
from tickerflow_model.errors import TickerflowError
from tickerflow_model.words import counted

# Bump when the expectations change: it is part of the validation id, so no cached verdict of an older
# suite is reused.
SUITE_VERSION = 2
# No price or volume reaches this; inf and overflowed values do.
FINITE_CEILING = 1e15
CRITICAL = "critical"
WARNING = "warning"
EXAMPLES = 5
PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")
NUMERIC_TYPES = ["float64", "Float64", "float32", "int64", "Int64"]
DATE_TYPES = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]
TICKER_TYPES = ["str", "string", "object", "StringDtype"]


class ValidationFailed(TickerflowError, ValueError):
    """Critical expectations failed; the message lists each one with counts and example rows."""


@dataclass
class Failure:
    expectation: str
    column: str
    severity: str
    unexpected_count: int | None
    examples: list[dict] = field(default_factory=list)

    def line(self) -> str:
        count = "column missing" if self.unexpected_count is None else counted(self.unexpected_count, "row")
        examples = "; ".join(", ".join(f"{k}={v}" for k, v in ex.items()) for ex in self.examples)
        return f"{self.expectation}({self.column}): {count}" + (f" e.g. {examples}" if examples else "")


@dataclass
class ValidationReport:
    success: bool
    frame: pd.DataFrame
    failures: list[Failure]
    evaluated: int
    dropped_tickers: dict[str, int]
    docs_dir: str
    docs_index: str

    def __getstate__(self) -> dict:
        # Prefect persists this report as the validate task's cached result: the verdict, the dropped
        # tickers and the Data Docs location, not a pickled copy of the price frame (see `validate`).
        return {**self.__dict__, "frame": None}

    def with_frame(self, frame: pd.DataFrame) -> "ValidationReport":
        """This verdict over `frame` (the input it was computed from): the frame minus dropped tickers."""
        kept = (
            frame[~frame["ticker"].isin(list(self.dropped_tickers))].reset_index(drop=True)
            if self.dropped_tickers
            else frame
        )
        return replace(self, frame=kept)

    @property
    def critical(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == CRITICAL]

    @property
    def warnings(self) -> list[Failure]:
        return [f for f in self.failures if f.severity == WARNING]

    def summary(self) -> str:
        head = (
            f"data validation failed: {counted(len(self.critical), 'critical expectation')} of {self.evaluated}"
            if self.critical
            else f"data validation passed ({counted(self.evaluated, 'expectation')}, {counted(len(self.warnings), 'warning')})"
        )
        ordered = self.critical + self.warnings
        return "\n".join([head] + [f"  - [{f.severity}] {f.line()}" for f in ordered])

    def markdown(self) -> str:
        rows = [
            "| expectation | column | severity | offending rows | examples |",
            "|---|---|---|---|---|",
        ]
        for f in self.critical + self.warnings:
            ex = "<br>".join(", ".join(f"{k}={v}" for k, v in e.items()) for e in f.examples)
            rows.append(f"| {f.expectation} | {f.column} | {f.severity} | {f.unexpected_count} | {ex} |")
        dropped = ", ".join(f"{t} ({n} rows)" for t, n in self.dropped_tickers.items()) or "none"
        status = "PASSED" if self.success else "FAILED"
        table = "\n".join(rows) if self.failures else "All expectations met."
        return (
            f"# Data validation {status}\n\n{self.evaluated} expectations evaluated on {len(self.frame)} rows.\n\n"
            f"Tickers dropped for too little history: {dropped}\n\n{table}\n\nData Docs: {self.docs_index}\n"
        )


# ---- derived columns for row-to-previous-row checks --------------------------------------------------
def add_check_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame plus `check_*` columns comparing each row with the previous row of its ticker.

    The frame is sorted by (ticker, date), as ingest leaves it.
    """
    out = frame.copy()
    same_ticker = out["ticker"].eq(out["ticker"].shift()).fillna(False).to_numpy(bool)
    for col in [c for c in ("close", "adj_close") if c in out.columns]:
        price = out[col].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            move = np.abs(np.log(price[1:] / price[:-1]))
        out[f"check_abs_log_return_{col}"] = np.where(same_ticker, np.r_[np.nan, move], np.nan)
    price_col = next((c for c in ("adj_close", "close") if c in out.columns), None)
    if price_col is not None:  # a missing price is a critical failure of its own
        price = out[price_col].to_numpy(np.float64)
        repeat = same_ticker & np.r_[False, price[1:] == price[:-1]]
        run_id = np.cumsum(~repeat)
        out["check_identical_run"] = pd.Series(run_id).groupby(run_id).cumcount().to_numpy() + 1
    days = out["date"].to_numpy("datetime64[D]")
    missing = np.busday_count(np.r_[days[:1], days[:-1]], days, weekmask="1111100") - 1
    out["check_missing_business_days"] = np.where(same_ticker, np.maximum(missing, 0), np.nan)
    return out


def build_suite(frame: pd.DataFrame, config: ValidateConfig, min_rows: int | None = None) -> gx.ExpectationSuite:
    """The expectations; those needing optional columns apply only when the columns are present."""
    cols = set(frame.columns)
    exps = shape_expectations(frame) + order_expectations(cols) + warning_expectations(cols, config)
    if "ticker" in cols:
        E = gx.expectations
        exps.append(E.ExpectColumnValuesToMatchRegex(column="ticker", regex=config.ticker_pattern, meta=CRIT))
    return gx.ExpectationSuite(name="tickerflow-prices", expectations=exps)


CRIT, WARN = {"severity": CRITICAL}, {"severity": WARNING}


def shape_expectations(frame: pd.DataFrame) -> list[gx.expectations.Expectation]:
    """Critical: the columns, their types, no nulls, finite positive prices and a non-negative volume."""
    E = gx.expectations
    cols = set(frame.columns)
    base = [c for c in frame.columns if not str(c).startswith("check_")]
    prices = [c for c in PRICE_COLUMNS if c in cols]
    exps: list[gx.expectations.Expectation] = [E.ExpectColumnToExist(column=c, meta=CRIT) for c in ("date", "ticker")]
    # a price is required: close or adj_close, whichever the source has
    exps += [
        E.ExpectColumnToExist(column=c, meta=CRIT) for c in (("close",) if not {"close", "adj_close"} & cols else ())
    ]
    if "date" in cols:
        exps.append(E.ExpectColumnValuesToBeInTypeList(column="date", type_list=DATE_TYPES, meta=CRIT))
    if "ticker" in cols:
        exps.append(E.ExpectColumnValuesToBeInTypeList(column="ticker", type_list=TICKER_TYPES, meta=CRIT))
    exps += [
        E.ExpectColumnValuesToBeInTypeList(column=c, type_list=NUMERIC_TYPES, meta=CRIT)
        for c in prices + (["volume"] if "volume" in cols else [])
    ]
    exps += [E.ExpectColumnValuesToNotBeNull(column=c, meta=CRIT) for c in base]
    # The upper bound refuses inf (which passes a bare "> 0"), and any overflowed value with it.
    exps += [
        E.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True, max_value=FINITE_CEILING, meta=CRIT)
        for c in prices
    ]
    if "volume" in cols:
        exps.append(E.ExpectColumnValuesToBeBetween(column="volume", min_value=0, max_value=FINITE_CEILING, meta=CRIT))
    return exps


def order_expectations(cols: set) -> list[gx.expectations.Expectation]:
    """Critical: low <= open, close <= high, and one row per ticker and day."""
    E = gx.expectations
    pairs = [("high", "low")] if {"high", "low"} <= cols else []
    for other in ("open", "close"):
        pairs += [(a, b) for a, b in (("high", other), (other, "low")) if {a, b} <= cols]
    exps: list[gx.expectations.Expectation] = [
        E.ExpectColumnPairValuesAToBeGreaterThanB(column_A=a, column_B=b, or_equal=True, meta=CRIT) for a, b in pairs
    ]
    if {"ticker", "date"} <= cols:
        exps.append(E.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "date"], meta=CRIT))
    return exps


def warning_expectations(cols: set, config: ValidateConfig) -> list[gx.expectations.Expectation]:
    """Warnings, on the derived `check_*` columns: implausible one-day moves, stale prices, long gaps."""
    E = gx.expectations
    exps: list[gx.expectations.Expectation] = [
        E.ExpectColumnValuesToBeBetween(column=c, max_value=config.max_abs_log_return, meta=WARN)
        for c in sorted(cols)
        if str(c).startswith("check_abs_log_return_")
    ]
    limits = {
        "check_identical_run": config.max_identical_run,
        "check_missing_business_days": config.max_gap_business_days,
    }
    exps += [
        E.ExpectColumnValuesToBeBetween(column=c, max_value=limit, meta=WARN)
        for c, limit in limits.items()
        if c in cols
    ]
    return exps


def _shown_with(column: str, columns: set) -> list[str]:
    """The data columns worth showing next to a derived check column in an example row."""
    if column.startswith("check_abs_log_return_"):
        return [column.removeprefix("check_abs_log_return_")]
    if column == "check_identical_run":
        return ["adj_close" if "adj_close" in columns else "close"]
    return []


def _plain(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, (np.floating, float)):
        return round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _examples(frame: pd.DataFrame, result: dict, columns: list[str]) -> list[dict]:
    """A few offending rows as (ticker, date, values), for a person to look up in the file."""
    index = (result.get("unexpected_index_list") or [])[:EXAMPLES]
    index = [i for i in index if isinstance(i, (int, np.integer)) and i in frame.index]
    show = [c for c in ["ticker", "date"] + columns if c in frame.columns]
    rows = frame.loc[index, list(dict.fromkeys(show))]
    out = [{k: _plain(v) for k, v in row.items()} for _, row in rows.iterrows()]
    if not out:
        out = [{"value": _plain(v)} for v in (result.get("partial_unexpected_list") or [])[:EXAMPLES]]
    return out


def run_suite(frame: pd.DataFrame, config: ValidateConfig, min_rows: int, docs_dir: Path) -> ValidationReport:
    """Run the suite through a GX checkpoint, then build its Data Docs into `docs_dir` (once: a docs action
    on the checkpoint would build them a second time); then the checks GX cannot see (rows that arrived
    out of order) and the tickers too short to window (dropped)."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    checked = add_check_columns(frame) if {"ticker", "date"} <= set(frame.columns) else frame
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    ctx.add_data_docs_site(
        site_name="tickerflow",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    batch = (
        ctx.data_sources.add_pandas("prices")
        .add_dataframe_asset("canonical")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = ctx.suites.add(build_suite(checked, config))
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name="prices", data=batch, suite=suite))
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name="tickerflow",
            validation_definitions=[definition],
            actions=[],
            result_format={"result_format": "COMPLETE"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": checked})
    failures, evaluated = [], 0
    for run in result.run_results.values():
        for r in run.results:
            evaluated += 1
            if r.success:
                continue
            expectation = r.expectation_config
            assert expectation is not None  # GX sets it on every result of a suite's run
            kw = expectation.kwargs
            columns = [c for c in (kw.get("column"), kw.get("column_A"), kw.get("column_B")) if c] + list(
                kw.get("column_list") or []
            )
            shown = columns + [c for col in columns for c in _shown_with(col, set(checked.columns))]
            failures.append(
                Failure(
                    expectation=expectation.type,
                    column="+".join(dict.fromkeys(columns)),
                    severity=(expectation.meta or {}).get("severity", CRITICAL),
                    unexpected_count=r.result.get("unexpected_count"),
                    examples=_examples(checked, r.result, shown),
                )
            )
    index = ctx.build_data_docs(site_names=["tickerflow"])["tickerflow"]
    return verdict(frame, failures, evaluated, min_rows, docs_dir, index)


def order_failure(frame: pd.DataFrame) -> Failure | None:
    """Rows that arrived out of date order within their ticker (ingest counts them before sorting)."""
    disorder = frame.attrs.get("out_of_order") or {}
    if not disorder.get("count"):
        return None
    return Failure("dates_increasing_within_ticker", "ticker+date", WARNING, disorder["count"], disorder["examples"])


def drop_short_tickers(frame: pd.DataFrame, min_rows: int) -> tuple[pd.DataFrame, dict[str, int]]:
    counts = frame.groupby("ticker").size()
    short = {str(t): int(n) for t, n in counts[counts < min_rows].items()}
    return frame[~frame["ticker"].isin(list(short))].reset_index(drop=True), short


def verdict(
    frame: pd.DataFrame, failures: list[Failure], evaluated: int, min_rows: int, docs_dir: Path, docs_index: str
) -> ValidationReport:
    """The suite's failures plus the order check; tickers too short to window dropped unless already failed."""
    order = order_failure(frame)
    evaluated += 1
    if order is not None:
        failures.append(order)
    critical = [f for f in failures if f.severity == CRITICAL]
    kept, dropped = (frame, {}) if critical else drop_short_tickers(frame, min_rows)
    evaluated += 1
    if not critical and kept.empty:
        failures.append(
            Failure(
                "enough_history",
                "ticker",
                CRITICAL,
                len(dropped),
                [{"ticker": t, "rows": n, "needed": min_rows} for t, n in list(dropped.items())[:EXAMPLES]],
            )
        )
    success = not any(f.severity == CRITICAL for f in failures)
    return ValidationReport(success, kept, failures, evaluated, dropped, str(docs_dir), docs_index)


# ---- Prefect ---------------------------------------------------------------------------------------
def validation_id(source_hash: str, config: ValidateConfig, min_rows: int) -> str:
    return stable_hash(
        {"source": source_hash, "validate": config.model_dump(), "min_rows": min_rows, "suite": SUITE_VERSION}
    )


def _cache_key(task_ctx, params: dict) -> str:
    """Same input bytes, same suite, same home -> same key; the caller refreshes it when the docs are gone."""
    home = hashlib.sha256(str(tickerflow_home()).encode()).hexdigest()[:12]
    return f"tickerflow-validate-{validation_id(params['source_hash'], params['config'], params['min_rows'])}-{home}"


def docs_dir_for(source_hash: str, config: ValidateConfig, min_rows: int) -> Path:
    return home_subdir("validation", validation_id(source_hash, config, min_rows), "data_docs")


# Cached verdicts are small (see ValidationReport.__getstate__) and expire: a suite change bumps
# SUITE_VERSION, and nothing is kept forever.
CACHE_EXPIRATION = timedelta(days=30)


@task(name="validate", cache_policy=CachePolicy.from_cache_key_fn(_cache_key), cache_expiration=CACHE_EXPIRATION)
def validate_prices(frame: pd.DataFrame, config: ValidateConfig, min_rows: int, source_hash: str) -> ValidationReport:
    """Run the GX gate; always writes Data Docs. Raising is left to `require_valid`, reporting to the flow."""
    logger = run_logger()
    report = run_suite(frame, config, min_rows, docs_dir_for(source_hash, config, min_rows))
    # The findings, one line each, go to the run's log and the Prefect UI at WARNING; the quiet console
    # shows them as the one summary line below (`--verbose` shows them all), so that a run on data with
    # known quirks, such as the sample's young ticker, reads as one screen.
    dropped = ", ".join(f"{t} ({n} rows)" for t, n in report.dropped_tickers.items())
    if dropped:
        logger.warning(
            "dropped %s with fewer than %d rows: %s",
            counted(len(report.dropped_tickers), "ticker"),
            min_rows,
            dropped,
            extra=DETAIL,
        )
    for w in report.warnings:
        logger.warning("data warning: %s", w.line(), extra=DETAIL)
    logger.info("%s", summary_line(report, min_rows))
    return report


def summary_line(report: ValidationReport, min_rows: int, cached: bool = False) -> str:
    """The stage's one line on the quiet console: counts, the dropped tickers, the Data Docs. The failures
    themselves are reported once, by require_valid's error; this line only counts them."""
    dropped = ", ".join(f"{t} ({n} rows)" for t, n in report.dropped_tickers.items())
    return (
        f"{counted(report.evaluated, 'expectation')} evaluated{' (cached: an earlier run read the same data)' if cached else ''}: "
        f"{counted(len(report.critical), 'critical failure')}, {counted(len(report.warnings), 'warning')}"
        f"{f'; dropped {dropped}, fewer than {min_rows} rows' if dropped else ''}; Data Docs: {report.docs_index}"
    )


def validate(frame: pd.DataFrame, config: ValidateConfig, min_rows: int, source_hash: str) -> ValidationReport:
    """The validate stage inside a flow: cached on the source hash, the suite's config and the home.

    An unchanged input shows Cached, and its summary line is logged again (by the flow run); when its Data
    Docs folder is gone the cache is refreshed instead.
    """
    missing = not (docs_dir_for(source_hash, config, min_rows) / "index.html").is_file()
    state = validate_prices.with_options(refresh_cache=missing)(frame, config, min_rows, source_hash, return_state=True)
    report = state.result()
    if (
        state.name == "Cached"
    ):  # the task did not run, so did not log: its summary line (the dropped tickers) is said here
        run_logger().info("%s", summary_line(report, min_rows, cached=True))
    return report.with_frame(frame)  # a cached report holds no frame; the verdict applies to this one


@task(name="require-valid")
def require_valid(report: ValidationReport) -> pd.DataFrame:
    """Stop the run on any critical failure, with the readable summary as the error message."""
    if not report.success:
        raise ValidationFailed(report.summary())
    return report.frame
