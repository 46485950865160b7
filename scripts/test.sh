#!/usr/bin/env bash
# The one test command: install (idempotent), make sure PostgreSQL is up, then run
# lint, type checks and the whole test suite (real PostgreSQL, real broker, real workers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/ensure-postgres.sh
exec .venv/bin/tox -e lint,type,test -- "$@"
