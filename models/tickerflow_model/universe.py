"""A model's universe: the tickers it was trained on, the price it reads and the columns besides.

Different universes get different registered models, so training on one file never replaces the champion
that serves another. Two universes are the same when they read the same price and columns and share at
least half of their tickers (a ticker added to or dropped from a file stays in its model; MSFT.csv beside a
four-stock sample does not). Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tickerflow_model.atomic_io import stable_hash
from tickerflow_model.errors import TickerflowError
from tickerflow_model.names import MODEL_NAME, universe_model_name

UNIVERSE_TAG = "universe"  # on a version: its universe, as JSON
TAG_CHARS = 6000  # MLflow keeps 8,000 characters of a tag: a bigger universe keeps its count, its digest and
# as many of its first names as fit
SHARED_AT_LEAST = 0.5  # of the union of two ticker sets, for the two to be one universe


@dataclass(frozen=True)
class Universe:
    tickers: tuple[str, ...]
    price_column: str
    columns: tuple[str, ...] = ()  # what the features read besides the price (e.g. high, low)
    count: int = 0  # of every ticker, when `tickers` keeps only the first few (`complete` says)
    digest: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tickers", tuple(sorted(self.tickers)))
        object.__setattr__(self, "columns", tuple(sorted(set(self.columns) - {self.price_column})))
        if not self.count:
            object.__setattr__(self, "count", len(self.tickers))
        if not self.digest:
            key = {"tickers": self.tickers, "price": self.price_column, "columns": self.columns}
            object.__setattr__(self, "digest", stable_hash(key))

    @property
    def complete(self) -> bool:
        return len(self.tickers) == self.count

    def describe(self, shown: int = 6) -> str:
        """`AAPL, GOOG, IBM, MSFT (adj_close)` or `AAPL, ... and 394 more (close; high, low)`."""
        names = ", ".join(self.tickers[:shown])
        more = f" and {self.count - shown} more" if self.count > shown else ""
        columns = f"; {', '.join(self.columns)}" if self.columns else ""
        return f"{names}{more} ({self.price_column}{columns})"

    def shared(self, other: Universe) -> float:
        """The share of the two ticker sets' union that both hold (of the names a tag keeps)."""
        mine, theirs = set(self.tickers), set(other.tickers)
        return len(mine & theirs) / max(len(mine | theirs), 1)

    def same_as(self, other: Universe) -> bool:
        if self.digest == other.digest:
            return True
        same_inputs = self.price_column == other.price_column and self.columns == other.columns
        return same_inputs and self.shared(other) >= SHARED_AT_LEAST

    def difference(self, other: Universe) -> str:
        """What sets `other` (a champion's) apart from this run's, in a few words."""
        if self.price_column != other.price_column:
            return f"it reads {other.price_column}, this data {self.price_column}"
        if self.columns != other.columns:
            lacking = sorted(set(other.columns) - set(self.columns))
            extra = sorted(set(self.columns) - set(other.columns))
            parts = [f"this data lacks {', '.join(lacking)}"] if lacking else []
            parts += [f"this data adds {', '.join(extra)}"] if extra else []
            return "; ".join(parts)
        return f"they share {self.shared(other):.0%} of their tickers"

    def to_tag(self) -> str:
        head = {"count": self.count, "price": self.price_column, "columns": list(self.columns), "digest": self.digest}
        kept, used = [], len(json.dumps(head)) + 16
        for ticker in self.tickers:
            used += len(json.dumps(ticker)) + 2
            if used > TAG_CHARS:
                break
            kept.append(ticker)
        return json.dumps({"tickers": kept, **head})

    @classmethod
    def from_tag(cls, text: str | None) -> Universe | None:
        if not text:
            return None
        d = json.loads(text)
        return cls(tuple(d["tickers"]), d["price"], tuple(d.get("columns", ())), int(d["count"]), d["digest"])


class UniverseConflict(TickerflowError):
    """The model named for this run serves another universe, and the run was not told to replace it."""


def model_for(
    run: Universe,
    source: str,
    champions: dict[str, Universe | None],
    named: str | None = None,
    replace: bool = False,
) -> tuple[str, str | None]:
    """(the model this run registers under, a line saying why when it is not the one the user expects).

    `champions` maps the candidate names to their champion's universe (None: no champion, or one from before
    versions named their universe, which serves whatever it is given). A named model (`--model`,
    `register.model_name`) whose champion serves another universe is refused unless `replace`; without a name
    the run takes `tickerflow-gru`, or `tickerflow-gru-<data>` when `tickerflow-gru`'s champion serves another
    universe.
    """
    if named is not None:
        held = champions.get(named)
        if held is None or replace or run.same_as(held):
            return named, None
        raise UniverseConflict(
            f"model {named}'s champion serves {held.describe()}; this run has {run.describe()}, and "
            f"{run.difference(held)}: name another model with --model, or set register.replace_universe: true"
        )
    held = champions.get(MODEL_NAME)
    if held is None or run.same_as(held):
        return MODEL_NAME, None
    own = universe_model_name(source)
    theirs = champions.get(own)
    if theirs is not None and not run.same_as(theirs) and not replace:
        raise UniverseConflict(
            f"models {MODEL_NAME} and {own} both serve other data ({own}: {theirs.describe()}; this run: "
            f"{run.describe()}): name a model with --model"
        )
    return own, (
        f"{MODEL_NAME}'s champion serves {held.describe()}, and {run.difference(held)}: "
        f"this run registers under {own} (--model names another)"
    )


def serving_model(
    tickers: set[str], columns: set[str], champions: dict[str, Universe | None], source: str | None = None
) -> tuple[str, str | None]:
    """(the model to forecast `tickers` with, a line saying why when it is not `tickerflow-gru`): the model whose
    champion reads columns the data has and was trained on the most of `tickers`, then the one trained on the
    fewest others (`tickerflow-gru` on a tie).
    When no champion knows any of them: `tickerflow-gru`, or, given the data's `source` and a `tickerflow-gru`
    that serves another universe, the model a run on that source trains (`tickerflow-gru-<data>`)."""

    def rank(item: tuple[str, Universe]) -> tuple[int, float, bool, str]:
        name, universe = item
        known = len(tickers & set(universe.tickers))
        return (known, known / max(len(tickers | set(universe.tickers)), 1), name == MODEL_NAME, name)

    usable = {
        name: u
        for name, u in champions.items()
        if u is not None and {u.price_column, *u.columns} <= columns and tickers & set(u.tickers)
    }
    if not usable:
        taken = champions.get(MODEL_NAME) is not None
        return (universe_model_name(source) if source is not None and taken else MODEL_NAME), None
    name, universe = max(usable.items(), key=rank)
    if name == MODEL_NAME:
        return name, None
    known = len(tickers & set(universe.tickers))
    return name, (
        f"forecasting with {name}: its champion was trained on {known} of this data's {len(tickers)} "
        f"tickers ({universe.describe()}); --model names another"
    )
