"""A model per universe: which registered model a run competes in, and which champion serves a data set."""

from __future__ import annotations

import json

import pytest

from tickerflow_model.names import MODEL_NAME
from tickerflow_model.universe import TAG_CHARS, Universe, UniverseConflict, model_for, serving_model

SAMPLE = Universe(("AAPL", "GOOG", "IBM", "MSFT"), "adj_close", ("high", "low", "open"))
MSFT = Universe(("MSFT",), "adj_close", ("high", "low", "open"))
SAMPLE_CLOSE_ONLY = Universe(("AAPL", "GOOG", "IBM", "MSFT"), "close")


def test_a_universe_is_the_same_when_it_reads_the_same_columns_and_shares_half_its_tickers():
    grown = Universe(("AAPL", "GOOG", "IBM", "MSFT", "NVDA"), "adj_close", ("open", "low", "high"))
    assert SAMPLE.same_as(grown) and grown.same_as(SAMPLE)  # a ticker added to the file stays in its model
    assert not SAMPLE.same_as(MSFT)  # one ticker of four shared
    assert not SAMPLE.same_as(SAMPLE_CLOSE_ONLY)  # same tickers, another price and no high/low/open
    assert SAMPLE_CLOSE_ONLY.difference(SAMPLE) == "it reads adj_close, this data close"
    fewer = Universe(SAMPLE.tickers, "adj_close", ("high", "low"))
    assert fewer.difference(SAMPLE) == "this data lacks open"


def test_a_universe_round_trips_through_its_tag_and_a_big_one_keeps_its_count_and_digest():
    assert Universe.from_tag(SAMPLE.to_tag()) == SAMPLE
    big = Universe(tuple(f"T{i:05d}" for i in range(5000)), "close")
    tag = big.to_tag()
    assert len(tag) <= TAG_CHARS
    back = Universe.from_tag(tag)
    assert back is not None and back.count == 5000 and back.digest == big.digest and not back.complete
    assert back.same_as(big)  # by digest, though the tag keeps only the first names
    assert back.describe(shown=2) == "T00000, T00001 and 4998 more (close)"
    assert Universe.from_tag(None) is None
    assert json.loads(tag)["tickers"][0] == "T00000"


def test_without_a_name_a_run_on_another_universe_gets_a_model_of_its_own():
    assert model_for(SAMPLE, "data/sample/stocks.csv.gz", {}) == (MODEL_NAME, None)
    assert model_for(SAMPLE, "stocks.csv", {MODEL_NAME: SAMPLE}) == (MODEL_NAME, None)
    assert model_for(SAMPLE, "stocks.csv", {MODEL_NAME: None}) == (MODEL_NAME, None)  # a champion of before
    name, why = model_for(MSFT, "/data/MSFT.csv", {MODEL_NAME: SAMPLE, f"{MODEL_NAME}-MSFT": None})
    assert name == f"{MODEL_NAME}-MSFT"
    assert why is not None and "AAPL, GOOG, IBM, MSFT (adj_close; high, low, open)" in why and "--model" in why
    # the second run on MSFT.csv competes with the first one's champion, which serves the same universe
    assert model_for(MSFT, "/data/MSFT.csv", {MODEL_NAME: SAMPLE, f"{MODEL_NAME}-MSFT": MSFT})[0] == name


def test_a_named_model_serving_another_universe_is_refused_unless_told_to_replace_it():
    with pytest.raises(UniverseConflict, match="register.replace_universe") as err:
        model_for(SAMPLE_CLOSE_ONLY, "wide.csv", {"prod": SAMPLE}, named="prod")
    assert "it reads adj_close, this data close" in str(err.value)
    assert model_for(SAMPLE_CLOSE_ONLY, "wide.csv", {"prod": SAMPLE}, named="prod", replace=True) == ("prod", None)
    assert model_for(MSFT, "MSFT.csv", {"prod": None}, named="prod") == ("prod", None)
    with pytest.raises(UniverseConflict, match="--model"):  # both default names are taken by other universes
        model_for(MSFT, "MSFT.csv", {MODEL_NAME: SAMPLE, f"{MODEL_NAME}-MSFT": SAMPLE_CLOSE_ONLY})


def test_the_serving_model_is_the_one_trained_on_most_of_the_data_with_columns_it_has():
    champions = {MODEL_NAME: SAMPLE, f"{MODEL_NAME}-MSFT": MSFT, "wide": SAMPLE_CLOSE_ONLY}
    ohlc = {"date", "ticker", "open", "high", "low", "close", "adj_close", "volume"}
    assert serving_model({"AAPL", "GOOG", "IBM", "MSFT", "FB"}, ohlc, champions) == (MODEL_NAME, None)
    name, why = serving_model({"MSFT"}, ohlc, champions)  # both know MSFT: the one that knows nothing else
    assert name == f"{MODEL_NAME}-MSFT" and why is not None and "1 of this data's 1 tickers" in why
    name, why = serving_model({"AAPL", "GOOG"}, {"date", "ticker", "close"}, champions)
    assert name == "wide" and why is not None and "2 of this data's 2 tickers" in why
    assert serving_model({"TSLA"}, ohlc, champions) == (MODEL_NAME, None)
    # a replay of a file no champion serves trains the model a run on it would: its own
    assert serving_model({"TSLA"}, ohlc, champions, source="TSLA.csv") == (f"{MODEL_NAME}-TSLA", None)
    assert serving_model({"TSLA"}, ohlc, {}, source="TSLA.csv") == (MODEL_NAME, None)
