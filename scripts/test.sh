#!/usr/bin/env bash
# Sets everything up, then runs every check and test: Cairo build (with the tool's source
# checks) and format, the committed ABIs against the classes, Rust format and lints, the Cairo tool's tests, unit tests, the devnet
# end-to-end tests and the libtorch tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
# A one-shot build gains nothing from incremental compilation, whose caches take gigabytes of
# disk (a CI run once ran out of it).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

# A fresh build and test run fills about 17 GiB of target/ (the test binaries link the Cairo
# compiler, starknet-rs and libtorch bindings). Short of disk, the linker dies with a bus
# error that names no cause (a CI run failed so): say it first.
free_gib=$(df -Pk . | awk 'NR == 2 { print int($4 / 1048576) }')
if [ "${free_gib:-0}" -lt 20 ]; then
  echo "warning: only ${free_gib} GiB free here; a fresh build and test run needs about 17 GiB (less without debug info, as .ci/run builds)" >&2
fi

step "Cairo format check"
cairo/toolchain/target/release/ciro-cairo fmt --check
step "ABI drift check (crates/chain/abi, the bindings' input, against the compiled classes)"
cairo/toolchain/target/release/ciro-cairo abi --check
step "Rust format check"
cargo fmt --all --check
( cd cairo/toolchain && cargo fmt --check )
step "clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
( cd cairo/toolchain && cargo clippy --locked --release --all-targets -- -D warnings )
step "tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The Cairo tool's own tests (its source checks), then the workspace's; both feed the sum.
( cd cairo/toolchain && cargo test --locked --release ) 2>&1 | tee "$log"
cargo test --locked --workspace --no-fail-fast 2>&1 | tee -a "$log"
# One closing line for CI: the sum over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "\nall test binaries: %d passed, %d failed\n", p, f; if (p == 0) exit 1 }' "$log"
