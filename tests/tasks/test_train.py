"""The train stage: per-epoch reporting, log lines and the progress bar, the GPU slot, retries that resume."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from tiny_models import TINY, Interrupt, fake_dataset, interrupt_after, split

from tickerflow.tracking.runs import TrackedRun
from tickerflow_model.trainer import (
    TrainingError,
    train_model,
)


class RecordingLog:
    """Stands in for the Prefect run logger: keeps each formatted line."""

    def __init__(self):
        self.lines = []

    def _record(self, msg, *args, extra=None):
        self.lines.append(msg % args)

    info = warning = _record


def recording_log(monkeypatch) -> RecordingLog:
    import tickerflow.tasks.train as train_task

    log = RecordingLog()
    monkeypatch.setattr(train_task, "run_logger", lambda: log)
    return log


class FakeTerminal:
    def __init__(self, tty):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def _record_resume(train_model_fn, resumed):
    def wrapped(*args, on_resume=None, **kwargs):
        def note(epoch):
            resumed.append(epoch)
            on_resume(epoch)

        return train_model_fn(*args, on_resume=note, **kwargs)

    return wrapped


def test_the_task_logs_a_line_per_epoch_and_the_fit(monkeypatch, tf_home):
    import tickerflow.tasks.train as train_task

    log = recording_log(monkeypatch)
    epochs = []
    result = train_task.train.fn(fake_dataset(monkeypatch), TINY, on_epoch=lambda s: epochs.append(s.epoch))
    assert epochs == [1, 2, 3, 4]
    epoch_lines = [line for line in log.lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert all("val_loss=" in line and "samples/s" in line for line in epoch_lines)
    assert log.lines[-1].startswith(f"best epoch {result.best_epoch} ") and "conformal margins" in log.lines[-1]


@pytest.mark.parametrize(
    "speed, device, threads, load, cores, hinted",
    [
        (300.0, "cpu", 2, 9.0, 2, True),  # crawling with two threads on a machine loaded 4.5x over
        (300.0, "cpu", 1, 9.0, 2, False),  # already one thread: nothing to suggest
        (300.0, "cpu", 2, 1.5, 2, False),  # slow but not busy: a slow CPU, not competing threads
        (4000.0, "cpu", 2, 9.0, 2, False),  # busy but fast enough
        (300.0, "cuda", 2, 9.0, 2, False),  # the threads do not train on a GPU
    ],
)
def test_the_throughput_hint_names_the_cure_only_when_threads_compete(speed, device, threads, load, cores, hinted):
    import tickerflow.tasks.train as train_task

    hint = train_task.throughput_hint(speed, device, threads, load, cores)
    assert (hint is not None) is hinted
    if hinted:
        assert f"{speed:.0f} samples/s on {threads} CPU threads" in hint and "cpu_threads: 1" in hint


def test_the_task_gives_the_throughput_hint_once_on_a_busy_machine(monkeypatch, tf_home):
    import tickerflow.tasks.train as train_task

    log = recording_log(monkeypatch)
    monkeypatch.setattr(train_task, "SLOW_CPU_SAMPLES_PER_SECOND", float("inf"))  # every epoch is slow
    monkeypatch.setattr(train_task, "machine_load", lambda: (50.0, 2))
    train_task.train.fn(fake_dataset(monkeypatch), TINY.updated(cpu_threads=2))
    hints = [line for line in log.lines if "the machine is busy" in line]
    assert len(hints) == 1 and "on 2 CPU threads while the load average is 50.0 on 2 cores" in hints[0]

    log.lines.clear()
    monkeypatch.setattr(train_task, "machine_load", lambda: (0.5, 2))  # a quiet machine: no hint
    train_task.train.fn(fake_dataset(monkeypatch), TINY.updated(cpu_threads=2))
    assert not [line for line in log.lines if "the machine is busy" in line]


def test_the_task_says_it_resumes_and_reports_only_the_remaining_epochs(monkeypatch, mlflow_store):
    import tickerflow.tasks.train as train_task
    from tickerflow.reporting import epoch_reporter
    from tickerflow.tracking.store import experiment_id, use_tracking

    dataset = fake_dataset(monkeypatch)
    x, y, xv, yv = split()
    with pytest.raises(Interrupt):
        train_model(
            x, y, xv, yv, TINY, checkpoint_dir=train_task.checkpoint_dir_for(dataset, TINY), on_epoch=interrupt_after(3)
        )
    client = use_tracking()
    run_id = client.create_run(experiment_id(client)).info.run_id
    log = recording_log(monkeypatch)
    train_task.train.fn(dataset, TINY, on_epoch=epoch_reporter(TrackedRun(run_id)))
    assert [line for line in log.lines if "resuming" in line][0].startswith("resuming from epoch 3 ")
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [4]


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bar_only_on_a_terminal(tty):
    from tickerflow.tasks.train import ProgressBar

    stream = FakeTerminal(tty)
    bar = ProgressBar(epochs=2, stream=stream)
    result = train_model(*split(), TINY.updated(epochs=2), on_batch=bar.on_batch, on_epoch=bar.on_epoch)
    bar.close()
    assert len(result.history) == 2
    if tty:
        assert "epoch 2/2" in stream.text and "val_loss=" in stream.text
    else:
        assert stream.text == ""


def test_gpu_slot_is_taken_only_on_cuda(monkeypatch):
    import tickerflow.tasks.train as train_task

    taken = []
    monkeypatch.setattr(train_task, "concurrency", lambda name, occupy: taken.append((name, occupy)) or "slot")
    assert train_task.gpu_slot(TINY.updated(device="cpu")) is not None and taken == []
    monkeypatch.setattr(train_task, "resolve_device", lambda name: torch.device("cuda"))
    assert train_task.gpu_slot(TINY) == "slot"
    assert taken == [("gpu", 1)]


def test_a_missing_gpu_limit_warns_and_lets_training_run(prefect_harness, caplog):
    # Documented behaviour of Prefect 3.9: a limit that does not exist is skipped with a warning.
    from prefect.concurrency.sync import concurrency

    ran = []
    with caplog.at_level(logging.WARNING):
        with concurrency("gpu-limit-that-does-not-exist", occupy=1):
            ran.append(True)
    assert ran == [True]
    assert any("do not exist" in r.getMessage() for r in caplog.records)


def test_a_retried_train_task_resumes_from_the_checkpoint(monkeypatch, mlflow_store, prefect_harness):
    from prefect import flow

    import tickerflow.tasks.train as train_task
    import tickerflow_model.fitting as fitting
    from tickerflow.reporting import epoch_reporter
    from tickerflow.tracking.store import experiment_id, use_tracking

    dataset = fake_dataset(monkeypatch)
    resumed = []
    monkeypatch.setattr(fitting, "train_model", _record_resume(fitting.train_model, resumed))
    client = use_tracking()
    run_id = client.create_run(experiment_id(client)).info.run_id
    report = epoch_reporter(TrackedRun(run_id))
    failed = []

    def flaky_report(s):
        if s.epoch == 2 and not failed:  # the tracking server drops the connection once, after epoch 2
            failed.append(s.epoch)
            raise ConnectionError("tracking server went away")
        report(s)

    @flow
    def train_once():
        return train_task.train(dataset, TINY, on_epoch=flaky_report)

    fit = train_once()
    assert failed == [2] and resumed == [2]
    assert fit.forecaster.net.config.hidden_size == TINY.gru.hidden_size
    # epoch 2's metrics were lost with the connection; the retry logged the epochs it trained
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 3, 4]


def test_a_training_error_is_not_retried(monkeypatch, mlflow_store, prefect_harness):
    from prefect import flow

    import tickerflow.tasks.train as train_task
    import tickerflow_model.fitting as fitting

    dataset = fake_dataset(monkeypatch, dataset_id="ds-nan")
    calls = []

    def nan_training(*args, **kwargs):
        calls.append(1)
        raise TrainingError("non-finite loss at epoch 1")

    monkeypatch.setattr(fitting, "train_model", nan_training)

    @flow
    def train_once():
        return train_task.train(dataset, TINY)

    with pytest.raises(TrainingError, match="epoch 1"):
        train_once()
    assert calls == [1]


def _on_a_terminal(script: Path, sized: bool) -> str:
    """Run `script` with a fresh pty as its terminal; everything it wrote there."""
    import os
    import pty
    import subprocess
    import sys

    main, terminal = pty.openpty()  # a fresh pty reports 0 x 0 until someone sets its size
    if sized:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True
    )
    os.close(terminal)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed its side
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(timeout=60) == 0, out
    return out.decode(errors="replace")


def test_the_progress_bar_appears_on_a_real_terminal_even_one_that_reports_no_size(tmp_path):
    child = tmp_path / "bar.py"
    child.write_text(
        "from tickerflow.tasks.train import ProgressBar\n"
        "bar = ProgressBar(epochs=2)\n"  # the stream is sys.stderr: the pty
        "for b in (1, 2, 3):\n"
        "    bar.on_batch(1, b, 3)\n"
        "bar.close()\n"
    )
    for sized in (False, True):
        text = _on_a_terminal(child, sized)
        assert "epoch 1/2:" in text and "/3 [" in text and "batch/s" in text, (sized, text)  # tqdm throttles redraws


def screen(text: str) -> list[str]:
    """The lines a terminal shows after `text`: carriage returns, newlines, cursor up and erase to the end of
    the line are followed; colours are dropped."""
    import re

    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|.", text, re.S):
        if token.startswith("\x1b["):
            n = int(re.sub(r"\D", "", token[2:-1]) or 1)
            if token.endswith("A"):
                row = max(row - n, 0)
            elif token.endswith("K"):
                lines[row] = lines[row][:col]
        elif token == "\r":
            col = 0
        elif token == "\n":
            row += 1
            lines += [""] * (row + 1 - len(lines))
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + 1 :]
            col += 1
    return [line.rstrip() for line in lines if line.strip()]


def test_log_lines_printed_while_the_bar_is_drawn_are_whole_lines_and_no_dead_bar_is_left(tmp_path):
    """A warning mid-training (a plain handler, and Prefect's own rich console handler) prints on a line of
    its own above the bar, never glued to it, and once training ends no bar is left on screen."""
    child = tmp_path / "bar_and_logs.py"
    child.write_text(
        "import logging, sys\n"
        "from prefect.logging.handlers import PrefectConsoleHandler\n"
        "from tickerflow.tasks.train import ProgressBar\n"
        "plain, rich = logging.getLogger('plain'), logging.getLogger('rich')\n"
        "plain.addHandler(logging.StreamHandler(sys.stderr))\n"
        "rich.addHandler(PrefectConsoleHandler(stream=sys.stderr))\n"
        "plain.propagate = rich.propagate = False\n"
        "bar = ProgressBar(epochs=2)\n"
        "bar.on_batch(1, 1, 3)\n"
        "plain.warning('WARNING a plain line mid-bar')\n"
        "bar.on_batch(1, 2, 3)\n"
        "rich.warning('WARNING a rich line mid-bar')\n"
        "bar.on_batch(1, 3, 3)\n"
        "bar.on_batch(2, 1, 3)\n"
        "bar.close()\n"
        "plain.warning('after the bar')\n"
        "assert plain.handlers[0].stream is sys.stderr and rich.handlers[0].console.file is sys.stderr\n"
    )
    for sized in (False, True):
        text = _on_a_terminal(child, sized)
        assert "epoch 1/2:" in text, text  # the bar was drawn
        assert screen(text) == ["WARNING a plain line mid-bar", "WARNING a rich line mid-bar", "after the bar"], (
            sized,
            screen(text),
            text,
        )
