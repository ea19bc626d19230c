"""`tickerflow models` as a person reads it: a decision that kept the champion says so, and a version's row
says what happened to it last, the gate's verdict or a later move by hand."""

from __future__ import annotations

from tickerflow.cli.registry import format_event, format_listing

GATE_V1 = "the GRU has the best pinball"
GATE_V2 = "champion v1 has the best pinball (0.50 vs 0.60)"


def _row(version: str, gate: str, reason: str, aliases: list[str]) -> dict:
    return {
        "version": version,
        "aliases": aliases,
        "forecaster": "gru",
        "test_rmse": "1.0",
        "test_pinball": "0.5",
        "test_coverage_80": "0.8",
        "test_coverage_90": "0.9",
        "skill_vs_naive": "0.0",
        "scoring_error": None,
        "gate": gate,
        "gate_reason": reason,
    }


def _event(action: str, version: str, previous: str | None, by: str, why: str, at: str) -> dict:
    return {"action": action, "version": version, "previous": previous, "by": by, "why": why, "at": at}


HISTORY = [
    _event("promote", "1", None, "train_pipeline run a1", GATE_V1, "2026-12-01T10:00:00+00:00"),
    _event("keep", "2", "1", "train_pipeline run b2", GATE_V2, "2026-12-02T10:00:00+00:00"),
    _event("promote", "2", "1", "ana", "hotfix data", "2026-12-03T10:00:00+00:00"),
]


def test_a_keep_says_the_champion_stayed_and_the_challenger_was_not_promoted():
    assert format_event(HISTORY[1]) == (
        f"2026-12-02T10:00:00+00:00  keep     v1 stays champion; v2 not promoted  by train_pipeline run b2: {GATE_V2}"
    )
    assert format_event(HISTORY[2]) == "2026-12-03T10:00:00+00:00  promote  v2 (was v1)  by ana: hotfix data"
    assert "v1 stays champion" in format_event(_event("keep", "1", "1", "train_pipeline run c3", "same", "t"))
    assert "v2 not promoted" in format_event(_event("refused", "2", "3", "x", "moved", "t"))


def test_a_version_promoted_by_hand_shows_its_promotion_not_the_gates_rejection():
    listing = {
        "model": "m",
        "versions": [
            _row("2", "rejected", GATE_V2, ["champion"]),
            _row("1", "promoted", GATE_V1, []),
        ],
        "champion_history": HISTORY,
    }
    rows = format_listing(listing).splitlines()
    assert rows[1].endswith("last decision")
    assert rows[2].endswith("promoted by ana at 2026-12-03T10:00:00+00:00: hotfix data")
    assert rows[3].endswith(f"promoted: {GATE_V1}")  # the gate's own decision reads as before
    assert "keep     v1 stays champion; v2 not promoted" in rows[-2]
