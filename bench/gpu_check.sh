#!/usr/bin/env bash
# The GPU paths, on a machine with an NVIDIA GPU (CI never runs this; run it when a GPU machine is lent).
#
# For vLLM, then SGLang where it installs: a venv of its own with seekstack and the engine, a small
# model served by the real engine, the conformance suite (tests/conformance) with the real engine in
# place of the simulator, and tokens/s through seekstack against the engine direct (bench/backends.py
# --external). Results go to bench/results/gpu_check-<engine>-<date>.{log,json}.
#
#   MODEL=/models/Qwen2.5-0.5B-Instruct bash bench/gpu_check.sh        # a local folder (air-gapped hosts)
#   MODEL=Qwen/Qwen2.5-0.5B-Instruct bash bench/gpu_check.sh           # or a hub id, where the hub is reachable
#   ENGINES="vllm" bash bench/gpu_check.sh                             # one engine only
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-/tmp/seekstack-gpu-check}"
MODEL="${MODEL:-Qwen/Qwen2.5-0.5B-Instruct}"
ENGINES="${ENGINES:-vllm sglang}"
STAMP="$(date +%Y%m%d-%H%M)"
RESULTS="$ROOT/bench/results"

if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi -L failed) — run it on a GPU machine" >&2
  exit 2
fi
command -v python3 >/dev/null || { echo "gpu_check: python3 is missing" >&2; exit 2; }
mkdir -p "$WORK" "$RESULTS"
nvidia-smi -L

for engine in $ENGINES; do
  log="$RESULTS/gpu_check-$engine-$STAMP.log"
  venv="$WORK/venv-$engine"
  echo "== $engine: installing into $venv (log: $log)"
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install -q -e "$ROOT[test,$engine]" >>"$log" 2>&1; then
    echo "gpu_check: $engine did not install here (see $log); skipping it" | tee -a "$log"
    continue
  fi
  "$venv/bin/seekstack" doctor | tee -a "$log" || true
  model="$MODEL"
  if [ ! -d "$model" ]; then  # a hub id: fetch it once (the planner reads a local folder's config and weights)
    model=$("$venv/bin/python" -c "import sys; from huggingface_hub import snapshot_download; print(snapshot_download(sys.argv[1]))" "$MODEL")
  fi

  echo "== $engine: conformance suite against the real engine" | tee -a "$log"
  SEEKSTACK_CONFORMANCE_REAL="$engine" SEEKSTACK_CONFORMANCE_MODEL="$model" \
    "$venv/bin/python" -m pytest -q "$ROOT/tests/conformance" -p no:cacheprovider 2>&1 | tee -a "$log" || true

  echo "== $engine: through seekstack vs direct" | tee -a "$log"
  key="$WORK/$engine.key"
  (umask 077; "$venv/bin/python" -c "import secrets; print(secrets.token_urlsafe(32))" > "$key")
  port=$("$venv/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  # The planner's own launch command for this model on this GPU, on our port, with our key.
  mapfile -t launch < <("$venv/bin/seekstack" plan "$model" --engine "$engine" --context 4096 --concurrency 16 --json |
    "$venv/bin/python" -c "import json, sys; print('\n'.join(json.load(sys.stdin)['launch']))")
  args=()
  skip=""
  for a in "${launch[@]}"; do
    if [ -n "$skip" ]; then args+=("$skip"); skip=""; continue; fi
    case "$a" in
      --port) args+=("--port"); skip="$port" ;;
      --api-key=*) args+=("--api-key=$(cat "$key")") ;;
      *) args+=("$a") ;;
    esac
  done
  [ "$engine" = "sglang" ] && args[0]="$venv/bin/python"
  [ "$engine" = "vllm" ] && args[0]="$venv/bin/vllm"
  VLLM_API_KEY="$(cat "$key")" "${args[@]}" >>"$log" 2>&1 &
  engine_pid=$!
  trap 'kill $engine_pid 2>/dev/null || true' EXIT
  for _ in $(seq 1 900); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 1
  done
  served=$(basename "$model")
  "$venv/bin/python" "$ROOT/bench/backends.py" --external "$engine=http://127.0.0.1:$port" --served-name "$served" \
    --api-key-file "$key" -o "$RESULTS/gpu_check-$engine-$STAMP.json" 2>&1 | tee -a "$log" || true
  kill "$engine_pid" 2>/dev/null || true
  wait "$engine_pid" 2>/dev/null || true
  trap - EXIT
done
echo "gpu_check: results in $RESULTS (gpu_check-*-$STAMP.*)"
