"""Config files through the command line: a boolean is not a number, counts have upper bounds, a message
never echoes more than a few hundred characters of what it quotes, files have a size limit, and UTF-16
files are read."""

from __future__ import annotations

import json

import pytest

from tickerflow.cli import main
from tickerflow.cli.config_file import MAX_CONFIG_BYTES


def alias_bomb() -> str:
    """354-odd bytes of YAML whose aliases expand to millions of characters."""
    lines = ['a: &a ["xxxxxxxxxxxxxxxxxxxx", "xxxxxxxxxxxxxxxxxxxx", "xxxxxxxxxxxxxxxxxxxx", "xxxxxxxxxxxxxxxxxxxx"]']
    for prev, name in zip("abcde", "bcdef"):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    lines.append("train: {epochs: *f}")
    return "\n".join(lines) + "\n"


CASES = {
    "epochs_true.json": (json.dumps({"train": {"epochs": True}}), ("train.epochs", "valid integer, not a boolean")),
    "epochs_1e26.json": ('{"train": {"epochs": 1e26}}', ("train.epochs",)),
    "epochs_huge.json": (json.dumps({"train": {"epochs": 10**30}}), ("train.epochs", "less than or equal to 100000")),
    "lr_true.yaml": ("train: {lr: yes}\n", ("train.lr", "valid number, not a boolean")),
    "seed_huge.yaml": (f"train: {{seed: {10**20}}}\n", ("train.seed", "at most")),
    "alias_bomb.yaml": (alias_bomb(), ("train.epochs", "more characters")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_config_is_one_short_line_naming_the_field(name, tmp_path, capsys, prefect_harness):
    content, expect = CASES[name]
    path = tmp_path / name
    path.write_text(content)
    assert main(["run", "--config", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "Traceback" not in err
    assert err.startswith("tickerflow run: ") and len(err) < 1000, err[:2000]
    for word in expect:
        assert word in err


def test_a_config_file_past_the_size_limit_is_refused_unread(tmp_path, capsys, prefect_harness):
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    assert main(["run", "--config", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"tickerflow run: ConfigError: config file {path} is larger than {MAX_CONFIG_BYTES:,} bytes; a config is a few settings"
    )


def test_a_utf16_config_file_is_read(tmp_path, capsys, prefect_harness):
    """Windows editors save "Unicode" as UTF-16: the file is read, so the error is about its value."""
    path = tmp_path / "utf16.json"
    path.write_bytes(json.dumps({"train": {"epochs": 0}}).encode("utf-16"))
    assert main(["run", "--config", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "tickerflow run: ValidationError: train.epochs: Input should be greater than or equal to 1"
    ), err
