"""Every setting of tickerflow, in one module: each section of a run with its bounds, and the words they use.

The `Field` bounds of these pydantic models are at once the validation, the docs (`tickerflow config`
prints them, and docs/GUIDE.md holds that table), the Prefect UI's form of a flow's parameters and the
MLflow params of a training run (`PipelineConfig.flat_params`). Nothing but the standard library and
pydantic is imported, so the command line reads defaults and refuses a bad `--config` before anything
heavy loads, and every registered model carries this module inside its code.

Sections of the training flow's one parameter, `PipelineConfig`: `ingest`, `validate`, `window`,
`train` (with the network in `train.gru`), `evaluate`, `register` (the gate) and `backtest`. The daily
flow takes `store`, `monitor` and `retention`; the command line adds a task runner and its servers.
A module that uses a section imports it from here; none defines one of its own.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .names import CHAMPION_ALIAS, MODEL_NAME
from .quantiles import LEGACY_LEVELS, QUANTILE_LEVELS, require_scored_intervals, validate_levels

# The largest integer a JSON number (a double) holds exactly: no count, size or seed a config holds is
# meant to be larger, and a value past it (`epochs: 1e26`) is a typo. Fields bound their own values tighter.
MAX_INT = 2**53


class Config(BaseModel):
    """Frozen, unknown keys refused, every field checked on construction. A boolean is not a number
    (`epochs: true` is refused, where pydantic alone would read it as 1), and no integer exceeds MAX_INT."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[str(info.field_name)].annotation
        if isinstance(value, bool) and _numeric(annotation):
            kind = "number" if float in (annotation, *get_args(annotation)) else "integer"
            raise ValueError(f"Input should be a valid {kind}, not a boolean (got {str(value).lower()})")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _integers_in_range(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise ValueError(f"must be at most {MAX_INT:,} in size (got a {len(str(abs(value)))}-digit number)")
        return value

    def updated(self, **changes: Any) -> Self:
        """A copy with `changes` applied and checked (`model_copy(update=...)` would skip the checks)."""
        return type(self).model_validate({**self.model_dump(), **changes})


def _numeric(annotation: Any) -> bool:
    """Whether a field's type is int or float (alone, optional, or in a union without bool)."""
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    return bool(args) and bool not in args and any(a in (int, float) for a in args)


def field_default(config_class: type[BaseModel], name: str) -> Any:
    """The default of field `name` of a config class (a default factory is called)."""
    return config_class.model_fields[name].get_default(call_default_factory=True)


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value


# ---- the words the sections use ------------------------------------------------------------------
SplitPolicy = Literal["refuse", "adjust", "keep"]  # ingest.splits: what to do with a probable unadjusted split
Feature = Literal[
    "log_return",
    "abs_log_return",
    "hl_range",
    "gap",
    "log_volume_change",
    "rv_5",
    "rv_22",
    "rv_66",
    "range_5",
    "range_22",
    "range_66",
    "market_return",
    "market_vol",
]
FEATURES: tuple[str, ...] = get_args(Feature)
# Columns of the canonical frame each feature reads besides the modelled price.
FEATURE_COLUMNS: dict[str, tuple[str, ...]] = {
    **{name: () for name in FEATURES},
    "hl_range": ("high", "low"),
    "gap": ("open", "close"),
    "log_volume_change": ("volume",),
    **{f"range_{k}": ("high", "low") for k in (5, 22, 66)},
}
HAR_DAYS = {"rv_5": 5, "rv_22": 22, "rv_66": 66, "range_5": 5, "range_22": 22, "range_66": 66}
MARKET_FEATURES = ("market_return", "market_vol")
MARKET_VOL_DAYS = 22
# Features `auto` adds when the data has their columns: the range and the gap (`features.auto_features`).
OHLC_FEATURES = ("hl_range", "gap")
# `auto` without OHLC columns: returns, their long memory and the market.
BASE_FEATURES: tuple[str, ...] = ("log_return", "rv_5", "rv_22", "rv_66", "market_return", "market_vol")


def history_days(features: tuple[str, ...]) -> int:
    """Days before a window's first day whose returns its long-memory features read (0 without them)."""
    return max([HAR_DAYS[f] for f in features if f in HAR_DAYS] + [MARKET_VOL_DAYS if "market_vol" in features else 0])


PriceColumn = Literal["auto", "close", "adj_close"]
Compression = Literal["zstd", "snappy", "gzip", "lz4", "brotli", "none"]
Precision = Literal["auto", "fp32", "bf16"]
LossWeight = Literal["volatility", "return", "return_per_step"]
Calibration = Literal["widen", "cqr"]
PrimaryScore = Literal["pinball", "winkler_80", "winkler_90"]  # scores the gate may rank by (lower is better)
CoverageTest = Literal["tolerance", "kupiec"]  # how the gate judges an interval's coverage
RunnerKind = Literal["thread", "dask"]

SAMPLE_DATA = "data/sample/stocks_daily_2000_2013.csv.gz"  # the bundled sample, relative to the project root
MAX_ROWS = 100_000_000  # canonical rows (ticker-days) over all files of one source
MAX_BYTES = 8 * 2**30  # bytes of one file once decompressed
# Letters, digits and the punctuation real symbols use (BRK.B, ^GSPC, EURUSD=X, RDS-A); no '/', no
# '..'-only names, no spaces: symbols are data, and this keeps them printable in reports.
TICKER_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9.\-^=_]{0,19}$"
DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}"
REPLAY_RETRAIN_EVERY = 0  # `tickerflow replay`: train every N trading days (0: only when there is no champion)
LOOPBACK = "127.0.0.1"
PREFECT_UI_PORT = 4200  # `tickerflow ui --prefect-port`
MLFLOW_UI_PORT = 5000  # `tickerflow ui --mlflow-port`
LOCAL_WORKERS = 2  # processes of a temporary local Dask cluster when n_workers is not given


# ---- ingest and validate -------------------------------------------------------------------------
class IngestConfig(Config):
    """Where the prices come from, and how much of them a run reads."""

    source: str = Field(SAMPLE_DATA, description="A file, folder, glob or fsspec URI of price files.")
    ticker: str | None = Field(
        None, description="Ticker of single-ticker files (no ticker column); unset: the file name, AAPL.csv -> AAPL."
    )
    max_rows: int = Field(MAX_ROWS, ge=1, description="Most canonical rows (ticker-days) over all files.")
    max_bytes: int = Field(MAX_BYTES, ge=1, description="Most bytes per file once decompressed.")
    splits: SplitPolicy = Field(
        "refuse",
        description="A one-day move near a split ratio (4:1, 1:10, 3:2, ...) in data without an adjusted close: "
        "refuse the run, adjust the prices before it by the split's ratio (volume by its inverse), or keep it.",
    )

    @field_validator("source")
    @classmethod
    def _source_given(cls, source: str) -> str:
        if not source.strip():
            raise ValueError("ingest source must be a file, folder, glob or URI, got an empty string")
        return source

    @field_validator("ticker")
    @classmethod
    def _ticker_given(cls, ticker: str | None) -> str | None:
        if ticker is not None and not ticker.strip():
            raise ValueError(f"ticker must be a non-empty symbol or None, got {ticker!r}")
        return ticker


class ValidateConfig(Config):
    """The data checks that run before anything is trained (Great Expectations)."""

    ticker_pattern: str = Field(TICKER_PATTERN, min_length=1, description="Regex every ticker symbol must match.")
    # 0.25 is a 22% fall or a 28% rise in a day, rare for a listed stock and typical of an unadjusted
    # split or a bad tick.
    max_abs_log_return: float = Field(0.25, gt=0, description="|log(p_t / p_{t-1})| above this is reported.")
    max_identical_run: int = Field(5, ge=1, description="More identical consecutive prices than this is stale data.")
    # Holidays count as business days, so a few are normal.
    max_gap_business_days: int = Field(
        5, ge=0, description="More missing business days than this between two rows of a ticker is a gap."
    )


# ---- window --------------------------------------------------------------------------------------
class WindowSpec(Config):
    """What one window looks like; travels with every registered model."""

    lookback: int = Field(
        30, ge=2, description="Days of features each window reads (the long-memory features reach further back)."
    )
    horizon: int = Field(1, ge=1, description="Business days ahead the model forecasts (1..horizon).")
    features: tuple[Feature, ...] | Literal["auto"] = Field(
        "auto",
        description=f"Features per day, the first log_return, any of {FEATURES}; 'auto': the data's (auto_features).",
    )

    @field_validator("features", mode="before")
    @classmethod
    def _log_return_first(cls, features):
        if features == "auto":
            return features
        features = tuple(features) if isinstance(features, (list, tuple)) else features
        # the target scale and the volatility standardization read feature 0 as the day's log return
        if not isinstance(features, tuple) or not features:
            raise ValueError(f"features: 'auto' or a list of at least one feature, got {features!r}")
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise ValueError(
                f"unknown feature(s) {', '.join(map(repr, unknown))}; the features are 'auto' or any of {', '.join(FEATURES)}"
            )
        if features[0] != "log_return":
            raise ValueError(f"the first feature must be 'log_return', got {features!r}")
        if len(set(features)) != len(features):
            raise ValueError(f"features must not repeat, got {features!r}")
        return features

    @property
    def resolved_features(self) -> tuple[str, ...]:
        if self.features == "auto":
            raise ValueError("the window's features are 'auto': resolve them against the data first (auto_features)")
        return tuple(self.features)

    @property
    def n_features(self) -> int:
        return len(self.resolved_features)

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns of the canonical frame, besides the price, that the features read."""
        return tuple(dict.fromkeys(c for f in self.resolved_features for c in FEATURE_COLUMNS[f]))

    @property
    def uses_market(self) -> bool:
        return any(f in MARKET_FEATURES for f in self.resolved_features)

    @property
    def min_forecast_rows(self) -> int:
        """Rows of one ticker a forecast reads: the lookback, the long-memory history before it, one more close."""
        return self.lookback + history_days(self.resolved_features) + 1

    @property
    def spec(self) -> WindowSpec:
        """Just the window's shape (a subclass may carry more)."""
        return WindowSpec(lookback=self.lookback, horizon=self.horizon, features=self.features)

    def to_dict(self) -> dict:
        return {**self.model_dump(), "features": self.features if self.features == "auto" else list(self.features)}

    @classmethod
    def from_dict(cls, d: dict) -> WindowSpec:
        return cls(lookback=int(d["lookback"]), horizon=int(d["horizon"]), features=d["features"])


class WindowConfig(WindowSpec):
    """The window shape (`WindowSpec`) plus how the dataset is cut, filtered and written."""

    # The one place the modelled price is chosen: "adj_close" when the source has it under "auto",
    # because unadjusted closes jump at stock splits.
    price: PriceColumn = Field("auto", description="Price column the model reads.")
    train_fraction: float = Field(0.70, gt=0, lt=1, description="Share of the trading days in the training period.")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="Share of the trading days in the validation period.")
    purge_gap: int = Field(5, ge=0, description="Business days between splits in which no window's target may fall.")
    min_history: int = Field(252, ge=0, description="Rows a ticker needs (about a year of trading days).")
    compression: Compression = Field("zstd", description="Parquet compression.")
    # Small on purpose: the Parquet writer's buffers for a list column grow to ~4x the row group it is
    # writing, and 1,024 windows keep that under the size of one ticker's windows, at about 2% more
    # bytes and no measurable time.
    row_group_size: int = Field(1_024, ge=1, description="Windows per Parquet row group (each ticker starts one).")
    # One part is one mapped Prefect task; parts, not single tickers, because each file costs
    # milliseconds to open and close, which for 200 small tickers cost more than the windows did.
    part_rows: int = Field(100_000, ge=1, description="Input rows per Parquet part (whole tickers, in order).")

    @model_validator(mode="after")
    def _a_test_period_remains(self) -> Self:
        if self.train_fraction + self.val_fraction >= 1:
            raise ValueError(
                f"train_fraction and val_fraction must sum below 1 to leave a test period, got "
                f"{self.train_fraction} and {self.val_fraction}"
            )
        return self

    @property
    def min_rows(self) -> int:
        """Rows a ticker needs: the configured minimum, and never fewer than one window per split."""
        per_split = self.horizon + self.purge_gap + 1
        structural = max(
            math.ceil((self.lookback + self.horizon + 1) / self.train_fraction),
            math.ceil(per_split / self.val_fraction),
            math.ceil(per_split / (1 - self.train_fraction - self.val_fraction)),
        )
        return max(self.min_history, structural)


# ---- train ---------------------------------------------------------------------------------------
class GRUConfig(Config):
    """The network's shape. `input_size` and `horizon` follow the window dataset it is trained on."""

    input_size: int = Field(1, ge=1, description="Features per day (set from the window dataset when training).")
    hidden_size: int = Field(64, ge=1, description="Units of each GRU layer.")
    num_layers: int = Field(2, ge=1, description="Stacked GRU layers.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout between GRU layers (none with one layer).")
    horizon: int = Field(1, ge=1, description="Steps ahead (set from the window dataset when training).")
    quantiles: tuple[float, ...] = Field(
        QUANTILE_LEVELS, description="Predicted quantile levels: increasing, symmetric around 0.5, including it."
    )

    @field_validator("quantiles", mode="before")
    @classmethod
    def _valid_levels(cls, levels) -> tuple[float, ...]:
        return validate_levels(levels)

    @property
    def n_quantiles(self) -> int:
        return len(self.quantiles)

    def to_dict(self) -> dict:
        return {**self.model_dump(), "quantiles": list(self.quantiles)}

    @classmethod
    def from_dict(cls, d: dict) -> GRUConfig:
        return cls(**{**d, "quantiles": tuple(d.get("quantiles", LEGACY_LEVELS))})


class TrainConfig(Config):
    """Everything that shapes a training run; part of the checkpoint key, so a change trains afresh.

    `precision="auto"` trains under bf16 autocast on CUDA and on CPUs with native bf16 matrix
    instructions (AVX512-BF16 / AMX), fp32 elsewhere. `cpu_threads` sets torch's intra-op threads while
    training on CPU and while the fit and the evaluation run the network over a whole split (0 keeps
    torch's own setting, one per core). On a machine whose cores are busy with
    other work, 1 is much faster: the GRU's per-step ops are small, and threads that must meet at a
    barrier after each of them wait for each other's time slices.
    """

    epochs: int = Field(20, ge=1, le=100_000, description="Most epochs to train.")
    batch_size: int = Field(1024, ge=1, le=2**24, description="Windows per optimizer step.")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="Adam's learning rate.")
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False, description="Adam's L2 penalty.")
    grad_clip: float = Field(1.0, ge=0, allow_inf_nan=False, description="Gradient norm clip; 0 turns it off.")
    patience: int = Field(5, ge=1, le=100_000, description="Epochs without a better validation loss before stopping.")
    lr_patience: int = Field(
        2, ge=0, le=100_000, description="Epochs without improvement before the learning rate drops."
    )
    lr_factor: float = Field(0.5, gt=0, lt=1, description="Factor the learning rate drops by.")
    seed: int = Field(0, ge=0, description="Seed of every random number generator training uses.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N.")
    precision: Precision = Field("auto", description="auto: bf16 where the hardware has it.")
    cpu_threads: int = Field(0, ge=0, le=4096, description="torch's intra-op threads on CPU; 0 keeps torch's setting.")
    loss_weight: LossWeight = Field(
        "return",
        description="Pinball loss in returns (as evaluated: turbulent windows weigh more), in returns per sqrt(step) "
        "(return_per_step: every step about the same), or in volatility units (every window the same).",
    )
    calibration: Calibration = Field(
        "widen", description="Conformal margins fit on validation: widen intervals only, or also narrow them (cqr)."
    )
    gru: GRUConfig = Field(default_factory=GRUConfig, description="The network; its sizes follow the windows.")

    def net_config(self, input_size: int, horizon: int) -> GRUConfig:
        """The network for windows of `input_size` features and `horizon` steps."""
        return self.gru.updated(input_size=input_size, horizon=horizon)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


# ---- evaluate, register, backtest ----------------------------------------------------------------
class EvaluateConfig(Config):
    """What the evaluation reports: fan charts for the `fan_charts` best and worst tickers and the named ones."""

    fan_charts: int = Field(5, ge=0, le=100, strict=True, description="fan charts for this many best and worst tickers")
    fan_chart_tickers: tuple[str, ...] = Field((), description="tickers that always get a fan chart (when evaluated)")

    @field_validator("fan_chart_tickers", mode="before")
    @classmethod
    def _not_one_string(cls, value: Any) -> Any:
        # a bare string would otherwise become a tuple of its letters
        if isinstance(value, str):
            raise ValueError(f"fan_chart_tickers must be a list of ticker symbols, got {value!r}")
        return value


class RegisterConfig(Config):
    """The gate: the best forecaster by `primary_score` on the test windows becomes (or stays) champion.

    A candidate (the GRU, each distribution baseline, the current champion) passes when its 80% and 90%
    intervals cover as they should (`coverage_test`) and its point forecast is not significantly worse than
    naive (a Diebold-Mariano test of squared errors with a Newey-West variance, one-sided at `significance`:
    a distribution forecaster is never vetoed for noise in a median nobody is served). The best passing
    candidate wins; when none passes, the best by the primary score still wins and the reason says which
    condition it missed. A challenger replaces the current champion only when its primary score is lower
    significantly (the same test on the two forecasters' losses) and by more than `min_improvement`: ties and
    float noise never promote.
    """

    model_name: str | None = Field(
        None,
        min_length=1,
        description=f"the registered model (unset: {MODEL_NAME}, or {MODEL_NAME}-<data> when {MODEL_NAME}'s "
        "champion serves other tickers or columns)",
    )
    replace_universe: bool = Field(
        False, description="let this run replace a champion of model_name that serves other tickers or columns"
    )
    primary_score: PrimaryScore = Field("pinball", description="the score the gate ranks by (lower is better)")
    significance: float = Field(
        0.05,
        gt=0.0,
        lt=0.5,
        description="one-sided level of the gate's tests (vs naive, vs the champion, Kupiec's with coverage_test: kupiec)",
    )
    coverage_test: CoverageTest = Field(
        "tolerance",
        description="tolerance: coverage within coverage_tolerance of nominal; kupiec: Kupiec's test of the misses",
    )
    coverage_tolerance: float = Field(
        0.05, ge=0.0, le=0.5, description="0.05: an 80% interval must cover between 75% and 85% of outcomes"
    )
    min_skill: float | None = Field(
        None, ge=-1.0, lt=1.0, description="a hard floor on point skill vs naive besides the test (unset: none)"
    )
    min_improvement: float = Field(
        0.0, ge=0.0, lt=1.0, description="relative primary-score gain over the current champion needed to replace it"
    )

    @field_validator("model_name")
    @classmethod
    def _name_not_blank(cls, value: str | None) -> str | None:
        if value is not None and ("/" in value or "@" in value):
            raise ValueError("a model name holds no '/' or '@' (a model URI reads models:/NAME@alias)")
        return None if value is None else str(_not_blank(value))


class BacktestConfig(Config):
    """Walk-forward backtest: `folds` test periods of `step` trading days each, the last ending on the last day.

    `folds = 0` turns the backtest off.
    """

    folds: int = Field(0, ge=0, strict=True, description="walk-forward folds; 0 turns the backtest off")
    step: int = Field(63, ge=2, strict=True, description="trading days per fold's test period (63: about a quarter)")


# ---- the training flow's one parameter -----------------------------------------------------------
class PipelineConfig(BaseModel):
    """Every stage's config in one object: the training flow's only parameter, shown as a form in the Prefect UI."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    ingest: IngestConfig = Field(
        default_factory=IngestConfig,
        description="Where the prices come from (file, folder, glob or URI) and read limits",
    )
    validate_: ValidateConfig = Field(
        default_factory=ValidateConfig,
        alias="validate",
        description="Data checks that must pass before anything is trained",
    )
    window: WindowConfig = Field(
        default_factory=WindowConfig,
        description="Sliding windows: lookback, horizon, chronological splits and purge gap",
    )
    train: TrainConfig = Field(
        default_factory=TrainConfig,
        description="The GRU and its training: epochs, batch size, learning rate, seed, device",
    )
    evaluate: EvaluateConfig = Field(
        default_factory=EvaluateConfig,
        description="Test-set evaluation: fan charts of the best/worst N and named tickers",
    )
    register_: RegisterConfig = Field(
        default_factory=RegisterConfig, alias="register", description="Registered model name and the champion gate"
    )
    backtest: BacktestConfig = Field(
        default_factory=BacktestConfig, description="Walk-forward folds after the main split (0 folds: off)"
    )

    @field_validator("train")
    @classmethod
    def _levels_give_the_scored_intervals(cls, train: TrainConfig) -> TrainConfig:
        """Checked here, before any training: evaluation would only find the missing levels after it."""
        try:
            require_scored_intervals(train.gru.quantiles)
        except ValueError as exc:
            raise ValueError(f"gru.quantiles {exc}") from None
        return train

    def flat_params(self) -> dict[str, str]:
        """`section.field` (nested: `section.part.field`) -> value of every section, for MLflow params."""
        return flat_fields(self.model_dump(by_alias=True))


def flat_fields(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested mapping as dotted keys -> text (a tuple as a list)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat_fields(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(list(value) if isinstance(value, tuple) else value)
    return out


# ---- the daily flow ------------------------------------------------------------------------------
class ForecastConfig(Config):
    """Which model forecasts, and where the forecast file goes."""

    model_uri: str | None = Field(
        None,
        min_length=1,
        description="the model to forecast with (unset: the champion of the registered model that serves the "
        f"data's tickers and columns, {DEFAULT_MODEL_URI} when none does)",
    )
    out: str = Field("forecasts.parquet", min_length=1, description="where the forecast Parquet file is written")
    adaptive_gamma: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="step of the adaptive conformal margins: each interval of a ticker and step widens after a "
        "miss of its served forecasts and narrows after a hit, so that it covers as nominal; 0 turns them off",
    )


class ForecastStoreConfig(Config):
    """Where the forecast store lives."""

    uri: str | None = Field(None, description="any fsspec URI or folder; unset: TICKERFLOW_HOME/forecast_store")

    @field_validator("uri")
    @classmethod
    def _uri_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank (leave it unset for the home folder)")
        return value


class MonitorConfig(Config):
    """Live scoring and the degradation rule. A threshold set to None is not checked."""

    windows: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        (20, 60), min_length=1, description="rolling windows, in scored days"
    )
    min_days: int = Field(
        5, ge=1, description="a window reports once it holds this many scored days (<= the smallest window)"
    )
    rule_window: int = Field(20, ge=1, description="the window the degradation rule watches (one of `windows`)")
    days_in_row: int = Field(3, ge=1, description="scored days in a row past a threshold before the event fires")
    skill_margin: Annotated[float, Field(ge=0, lt=2)] | None = Field(
        0.05, description="degraded: live skill below the champion's test skill minus this margin"
    )
    rmse_ratio: Annotated[float, Field(gt=1)] | None = Field(
        1.5, description="degraded: live RMSE above this ratio times the champion's test RMSE"
    )
    coverage_tolerance: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        0.10, description="degraded: live interval coverage further than this from nominal"
    )
    lookback_days: int = Field(
        400, ge=1, description="only forecasts made in the last N calendar days are scored (>= the largest window)"
    )

    @model_validator(mode="after")
    def _fits_the_windows(self) -> Self:
        if self.min_days > min(self.windows):
            raise ValueError(f"min_days must be at most the smallest of windows {self.windows}, got {self.min_days}")
        if self.rule_window not in self.windows:
            raise ValueError(f"rule_window {self.rule_window} must be one of windows {self.windows}")
        if self.lookback_days < max(self.windows):
            raise ValueError(
                f"lookback_days must be >= the largest of windows {self.windows}, got {self.lookback_days}"
            )
        return self


class RetentionConfig(Config):
    """What `gc` keeps (tickerflow.tasks.retention says what each limit protects)."""

    keep_last_runs: int = Field(3, ge=1, description="training runs whose datasets, snapshots and Data Docs are kept")
    keep_forecast_runs: int = Field(20, ge=1, description="newest batch-forecast MLflow runs kept")
    forecast_store_days: int = Field(400, ge=1, description="forecast store partitions kept, in days before the newest")
    grace_minutes: float = Field(
        60.0, ge=0, description="anything younger is kept (a running flow may not have recorded it yet)"
    )
    resumable_hours: float = Field(24.0, ge=0, description="a dead process's checkpoint stays resumable this long")
    scratch_max_age_minutes: float = Field(
        60.0, ge=0, description="scratch folders of interrupted writes older than this go"
    )
    log_max_age_days: float = Field(14.0, ge=0, description="server logs older than this go")


# ---- the command line's own ----------------------------------------------------------------------
class RunnerConfig(Config):
    """`kind="thread"`: a pool of `max_workers` threads (None: Prefect's default).

    `kind="dask"`: the Dask scheduler at `address` (e.g. `tcp://10.0.0.5:8786`), or, with no address,
    a temporary local cluster of `n_workers` processes that lives as long as the flow run.
    """

    kind: RunnerKind = Field("thread", description="thread pool or Dask cluster")
    address: str | None = Field(None, description="Dask scheduler, tcp://HOST:PORT")
    n_workers: int | None = Field(None, ge=1, description="processes of a temporary local Dask cluster")
    max_workers: int | None = Field(None, ge=1, description="threads of the thread pool (None: Prefect's default)")

    @field_validator("address")
    @classmethod
    def _looks_like_a_uri(cls, address: str | None) -> str | None:
        if address is not None and "://" not in address:
            raise ValueError(f"dask scheduler address must look like tcp://HOST:PORT, got {address!r}")
        return address

    @model_validator(mode="after")
    def _options_fit_the_kind(self) -> Self:
        if self.address is not None and self.kind != "dask":
            raise ValueError(f"address ({self.address!r}) only applies to the dask runner, not {self.kind!r}")
        if self.n_workers is not None and (self.kind != "dask" or self.address is not None):
            raise ValueError(
                "n_workers sizes the temporary local Dask cluster; it needs --runner dask without an address"
            )
        return self


class ServerOptions(Config):
    """Where `ui` and `serve` start their servers."""

    host: str = Field(LOOPBACK, description="address to bind the servers to (loopback: only this machine)")
    prefect_port: int = Field(PREFECT_UI_PORT, ge=1, le=65535, description="port of the Prefect server (UI and API)")
    mlflow_port: int = Field(MLFLOW_UI_PORT, ge=1, le=65535, description="port of the MLflow tracking server and UI")
    # a cold `prefect server start` migrates its database first; 2 busy cores are slow
    startup_timeout: float = Field(120.0, gt=0, description="seconds a server may take to answer its health check")


# ---- the table of every setting ------------------------------------------------------------------
SECTIONS: dict[str, type[BaseModel]] = {
    "ingest": IngestConfig,
    "validate": ValidateConfig,
    "window": WindowConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "register": RegisterConfig,
    "backtest": BacktestConfig,
    "store": ForecastStoreConfig,
    "monitor": MonitorConfig,
    "retention": RetentionConfig,
}


def settings_rows(sections: dict[str, type[BaseModel]] = SECTIONS) -> list[tuple[str, str, str, str]]:
    """(dotted name, default, bounds, description) of every field of every section, nested ones dotted."""
    rows = []
    for section, model in sections.items():
        for name, info in model.model_fields.items():
            key = f"{section}.{info.alias or name}"
            default = info.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                rows += settings_rows({key: type(default)})
                continue
            bounds = ", ".join(
                f"{op} {getattr(m, attr)}"
                for m in info.metadata
                for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "length >="))
                if getattr(m, attr, None) is not None
            )
            shown = list(default) if isinstance(default, tuple) else default
            rows.append((key, "unset" if default is None else str(shown), bounds, info.description or ""))
    return rows


def settings_table(sections: dict[str, type[BaseModel]] = SECTIONS) -> str:
    """Markdown: one row per setting (`tickerflow config` prints it; docs/GUIDE.md holds it)."""
    lines = ["| setting | default | bounds | meaning |", "|---|---|---|---|"]
    for key, default, bounds, description in settings_rows(sections):
        cell = default.replace("|", "\\|")
        lines.append(f"| `{key}` | `{cell}` | {bounds} | {description.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)
