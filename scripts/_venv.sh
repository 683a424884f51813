# Sourced by scripts/test, scripts/demo and scripts/package-check (not run on its own):
# moves to the repository root and sets ROOT, PYTHON (the interpreter that makes the
# virtualenv) and VENV (the virtualenv, .venv unless given).
# shellcheck shell=bash
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=${VENV:-$ROOT/.venv}

# Make the virtualenv if there is none yet.
ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
}

# pip's output without its "Location ... is ignored" warnings.
quiet() { grep -v "^WARNING: Location .* is ignored" || true; }
