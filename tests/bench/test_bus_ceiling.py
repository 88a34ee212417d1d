"""``python -m bench.bus_ceiling`` on a few messages: a real nats-server, every publish
acknowledged, and with ``--consume`` every message acked off the outbound stream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bus_ceiling


@pytest.mark.parametrize("consume", [False, True])
def test_publishes_every_message_and_reports_the_figures(tmp_path: Path, consume: bool) -> None:
    out = tmp_path / "ceiling.json"
    argv = ["--messages", "30", "--sessions", "3", "--json", str(out), "--workdir", str(tmp_path)]
    assert bus_ceiling.main(argv + (["--consume"] if consume else [])) == 0
    result = json.loads(out.read_text())
    assert result["messages"] == 30 and result["consume"] is consume
    assert result["publish_rate"] > 0
    assert result["puback_p50_ms"] <= result["puback_p99_ms"]
    assert result["nats_cpu_ms_per_message"] >= 0
    assert result["acked"] == (30 if consume else 0)  # every message acked off the stream
    assert result["acked_meanwhile"] <= result["acked"]


def test_purge_mode_keeps_a_limits_stream_and_purges_it_to_the_ack_floor(tmp_path: Path) -> None:
    out = tmp_path / "ceiling.json"
    argv = ["--messages", "30", "--sessions", "3", "--json", str(out), "--workdir", str(tmp_path)]
    assert bus_ceiling.main([*argv, "--purge", "0.1"]) == 0
    result = json.loads(out.read_text())
    assert result["retention"] == "limits" and result["purge_interval"] == 0.1
    assert result["consume"] is True and result["acked"] == 30
    assert result["purges"] >= 1
    assert result["left_after_purge"] == 0  # acks alone leave them; the purges removed all
