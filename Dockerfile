# syntax=docker/dockerfile:1
# The rollback receiver's image: build a virtualenv with the package and its runtime
# dependencies in one stage, copy only that venv into a clean slim image.
#   docker build -t rollback-receiver:0.1.0 .
#   docker run -p 8080:8080 -v $PWD/config.yaml:/etc/receiver/config.yaml:ro \
#     -e RECEIVER_WEBHOOK_TOKEN=... rollback-receiver:0.1.0
# BASE is any Debian-like image with Python 3.11 as `python3` (with venv) and
# groupadd/useradd: python:3.11-slim by default, or Debian bookworm's python3 and
# python3-venv where no registry is reachable (README, "Install into a cluster": buildah).

ARG BASE=python:3.11-slim

FROM ${BASE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY receiver/ ./receiver/
# A non-editable install of the package only: no test extras in the image.
RUN /opt/venv/bin/pip install --no-cache-dir /src

FROM ${BASE} AS runtime
LABEL org.opencontainers.image.title="rollback-receiver" \
      org.opencontainers.image.description="Alertmanager webhook receiver that rolls a Kubernetes canary back to stable" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 receiver \
    && useradd --system --uid 10001 --gid receiver --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin receiver
COPY --from=builder /opt/venv /opt/venv
COPY config.yaml /etc/receiver/config.yaml
USER 10001:10001
EXPOSE 8080
# No curl in slim: ask the venv's Python. Liveness only: it never depends on the API server.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=4)"]
ENTRYPOINT ["receiver"]
CMD ["serve", "--config", "/etc/receiver/config.yaml"]
