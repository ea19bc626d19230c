"""Counts in words, in every layer's messages: `1 ticker`, `5 tickers`, never `1 tickers` or `ticker(s)`."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`counted(1, "ticker")` -> "1 ticker"; `counted(5, "ticker")` -> "5 tickers"; an irregular `plural` when given."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
