#!/usr/bin/env bash
# The one set-up command: install everything (idempotent), then run the whole stack on
# embedded defaults (`nexus dev`: broker, PostgreSQL, migrations, API, one agents worker).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/nexus dev "$@"
