#!/usr/bin/env bash
# Installs Schemathesis (PyPI) into testkit/schemathesis/.venv, once, every package pinned.
set -euo pipefail
cd "$(dirname "$0")"
if [ -x .venv/bin/st ] && cmp -s requirements.txt .venv/installed.txt; then
  exit 0
fi
rm -rf .venv
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements.txt
cp requirements.txt .venv/installed.txt
