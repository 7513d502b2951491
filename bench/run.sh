#!/usr/bin/env bash
# Benchmark the balance endpoint against a bare Flask app (see bench/run.py --help).
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres) and wrk (installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv requirements.txt
exec .venv/bin/python bench/run.py "$@"
