#!/usr/bin/env bash
# Create .venv if missing, install pixeldeid with its test extras, run pytest.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv test
exec "$VENV/bin/python" -m pytest "$@"
