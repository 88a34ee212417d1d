"""W1/W2's measurement: SMTP in with ``smtp-source``, until every message is visible over
IMAP, with the latency from the 250 reply to the message showing up in an IDLE session.

The same generator drives both sides: Postfix's ``smtp-source`` (one new connection per
message, as MX traffic comes) with the same sessions, message file and count. Meanwhile a
probe sends one message at a time to a second account on its own SMTP connection and waits
for the ``* n EXISTS`` its IDLE session gets (RFC 2177), so each latency is unambiguous;
the probes run while the load runs, so the latency is the latency under that load.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen.populate import wait_for_count
from bench.loadgen.wire import Imap, ProtocolError, Smtp, exists_count
from bench.procs import Finished, run_metered
from bench.stats import percentile

HOST = "127.0.0.1"
PROBE_WAIT = 60.0  # a probe not visible after this long counts as lost
PROBE_GAP = 0.1


@dataclass
class FlowResult:
    accept_s: float
    visible_s: float | None  # None: not every message became visible in time
    latencies: list[float] = field(default_factory=list)
    lost_probes: int = 0
    generator: Finished | None = None
    visible: int = 0
    probe_note: str = ""
    probes_sent: int = 0  # accepted probe messages: the same path did their work too

    def values(self, messages: int, *, count_probes: bool = False) -> dict[str, float]:
        """Rates over ``messages``; with ``count_probes`` the end-to-end rate also counts
        the probes accepted meanwhile (W2: spamd scanned them too, and its ceiling is
        measured on plain messages only)."""
        out = {"accept": messages / self.accept_s}
        if self.visible_s is not None:
            done = messages + (self.probes_sent if count_probes else 0)
            out["e2e"] = done / self.visible_s
        if self.latencies:
            out["latency_p50"] = 1000 * (percentile(self.latencies, 50) or 0)
            out["latency_p95"] = 1000 * (percentile(self.latencies, 95) or 0)
        return out


def smtp_source_argv(
    port: int, *, messages: int, sessions: int, msg_file: Path, rcpt: str, lmtp: bool = False
) -> list[str]:
    binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    argv = [binary, "-s", str(sessions), "-m", str(messages), "-F", str(msg_file)]
    argv += ["-f", "sender@example.org", "-t", rcpt, "-M", "bench.client"]
    if lmtp:
        argv.append("-L")
    return [*argv, f"{HOST}:{port}"]


class _Probe:
    """One IDLE session on the probe account and one SMTP connection feeding it."""

    def __init__(self, imap: Imap, exists: int) -> None:
        self.imap = imap
        self.exists = exists
        self.seen_at: dict[int, float] = {}  # EXISTS count -> when it arrived
        self.changed = asyncio.Event()
        imap.on_untagged = self._untagged

    def _untagged(self, line: bytes) -> None:
        n = exists_count(line)
        if n is not None:
            now = time.monotonic()
            for k in range(self.exists + 1, n + 1):
                self.seen_at.setdefault(k, now)
            self.exists = max(self.exists, n)
            self.changed.set()

    async def wait_for(self, want: int, timeout: float) -> float | None:
        """When the mailbox reached ``want`` messages (None: not within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.exists < want:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return self.seen_at.get(want, time.monotonic())


async def _probe_loop(
    smtp_port: int, imap_port: int, probe: str, password: str, body: bytes, result: FlowResult
) -> None:
    imap = await Imap.connect(HOST, imap_port)
    await imap.login(probe, password)
    if b"IDLE" not in imap.capabilities:
        result.probe_note = "the IMAP server does not offer IDLE: latency not measured"
        await imap.logout()
        return
    p = _Probe(imap, await imap.select("INBOX"))
    tag = await imap.idle_start()
    reader = asyncio.create_task(imap.idle_read())
    smtp = await Smtp.connect(HOST, smtp_port)
    try:
        while True:
            want = p.exists + 1
            await smtp.send("probe-sender@example.org", [probe], body)
            t_ok = time.monotonic()
            result.probes_sent += 1
            seen = await p.wait_for(want, PROBE_WAIT)
            if seen is None:
                result.lost_probes += 1
            else:
                # The EXISTS can arrive before the client has read the 250 (the store
                # delivered while the reply was on its way): that counts as 0.
                result.latencies.append(max(0.0, seen - t_ok))
            await asyncio.sleep(PROBE_GAP)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, ProtocolError, OSError):
            await reader
        with contextlib.suppress(ProtocolError, OSError, TimeoutError):
            await asyncio.wait_for(imap.idle_done(tag), 5)
        await imap.logout()
        await smtp.quit()


async def run_flow(
    *,
    smtp_port: int,
    imap_port: int,
    rcpt: str,
    probe: str,
    password: str,
    messages: int,
    sessions: int,
    msg_file: Path,
    probe_body: bytes,
    timeout: float,
) -> FlowResult:
    counter = await Imap.connect(HOST, imap_port)
    try:
        await counter.login(rcpt, password)
        return await _run_flow(
            counter,
            smtp_port=smtp_port,
            imap_port=imap_port,
            rcpt=rcpt,
            probe=probe,
            password=password,
            messages=messages,
            sessions=sessions,
            msg_file=msg_file,
            probe_body=probe_body,
            timeout=timeout,
        )
    finally:
        await counter.logout()


async def _run_flow(
    counter: Imap,
    *,
    smtp_port: int,
    imap_port: int,
    rcpt: str,
    probe: str,
    password: str,
    messages: int,
    sessions: int,
    msg_file: Path,
    probe_body: bytes,
    timeout: float,
) -> FlowResult:
    before = await counter.status_messages("INBOX")
    argv = smtp_source_argv(
        smtp_port, messages=messages, sessions=sessions, msg_file=msg_file, rcpt=rcpt
    )
    result = FlowResult(accept_s=0.0, visible_s=None)
    t0 = time.monotonic()
    load = asyncio.create_task(asyncio.to_thread(run_metered, argv, timeout=timeout))
    probes = asyncio.create_task(
        _probe_loop(smtp_port, imap_port, probe, password, probe_body, result)
    )
    done = await load
    result.generator = done
    result.accept_s = done.wall_s
    if done.returncode != 0:
        probes.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await probes
        raise RuntimeError(f"smtp-source exited with {done.returncode}: {done.stderr[-400:]}")
    want = before + messages
    left = max(1.0, timeout - (time.monotonic() - t0))
    result.visible = await wait_for_count(
        lambda: counter.status_messages("INBOX"), want, timeout=left, interval=0.05
    )
    if result.visible >= want:
        result.visible_s = time.monotonic() - t0
    probes.cancel()
    try:
        await probes
    except asyncio.CancelledError:
        pass
    except (ProtocolError, OSError) as exc:
        result.probe_note = f"latency probe failed: {exc}"
    return result
