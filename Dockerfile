# syntax=docker/dockerfile:1
# nsg-forwarder container: multi-stage build, slim runtime, non-root, signals go straight to the process.

FROM python:3.11-slim-bookworm AS build
# gcc builds the compiled core (csrc/); the image has the Python headers. The runtime stage needs neither.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md LICENSE CHANGELOG.md ./
COPY csrc ./csrc
COPY forwarder ./forwarder
COPY schemas ./schemas
# NSG_FORWARDER_REQUIRE_CORE=1: a core that does not build fails the image build instead of running slower.
RUN python -m venv /opt/nsg-forwarder \
 && /opt/nsg-forwarder/bin/pip install --no-cache-dir --upgrade pip \
 && NSG_FORWARDER_REQUIRE_CORE=1 /opt/nsg-forwarder/bin/pip install --no-cache-dir . \
 && /opt/nsg-forwarder/bin/nsg-forwarder --version

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="nsg-forwarder" \
      org.opencontainers.image.description="Azure NSG and VNet flow logs to Splunk, Elastic, syslog or files as ECS, CEF or OCSF" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 forwarder \
 && useradd --system --uid 10001 --gid forwarder --home-dir /var/lib/nsg-forwarder --shell /usr/sbin/nologin forwarder \
 && install -d -o forwarder -g forwarder -m 0750 /var/lib/nsg-forwarder /var/log/nsg-forwarder /etc/nsg-forwarder
COPY --from=build /opt/nsg-forwarder /opt/nsg-forwarder
ENV PATH="/opt/nsg-forwarder/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/nsg-forwarder
# Checkpoints must outlive the container: mount a volume here (and /var/log/nsg-forwarder for file sinks).
VOLUME ["/var/lib/nsg-forwarder"]
# Config: mount /etc/nsg-forwarder/config.toml; secrets by ${VAR} from the environment or *_file from a mounted secret.
# The config must enable [metrics] listen = "0.0.0.0:9108" for the health check and Prometheus.
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["nsg-forwarder"]
CMD ["run", "--config", "/etc/nsg-forwarder/config.toml"]
