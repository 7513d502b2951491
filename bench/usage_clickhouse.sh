#!/usr/bin/env bash
# Benchmark GET /v1/usage with the gateway's logs in ClickHouse (see bench/usage_clickhouse.py --help).
# Needs Debian's clickhouse-server (apt-get install clickhouse-server); starts a private one on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clickhouse-server >/dev/null || { echo "clickhouse-server is not installed (apt-get install clickhouse-server)" >&2; exit 1; }
scripts/setup-venv requirements.txt
exec .venv/bin/python bench/usage_clickhouse.py "$@"
