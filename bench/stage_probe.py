"""Per-stage time and memory of one `tickerflow run`, measured inside the run's own process.

`bench/scale.py --probe` imports this in the child before the CLI runs and calls `install(path)`:

- the flow's stages (the names `train_pipeline` calls: ingest, validate, window, train, evaluate, ...)
  and a few steps inside them (read_split, the training loop, fit_shrinkage, calibrate, the test-split
  predictions, the metric tables, the reports, the artifact upload) are wrapped by a timer that
  records, per call, its start and end (seconds since the child's first line), the RSS at entry and
  exit, and the process's high-water mark (VmHWM) at entry and exit: the step during which VmHWM
  rises to its final value is the one that set the peak, exactly, whatever the sampling rate;
- a thread samples VmRSS every `interval` seconds and keeps, per innermost open step, its maximum.

The wrappers call the original objects unchanged (a Prefect task stays a Prefect task), so the run
does the same work; only its stages' boundaries are observed. At exit the records are written as JSON.
"""

from __future__ import annotations

import atexit
import functools
import json
import threading
import time
from pathlib import Path

T0 = time.perf_counter()
T0_WALL = time.time()
_records: list[dict] = []
_stack: list[str] = []
_peak_by_label: dict[str, float] = {}
_lock = threading.Lock()
_marks: list[tuple[str, float]] = []


def memory_status() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MiB."""
    rss = hwm = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def now() -> float:
    return time.perf_counter() - T0


def mark(label: str) -> None:
    """A point in time (e.g. 'imports done')."""
    _marks.append((label, now()))


def _sampler(interval: float) -> None:
    while True:
        rss, _ = memory_status()
        with _lock:
            label = _stack[-1] if _stack else "(outside)"
            if rss > _peak_by_label.get(label, 0.0):
                _peak_by_label[label] = rss
        time.sleep(interval)


def wrap(fn, label: str):
    @functools.wraps(fn)
    def probed(*args, **kwargs):
        rss0, hwm0 = memory_status()
        t0 = now()
        with _lock:
            _stack.append(label)
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                _stack.remove(label) if label in _stack else None
            rss1, hwm1 = memory_status()
            _records.append(
                {
                    "label": label,
                    "start": t0,
                    "end": now(),
                    "rss_in": rss0,
                    "rss_out": rss1,
                    "hwm_in": hwm0,
                    "hwm_out": hwm1,
                    "depth": len(_stack),
                }
            )

    return probed


def _patch(module, name: str, label: str | None = None) -> None:
    setattr(module, name, wrap(getattr(module, name), label or name))


def install(out: str | Path, interval: float = 0.1) -> None:
    mark("probe installed")
    import tickerflow.flows.train_pipeline as tp

    mark("train_pipeline imported")
    for name in (
        "start_mlflow_run",
        "ingest",
        "validate",
        "require_valid",
        "window",
        "train",
        "load_champion",
        "evaluate",
        "backtest",
        "register",
        "finish_mlflow_run",
    ):
        _patch(tp, name)
    import tickerflow.reporting.recorder as recorder  # the reporting tasks, called through the flow's RunRecorder

    for name in (
        "log_validation",
        "log_dataset_lineage",
        "log_training",
        "log_evaluation",
        "log_backtest",
        "log_registration",
    ):
        _patch(recorder, name)

    import tickerflow.reporting.evaluation as rep
    import tickerflow.tasks.window as w
    import tickerflow_model.window_dataset as wd

    _patch(wd, "ticker_slices", "window.ticker_slices")
    # tasks called through .with_options(...): observe the function inside the task instead
    for task_, label in (
        (w.plan_windows, "window.plan"),
        (w.write_window_part, "window.write_part"),
        (w.commit_windows, "window.commit"),
    ):
        task_.fn = wrap(task_.fn, label)

    import tickerflow.tasks.train as t
    import tickerflow_model.fitting as fit

    _patch(fit, "read_split", "train.read_split")
    _patch(fit, "train_model", "train.loop (epochs)")
    _patch(fit, "predict_batched", "train.validation pass after a resume")  # else the loop's own pass serves
    import tickerflow_model.trainer as tr

    _patch(tr, "train_one_epoch", "train.loop.training pass")
    _patch(tr, "validation_pass", "train.loop.validation pass")
    _patch(t, "checkpoint_dir_for", "train.checkpoint_dir_for")
    from tickerflow_model.forecaster import Forecaster

    Forecaster.calibrated_on = wrap(Forecaster.calibrated_on, "train.calibrate")
    Forecaster.predict_quantiles = wrap(Forecaster.predict_quantiles, "predict_quantiles")

    import tickerflow_model.evaluation as e

    _patch(e, "read_split", "evaluate.read_split")
    _patch(e, "ticker_histories", "evaluate.ticker_histories")
    _patch(e, "predict_test_split", "evaluate.predict_test_split")
    _patch(e, "metric_tables", "evaluate.metric_tables")
    _patch(e, "usable_baselines", "evaluate.usable_baselines")
    _patch(e, "baseline_quantiles", "evaluate.baseline_quantiles")
    e.BaselineForecaster.fit = wrap(e.BaselineForecaster.fit, "evaluate.BaselineForecaster.fit")
    _patch(rep, "write_reports", "log_evaluation.write_reports")

    threading.Thread(target=_sampler, args=(interval,), daemon=True).start()

    def dump() -> None:
        rss, hwm = memory_status()
        Path(out).write_text(
            json.dumps(
                {
                    "marks": _marks + [("exit", now())],
                    "records": _records,
                    "peak_by_label": _peak_by_label,
                    "final_rss": rss,
                    "final_hwm": hwm,
                    "t0_wall": T0_WALL,
                }
            )
        )

    atexit.register(dump)
    mark("probe ready")


def report(path: str | Path, wall: float, child_start_offset: float | None = None) -> str:
    """A readable table of the probe's JSON."""
    data = json.loads(Path(path).read_text())
    lines = [
        f"child process: probe import at {data['t0_wall'] - child_start_offset:.2f} s after Popen"
        if child_start_offset
        else "",
        "marks (s since the child's first line):",
    ]
    lines += [f"  {label:<28} {t:8.2f}" for label, t in data["marks"]]
    lines.append(
        "steps: start end seconds | RSS in -> out MiB | VmHWM in -> out MiB | sampled max RSS in step (innermost)"
    )
    # aggregate repeated calls of the same label (window parts, baseline_quantiles per ticker)
    agg: dict[str, dict] = {}
    order: list[str] = []
    for r in data["records"]:
        a = agg.get(r["label"])
        if a is None:
            agg[r["label"]] = a = {**r, "calls": 0, "seconds": 0.0}
            order.append(r["label"])
        a["calls"] += 1
        a["seconds"] += r["end"] - r["start"]
        a["end"] = max(a["end"], r["end"])
        a["rss_out"] = r["rss_out"]
        a["hwm_out"] = max(a["hwm_out"], r["hwm_out"])
    for label in sorted(order, key=lambda k: agg[k]["start"]):
        a = agg[label]
        lines.append(
            f"  {'  ' * a['depth']}{label:<34} {a['start']:7.1f} {a['end']:7.1f} {a['seconds']:7.1f}s"
            f"{'' if a['calls'] == 1 else ' (%d calls)' % a['calls']:<12}"
            f" | {a['rss_in']:7.0f} -> {a['rss_out']:7.0f} | {a['hwm_in']:7.0f} -> {a['hwm_out']:7.0f}"
            f" | {data['peak_by_label'].get(label, float('nan')):7.0f}"
        )
    lines.append(f"final VmHWM {data['final_hwm']:.0f} MiB, final RSS {data['final_rss']:.0f} MiB")
    return "\n".join(lines)
