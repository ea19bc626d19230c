"""Checkpoints hold tensors and plain values only, and a stale one never stops training."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from tiny_models import TINY, split

from tickerflow_model.trainer import CHECKPOINT_FILE, load_checkpoint, train_model


class Interrupt(Exception):
    pass


def _interrupted_checkpoint(tmp_path, config=TINY):
    def stop(stats):
        if stats.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_model(*split(), config, checkpoint_dir=tmp_path / "ck", on_epoch=stop)
    return tmp_path / "ck" / CHECKPOINT_FILE


def test_an_unfinished_checkpoint_loads_with_weights_only(tmp_path):
    path = _interrupted_checkpoint(tmp_path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # raises on any pickled object
    assert ckpt["epoch"] == 2 and isinstance(ckpt["numpy_rng"]["key"], torch.Tensor)


def test_a_checkpoint_with_pickled_objects_is_not_loaded(tmp_path):
    """A crafted file that would run code under weights_only=False is refused, and training starts afresh."""
    path = tmp_path / "ck" / CHECKPOINT_FILE
    path.parent.mkdir()
    torch.save({"finished": False, "numpy_rng": np.random.get_state()}, path)
    with pytest.warns(UserWarning, match="pickled objects"):
        assert load_checkpoint(path) is None


def test_a_checkpoint_of_another_model_shape_trains_afresh_with_a_warning(tmp_path):
    path = _interrupted_checkpoint(tmp_path)
    wider = TINY.updated(gru=TINY.gru.updated(hidden_size=12))
    with pytest.warns(UserWarning, match="does not fit this model"):
        result = train_model(*split(), wider, checkpoint_dir=path.parent)
    assert result.resumed_from_epoch == 0 and len(result.history) == wider.epochs
    assert result.net.gru.hidden_size == 12


def test_a_corrupt_checkpoint_is_moved_aside_and_training_starts_afresh(tmp_path):
    from tickerflow_model.trainer import CORRUPT_SUFFIX

    path = tmp_path / "ck" / CHECKPOINT_FILE
    path.parent.mkdir()
    path.write_bytes(pickle.dumps("x")[:3])
    with pytest.warns(UserWarning, match="cannot be read .*moved aside") as caught:
        result = train_model(*split(), TINY, checkpoint_dir=path.parent)
    assert not any("weights_only" in str(w.message) for w in caught)  # PyTorch's advice is wrong for a damaged file
    assert result.resumed_from_epoch == 0 and len(result.history) == TINY.epochs
    (aside,) = path.parent.glob(f"{CHECKPOINT_FILE}{CORRUPT_SUFFIX}-*")
    assert aside.read_bytes() == pickle.dumps("x")[:3]
    assert torch.load(path, map_location="cpu", weights_only=True)["finished"] is True  # a new, whole checkpoint
