# spamd and clamd for compose, from Debian's packages (the same versions the tests use).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends spamd spamassassin clamav-daemon clamav-freshclam ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/clamav && chown clamav:clamav /run/clamav
COPY compose/clamd.conf /etc/clamav/clamd.conf
