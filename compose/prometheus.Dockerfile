# Prometheus from Debian's package, as the prometheus user; DNS discovery of every replica.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN command -v prometheus >/dev/null && command -v python3 >/dev/null \
 || { apt-get update && apt-get install -y --no-install-recommends prometheus python3 \
      && rm -rf /var/lib/apt/lists/*; }
COPY prometheus.yml /etc/prometheus/prometheus.yml
COPY probe.py /usr/local/bin/postern-probe
USER prometheus
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["postern-probe", "http", "http://127.0.0.1:9090/-/ready"]
ENTRYPOINT ["prometheus", "--config.file=/etc/prometheus/prometheus.yml", \
  "--storage.tsdb.path=/var/lib/prometheus/metrics2"]
