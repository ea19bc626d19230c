"""Names that more than one layer spells: defined once here."""

MODEL_NAME = "tickerflow-gru"  # the registered model: GRU versions and winning baselines alike
CHAMPION_ALIAS = "champion"
