#!/usr/bin/env bash
# Install everything the tests need into .venv, start the services they use (a real Kafka
# broker, Prometheus), run lint, types and the whole test suite, then stop the services.
# Extra arguments go to pytest, e.g. scripts/test.sh -k sampling
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"

# Prometheus (and promtool) from the distribution, for the scrape and alert-rule tests.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
    # The package starts a system service on :9090; tests run their own instance.
    (systemctl stop prometheus 2>/dev/null || service prometheus stop 2>/dev/null || true) >/dev/null 2>&1
  fi
fi

started_kafka=0
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  eval "$(scripts/kafka.sh start)"
  started_kafka=1
fi
export KAFKA_BOOTSTRAP
cleanup() { if [ "$started_kafka" = 1 ]; then scripts/kafka.sh stop || true; fi; }
trap cleanup EXIT

.venv/bin/ruff check shadoweval tests benchmarks
.venv/bin/ruff format --check shadoweval tests benchmarks
.venv/bin/mypy
.venv/bin/pytest "$@"
