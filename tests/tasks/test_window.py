"""The window stage: the Prefect fan-out per part writes what the plain path writes, and reruns from cache."""

from __future__ import annotations

import pandas as pd
from price_frames import staggered_prices

from tickerflow_model.config import WindowConfig
from tickerflow_model.window_dataset import SPLITS, build_window_dataset

CONFIG = WindowConfig(lookback=10, horizon=3, purge_gap=5, min_history=100, part_rows=600)


def test_flow_fans_out_per_part_matches_the_plain_path_and_reruns_cached(prefect_harness, tf_home, monkeypatch):
    """The Prefect path (plan, one mapped task per part, commit) writes the same bytes as the plain
    function, and a rerun on unchanged input is served from the cache (state Cached) for every task."""
    import shutil

    from prefect import flow

    import tickerflow.tasks.validate as validate_mod
    import tickerflow.tasks.window as window_mod

    # every final task state, as the task engine sets it (the API records states asynchronously)
    seen: list[tuple[str, str]] = []
    for module, name in [
        (validate_mod, "validate_prices"),
        (window_mod, "plan_windows"),
        (window_mod, "write_window_part"),
        (window_mod, "commit_windows"),
    ]:
        hooked = getattr(module, name).with_options(
            on_completion=[lambda t, run, state: seen.append((t.name, state.name))]
        )
        monkeypatch.setattr(module, name, hooked)

    def states() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for task_name, state_name in seen:
            out.setdefault(task_name, []).append(state_name)
        seen.clear()
        return out

    frame = staggered_prices()

    @flow
    def stages(frame: pd.DataFrame):
        report = validate_mod.validate(frame, validate_mod.ValidateConfig(), CONFIG.min_rows, "src")
        return window_mod.window(report.frame, CONFIG, "src")

    first = stages(frame)
    plain = build_window_dataset(frame, CONFIG, "src", tf_home / "plain")
    for split in SPLITS:
        assert [p.read_bytes() for p in first.part_files(split)] == [p.read_bytes() for p in plain.part_files(split)]
    assert first.manifest == plain.manifest | {"dataset_id": first.dataset_id}
    assert states() == {
        "validate": ["Completed"],
        "window-plan": ["Completed"],
        "window-part": ["Completed"] * 3,
        "window-commit": ["Completed"],
    }

    second = stages(frame)
    assert second.dataset_id == first.dataset_id
    assert states() == {
        "validate": ["Cached"],
        "window-plan": ["Cached"],
        "window-part": ["Cached"] * 3,
        "window-commit": ["Cached"],
    }

    # a cache entry is only trusted while its dataset is on disk
    shutil.rmtree(first.path)
    stages(frame)
    assert states() == {
        "validate": ["Cached"],
        "window-plan": ["Completed"],
        "window-part": ["Completed"] * 3,
        "window-commit": ["Completed"],
    }
    assert (tf_home / "windows" / first.dataset_id / "manifest.json").is_file()
