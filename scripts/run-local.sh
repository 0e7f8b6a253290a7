#!/usr/bin/env bash
# README command 1: sets up what is missing, starts a local CIRO network and runs inference
# jobs through it end to end.
#
#   scripts/run-local.sh [--keep] [--jobs N] [--no-setup] [--env-file FILE]
#
# A seeded starknet-devnet (`ciro devnet`); the contracts deployed, wired (devnet account 1 is
# the coordinator, 0 the admin and arbiter) and sealed; a sponsor (account 2) with a deposit
# and a policy for job submissions and the workers' calls; the coordinator (SQLite), the
# paymaster relayer (account 9) and two gasless workers (accounts 5 and 6, CPU; the GPU when
# there is one) registering and staking themselves through the relayer; a TorchScript model made by Python torch registered by its owner (account 0);
# then jobs submitted with `ciro job submit` by two submitters (3 directly, 4 gasless through
# the relayer), followed, their outputs checked against the chain's commitments and against
# Python torch, the challenge window passed (devnet time), the jobs finalized by the
# coordinator's keeper, and a table of who was paid what. --keep leaves the network running.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0; jobs=4; setup=1; env_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --jobs) jobs="$2"; shift ;;
    --no-setup) setup=0 ;;
    # With --keep: where to write the network's URLs and paths (KEY=VALUE lines) once its
    # jobs are done (what the test of this script reads).
    --env-file) env_file="$2"; shift ;;
    *) echo "usage: scripts/run-local.sh [--keep] [--jobs N] [--no-setup] [--env-file FILE]" >&2; exit 2 ;;
  esac
  shift
done
[ "$setup" = 1 ] && scripts/setup.sh
source scripts/env.sh
# The binaries setup.sh built with the workspace.
bin="${CARGO_TARGET_DIR:-target}/debug"
for b in ciro ciro-coordinator ciro-paymaster-relayer ciro-worker; do
  [ -x "$bin/$b" ] || { echo "$bin/$b is missing: run scripts/setup.sh" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/ciro-local.XXXXXX")
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT
# A signal ends the script through its EXIT trap, which stops what it started.
trap 'exit 143' TERM INT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
step() { printf '\n==> %s\n' "$*"; }
# Waits until $1 answers 2xx, or fails naming the log $2 and process $3.
wait_ready() {
  for _ in $(seq 1 1200); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || { tail -40 "$2"; echo "the process logging to $2 exited" >&2; exit 1; }
    sleep 0.1
  done
  tail -40 "$2"; echo "$1 did not answer in 120 s" >&2; exit 1
}

port=${CIRO_DEVNET_PORT:-$(free_port)}
rpc="http://127.0.0.1:$port/rpc"
step "starknet-devnet on 127.0.0.1:$port (\`ciro devnet\`; log $work/devnet.log)"
"$bin/ciro" devnet --port "$port" >"$work/devnet.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$port/is_alive" "$work/devnet.log" "${pids[-1]}"
curl -s -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"devnet_getPredeployedAccounts","params":{}}' "$rpc" \
  >"$work/accounts.json"
addr() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["result"][int(sys.argv[2])]["address"])' "$work/accounts.json" "$1"; }
admin=$(addr 0); coordinator=$(addr 1); sponsor=$(addr 2); alice=$(addr 3); bob=$(addr 4)
worker_a=$(addr 5); worker_b=$(addr 6); relayer_account=$(addr 9)

step "the worker's view of this machine"
"$bin/ciro-worker" hardware

step "deploying the contracts (coordinator $coordinator, arbiter $admin)"
manifest="$work/devnet.json"
cat >"$work/deploy.json" <<EOF
{"roles": {"coordinator": ["$coordinator"], "arbiter": ["$admin"]}, "pool": {"warmup": 3600}}
EOF
export CIRO_RPC_URL="$rpc" CIRO_MANIFEST="$manifest"
"$bin/ciro" deploy --devnet-account 0 --config "$work/deploy.json" --manifest "$manifest"

step "funding: payment tokens for the submitters, the workers' stakes and the sponsor"
"$bin/ciro" token transfer --devnet-account 0 --to "$alice" --to "$bob" --amount 100
"$bin/ciro" token transfer --devnet-account 0 --to "$worker_a" --to "$worker_b" --amount 200
"$bin/ciro" token transfer --devnet-account 0 --to "$sponsor" --amount 1000

step "the sponsor: a deposit, the relayer account, and a policy paying for job submissions and the workers' transactions"
policy=$("$bin/ciro" sponsor setup --devnet-account 2 --deposit 1000 --relayer "$relayer_account" \
  --allow token:approve --allow JobMgr:submit_job --allow JobMgr:submit_result \
  --allow CdcPool:register_worker --allow CdcPool:stake --allow CdcPool:update_capabilities \
  --allow CdcPool:reactivate --allow CdcPool:deactivate --allow CdcPool:heartbeat \
  --allow CdcPool:activate --allow CdcPool:claim_rewards --max-charge 10 --daily-limit 100 --per-hour 1000)

api="127.0.0.1:$(free_port)"
step "the coordinator on http://$api (SQLite; matching and keeping as devnet account 1)"
"$bin/ciro-coordinator" --listen "$api" --database-url "sqlite://$work/coordinator.db" \
  --blob-dir "$work/blobs" --devnet-account 1 --tick-ms 500 >"$work/coordinator.log" 2>&1 &
pids+=($!)
wait_ready "http://$api/ready" "$work/coordinator.log" "${pids[-1]}"
export CIRO_COORDINATOR_URL="http://$api"

relayer="127.0.0.1:$(free_port)"
step "the paymaster relayer on http://$relayer (SNIP-29; sends from devnet account 9, sponsor policy $policy)"
"$bin/ciro-paymaster-relayer" --listen "$relayer" --devnet-account 9 \
  --default-policy "$sponsor:$policy" >"$work/relayer.log" 2>&1 &
pids+=($!)
wait_ready "http://$relayer/ready" "$work/relayer.log" "${pids[-1]}"

# STRK (fee token) balance of an account, in FRI.
strk_of() {
  curl -s -H 'content-type: application/json' -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"starknet_call\",\"params\":{\"request\":{\"contract_address\":\"0x04718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d\",\"entry_point_selector\":\"0x2e4263afad30923c891518314c3c95dbe830a16874e8abc5777a9a20b54c76e\",\"calldata\":[\"$1\"]},\"block_id\":\"latest\"}}" "$rpc" |
    python3 -c 'import json, sys; r = json.load(sys.stdin)["result"]; print(int(r[0], 16) + (int(r[1], 16) << 128))'
}
step "two workers (devnet accounts 5 and 6): register, stake 100 tokens, serve; gasless, through the relayer"
worker_ports=()
declare -A worker_strk
for i in 5 6; do
  worker_strk[$i]=$(strk_of "$(addr "$i")")
  listen="127.0.0.1:$(free_port)"; worker_ports+=("$listen")
  "$bin/ciro-worker" run --devnet-account "$i" --data-dir "$work/worker-$i" \
    --stake-target 100000000000000000000 --heartbeat-secs 2 --commit-window-ms 300 \
    --chain-heartbeat-secs 30 --relayer "http://$relayer/" \
    --listen "$listen" >"$work/worker-$i.log" 2>&1 &
  pids+=($!)
  wait_ready "http://$listen/ready" "$work/worker-$i.log" "${pids[-1]}"
  echo "worker $(addr "$i") serving (log $work/worker-$i.log)"
done

step "the model: a transformer encoder made by Python torch, uploaded and registered by its owner"
mkdir -p "$work/models" "$work/jobs" "$work/out"
python crates/engine/python/ciro_models.py make "$work/models" >/dev/null
model=$("$bin/ciro" model add "$work/models/encoder.pt" --devnet-account 0 --price 0.5)
python crates/engine/python/ciro_models.py inputs "$work/models/encoder.pt" "$work/jobs" \
  --row-shape 8,32 --count "$jobs" --rows 4

bob_strk_before=$(strk_of "$bob")

step "submitting $jobs jobs with \`ciro job submit\` (devnet account 3 directly, account 4 gasless)"
declare -A started submitted_by mode
ids=()
for i in $(seq 1 "$jobs"); do
  if [ $((i % 2)) = 0 ]; then who=4; how=(--gasless --relayer "http://$relayer/"); m=gasless
  else who=3; how=(); m=direct; fi
  t0=$(date +%s.%N)
  id=$("$bin/ciro" job submit --devnet-account "$who" --model "$model" \
    --input "$work/jobs/job$i.x.safetensors" --fee 1 "${how[@]}")
  ids+=("$id"); started[$id]=$t0; submitted_by[$id]=$who; mode[$id]=$m
  echo "job $id: input job$i, submitter account $who ($m)"
done

bob_strk_after=$(strk_of "$bob")
echo "account 4 (gasless) held $bob_strk_before FRI of STRK before its submissions and $bob_strk_after after: the sponsor paid its gas"
[ "$bob_strk_before" = "$bob_strk_after" ] || { echo "account 4's STRK changed: a gasless submission cost it gas" >&2; exit 1; }

step "following the jobs until their results are committed on chain"
declare -A latency
for id in "${ids[@]}"; do
  "$bin/ciro" job watch "$id" --until completed --timeout 300 | sed 's/^/  /'
  latency[$id]=$(python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "${started[$id]}")
done
"$bin/ciro" job status "${ids[0]}"

step "every output: downloaded, checked against its on-chain commitment and against Python torch"
declare -A verified
i=0
for id in "${ids[@]}"; do
  i=$((i + 1))
  "$bin/ciro" job result "$id" --devnet-account "${submitted_by[$id]}" \
    --out "$work/out/job$id.safetensors" --expect "$work/jobs/job$i.y.safetensors" --tolerance 1e-4
  verified[$id]=yes
done

step "the challenge window (1 hour) passes on devnet's clock; the coordinator's keeper finalizes"
curl -s -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"devnet_increaseTime","params":{"time":3605}}' "$rpc" >/dev/null
for id in "${ids[@]}"; do
  "$bin/ciro" job watch "$id" --until finalized --timeout 120 | tail -1 | sed 's/^/  /'
done

step "the jobs"
{
  for id in "${ids[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$("$bin/ciro" job settlement "$id")" "${mode[$id]}" \
      "${latency[$id]}" "${verified[$id]}" "${submitted_by[$id]}"
  done
} | python3 -c '
import json, sys
unit = 10**18
row = "{:>4}  {:<10}  {:<9}  {:<15}  {:>7}  {:>11}  {:>8}  {:>8}  {}"
print(row.format("job", "submitter", "gas paid", "worker", "fee", "worker paid", "protocol", "latency", "output verified"))
for line in sys.stdin:
    s, mode, latency, verified, who = line.rstrip("\n").split("\t")
    s = json.loads(s)
    t = lambda v: "%.4f" % (int(v) / unit)
    w = s["worker"]
    print(row.format(s["job_id"], "account " + who, "sponsor" if mode == "gasless" else "submitter",
                     w[:8] + "…" + w[-4:], t(s["fee"]), t(s["payout"]), t(s["protocol_fee"]),
                     latency + " s", verified + " (chain, torch)"))
'

step "the gasless workers' STRK: unchanged since before they started"
for i in 5 6; do
  after=$(strk_of "$(addr "$i")")
  echo "worker account $i held ${worker_strk[$i]} FRI of STRK before it started and $after now: the sponsor paid the gas of its registration, stake, results and heartbeats"
  [ "${worker_strk[$i]}" = "$after" ] || { echo "worker account $i's STRK changed: one of its transactions was not sponsored" >&2; exit 1; }
done

if [ "$keep" = 1 ]; then
  step "the network stays up (Ctrl-C stops it)"
  cat <<EOF
  chain RPC       $rpc
  coordinator     http://$api   (API /v1, /openapi.json, /metrics)
  relayer         http://$relayer/   (SNIP-29 JSON-RPC, /metrics)
  workers         ${worker_ports[*]}   (/health, /metrics)
  manifest        $manifest
  logs            $work
  submit another: CIRO_RPC_URL=$rpc CIRO_MANIFEST=$manifest CIRO_COORDINATOR_URL=http://$api \\
                  $bin/ciro job submit --devnet-account 3 --model $model --input $work/jobs/job1.x.safetensors
EOF
  if [ -n "$env_file" ]; then
    cat >"$env_file.tmp" <<EOF
CIRO_RPC_URL=$rpc
CIRO_MANIFEST=$manifest
CIRO_COORDINATOR_URL=http://$api
CIRO_RELAYER_URL=http://$relayer/
CIRO_LOCAL_MODEL=$model
CIRO_LOCAL_WORK=$work
CIRO_LOCAL_JOBS=${ids[*]}
EOF
    mv "$env_file.tmp" "$env_file"
  fi
  wait "${pids[0]}"
fi
