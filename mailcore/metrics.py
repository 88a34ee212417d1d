"""Every metric Postern exports, in one place, and the ops endpoint that serves them.

Each service runs :class:`OpsServer` on its ops port: ``GET /metrics`` (Prometheus text
format), ``GET /healthz`` (liveness, JSON; 200 when every *liveness* check passes, else
503) and ``GET /readyz`` (readiness, JSON; 200 when every check passes, else 503). A check
registered with ``liveness=False`` (the mirror's link to its peer) reports something this
process does not own: it fails ``/readyz`` only, and ``/healthz`` shows it under ``links``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# --- bus ------------------------------------------------------------------------------
BUS_CONNECTED = Gauge("postern_bus_connected", "1 while connected to NATS")
BUS_RECONNECTS = Counter("postern_bus_reconnects_total", "NATS reconnections")
BUS_ERRORS = Counter("postern_bus_errors_total", "NATS client errors")

# --- filter (SMTP) --------------------------------------------------------------------
SMTP_SESSIONS = Gauge("postern_smtp_sessions_open", "open SMTP sessions", ["listener"])
SMTP_ACCEPTED = Counter("postern_smtp_accepted_total", "messages accepted (250)", ["listener"])
SMTP_REJECTED = Counter(
    "postern_smtp_rejected_total", "messages or recipients refused, by reason", ["reason"]
)
SCAN_SECONDS = Histogram(
    "postern_scan_seconds", "scan latency per scanner", ["scanner"], buckets=_LATENCY
)
SCAN_VERDICTS = Counter("postern_scan_verdicts_total", "scan outcomes", ["scanner", "verdict"])
HANDOFF_SECONDS = Histogram(
    "postern_handoff_seconds", "publish to JetStream until PubAck", buckets=_LATENCY
)
HANDOFF_RETRIES = Counter(
    "postern_handoff_retries_total",
    "publishes repeated with the same Nats-Msg-Id after no PubAck came in time",
)
HANDOFF_SYNC_TIMEOUTS = Counter(
    "postern_handoff_sync_timeouts_total",
    "synchronous mirroring: 250s given without the stores' word that both have the message",
)
AUTH_FAILURES = Counter("postern_auth_failures_total", "failed logins", ["protocol"])
AUTH_REQUESTS = Counter(
    "postern_auth_requests_total",
    "password checks (verify) and changes (password) the store answered for other services",
    ["op", "result"],
)
PASSWORD_CHECKS = Counter(
    "postern_password_checks_total",
    "password checks of known users by how they were answered: argon2 (the hash was "
    "computed; unknown users included), process_cache, shared_cache (the store's other "
    "processes had checked it)",
    ["answer"],
)
AUTH_THROTTLED = Counter(
    "postern_auth_throttled_total",
    "logins refused unchecked: too many recent failures from that address",
    ["protocol"],
)

# --- store ----------------------------------------------------------------------------
DELIVERIES = Counter(
    "postern_deliveries_total",
    "recipient copies by outcome (delivered, duplicate, junk, quota, failed)",
    ["outcome"],
)
DELIVERY_TERMINATED = Counter(
    "postern_delivery_terminated_total", "poison bus messages terminated", ["reason"]
)
DELIVERY_BATCH = Histogram(
    "postern_delivery_batch_size",
    "bus messages committed per group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
DELIVERY_SECONDS = Histogram(
    "postern_delivery_commit_seconds", "one group commit", buckets=_LATENCY
)
DELIVERY_RESENT = Counter(
    "postern_delivery_resent_duplicates_total",
    "bus messages dropped as a sender's resend of one delivered minutes before",
)
DELIVERY_PAUSED = Gauge("postern_delivery_paused", "1 while delivery waits for disk space")
DELIVERY_REQUEUED = Counter(
    "postern_delivery_requeued_total", "bus messages republished after their last attempt"
)
DELIVERY_DEAD_LETTERED = Counter(
    "postern_delivery_dead_lettered_total",
    "dead letters published to MAIL_DEAD (unknown_recipient, quota, failed, poison, ...)",
    ["reason"],
)
DELIVERY_DEAD_LETTER_FAILURES = Counter(
    "postern_delivery_dead_letter_failures_total",
    "dead letters the bus refused (the mail stays on the inbound stream)",
)
# --- relay (outbound) -------------------------------------------------------------------
RELAY_DELIVERIES = Counter(
    "postern_relay_deliveries_total",
    "remote recipients by outcome (delivered, deferred, bounced, local)",
    ["outcome"],
)
RELAY_BOUNCES = Counter("postern_relay_bounces_total", "recipients bounced, by reason", ["reason"])
RELAY_DSN = Counter("postern_relay_dsn_total", "DSNs sent to senders", ["action"])
RELAY_INTERRUPTED = Counter(
    "postern_relay_interrupted_total",
    "transactions found interrupted at redelivery: possible duplicates (RFC 5321 §6.1)",
)
RELAY_QUEUE_DEPTH = Gauge("postern_relay_queue_depth", "messages on MAIL_OUTBOUND")
INBOUND_QUEUE_DEPTH = Gauge(
    "postern_inbound_queue_depth", "accepted messages on MAIL_INBOUND the store has not acked"
)
INBOUND_OLDEST_SECONDS = Gauge(
    "postern_inbound_oldest_seconds", "age of the oldest message on MAIL_INBOUND"
)
RELAY_OLDEST_SECONDS = Gauge(
    "postern_relay_oldest_seconds", "age of the oldest message on MAIL_OUTBOUND"
)
RELAY_SECONDS = Histogram(
    "postern_relay_transaction_seconds", "one SMTP transaction to a remote MX", buckets=_LATENCY
)
RELAY_REQUEUED = Counter(
    "postern_relay_requeued_total", "outbound messages republished (operator retry)"
)
STORE_DISK_USED = Gauge("postern_store_disk_used_bytes", "bytes the mail store occupies")
STORE_DISK_FREE = Gauge(
    "postern_store_disk_free_bytes", "bytes free on the mail store's file system"
)
JOURNAL_READER_RESYNC = Counter(
    "postern_journal_reader_resync_total",
    "journal readers told to resync: they fell beyond the size or age ceiling",
    ["reader"],
)

# --- mirror (services/mirror) -----------------------------------------------------------
MIRROR_ADDED = Counter(
    "postern_mirror_records_added_total", "journal records read for the peer", ["peer"]
)
MIRROR_SENT = Counter(
    "postern_mirror_records_sent_total", "records stored in the peer's stream (PubAck)", ["peer"]
)
MIRROR_APPLIED = Counter(
    "postern_mirror_records_applied_total", "the peer's records committed here", ["peer"]
)
MIRROR_QUEUED = Gauge("postern_mirror_queued", "records waiting in the peer's stream", ["peer"])
MIRROR_LAG = Gauge(
    "postern_mirror_lag_seconds", "age of the oldest record the peer has not applied", ["peer"]
)
MIRROR_PEER_UP = Gauge(
    "postern_mirror_peer_up",
    "1 while the mirror's link to the peer's NATS is up, 0 while the peer is unreachable "
    "(records queue meanwhile; the mirror's /readyz, not its /healthz, fails)",
    ["peer"],
)
MIRROR_ERRORS = Counter("postern_mirror_errors_total", "mirror failures, retried", ["peer", "side"])
MIRROR_CONFLICTS = Counter(
    "mirror_conflicts_total",
    "split-brain conflicts: resolved (uid, late, deferred, moved, expunged, flags, rename)"
    " or kept in MIRROR_CONFLICTS (bytes, mailbox, uidvalidity)",
    ["kind"],
)
MIRROR_REPAIR_FIXED = Counter(
    "postern_mirror_repair_fixed_total",
    "differences the scheduled repair pass (resync-fast) fixed on the peer",
    ["peer", "kind"],
)
MIRROR_REPAIR_RUNS = Counter(
    "postern_mirror_repair_runs_total", "scheduled repair passes, by outcome", ["peer", "outcome"]
)
MIRROR_DIRECTORY_APPLIED = Counter(
    "postern_mirror_directory_applied_total", "the peer's directory changes applied here", ["peer"]
)
MIRROR_SYNC_TIMEOUTS = Counter(
    "postern_mirror_sync_timeouts_total",
    "synchronous mirroring: writes answered without the peer's commit (timeout)",
    ["peer"],
)
MIRROR_SYNC_DEGRADED = Gauge(
    "postern_mirror_sync_degraded",
    "1 while synchronous mirroring fell back to asynchronous (the last wait timed out)",
    ["peer"],
)
JOURNAL_PRUNED = Counter("postern_journal_pruned_total", "journal records pruned")
IMAP_SESSIONS = Gauge("postern_imap_sessions_open", "open IMAP sessions")
IMAP_COMMANDS = Counter("postern_imap_commands_total", "IMAP commands", ["command", "status"])
POP3_SESSIONS = Gauge("postern_pop3_sessions_open", "open POP3 sessions")
POP3_COMMANDS = Counter("postern_pop3_commands_total", "POP3 commands", ["command", "status"])

# --- webmail --------------------------------------------------------------------------
WEBMAIL_REQUESTS = Counter("postern_webmail_requests_total", "HTTP requests", ["route", "status"])
WEBMAIL_PAGE_SECONDS = Histogram(
    "postern_webmail_page_seconds",
    "webmail response latency per route",
    ["route"],
    buckets=_LATENCY,
)
WEBMAIL_LOGINS = Counter(
    "postern_webmail_logins_total",
    "webmail logins by outcome (ok, failed, throttled, error)",
    ["outcome"],
)
WEBMAIL_IMAP_ROUND_TRIPS = Histogram(
    "postern_webmail_imap_round_trips",
    "IMAP commands sent to the store per webmail request",
    ["route"],
    buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50),
)
WEBMAIL_SESSIONS_ENDED = Counter(
    "postern_webmail_sessions_ended_total", "webmail sessions ended, by reason", ["reason"]
)

# --- nats-server (services.ctl.natsmetrics: natsrun translates the monitoring JSON) ------
NATS_UP = Gauge("postern_nats_up", "1 while nats-server's monitoring port (/varz, /jsz) answers")
NATS_CONNECTIONS = Gauge("postern_nats_connections", "client connections to nats-server")
NATS_JS_STORAGE = Gauge("postern_nats_jetstream_storage_bytes", "JetStream file storage used")
NATS_JS_STORAGE_MAX = Gauge(
    "postern_nats_jetstream_storage_max_bytes", "JetStream file storage limit (max_file_store)"
)
NATS_STREAM_MESSAGES = Gauge(
    "postern_nats_stream_messages", "messages held by a stream on this server", ["stream"]
)
NATS_STREAM_BYTES = Gauge(
    "postern_nats_stream_bytes", "bytes held by a stream on this server", ["stream"]
)
NATS_CONSUMER_PENDING = Gauge(
    "postern_nats_consumer_pending",
    "messages a durable consumer has not been delivered yet (num_pending)",
    ["stream", "consumer"],
)
NATS_CONSUMER_ACK_PENDING = Gauge(
    "postern_nats_consumer_ack_pending",
    "messages delivered to a durable consumer and not acked yet (num_ack_pending)",
    ["stream", "consumer"],
)
NATS_CONSUMER_REDELIVERED = Gauge(
    "postern_nats_consumer_redelivered",
    "messages a durable consumer is redelivering (num_redelivered)",
    ["stream", "consumer"],
)

# --- mailctl --------------------------------------------------------------------------
CHILD_RESTARTS = Counter("postern_child_restarts_total", "children restarted", ["child"])


HealthCheck = Callable[[], Awaitable[bool] | bool]


class OpsServer:
    """A tiny HTTP/1.0 server for ``/metrics``, ``/healthz`` and ``/readyz`` (no framework
    needed)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._checks: dict[str, HealthCheck] = {}
        self._links: set[str] = set()  # checks of something outside this process
        self._server: asyncio.Server | None = None

    def add_check(self, name: str, check: HealthCheck, *, liveness: bool = True) -> None:
        """``liveness=False``: a failure makes the process not ready (``/readyz``), not
        unhealthy (``/healthz``, what compose and orchestrators restart or hold back on)."""
        self._checks[name] = check
        if liveness:
            self._links.discard(name)
        else:
            self._links.add(name)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def health(self) -> tuple[bool, dict[str, bool]]:
        results: dict[str, bool] = {}
        for name, check in self._checks.items():
            try:
                value = check()
                if isinstance(value, Awaitable):
                    value = await value
                results[name] = bool(value)
            except Exception:
                results[name] = False
        return all(results.values()), results

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.split()
            path = parts[1].decode("ascii", "replace").split("?")[0] if len(parts) > 1 else ""
            if path == "/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
            elif path in ("/healthz", "/readyz"):
                ready, checks = await self.health()
                payload: dict[str, object]
                if path == "/readyz":
                    ok = ready
                    payload = {"status": "ready" if ok else "not ready", "checks": checks}
                else:
                    live = {k: v for k, v in checks.items() if k not in self._links}
                    ok = all(live.values())
                    payload = {"status": "ok" if ok else "unhealthy", "checks": live}
                    if self._links:
                        payload["links"] = {k: v for k, v in checks.items() if k in self._links}
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype = "application/json"
                body = json.dumps(payload).encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            head = (
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
