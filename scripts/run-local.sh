#!/usr/bin/env bash
# Sets everything up, starts a local network and runs the main job.
# Today's slice: a seeded starknet-devnet (`ciro devnet`); the worker's hardware report and a
# sample inference job through its engine (real libtorch); the contracts declared, deployed,
# wired and sealed (a second run showing everything is skipped); that job's whole on-chain life
# through the chain crate, with the worker's real model, input and output hashes; then the
# coordinator (indexing, matching and keeping as the COORDINATOR account) and the relayer started on the service runtime, probed and stopped by SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
# The binaries setup.sh built with the workspace (`cargo run -p X` would rebuild dependencies
# with X's own feature set).
bin="${CARGO_TARGET_DIR:-target}/debug"

port=${CIRO_DEVNET_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
log=$(mktemp)
printf '\n==> starting starknet-devnet on 127.0.0.1:%s with `ciro devnet` (log %s)\n' "$port" "$log"
# The same launcher as the test harness (seed, accounts, balances); devnet dies with ciro.
"$bin/ciro" devnet --port "$port" >"$log" 2>&1 &
devnet=$!
trap 'kill $devnet 2>/dev/null; wait $devnet 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$port/is_alive" >/dev/null 2>&1 && break
  kill -0 $devnet 2>/dev/null || { cat "$log"; echo "starknet-devnet exited" >&2; exit 1; }
  sleep 0.1
done
curl -fs "http://127.0.0.1:$port/is_alive" >/dev/null || { cat "$log"; echo "starknet-devnet did not answer in 60 s" >&2; exit 1; }

printf '\n==> the worker: hardware report\n'
"$bin/ciro-worker" hardware

printf '\n==> the worker: a sample inference job (a transformer encoder made by Python torch)\n'
work=$(mktemp -d)
mkdir -p "$work/models"
python crates/engine/python/ciro_models.py make "$work/models" >/dev/null
model=$("$bin/ciro-worker" add-model --store "$work/store" \
  --file "$work/models/encoder.pt" --shape 8,32 --max-batch 16)
echo "model_hash (SHA-256 of the TorchScript file): $model"
report=$("$bin/ciro-worker" exec --store "$work/store" --model "$model" \
  --input "$work/models/encoder.x.safetensors" --output "$work/output.safetensors" --deterministic-seed 1)
echo "$report"
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$report" "$1"; }
echo "output: $(stat -c %s "$work/output.safetensors") bytes of safetensors at $work/output.safetensors"

printf '\n==> deploying the contracts\n'
manifest=$(mktemp -d)/devnet.json
"$bin/ciro" deploy \
  --rpc-url "http://127.0.0.1:$port/rpc" --devnet-account 0 --manifest "$manifest"
printf '\n==> manifest\n'
cat "$manifest"
printf '\n==> run again: everything is found and skipped\n'
"$bin/ciro" deploy \
  --rpc-url "http://127.0.0.1:$port/rpc" --devnet-account 0 --manifest "$manifest"

printf '\n==> the job on chain: model, stake, submit, assign, result, finalize, rewards\n'
"$bin/ciro" lifecycle \
  --rpc-url "http://127.0.0.1:$port/rpc" --manifest "$manifest" \
  --model-hash "$model" --input-hash "$(field input_hash)" --output-hash "$(field output_hash)"

printf '\n==> the services: the coordinator (indexing, matching and keeping as devnet account 1, which the lifecycle made COORDINATOR) and the paymaster relayer (SNIP-29, submitting from devnet account 9)\n'
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for service in ciro-coordinator ciro-paymaster-relayer; do
  listen="127.0.0.1:$(free_port)"
  extra=()
  # The coordinator indexes the deployment into its database (SQLite here).
  [ "$service" = ciro-coordinator ] && extra=(--database-url "sqlite://$work/coordinator.db" --blob-dir "$work/blobs" --devnet-account 1)
  # The relayer submits from devnet account 9 (funded with STRK).
  [ "$service" = ciro-paymaster-relayer ] && extra=(--devnet-account 9)
  "$bin/$service" --rpc-url "http://127.0.0.1:$port/rpc" --manifest "$manifest" \
    --listen "$listen" "${extra[@]}" 2>"$work/$service.log" &
  pid=$!
  for _ in $(seq 1 600); do curl -fs "http://$listen/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null || { cat "$work/$service.log"; echo "$service exited" >&2; exit 1; }
  echo "$service (pid $pid) on http://$listen"
  echo "  GET /health -> $(curl -s -o /dev/null -w '%{http_code}' "http://$listen/health")"
  echo "  GET /ready  -> $(curl -s -w ' (%{http_code})' "http://$listen/ready")"
  echo "  GET /metrics: $(curl -s "http://$listen/metrics" | grep -c '^ciro_') ciro_* samples, of which:"
  curl -s "http://$listen/metrics" | grep -E '^ciro_(index|build|leader|jobs)' | sed 's/^/    /' || true
  if [ "$service" = ciro-coordinator ]; then
    echo "  GET /v1/jobs -> $(curl -s "http://$listen/v1/jobs")"
    echo "  GET /openapi.json: $(curl -s "http://$listen/openapi.json" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["paths"]), "paths")')"
  fi
  if [ "$service" = ciro-paymaster-relayer ]; then
    for method in paymaster_isAvailable paymaster_getSupportedTokens; do
      echo "  POST / $method -> $(curl -s -H 'content-type: application/json' -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$method\"}" "http://$listen/")"
    done
  fi
  kill -TERM "$pid"
  status=0; wait "$pid" || status=$?
  echo "  SIGTERM -> exited with status $status"
done
