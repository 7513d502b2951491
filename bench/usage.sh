#!/usr/bin/env bash
# Benchmark GET /v1/usage on a big logs table, without and with the recommended index (see bench/usage.py --help).
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv requirements.txt
exec .venv/bin/python bench/usage.py "$@"
