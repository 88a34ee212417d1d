# clamd alone (one process), as the clamav user. Signatures live on the clamav-db volume:
# an empty volume is seeded with the EICAR test signatures (compose/clamav/, the same files
# as tests/data/clamav), enough to prove scanning works offline; real signatures:
# `docker compose exec clamav freshclam` (network).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# Registry images have no clamd yet (needs network); postern-base already has it.
RUN command -v clamd >/dev/null && command -v python3 >/dev/null \
 || { apt-get update && apt-get install -y --no-install-recommends clamav-daemon \
      clamav-freshclam python3 tini && rm -rf /var/lib/apt/lists/*; }
RUN mkdir -p /usr/share/postern/clamav /var/lib/clamav /run/clamav \
 && chown clamav:clamav /var/lib/clamav /run/clamav
COPY clamd.conf /etc/clamav/clamd.conf
COPY freshclam.conf /etc/clamav/freshclam.conf
COPY clamav/ /usr/share/postern/clamav/
COPY probe.py /usr/local/bin/postern-probe
COPY clamav-start /usr/local/bin/clamav-start
USER clamav
EXPOSE 3310
HEALTHCHECK --interval=5s --timeout=5s --start-period=120s --retries=3 \
  CMD ["postern-probe", "clamd", "127.0.0.1", "3310"]
ENTRYPOINT ["tini", "--", "clamav-start"]
