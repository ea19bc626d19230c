"""A corrupt checkpoint through the command line: the next run sets it aside with a warning and trains
afresh (it used to fail every run until someone deleted the file); `tickerflow gc` removes it."""

from __future__ import annotations

import pickle

import pytest

from tickerflow.cli import main
from tickerflow_model.trainer import CHECKPOINT_FILE, CORRUPT_SUFFIX

GARBAGE = pickle.dumps("not a checkpoint")[:5]


def test_a_corrupt_checkpoint_is_set_aside_and_gc_removes_it(
    prefect_harness, mlflow_store, small_sample_csv, tf_home, capfd
):
    command = ["run", "--data", str(small_sample_csv), "--epochs", "1"]
    assert main(command) == 0
    (checkpoint,) = (tf_home / "checkpoints").glob(f"*/{CHECKPOINT_FILE}")
    checkpoint.write_bytes(GARBAGE)  # a disk error, a truncated copy
    capfd.readouterr()

    with pytest.warns(UserWarning) as caught:  # (pytest takes the warnings the console would show)
        assert main(command) == 0  # the same data and config: the same checkpoint folder
    out, err = capfd.readouterr()
    said = [str(w.message) for w in caught if str(checkpoint) in str(w.message)]
    assert len(said) == 1 and "moved aside" in said[0] and "training afresh" in said[0]
    assert not any("weights_only" in str(w.message) for w in caught)
    assert "weights_only" not in out + err and "Traceback" not in out + err
    (aside,) = checkpoint.parent.glob(f"{CHECKPOINT_FILE}{CORRUPT_SUFFIX}-*")
    assert aside.read_bytes() == GARBAGE

    never_rerun = tf_home / "checkpoints" / "0123456789abcdef" / CHECKPOINT_FILE  # corrupt, and no run came back to it
    never_rerun.parent.mkdir()
    never_rerun.write_bytes(GARBAGE)
    assert main(["gc"]) == 0
    out, _ = capfd.readouterr()
    assert f"removed {aside} " in out and f"removed {never_rerun} " in out
    assert out.count("corrupt checkpoint") == 2
    assert not aside.exists() and not never_rerun.exists()
    assert checkpoint.exists()  # the good checkpoint the second run wrote stays
