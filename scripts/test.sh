#!/usr/bin/env bash
# The one test command: install (idempotent), make sure PostgreSQL is up, then run lint,
# type checks and the whole test suite (real PostgreSQL, real broker, real workers) with
# line and branch coverage of nexus, web, agents, runtime and cli.
# The checks are those of `tox -e lint,type,test`, run in the .venv that install.sh made
# from the lock (tox would build three more environments). Extra arguments go to pytest
# (e.g. `-x tests/web`; `-n 0` runs the tests in this one process).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
bash scripts/install.sh
bash scripts/ensure-postgres.sh
echo "== install and PostgreSQL: ok ($((SECONDS - started)) s)"
export PATH="$PWD/.venv/bin:$PATH"

# Our own sources byte-compiled too (install.sh does the dependencies): with
# PYTHONDONTWRITEBYTECODE set, each process the tests start would compile them again.
python -m compileall -q -j 0 nexus web agents runtime cli tests >/dev/null

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
    return 1
  fi
}

# The static checks run beside the tests (their output is printed after the tests'), the
# tests on NEXUS_TEST_PROCESSES processes (pytest-xdist; default 3: most tests wait on
# processes, brokers and PostgreSQL, so three overlap well on two cores).
checks_log=$(mktemp)
trap 'rm -f "$checks_log"' EXIT
(
  status=0
  step lint ruff check . || status=1
  step format ruff format --check . || status=1
  step layers lint-imports || status=1
  step types mypy nexus web agents runtime cli || status=1
  exit $status
) >"$checks_log" 2>&1 &
checks=$!

processes=${NEXUS_TEST_PROCESSES:-3}
step tests pytest -n "$processes" --dist worksteal --cov --cov-report=term:skip-covered \
  "${@:--q}" || failed+=(tests)
wait "$checks" || failed+=(checks)
cat "$checks_log"

echo "== all: $((SECONDS - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
