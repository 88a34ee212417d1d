# HAProxy as the only public SMTP listener (and the webmail balancer), as the haproxy user:
# it binds unprivileged ports, compose publishes 25/587/465/8080 onto them.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN command -v haproxy >/dev/null && command -v python3 >/dev/null \
 || { apt-get update && apt-get install -y --no-install-recommends haproxy python3 \
      && rm -rf /var/lib/apt/lists/*; }
COPY haproxy.cfg /etc/haproxy/haproxy.cfg
COPY probe.py /usr/local/bin/postern-probe
USER haproxy
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 \
  CMD ["postern-probe", "http", "http://127.0.0.1:8404/healthz"]
ENTRYPOINT ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
