"""The GRU forecaster: the tutorial's nn.GRU + Linear on the last time step, configurable."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GRUConfig:
    input_size: int = 1
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    horizon: int = 1

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "num_layers", "horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class GRUForecaster(nn.Module):
    """nn.GRU over the window, then a Linear head on the last time step: (B, L, F) -> (B, horizon)."""

    def __init__(self, config: GRUConfig) -> None:
        super().__init__()
        self.config = config
        self.gru = nn.GRU(
            config.input_size,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            # nn.GRU warns when dropout is set with a single layer: it only acts between layers
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden_size, config.horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)  # (B, L, H)
        return self.head(out[:, -1, :])  # (B, horizon)
