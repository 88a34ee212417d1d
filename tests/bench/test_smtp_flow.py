"""W1/W2's latency probe and smtp-source command line."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from bench.loadgen.smtp_flow import FlowResult, _Probe, smtp_source_argv


async def test_probe_times_each_exists_when_it_arrives() -> None:
    imap = SimpleNamespace(on_untagged=None)
    probe = _Probe(imap, exists=5)  # type: ignore[arg-type]
    before = time.monotonic()
    imap.on_untagged(b"* 7 EXISTS\r\n")  # two deliveries in one notification
    imap.on_untagged(b"* 2 RECENT\r\n")
    seen = await probe.wait_for(6, timeout=1)
    assert seen is not None and seen >= before
    assert await probe.wait_for(7, timeout=1) == seen
    assert await probe.wait_for(8, timeout=0.05) is None


def test_flow_values() -> None:
    r = FlowResult(accept_s=2.0, visible_s=4.0, latencies=[0.010, 0.020, 0.030])
    v = r.values(1000)
    assert v["accept"] == 500.0 and v["e2e"] == 250.0
    assert round(v["latency_p50"], 6) == 20.0
    assert "e2e" not in FlowResult(accept_s=1.0, visible_s=None).values(10)


def test_smtp_source_command() -> None:
    argv = smtp_source_argv(
        2525, messages=3000, sessions=20, msg_file=Path("/m.txt"), rcpt="a@b.test", lmtp=True
    )
    assert argv[1:] == [
        "-s", "20", "-m", "3000", "-F", "/m.txt", "-f", "sender@example.org",
        "-t", "a@b.test", "-M", "bench.client", "-L", "127.0.0.1:2525",
    ]  # fmt: skip


def test_w2_counts_the_probes_spamd_scanned_too() -> None:
    r = FlowResult(accept_s=2.0, visible_s=4.0, probes_sent=20)
    assert r.values(1000)["e2e"] == 250.0
    assert r.values(1000, count_probes=True)["e2e"] == 255.0
    assert r.values(1000, count_probes=True)["accept"] == 500.0
