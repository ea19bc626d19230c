"""The GRU module: config rejection, output shape (quantiles per horizon step), determinism under a seed."""

from __future__ import annotations

import pytest
import torch

from tickerflow_model.config import GRUConfig
from tickerflow_model.gru import GRUForecaster


@pytest.mark.parametrize(
    "bad, named",
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"horizon": 0}, "horizon"),
        ({"num_layers": 0}, "num_layers"),
        ({"input_size": -1}, "input_size"),
        ({"hidden_size": 8.5}, "hidden_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
    ],
)
def test_config_rejects_bad_values_naming_them(bad, named):
    with pytest.raises(ValueError, match=named) as info:
        GRUConfig(**bad)
    assert repr(next(iter(bad.values()))) in str(info.value)


@pytest.mark.parametrize("batch, lookback, features, horizon", [(1, 5, 1, 1), (7, 60, 2, 5)])
def test_output_is_one_set_of_quantiles_per_horizon_step(batch, lookback, features, horizon):
    config = GRUConfig(input_size=features, hidden_size=8, num_layers=2, horizon=horizon)
    net = GRUForecaster(config)
    out = net(torch.randn(batch, lookback, features))  # (B, L, F) -> (B, H, Q)
    assert out.shape == (batch, horizon, len(config.quantiles))
    z, scale = net.standardized(torch.randn(batch, lookback, features))
    assert z.shape == out.shape and scale.shape == (batch, horizon) and (scale > 0).all()


def test_output_reads_the_last_time_step_of_each_window_only_forward_in_time():
    # Changing the oldest input changes the forecast; the head sees the final hidden state.
    torch.manual_seed(0)
    net = GRUForecaster(GRUConfig(hidden_size=8)).eval()
    x = torch.randn(2, 10, 1)
    x2 = x.clone()
    x2[1, 0, 0] += 5.0
    with torch.no_grad():
        a, b = net(x), net(x2)
    assert torch.equal(a[0], b[0])  # windows are independent
    assert not torch.equal(a[1], b[1])


def test_same_seed_same_weights_and_outputs_different_seed_differs():
    x = torch.randn(4, 12, 1)

    def build(seed):
        torch.manual_seed(seed)
        return GRUForecaster(GRUConfig(hidden_size=16))

    a, b, c = build(3), build(3), build(4)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))


def test_dropout_between_layers_only_when_there_are_layers_to_drop_between():
    assert GRUForecaster(GRUConfig(num_layers=1, dropout=0.3)).gru.dropout == 0.0
    assert GRUForecaster(GRUConfig(num_layers=2, dropout=0.3)).gru.dropout == 0.3
