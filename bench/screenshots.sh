#!/usr/bin/env bash
# The MLflow screenshots in docs/screenshots: a training run's Overview (its note) and Model metrics tabs, and
# the registered model's versions. One `tickerflow run` on the bundled sample in a scratch TICKERFLOW_HOME, an
# MLflow server over that store on loopback, and headless Chromium at 1600x1000 driven over the DevTools
# protocol, which waits until each page shows what it is taken for (the UI is a JavaScript app).
#
#   bench/screenshots.sh [EPOCHS]                    # default 20 epochs; needs `chromium` on PATH
#   SCREENSHOT_HOME=DIR bench/screenshots.sh         # reuse DIR's run (its summary.json) instead of training
#
# Environment: MLFLOW_PORT (default 5099), OUT (default docs/screenshots).
set -euo pipefail
cd "$(dirname "$0")/.."

EPOCHS=${1:-20}
PORT=${MLFLOW_PORT:-5099}
OUT=${OUT:-docs/screenshots}
HOME_DIR=${SCREENSHOT_HOME:-$(mktemp -d)}
export TICKERFLOW_HOME=$HOME_DIR PREFECT_HOME=$HOME_DIR/prefect DO_NOT_TRACK=1
mkdir -p "$OUT" "$PREFECT_HOME"

if [ ! -s "$HOME_DIR/summary.json" ]; then
    echo "== tickerflow run on the bundled sample, $EPOCHS epochs, TICKERFLOW_HOME=$HOME_DIR"
    .venv/bin/tickerflow run --data data/sample/stocks_daily_2000_2013.csv.gz --epochs "$EPOCHS" --json \
        | tee "$HOME_DIR/run.log" | tail -n 1 > "$HOME_DIR/summary.json"
fi
run_page=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["mlflow_run_url"].split("#", 1)[1])' \
    "$HOME_DIR/summary.json")
model=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["model_name"])' "$HOME_DIR/summary.json")

echo "== mlflow server on 127.0.0.1:$PORT over $HOME_DIR/mlflow.db"
# a job of its own (job control on): its process group is its pid, so the server's workers stop with it
set -m
.venv/bin/mlflow server --host 127.0.0.1 --port "$PORT" --backend-store-uri "sqlite:///$HOME_DIR/mlflow.db" \
    --artifacts-destination "$HOME_DIR/mlartifacts" > "$HOME_DIR/mlflow-server.log" 2>&1 &
server=$!
set +m
trap 'kill -- -$server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 120); do
    curl -fs "http://127.0.0.1:$PORT/health" > /dev/null && break
    sleep 1
done

echo "== chromium, 1600x1000: the run ($run_page), its Model metrics tab, the versions of $model"
.venv/bin/python - "http://127.0.0.1:$PORT" "$run_page" "$model" "$OUT" <<'PY'
"""Drive headless Chromium over the DevTools protocol: open each page, wait until it shows what it is taken for,
save a PNG."""

import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

origin, run_page, model, out = sys.argv[1:5]
SHOTS = [  # file, page, a JavaScript condition that holds once the page shows what it is taken for
    ("mlflow-run-overview.png", run_page, "document.body.innerText.includes('the champion is')"),
    (
        "mlflow-run-model-metrics.png",
        f"{run_page}/model-metrics",
        "document.body.innerText.includes('headline') && document.querySelectorAll('.main-svg').length >= 6",
    ),
    (
        "mlflow-model-versions.png",
        f"/models/{model}",
        "document.body.innerText.includes('Version 1') && document.body.innerText.includes('champion')",
    ),
]
# Set before the app reads them: MLflow's assistant panel opens by itself on a first visit and takes a third of
# the page, and the sidebar would show the GenAI workflow's pages instead of model training's.
STORAGE = {
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
    "mlflow.assistant.panelOpen_v1": "false",
    "mlflow.workflowType_v1": '"machine_learning"',
}
FOLDED = "document.body.innerText.includes('Show more')"  # the run page folds a description over 100 px

profile = tempfile.mkdtemp()
browser = subprocess.Popen(
    ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1600,1000",
     "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)  # fmt: skip
try:
    port_file = Path(profile) / "DevToolsActivePort"
    for _ in range(300):
        if port_file.exists() and port_file.read_text().count("\n") >= 1:
            break
        time.sleep(0.1)
    port, path = port_file.read_text().split("\n")[:2]
    with connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as ws:
        ids = iter(range(1, 1_000_000))

        def call(method, session=None, **params):
            n = next(ids)
            ws.send(json.dumps({"id": n, "method": method, "params": params, **({"sessionId": session} if session else {})}))
            while True:
                reply = json.loads(ws.recv())
                if reply.get("id") == n:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})

        target = call("Target.createTarget", url="about:blank")["targetId"]
        session = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        call("Emulation.setDeviceMetricsOverride", session, width=1600, height=1000, deviceScaleFactor=1, mobile=False)

        def evaluate(expression):
            return call("Runtime.evaluate", session, expression=expression, returnByValue=True)["result"].get("value")

        call("Page.enable", session)
        call(
            "Page.addScriptToEvaluateOnNewDocument",
            session,
            source="".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in STORAGE.items()),
        )
        for name, page, ready in SHOTS:
            call("Page.navigate", session, url=f"{origin}/#{page}")
            deadline = time.monotonic() + 120
            while not evaluate(f"Boolean({ready})"):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name}: the page did not show what it is taken for within 120 s ({page})")
                time.sleep(1)
            time.sleep(3)  # charts animate in, fonts settle
            png = base64.b64decode(call("Page.captureScreenshot", session, format="png")["data"])
            (Path(out) / name).write_bytes(png)
            folded = " (the description is folded under 'Show more')" if page == run_page and evaluate(FOLDED) else ""
            print(f"{out}/{name}: {len(png) // 1024} KiB{folded}")
finally:
    browser.terminate()
PY
