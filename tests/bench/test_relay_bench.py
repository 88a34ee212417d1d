"""W8's harness pieces: the Postfix transport table, the sink's dump files, and the
latency and throughput computed from them."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.loadgen.submit_flow import SubmitResult, with_id
from bench.peers.postfix import PostfixLayout, render_main_cf, render_transport
from bench.peers.sink import SmtpSink


def test_postfix_routes_the_remote_domain_to_the_sink(tmp_path: Path) -> None:
    layout = PostfixLayout(tmp_path)
    main = render_main_cf(layout, domain="bench.test", lmtp_port=1, transport=True)
    assert f"transport_maps = texthash:{layout.transport}" in main
    assert "permit_mynetworks" in main  # 127.0.0.0/8 may relay
    assert render_transport({"sink.example": "127.0.0.1:4025"}) == (
        "sink.example smtp:[127.0.0.1]:4025\n"
    )
    assert "transport_maps" not in render_main_cf(layout, domain="bench.test", lmtp_port=1)


def test_sink_arrivals_read_the_id_and_the_file_time(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path)
    sink.dump_dir.mkdir()
    path = sink.dump_dir / "1a2b"
    body = with_id(b"Subject: x\r\n\r\nbody\r\n", "r0m7")
    path.write_bytes(b"X-Client-Addr: 127.0.0.1\n" + body)
    os.utime(path, ns=(1_700_000_000_250_000_000, 1_700_000_000_250_000_000))
    (sink.dump_dir / "partial").write_bytes(b"X-Client-Addr: 127.0.0.1\n")  # not complete
    (arrival,) = sink.arrivals()
    assert arrival.bench_id == "r0m7" and abs(arrival.at - 1_700_000_000.25) < 1e-6
    assert sink.count() == 2
    sink.clear()
    assert sink.count() == 0


def test_values_are_rates_and_latency_percentiles() -> None:
    r = SubmitResult(
        started=time.time(),
        submitted_s=2.0,
        arrived_s=4.0,
        latencies=[0.010] * 98 + [0.200, 0.300],
        arrived=100,
    )
    v = r.values(100)
    assert v["submit"] == 50.0 and v["e2e"] == 25.0
    assert v["latency_p50"] == 10.0
    assert 200.0 <= v["latency_p99"] <= 300.0
    incomplete = SubmitResult(started=0.0, submitted_s=1.0, arrived_s=None)
    assert "e2e" not in incomplete.values(10)


def test_with_id_prepends_one_header() -> None:
    out = with_id(b"Subject: a\r\n\r\nb\r\n", "r1m2")
    assert out == b"X-Bench-Id: r1m2\r\nSubject: a\r\n\r\nb\r\n"
