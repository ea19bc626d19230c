#!/usr/bin/env bash
# GPU check: on a CUDA machine, the training-throughput comparison on a dataset big enough to keep the
# GPU busy, then one full train_pipeline run on the bundled sample data. On a machine without CUDA it
# says so and exits 0.
#
#   bench/gpu_check.sh                      # uses .venv/bin/python (a CUDA build of torch is needed)
#   PYTHON=/path/to/python WINDOWS=1000000 EPOCHS=3 BIG_BATCH=16384 bench/gpu_check.sh
#
# Prints: device name, samples/s for (a) the tutorial loop in fp32 with data already on the device and
# (b) the project's train stage at the same batch size (and at BIG_BATCH), peak GPU memory of each, and the
# wall time of one `tickerflow run` on the sample data. Everything it writes goes to a temporary folder.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
WINDOWS="${WINDOWS:-1000000}"
EPOCHS="${EPOCHS:-3}"
BIG_BATCH="${BIG_BATCH:-16384}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK=true
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90 GIT_PYTHON_REFRESH=quiet

echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
set +e
"$PYTHON" - <<'EOF'
import sys, torch
print(f"torch {torch.__version__}, CUDA build: {torch.version.cuda}")
if not torch.cuda.is_available():
    print("no GPU found: torch.cuda.is_available() is False; nothing to check on this machine")
    sys.exit(3)
p = torch.cuda.get_device_properties(0)
print(f"device: {torch.cuda.get_device_name(0)}, {p.total_memory / 2**30:.0f} GiB, "
      f"bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF
status=$?
set -e
if [ "$status" -eq 3 ]; then exit 0; elif [ "$status" -ne 0 ]; then exit "$status"; fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo
echo "## throughput: ${WINDOWS} windows, ${EPOCHS} epochs"
"$PYTHON" bench/train_throughput.py --device cuda --windows "$WINDOWS" --epochs "$EPOCHS" \
    --extra-batch-size "$BIG_BATCH" 2> >(grep -v -E "^(epoch |INFO )" >&2)

echo
echo "## one full train_pipeline run on the sample data"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/prefect"
start=$(date +%s.%N)
env -u MLFLOW_TRACKING_URI -u PREFECT_API_URL TICKERFLOW_HOME="$tmp/home" PREFECT_HOME="$tmp/prefect" \
    "$(dirname "$PYTHON")/tickerflow" run --json > "$tmp/run.log" 2>&1 || { tail -50 "$tmp/run.log"; exit 1; }
end=$(date +%s.%N)
grep -E "epoch [0-9]+/|best epoch|skill vs naive" "$tmp/run.log" | sed 's/^.*| //' | tail -8
"$PYTHON" -c "print(f'train_pipeline wall time (process start to exit): {$end - $start:.1f} s')"
