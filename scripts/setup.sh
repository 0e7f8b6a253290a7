#!/usr/bin/env bash
# Installs everything CIRO needs, from crates.io, PyPI and Debian only. Idempotent: each step
# checks what is already there and says what it does. Caches live in $CIRO_CACHE_DIR
# (default ~/.cache/ciro) and cargo's own ~/.cargo, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

DEVNET_VERSION=0.10.1
TORCH_VERSION=2.11.0
step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

step "system packages (Debian)"
missing=()
for tool in cc c++ pkg-config python3 curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  echo "missing: ${missing[*]}; installing build-essential pkg-config python3 python3-venv python3-pip curl"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential pkg-config python3 python3-venv python3-pip curl
else
  echo "compiler, pkg-config and python3 with venv present"
fi

step "PostgreSQL (Debian) for the coordinator's tests: a local cluster, a superuser role for $(id -un)"
if ! command -v pg_lsclusters >/dev/null; then
  echo "installing postgresql"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
cluster=$(pg_lsclusters --no-header | awk 'NR == 1 { print $1, $2 }')
if [ -z "$cluster" ]; then
  echo "no PostgreSQL cluster found (pg_lsclusters)" >&2
  exit 1
fi
# shellcheck disable=SC2086 # "version name"
if pg_lsclusters --no-header | awk 'NR == 1 { exit $4 == "online" ? 0 : 1 }'; then
  echo "cluster $cluster online"
else
  echo "starting cluster $cluster"
  pg_ctlcluster $cluster start
fi
role=$(id -un)
if [ "$(su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = '$role'\"")" = 1 ]; then
  echo "role $role present"
else
  su postgres -c "createuser --superuser $role"
  echo "role $role created"
fi

step "starknet-devnet $DEVNET_VERSION (crates.io)"
if command -v starknet-devnet >/dev/null && starknet-devnet --version | grep -q " $DEVNET_VERSION\$"; then
  echo "$(command -v starknet-devnet): $(starknet-devnet --version)"
else
  echo "building starknet-devnet $DEVNET_VERSION with cargo install --locked (about 25 minutes on 2 cores, once)"
  cargo install starknet-devnet --version "$DEVNET_VERSION" --locked
fi

step "Python venv with torch $TORCH_VERSION (PyPI) at $VIRTUAL_ENV"
if [ -x "$VIRTUAL_ENV/bin/python" ] && "$VIRTUAL_ENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  echo "torch $("$VIRTUAL_ENV/bin/python" -c 'import torch; print(torch.__version__)') present"
else
  python3 -m venv "$VIRTUAL_ENV"
  echo "pip install torch==$TORCH_VERSION numpy (about 4.6 GB with the CUDA runtime wheels)"
  "$VIRTUAL_ENV/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION" numpy
fi

# The API fuzzer of the coordinator's tests, in its own venv. hypothesis is pinned below the
# releases whose lambda-source reader trips CPython 3.11's "AST constructor recursion depth
# mismatch" inside schemathesis's coverage phase.
SCHEMATHESIS_VERSION=4.32.5
HYPOTHESIS_VERSION=6.131.0
FUZZ_VENV="$CIRO_CACHE_DIR/fuzz-venv"
step "schemathesis $SCHEMATHESIS_VERSION with hypothesis $HYPOTHESIS_VERSION (PyPI) at $FUZZ_VENV"
if [ -x "$FUZZ_VENV/bin/python" ] && "$FUZZ_VENV/bin/python" -c "
import sys
from importlib.metadata import version
sys.exit(version('schemathesis') != '$SCHEMATHESIS_VERSION' or version('hypothesis') != '$HYPOTHESIS_VERSION')" 2>/dev/null; then
  echo "schemathesis $SCHEMATHESIS_VERSION present"
else
  python3 -m venv "$FUZZ_VENV"
  "$FUZZ_VENV/bin/pip" install -q --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==$HYPOTHESIS_VERSION"
fi

STARKNET_JS_VERSION=10.8.0
STARKNET_JS_DIR="$CIRO_CACHE_DIR/starknet-js"
step "starknet.js $STARKNET_JS_VERSION (npm) at $STARKNET_JS_DIR, for the relayer's client test"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing nodejs and npm (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
if [ "$(node -p "require('$STARKNET_JS_DIR/node_modules/starknet/package.json').version" 2>/dev/null)" = "$STARKNET_JS_VERSION" ]; then
  echo "starknet.js $STARKNET_JS_VERSION present"
else
  mkdir -p "$STARKNET_JS_DIR"
  npm install --prefix "$STARKNET_JS_DIR" --no-audit --no-fund --loglevel=error "starknet@$STARKNET_JS_VERSION"
fi

step "chromium (Debian), for the dashboard's headless browser test"
if command -v chromium >/dev/null; then
  echo "chromium present"
else
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
PUPPETEER_VERSION=24.43.1
if [ "$(node -p "require('$CIRO_PUPPETEER_DIR/node_modules/puppeteer-core/package.json').version" 2>/dev/null)" = "$PUPPETEER_VERSION" ]; then
  echo "puppeteer-core $PUPPETEER_VERSION present"
else
  mkdir -p "$CIRO_PUPPETEER_DIR"
  # Drives Debian's chromium; downloads no browser of its own.
  npm install --prefix "$CIRO_PUPPETEER_DIR" --no-audit --no-fund --loglevel=error "puppeteer-core@$PUPPETEER_VERSION"
fi

step "Cairo 2.1 toolchain (cairo-lang 2.1.0 crates; corelib from PyPI cairo-lang 0.12.3)"
cargo build -q --release --locked --manifest-path cairo/toolchain/Cargo.toml
cairo/toolchain/target/release/ciro-cairo corelib

step "contract classes"
cairo/toolchain/target/release/ciro-cairo build

step "Rust workspace"
cargo build --locked --workspace --all-targets
echo
echo "setup complete"
