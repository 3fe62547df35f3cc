# syntax=docker/dockerfile:1
# One image per Twoway service, all from this file: `docker build --target <service> .`
#
# Stages: `uv` brings the uv binary; `build` holds the workspace source; `runtime` is what every
# service image shares (python:3.11-slim, a non-root user, no build tools); then, per service,
# `<service>-venv` syncs that service's locked dependencies alone (`uv sync --frozen --no-dev
# --package ...`: no dev or test dependencies, so no SecantusDB) and `<service>` copies the
# virtual environment into the runtime. No HEALTHCHECK: Kubernetes probes /readyz and /healthz,
# compose.yaml declares its own health checks.
#
# `--build-arg EXTRA=otel` syncs every service with its `otel` extra too: the OpenTelemetry SDK
# and OTLP exporter that TWOWAY_OTEL_EXPORTER=console|otlp needs (left out by default).
#
# Add a service: copy one block below, change the target name, the package, the port and the
# command (tests/deploy/test_dockerfile.py checks that every workspace service has its block).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# An ARG ends with its stage: as ENV it reaches every <service>-venv stage built FROM this one.
ARG EXTRA=""
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    EXTRA=${EXTRA}
WORKDIR /src
COPY . .

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 twoway \
    && useradd --system --uid 10001 --gid twoway --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin twoway
COPY config/gateways.yaml /etc/twoway/gateways.yaml
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TWOWAY_HOST=0.0.0.0 \
    TWOWAY_GATEWAYS_FILE=/etc/twoway/gateways.yaml
WORKDIR /app
USER 10001:10001

# ---- ingress: the public edge, /receiveSMS ---------------------------------------------------
FROM build AS ingress-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package twoway-ingress ${EXTRA:+"--extra=$EXTRA"}

FROM runtime AS ingress
COPY --from=ingress-venv /app/.venv /app/.venv
EXPOSE 8080
CMD ["twoway-ingress"]

# ---- api: the control plane --------------------------------------------------------------------
FROM build AS api-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package twoway-api ${EXTRA:+"--extra=$EXTRA"}

FROM runtime AS api
COPY --from=api-venv /app/.venv /app/.venv
EXPOSE 8081
CMD ["twoway-api"]

# ---- router: sms.inbound -> adapter queues -----------------------------------------------------
FROM build AS router-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package twoway-router ${EXTRA:+"--extra=$EXTRA"}

FROM runtime AS router
COPY --from=router-venv /app/.venv /app/.venv
EXPOSE 9101
CMD ["twoway-router"]

# ---- outbound: sms.outbound -> gateways --------------------------------------------------------
FROM build AS outbound-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package twoway-outbound ${EXTRA:+"--extra=$EXTRA"}

FROM runtime AS outbound
COPY --from=outbound-venv /app/.venv /app/.venv
EXPOSE 9102
CMD ["twoway-outbound"]

# ---- broadcaster: a broadcast -> every subscriber of an event source ---------------------------
FROM build AS broadcaster-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package twoway-broadcaster ${EXTRA:+"--extra=$EXTRA"}

FROM runtime AS broadcaster
COPY --from=broadcaster-venv /app/.venv /app/.venv
EXPOSE 9103
CMD ["twoway-broadcaster"]

# ---- gateway-sim: a fake SMS gateway for development -------------------------------------------
FROM build AS gateway-sim-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package twoway-gateway-sim ${EXTRA:+"--extra=$EXTRA"}

FROM runtime AS gateway-sim
COPY --from=gateway-sim-venv /app/.venv /app/.venv
EXPOSE 8090
CMD ["twoway-gateway-sim"]

# ---- adapter-echo: ECHO <words> ----------------------------------------------------------------
FROM build AS adapter-echo-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package twoway-echo ${EXTRA:+"--extra=$EXTRA"}

FROM runtime AS adapter-echo
COPY --from=adapter-echo-venv /app/.venv /app/.venv
EXPOSE 9110
CMD ["twoway-echo"]

# ---- adapter-bank: BAL / TRANSFER, answered by an HTTP back-end --------------------------------
FROM build AS adapter-bank-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package twoway-bank-adapter ${EXTRA:+"--extra=$EXTRA"}

FROM runtime AS adapter-bank
COPY --from=adapter-bank-venv /app/.venv /app/.venv
EXPOSE 9111
CMD ["twoway-bank"]

# ---- adapter-subscriptions: JOIN / LEAVE event sources -----------------------------------------
FROM build AS adapter-subscriptions-venv
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package twoway-subscriptions-adapter ${EXTRA:+"--extra=$EXTRA"}

FROM runtime AS adapter-subscriptions
COPY --from=adapter-subscriptions-venv /app/.venv /app/.venv
EXPOSE 9112
CMD ["twoway-subscriptions-adapter"]
