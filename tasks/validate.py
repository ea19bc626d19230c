"""Validate: a Great Expectations suite over the canonical frame, with Data Docs and a summary.

Critical expectations stop the run: nothing downstream runs and nothing is written. Tickers with
too little history for a train/val/test split are dropped with a warning that names them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from tasks.storage import home_subdir

TICKER_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9.\-^=_]{0,19}$"
CRITICAL = "critical"
WARNING = "warning"
EXAMPLES = 5


class ValidationFailed(ValueError):
    """Critical expectations failed; the message lists each one with counts and example rows."""


@dataclass(frozen=True)
class ValidateConfig:
    ticker_pattern: str = TICKER_PATTERN


@dataclass
class Failure:
    expectation: str
    column: str
    severity: str
    unexpected_count: int | None
    examples: list[dict] = field(default_factory=list)

    def line(self) -> str:
        count = "column missing" if self.unexpected_count is None else f"{self.unexpected_count} row(s)"
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

    def summary(self) -> str:
        critical = [f for f in self.failures if f.severity == CRITICAL]
        head = (
            f"data validation failed: {len(critical)} critical expectation(s) of {self.evaluated}"
            if critical
            else f"data validation passed ({self.evaluated} expectations)"
        )
        return "\n".join([head] + [f"  - [{f.severity}] {f.line()}" for f in self.failures])

    def markdown(self) -> str:
        rows = [
            "| expectation | column | severity | offending rows | examples |",
            "|---|---|---|---|---|",
        ]
        for f in self.failures:
            ex = "<br>".join(", ".join(f"{k}={v}" for k, v in e.items()) for e in f.examples)
            rows.append(f"| {f.expectation} | {f.column} | {f.severity} | {f.unexpected_count} | {ex} |")
        dropped = ", ".join(f"{t} ({n} rows)" for t, n in self.dropped_tickers.items()) or "none"
        status = "PASSED" if self.success else "FAILED"
        table = "\n".join(rows) if self.failures else "All expectations met."
        return (
            f"# Data validation {status}\n\n{self.evaluated} expectations evaluated on {len(self.frame)} rows.\n\n"
            f"Tickers dropped for too little history: {dropped}\n\n{table}\n"
        )


def build_suite(frame: pd.DataFrame, config: ValidateConfig) -> gx.ExpectationSuite:
    """The expectations; those needing optional columns apply only when the columns are present."""
    E = gx.expectations
    cols = set(frame.columns)
    crit = {"severity": CRITICAL}
    exps = [E.ExpectColumnToExist(column=c, meta=crit) for c in ("date", "ticker", "close")]
    exps += [E.ExpectColumnValuesToNotBeNull(column=c, meta=crit) for c in frame.columns]
    exps += [
        E.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True, meta=crit)
        for c in ("open", "high", "low", "close", "adj_close")
        if c in cols
    ]
    if "volume" in cols:
        exps.append(E.ExpectColumnValuesToBeBetween(column="volume", min_value=0, meta=crit))
    if {"high", "low"} <= cols:
        exps.append(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="low", or_equal=True, meta=crit))
    for other in ("open", "close"):
        if {"high", other} <= cols:
            exps.append(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B=other, or_equal=True, meta=crit))
        if {"low", other} <= cols:
            exps.append(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A=other, column_B="low", or_equal=True, meta=crit))
    exps.append(E.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "date"], meta=crit))
    if "ticker" in cols:
        exps.append(E.ExpectColumnValuesToMatchRegex(column="ticker", regex=config.ticker_pattern, meta=crit))
    return gx.ExpectationSuite(name="tickerflow-prices", expectations=exps)


def _examples(frame: pd.DataFrame, result: dict, columns: list[str]) -> list[dict]:
    index = (result.get("unexpected_index_list") or [])[:EXAMPLES]
    show = [c for c in ["ticker", "date"] + columns if c in frame.columns]
    rows = frame.loc[[i for i in index if i in frame.index], list(dict.fromkeys(show))]
    out = []
    for _, row in rows.iterrows():
        out.append({k: (v.date().isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in row.items()})
    if not out:
        out = [{"value": v} for v in (result.get("partial_unexpected_list") or [])[:EXAMPLES]]
    return out


def run_suite(frame: pd.DataFrame, config: ValidateConfig, docs_dir: Path) -> tuple[list[Failure], int, str]:
    """Run the suite through a GX checkpoint that also writes Data Docs into `docs_dir`."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
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
    batch = ctx.data_sources.add_pandas("prices").add_dataframe_asset("canonical").add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(build_suite(frame, config))
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name="prices", data=batch, suite=suite))
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name="tickerflow",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["tickerflow"])],
            result_format={"result_format": "COMPLETE"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    failures, evaluated = [], 0
    for run in result.run_results.values():
        for r in run.results:
            evaluated += 1
            if r.success:
                continue
            kw = r.expectation_config.kwargs
            columns = [c for c in (kw.get("column"), kw.get("column_A"), kw.get("column_B")) if c] + list(
                kw.get("column_list") or []
            )
            failures.append(
                Failure(
                    expectation=r.expectation_config.type,
                    column="+".join(dict.fromkeys(columns)),
                    severity=(r.expectation_config.meta or {}).get("severity", CRITICAL),
                    unexpected_count=r.result.get("unexpected_count"),
                    examples=_examples(frame, r.result, columns),
                )
            )
    index = ctx.build_data_docs(site_names=["tickerflow"])["tickerflow"]
    return failures, evaluated, index


def drop_short_tickers(frame: pd.DataFrame, min_rows: int) -> tuple[pd.DataFrame, dict[str, int]]:
    counts = frame.groupby("ticker").size()
    short = {str(t): int(n) for t, n in counts[counts < min_rows].items()}
    return frame[~frame["ticker"].isin(list(short))].reset_index(drop=True), short


def check_prices(frame: pd.DataFrame, config: ValidateConfig, min_rows: int, docs_dir: Path) -> ValidationReport:
    """Plain function behind the task: run the suite, then drop tickers too short to window."""
    failures, evaluated, index = run_suite(frame, config, docs_dir)
    critical = [f for f in failures if f.severity == CRITICAL]
    kept, dropped = (frame, {}) if critical else drop_short_tickers(frame, min_rows)
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
        evaluated += 1
    success = not any(f.severity == CRITICAL for f in failures)
    return ValidationReport(success, kept, failures, evaluated, dropped, str(docs_dir), index)


@task(name="validate")
def validate(frame: pd.DataFrame, config: ValidateConfig, min_rows: int, source_hash: str) -> ValidationReport:
    """Run the GX gate; always writes Data Docs and a summary artifact. Raising is left to `require_valid`."""
    logger = get_run_logger()
    docs_dir = home_subdir("validation", source_hash, "data_docs")
    report = check_prices(frame, config, min_rows, docs_dir)
    if report.dropped_tickers:
        logger.warning(
            "dropped ticker(s) with fewer than %d rows: %s",
            min_rows,
            ", ".join(f"{t} ({n} rows)" for t, n in report.dropped_tickers.items()),
        )
    logger.info("%s; Data Docs: %s", report.summary().splitlines()[0], report.docs_index)
    create_markdown_artifact(key="validation-summary", markdown=report.markdown(), description="GX validation")
    return report


@task(name="require-valid")
def require_valid(report: ValidationReport) -> pd.DataFrame:
    """Stop the run on any critical failure, with the readable summary as the error message."""
    if not report.success:
        raise ValidationFailed(report.summary())
    return report.frame
