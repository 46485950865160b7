#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml (the one command to run after changing a
# dependency; docs/testing.md): every version resolved for Python 3.11 on any platform,
# each with the hashes of its files.
#   requirements/prod.lock  the production dependencies (compose/Dockerfile)
#   requirements/dev.lock   plus the `dev` and `local` extras (scripts/install.sh, CI)
# Extra arguments go to `uv pip compile`, e.g. `--upgrade-package httpx` or `--upgrade`.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=.venv/bin/uv
[ -x "$UV" ] || { python3 -m venv .venv && .venv/bin/python -m pip install -q uv; }
compile() {
  "$UV" pip compile pyproject.toml --quiet --universal --python-version 3.11 \
    --generate-hashes --no-header --annotation-style line "$@"
}
compile -o requirements/prod.lock "$@"
compile --extra dev --extra local -o requirements/dev.lock "$@"
