"""The steps around training, one at a time, in one process, on a window dataset `bench/scale.py --keep` left.

    python bench/scale_steps.py --dataset /tmp/scale-1m/run-*/tf/windows/<id> --data /tmp/scale-1m/universe-400x2500.parquet

For each step: seconds and the process's peak RSS *during that step* (VmHWM is reset before it through
/proc/self/clear_refs), above the RSS the step started from. Steps:

- read_split of train / val, with and without the index frame;
- the validation forward passes: fit_shrinkage + calibrate (two passes, as the fit once did) vs one
  pass (as fit_forecaster does now); fp32 vs bf16 autocast; torch's threads as set vs 1;
- the test split's predictions and baselines (predict_test_split) and the metric tables, with a cProfile
  of predict_test_split's top functions (--profile).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage_probe import memory_status as status  # noqa: E402 - (VmRSS, VmHWM) in MiB, one reader for both benches


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def step(label: str, fn, *args, **kwargs):
    gc.collect()
    reset_peak()
    rss0, _ = status()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - t0
    rss1, hwm = status()
    print(
        f"{label:<46} {seconds:7.2f} s   RSS {rss0:6.0f} -> {rss1:6.0f} MiB, peak {hwm:6.0f} (+{hwm - rss0:5.0f})",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the universe Parquet the dataset was built from")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--skip-read", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--skip-val", action="store_true", help="skip the validation-pass comparisons")
    parser.add_argument(
        "--stub-net",
        action="store_true",
        help="the test split's network pass returns fixed quantiles (memory of the rest, fast)",
    )
    parser.add_argument("--compare-threads", action="store_true", help="also time one val pass at 1 thread")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "models")]

    import pandas as pd
    import torch

    from tickerflow_model.config import TrainConfig
    from tickerflow_model.evaluation import Evaluation, metric_tables, predict_test_split, usable_baselines
    from tickerflow_model.forecaster import Forecaster, ModelSpec
    from tickerflow_model.gru import GRUForecaster, predict_batched
    from tickerflow_model.quantiles import median_index
    from tickerflow_model.trainer import autocast_context, fit_shrinkage, shrinkage_from_predictions
    from tickerflow_model.window_dataset import load_window_dataset, read_split

    if args.threads:
        torch.set_num_threads(args.threads)
    rss, _ = status()
    print(f"after imports: RSS {rss:.0f} MiB; torch threads {torch.get_num_threads()}")
    ds = load_window_dataset(args.dataset)
    c = ds.manifest["counts"]
    print(f"dataset {ds.dataset_id}: {c}; lookback {ds.spec.lookback}, features {ds.spec.n_features}")
    for split in ("train", "val", "test"):
        mib = c[split] * ds.spec.lookback * ds.spec.n_features * 4 / 2**20
        print(f"  {split}: x is {mib:.0f} MiB as float32")

    if not args.skip_read:
        out = step("read_split(train), index too", read_split, ds, "train")
        del out
        out = step("read_split(train), no index (as the fit reads it)", read_split, ds, "train", with_index=False)
        del out
    x_val, y_val, _ = step("read_split(val), no index", read_split, ds, "val", with_index=False)

    config = TrainConfig()
    torch.manual_seed(0)
    net = GRUForecaster(config.net_config(ds.spec.n_features, ds.spec.horizon)).eval()
    threads = torch.get_num_threads()

    def two_passes():
        shrink = fit_shrinkage(net, x_val, y_val)
        spec = ModelSpec(
            window=ds.spec, gru=net.config, scaler=ds.scaler, price_column=ds.price_column, shrinkage=shrink
        )
        return Forecaster(spec, net).calibrate(x_val, y_val)

    def one_pass():
        q, scale = predict_batched(net, x_val)
        shrink = shrinkage_from_predictions(q[:, :, median_index(net.config.quantiles)], y_val)
        return shrink

    def one_pass_bf16():
        with autocast_context(torch.device("cpu"), "bf16"):
            return one_pass()

    if args.skip_val:
        spec = ModelSpec(
            window=ds.spec,
            gru=net.config,
            scaler=ds.scaler,
            price_column=ds.price_column,
            shrinkage=(0.0,) * ds.spec.horizon,
        )
        forecaster = Forecaster(spec, net)
    else:
        forecaster = step("fit_shrinkage + calibrate (2 val passes)", two_passes)
        step("one val pass (fp32)", one_pass)
        step("one val pass (bf16 autocast)", one_pass_bf16)
    if args.stub_net:
        from statistics import NormalDist

        z = np.array([NormalDist().inv_cdf(q) for q in forecaster.spec.quantiles]) * 0.01
        forecaster.predict_quantiles = lambda x: np.broadcast_to(z, (len(x), ds.spec.horizon, len(z))).copy()
    if args.compare_threads:
        torch.set_num_threads(1)
        step("one val pass (fp32, 1 thread)", one_pass)
        torch.set_num_threads(threads)

    prices = step("read the universe", pd.read_parquet, args.data)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
    preds, quantiles, fitted = step("predict_test_split", predict_test_split, forecaster, ds, prices)
    if args.profile:
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
        print(s.getvalue())
    names = ["model"] + usable_baselines(preds, quantiles)
    step("metric_tables", metric_tables, preds, names, {n: q for n, q in quantiles.items() if n in names})

    overall, per_ticker, per_horizon = metric_tables(preds, names, {n: q for n, q in quantiles.items() if n in names})
    ev = Evaluation(
        overall,
        per_ticker,
        per_horizon,
        overall["model"]["skill"],
        len(preds),
        predictions=preds,
        quantiles={n: q for n, q in quantiles.items() if n in names},
        baselines=fitted,
    )
    frame = step("prediction_frame", ev.prediction_frame)
    step("test_predictions.parquet", frame.to_parquet, "/tmp/scale_steps_preds.parquet", index=False)
    step("ticker_table", ev.ticker_table)
    import pickle

    step("pickle the Evaluation (what a cache key / result would)", pickle.dumps, ev)


if __name__ == "__main__":
    main()
