#!/usr/bin/env bash
# Benchmark the balance endpoint against bare Flask and a raw-psycopg2 Flask app (bench/README.md,
# bench/run.py --help). Needs PostgreSQL on 127.0.0.1:5432 (user postgres) and wrk (installed with
# apt-get when missing). Loopback only; the run's length is printed first (about 3 minutes by default).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv requirements.txt
exec .venv/bin/python bench/run.py "$@"
