# scheduler-core in a container: `scheduler serve` (API and dispatcher) by default, or any
# other command: `docker run IMAGE worker`, `docker run IMAGE config show`.
#
#   docker build -t scheduler-core .
#   docker run -d --name scheduler -p 8080:8080 -v scheduler-data:/data \
#       -e SCHEDULER_API_KEYS=change-me scheduler-core
#
# Tasks live in SQLite on the /data volume unless SCHEDULER_DATABASE_URL names PostgreSQL.
# docs/deploy/README.md lists what to set (API keys, allowed Host names, keys for secrets).

# The base for both stages. Any Python 3.11+ image whose `python` has venv works.
ARG PYTHON_IMAGE=python:3.11-slim

# -- build: install the package and its dependencies into a virtual environment ------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/scheduler
# .dockerignore lets in only what the wheel is built from.
COPY . /src
# Not editable: the image holds the installed package, not a link to /src. Every
# dependency is a wheel (psycopg2-binary, cryptography): no compiler is needed.
RUN /opt/scheduler/bin/pip install /src \
    && /opt/scheduler/bin/pip uninstall --yes pip \
    && /opt/scheduler/bin/scheduler --version

# -- runtime: the virtual environment alone, run by an unprivileged user -------------------
FROM ${PYTHON_IMAGE}
# A fixed uid/gid, so a bind-mounted /data can be given to it: chown 10001:10001 DIR.
RUN groupadd --gid 10001 scheduler \
    && useradd --uid 10001 --gid scheduler --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin scheduler \
    && mkdir /data \
    && chown scheduler:scheduler /data \
    && chmod 0700 /data
COPY --from=build /opt/scheduler /opt/scheduler

ENV PATH=/opt/scheduler/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # The database file on the volume (created 0600 on first start), four slashes: absolute.
    SCHEDULER_DATABASE_URL=sqlite:////data/scheduler.db \
    # Listen on every interface of the container, so a published port reaches it.
    SCHEDULER_HOST=0.0.0.0 \
    SCHEDULER_PORT=8080

# Numeric, so an orchestrator can tell it is not root (Kubernetes' runAsNonRoot).
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8080

# /healthz answers while the process serves; slim images have no curl, so Python asks.
# 127.0.0.1 as Host is always allowed (an IP literal cannot be a rebound name). A `worker`
# container serves no HTTP: run it with --no-healthcheck (compose: healthcheck: disable).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SCHEDULER_PORT', '8080') + '/healthz', timeout=4)"]

# SIGTERM (docker stop): no new claims, deliveries in flight finish, exit 0. Give it longer
# than http_callback_timeout_ms: docker stop --time 60 (the default 10 s may cut it short).
STOPSIGNAL SIGTERM
ENTRYPOINT ["scheduler"]
CMD ["serve"]
