# spamd alone (one process), as debian-spamd, with its home (Bayes, auto-whitelist) on the
# spamd-state volume. Rules: Debian's packaged ones; `sa-update` (network) for fresh ones.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN command -v spamd >/dev/null && command -v spamc >/dev/null \
 || { apt-get update && apt-get install -y --no-install-recommends spamd spamassassin spamc \
      tini && rm -rf /var/lib/apt/lists/*; }
RUN mkdir -p /var/lib/spamassassin/.spamassassin \
 && chown -R debian-spamd:debian-spamd /var/lib/spamassassin
USER debian-spamd
ENV HOME=/var/lib/spamassassin
EXPOSE 1783
HEALTHCHECK --interval=5s --timeout=10s --start-period=120s --retries=3 \
  CMD ["spamc", "-K", "-d", "127.0.0.1", "-p", "1783"]
ENTRYPOINT ["tini", "--", "spamd", "--listen=0.0.0.0:1783", "--allowed-ips=0.0.0.0/0", \
  "--nouser-config", "--helper-home-dir=/var/lib/spamassassin", "--syslog=stderr", \
  "--pidfile=/tmp/spamd.pid", "--max-children=4", "--allow-tell"]
