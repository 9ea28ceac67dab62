#!/usr/bin/env bash
# Tools for the benchmark suite: nginx and wrk (Debian), vegeta (Go module proxy) into .tools/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
VEGETA_VERSION=v12.12.0
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null
  # The package starts a system nginx on :80; the suite runs its own instances.
  (service nginx stop || true) >/dev/null 2>&1
fi
if [ ! -x .tools/bin/vegeta ]; then
  GOBIN="$PWD/.tools/bin" go install "github.com/tsenart/vegeta/v12@${VEGETA_VERSION}"
fi
echo "tools ready: $(nginx -v 2>&1), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), vegeta ${VEGETA_VERSION}"
