#!/usr/bin/env bash
# Sets everything up, starts a local network and runs the main job.
# Today's slice: a seeded starknet-devnet, the project's contracts declared and deployed
# (deployments/devnet.json), their addresses printed and checked with a call.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh

port=${CIRO_DEVNET_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
log=$(mktemp)
printf '\n==> starting starknet-devnet on 127.0.0.1:%s (log %s)\n' "$port" "$log"
starknet-devnet --host 127.0.0.1 --port "$port" --seed 20261121 --accounts 12 >"$log" 2>&1 &
devnet=$!
trap 'kill $devnet 2>/dev/null; wait $devnet 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$port/is_alive" >/dev/null 2>&1 && break
  kill -0 $devnet 2>/dev/null || { cat "$log"; echo "starknet-devnet exited" >&2; exit 1; }
  sleep 0.1
done

printf '\n==> deploying the contracts\n'
manifest=$(mktemp -d)/devnet.json
cargo run -q --locked -p ciro-chain --bin ciro -- deploy \
  --rpc-url "http://127.0.0.1:$port/rpc" --devnet-account 0 --manifest "$manifest"
printf '\n==> manifest\n'
cat "$manifest"
printf '\n==> run again: everything is found and skipped\n'
cargo run -q --locked -p ciro-chain --bin ciro -- deploy \
  --rpc-url "http://127.0.0.1:$port/rpc" --devnet-account 0 --manifest "$manifest"
