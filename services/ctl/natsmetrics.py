"""nats-server's own figures as Prometheus gauges: Debian packages no
prometheus-nats-exporter, so ``natsrun --ops-port`` (the compose ``nats`` services) reads the
server's monitoring JSON (``/varz``, ``/jsz?consumers=true`` on its ``http`` port) every
few seconds and sets the ``postern_nats_*`` gauges of mailcore.metrics, which its ops
server serves on ``/metrics`` (docs/operations.md, Dashboards).

Per stream: messages and bytes; per durable consumer: messages not delivered yet
(``num_pending``), delivered and not acked (``num_ack_pending``), being redelivered. The
store's delivery consumer on MAIL_INBOUND is the inbound queue as the store sees it. In
the ``ha`` variant every node reports the streams it holds a replica of (dashboards take
``max``). When the monitoring port does not answer, ``postern_nats_up`` is 0 and the
other gauges keep their last figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from typing import Any

from mailcore import metrics

INTERVAL = 10.0  # seconds between reads (two small HTTP requests to the local server)
_LABELLED = (
    metrics.NATS_STREAM_MESSAGES,
    metrics.NATS_STREAM_BYTES,
    metrics.NATS_CONSUMER_PENDING,
    metrics.NATS_CONSUMER_ACK_PENDING,
    metrics.NATS_CONSUMER_REDELIVERED,
)


def _get(url: str, timeout: float) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (our own URL)
        return dict(json.loads(reply.read()))


def apply(varz: dict[str, Any], jsz: dict[str, Any]) -> None:
    """Sets every gauge from one ``/varz`` and one ``/jsz?consumers=true`` answer; streams
    and consumers gone since the last read lose their samples."""
    metrics.NATS_CONNECTIONS.set(int(varz.get("connections") or 0))
    metrics.NATS_JS_STORAGE.set(int(jsz.get("storage") or 0))
    metrics.NATS_JS_STORAGE_MAX.set(int((jsz.get("config") or {}).get("max_storage") or 0))
    for gauge in _LABELLED:
        gauge.clear()
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            name = str(stream.get("name"))
            state = stream.get("state") or {}
            metrics.NATS_STREAM_MESSAGES.labels(name).set(int(state.get("messages") or 0))
            metrics.NATS_STREAM_BYTES.labels(name).set(int(state.get("bytes") or 0))
            for consumer in stream.get("consumer_detail") or []:
                labels = (name, str(consumer.get("name")))
                metrics.NATS_CONSUMER_PENDING.labels(*labels).set(
                    int(consumer.get("num_pending") or 0)
                )
                metrics.NATS_CONSUMER_ACK_PENDING.labels(*labels).set(
                    int(consumer.get("num_ack_pending") or 0)
                )
                metrics.NATS_CONSUMER_REDELIVERED.labels(*labels).set(
                    int(consumer.get("num_redelivered") or 0)
                )


class NatsMetrics:
    """Reads the server at ``monitor_url`` (e.g. ``http://127.0.0.1:8222``) into the
    gauges; ``up``: whether the last read was answered (natsrun's /healthz check)."""

    def __init__(self, monitor_url: str, *, timeout: float = 5.0) -> None:
        self.base = monitor_url.rstrip("/")
        self.timeout = timeout
        self.up = False

    async def read_once(self) -> bool:
        try:
            varz = await asyncio.to_thread(_get, f"{self.base}/varz", self.timeout)
            jsz = await asyncio.to_thread(_get, f"{self.base}/jsz?consumers=true", self.timeout)
        except (OSError, ValueError):
            self.up = False
        else:
            apply(varz, jsz)
            self.up = True
        metrics.NATS_UP.set(1 if self.up else 0)
        return self.up

    async def run(self, stopping: asyncio.Event, interval: float = INTERVAL) -> None:
        while not stopping.is_set():
            await self.read_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)


__all__ = ["INTERVAL", "NatsMetrics", "apply"]
