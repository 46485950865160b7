#!/usr/bin/env bash
# The one test command: install (idempotent), make sure PostgreSQL is up, then run lint,
# type checks and the whole test suite (real PostgreSQL, real broker, real workers) with
# line and branch coverage of nexus, web, agents, runtime and cli.
# The checks are those of `tox -e lint,type,test`, run in the .venv that install.sh made
# from the lock (tox would build three more environments). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
bash scripts/install.sh
bash scripts/ensure-postgres.sh
echo "== install and PostgreSQL: ok ($((SECONDS - started)) s)"
export PATH="$PWD/.venv/bin:$PATH"

failed=()
step() {
  local name=$1
  shift
  echo "== $name: $*"
  local start=$SECONDS
  if "$@"; then
    echo "== $name: ok ($((SECONDS - start)) s)"
  else
    echo "== $name: FAILED ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}

step lint ruff check .
step format ruff format --check .
step layers lint-imports
step types mypy nexus web agents runtime cli
step tests pytest --cov --cov-report=term:skip-covered "${@:--q}"

echo "== all: $((SECONDS - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
