# Environment for building and running CIRO from this checkout: `source scripts/env.sh`.
# scripts/setup.sh creates what it points at.
export CIRO_CACHE_DIR="${CIRO_CACHE_DIR:-$HOME/.cache/ciro}"
# Python with torch 2.11.0: the worker builds against it (tch, LIBTORCH_USE_PYTORCH=1) and
# the tests create TorchScript models with it.
export VIRTUAL_ENV="$CIRO_CACHE_DIR/venv"
export LIBTORCH_USE_PYTORCH=1
case ":$PATH:" in *":$VIRTUAL_ENV/bin:"*) ;; *) export PATH="$VIRTUAL_ENV/bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" ;; esac
# starknet.js for the relayer's client test (scripts/setup.sh installs it there).
export CIRO_STARKNET_JS_DIR="${CIRO_STARKNET_JS_DIR:-$CIRO_CACHE_DIR/starknet-js}"
# puppeteer-core for the dashboard's browser test (Debian's chromium).
export CIRO_PUPPETEER_DIR="${CIRO_PUPPETEER_DIR:-$CIRO_CACHE_DIR/puppeteer}"
