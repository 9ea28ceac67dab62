#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker+controller in one JVM) on 127.0.0.1
# for shadoweval development, tests and CI.
#
# Usage: scripts/kafka.sh start|stop|restart|status|logs [-f]|fetch
#
# The broker's jars come from Maven Central through `mvn` (no Kafka tarball is
# needed) and stay in the local Maven repository, so later runs work offline.
# `start` prints `KAFKA_BOOTSTRAP=127.0.0.1:<port>` on stdout once the broker
# has acknowledged a real produce request; every other message goes to stderr,
# so `eval "$(scripts/kafka.sh start)"` is safe.
#
# Environment (defaults in brackets):
#   KAFKA_PORT [9092]             client (PLAINTEXT) listener port
#   KAFKA_CONTROLLER_PORT [9093]  KRaft controller listener port
#   KAFKA_PARTITIONS [3]          num.partitions for auto-created topics
#   KAFKA_STATE_DIR [${TMPDIR:-/tmp}/shadoweval-kafka]
#                                 classpath cache, config, data, pid and log
#   KAFKA_START_TIMEOUT [90]      seconds to wait for the broker to be ready
#   KAFKA_STOP_TIMEOUT [30]       seconds to wait after SIGTERM before SIGKILL
#   KAFKA_HEAP_OPTS [-Xms256m -Xmx512m]
#   KAFKA_JVM_OPTS                extra JVM options for the broker
#   KAFKA_EXTRA_CONFIG            extra server.properties lines (newline-separated)
#   JAVA_HOME                     Java 11+ to use (else `java` on PATH)
set -euo pipefail

KAFKA_VERSION=3.9.2
SCALA_VERSION=2.13
READY_TOPIC=_shadoweval_ready

HOST=127.0.0.1
PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
PARTITIONS=${KAFKA_PARTITIONS:-3}
STATE_DIR=${KAFKA_STATE_DIR:-${TMPDIR:-/tmp}/shadoweval-kafka}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
BOOTSTRAP="$HOST:$PORT"

# One run dir per client port, so brokers on different ports can coexist.
RUN_DIR="$STATE_DIR/broker-$PORT"
DATA_DIR="$RUN_DIR/data"
PID_FILE="$RUN_DIR/kafka.pid"
LOG_FILE="$RUN_DIR/kafka.log"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA=java
fi

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The dependency closure Maven resolves. kafka-tools brings the Java CLI tools
# (VerifiableProducer for the readiness check, TopicCommand, ...); its Kafka
# Connect runtime (Jetty, Jersey) is excluded because nothing here needs it.
# slf4j-reload4j is the binding the Kafka 3.x distribution ships, so the
# broker's log4j 1.x style config below takes effect.
pom_xml() {
  cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.shadoweval</groupId>
  <artifactId>kafka-broker-classpath</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$SCALA_VERSION</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
        <exclusion><groupId>com.fasterxml.jackson.jaxrs</groupId><artifactId>jackson-jaxrs-json-provider</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
EOF
}

# Prints the broker classpath, resolving it with Maven on first use. The result
# is cached per version and pom content; it is recomputed if a jar vanished
# from the local Maven repository.
classpath() {
  local sum cp_file pom_dir out cp jar
  sum=$(pom_xml | cksum | cut -d' ' -f1)
  cp_file="$STATE_DIR/classpath-$KAFKA_VERSION-$sum.txt"
  if [[ -s "$cp_file" ]]; then
    cp=$(<"$cp_file")
    local ok=1 jars
    IFS=: read -ra jars <<<"$cp"
    for jar in "${jars[@]}"; do [[ -f "$jar" ]] || { ok=0; break; }; done
    if ((ok)); then printf '%s' "$cp"; return; fi
  fi

  command -v mvn >/dev/null || die "mvn not found: Maven is needed once to fetch the Kafka jars"
  pom_dir="$STATE_DIR/maven-$KAFKA_VERSION"
  mkdir -p "$pom_dir"
  pom_xml >"$pom_dir/pom.xml"
  out="$pom_dir/mvn.log"
  # Pinned plugin version: Maven's default for this prefix is ancient.
  local goal=(-B -q -f "$pom_dir/pom.xml"
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:build-classpath
    -Dmdep.includeScope=runtime "-Dmdep.outputFile=$cp_file.tmp")
  log "resolving Kafka $KAFKA_VERSION jars with Maven (downloaded on first use, then cached)..."
  # Offline first, so a warm local repository needs no network at all.
  if ! mvn -o "${goal[@]}" >"$out" 2>&1; then
    if ! mvn "${goal[@]}" >"$out" 2>&1; then
      tail -n 30 "$out" >&2
      die "Maven could not resolve org.apache.kafka:kafka_$SCALA_VERSION:$KAFKA_VERSION (log: $out)"
    fi
  fi
  mv "$cp_file.tmp" "$cp_file"
  cat "$cp_file"
}

# True if the pid file names a live broker started from this run dir (guards
# against a recycled pid).
running_pid() {
  local pid
  [[ -s "$PID_FILE" ]] || return 1
  pid=$(<"$PID_FILE")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  ps -ww -o args= -p "$pid" 2>/dev/null | grep -q -- "kafka.Kafka $RUN_DIR/server.properties" || return 1
  printf '%s' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# KRaft cluster ids are 16 random bytes in URL-safe base64 without padding.
# Generated here rather than with `kafka-storage random-uuid` to save a JVM
# start; a leading '-' would be parsed as a CLI flag, so retry on it.
cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ "$id" == -* || "$id" == AAAAAAAAAAAAAAAAAAAAAA ]] || break
  done
  printf '%s' "$id"
}

write_config() {
  cat >"$RUN_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$BOOTSTRAP
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA_DIR
num.partitions=$PARTITIONS
auto.create.topics.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
# Few internal partitions: creating 50 of them makes the first consumer group slow.
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
# Consumers in tests should get partitions at once, not after 3 s.
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
EOF
  if [[ -n "${KAFKA_EXTRA_CONFIG:-}" ]]; then
    printf '%s\n' "$KAFKA_EXTRA_CONFIG" >>"$RUN_DIR/server.properties"
  fi

  # Everything to stdout (redirected to kafka.log); request logs are too chatty.
  cat >"$RUN_DIR/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.state.change.logger=WARN
EOF

  # The readiness check's client logs only warnings, to stderr.
  cat >"$RUN_DIR/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

fail_start() {
  log "error: $*"
  if [[ -f "$LOG_FILE" ]]; then
    log "last lines of $LOG_FILE:"
    tail -n 40 "$LOG_FILE" >&2
  fi
  stop_broker quiet || true
  exit 1
}

# Produces one record with acks=all to a throwaway topic: proves the broker,
# the controller quorum and topic auto-creation all work, not just that the
# port is open. VerifiableProducer prints a JSON event per acked record.
produce_check() {
  local cp=$1 budget_ms=$2 out="$RUN_DIR/ready-check.log"
  cat >"$RUN_DIR/ready-producer.properties" <<EOF
max.block.ms=$budget_ms
delivery.timeout.ms=$budget_ms
request.timeout.ms=$((budget_ms < 10000 ? budget_ms : 10000))
linger.ms=0
EOF
  # Short-lived client JVM: C1 only and serial GC start fastest.
  timeout $((budget_ms / 1000 + 15)) "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    "-Dlog4j.configuration=file:$RUN_DIR/tools-log4j.properties" -cp "$cp" \
    org.apache.kafka.tools.VerifiableProducer --bootstrap-server "$BOOTSTRAP" \
    --topic "$READY_TOPIC" --max-messages 1 --acks -1 \
    --producer.config "$RUN_DIR/ready-producer.properties" >"$out" 2>&1 || true
  grep -q '"name":"producer_send_success"' "$out"
}

start_broker() {
  local pid cp started deadline now budget
  if pid=$(running_pid); then
    log "already running (pid $pid)"
    echo "KAFKA_BOOTSTRAP=$BOOTSTRAP"
    return 0
  fi
  command -v "$JAVA" >/dev/null || die "java not found (Java 11+ is needed; set JAVA_HOME or PATH)"
  for p in "$PORT" "$CONTROLLER_PORT"; do
    port_open "$p" && die "port $HOST:$p is already in use by another process"
  done

  started=$SECONDS
  mkdir -p "$STATE_DIR"
  cp=$(classpath)

  # Fresh data every start: tests must not see a previous run's topics.
  rm -rf "$DATA_DIR" "$PID_FILE"
  mkdir -p "$RUN_DIR"
  write_config
  : >"$LOG_FILE"

  local jvm_tool=(-Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
    "-Dlog4j.configuration=file:$RUN_DIR/tools-log4j.properties")
  if ! "$JAVA" "${jvm_tool[@]}" -cp "$cp" kafka.tools.StorageTool format \
      -t "$(cluster_id)" -c "$RUN_DIR/server.properties" >>"$LOG_FILE" 2>&1; then
    fail_start "formatting KRaft storage failed"
  fi

  # shellcheck disable=SC2206  # word splitting of option strings is intended
  local jvm=($HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    ${KAFKA_JVM_OPTS:-} "-Dlog4j.configuration=file:$RUN_DIR/log4j.properties"
    "-Dkafka.logs.dir=$RUN_DIR")
  # setsid detaches the broker from the caller's terminal and process group,
  # so Ctrl-C in the calling shell or its exit does not take it down.
  local launcher=(nohup)
  command -v setsid >/dev/null && launcher=(setsid nohup)
  "${launcher[@]}" "$JAVA" "${jvm[@]}" -cp "$cp" kafka.Kafka "$RUN_DIR/server.properties" \
    </dev/null >>"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  log "started broker pid $(<"$PID_FILE"), waiting up to ${START_TIMEOUT}s for it to accept writes..."

  deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    now=$SECONDS
    ((now < deadline)) || fail_start "broker not ready after ${START_TIMEOUT}s"
    running_pid >/dev/null || fail_start "broker process exited during startup"
    if port_open "$PORT"; then
      # Attempts are capped so a broker dying meanwhile is noticed; the
      # producer retries on its own within an attempt.
      budget=$((deadline - now < 20 ? deadline - now : 20))
      if produce_check "$cp" $((budget * 1000)); then
        break
      fi
      log "readiness produce not acknowledged yet: $(tail -n 1 "$RUN_DIR/ready-check.log" 2>/dev/null)"
    fi
    sleep 0.5
  done
  log "Kafka $KAFKA_VERSION ready on $BOOTSTRAP in $((SECONDS - started))s (log: $LOG_FILE)"
  echo "KAFKA_BOOTSTRAP=$BOOTSTRAP"
}

# stop_broker [quiet]: SIGTERM lets Kafka shut down cleanly; SIGKILL only after
# the timeout. The data dir goes too, since the next start formats a new one.
stop_broker() {
  local pid waited=0
  if pid=$(running_pid); then
    [[ "${1:-}" == quiet ]] || log "stopping broker pid $pid..."
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT * 10)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "no clean exit after ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    [[ "${1:-}" == quiet ]] || log "stopped"
  else
    [[ "${1:-}" == quiet ]] || log "not running"
  fi
  rm -rf "$DATA_DIR" "$PID_FILE"
}

status_broker() {
  local pid
  if pid=$(running_pid); then
    log "running (pid $pid, Kafka $KAFKA_VERSION)"
    echo "KAFKA_BOOTSTRAP=$BOOTSTRAP"
    return 0
  fi
  log "not running"
  return 1
}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit "${1:-2}"
}

case "${1:-}" in
  start) start_broker ;;
  stop) stop_broker ;;
  restart) stop_broker && start_broker ;;
  status) status_broker ;;
  logs)
    [[ -f "$LOG_FILE" ]] || die "no log yet at $LOG_FILE"
    if [[ "${2:-}" == -f ]]; then tail -n 100 -f "$LOG_FILE"; else cat "$LOG_FILE"; fi
    ;;
  fetch) mkdir -p "$STATE_DIR" && classpath >/dev/null && log "Kafka $KAFKA_VERSION jars are in the local Maven repository" ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
