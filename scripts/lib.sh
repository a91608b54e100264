# Shared set-up for the scripts: everything a fresh machine lacks is installed here, inside the repo
# where possible (.venv, .tools), so nothing outside the checkout is assumed.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENVOY_VERSION=1.40.0

ensure_rust_targets() {
  local installed
  installed="$(rustup target list --installed)"
  for t in wasm32-unknown-unknown wasm32-wasip1; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
  done
}

# The Python venv with Envoy, pytest, an independent JWT library (PyJWT + cryptography), the official
# MCP SDK (the real MCP server and client of the JSON-RPC tests and the demo) and h2 (HTTP/2 requests
# with trailers).
ensure_venv() {
  if [ ! -x "$ROOT/.venv/bin/python" ]; then
    python3 -m venv "$ROOT/.venv"
  fi
  if ! "$ROOT/.venv/bin/python" -c 'import envoy, pytest, jwt, cryptography, mcp, h2' 2>/dev/null; then
    "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tests/e2e/requirements.txt"
  fi
  ENVOY_BIN="$(ls "$ROOT"/.venv/lib/python3*/site-packages/envoy/_bin/envoy)"
  export ENVOY_BIN
}

# rustfmt and clippy are in rustup's default profile but not in its minimal one.
ensure_rust_components() {
  local installed
  installed="$(rustup component list --installed)"
  for c in rustfmt clippy; do
    grep -q "^$c" <<<"$installed" || rustup component add "$c"
  done
}

# The wasm-bindgen version Cargo.lock resolved (the test runner must match it exactly).
wasm_bindgen_version() {
  awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# wasm-bindgen-test-runner in .tools/, at Cargo.lock's version (a fresh install takes ~2.5 min), set as
# the cargo runner for wasm32-unknown-unknown so that `cargo test --target wasm32-unknown-unknown`
# runs the core's tests in node.
ensure_wasm_bindgen_runner() {
  local want have
  want="$(wasm_bindgen_version)"
  if [ -z "$want" ]; then
    echo "wasm-bindgen is not in Cargo.lock: nothing to run the wasm32 tests with" >&2
    return 1
  fi
  have="$("$ROOT/.tools/bin/wasm-bindgen-test-runner" --version 2>/dev/null | awk '{print $2}')" || true
  if [ "$have" != "$want" ]; then
    cargo install wasm-bindgen-cli --version "$want" --root "$ROOT/.tools"
  fi
  command -v node >/dev/null || { echo "node is required to run the wasm32 tests" >&2; return 1; }
  export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$ROOT/.tools/bin/wasm-bindgen-test-runner"
}
