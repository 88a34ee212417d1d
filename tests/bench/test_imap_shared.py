"""W4c's load generator and the combination of its processes' figures."""

from __future__ import annotations

from bench.loadgen.imap_shared import MIX, new_uids, parse_args
from bench.workloads.w4c_shared import combine


def test_new_uids_from_appenduid_and_copyuid() -> None:
    assert new_uids(b"OK [APPENDUID 1709 42] APPEND completed\r\n", []) == [42]
    assert new_uids(b"OK [COPYUID 1709 3:4,9 10:12] Done\r\n", []) == [10, 11, 12]
    # MOVE puts COPYUID in an untagged OK (RFC 6851 §4.3)
    assert new_uids(b"OK Done\r\n", [b"* OK [COPYUID 7 5 8] Moved\r\n"]) == [8]
    assert new_uids(b"OK APPEND completed\r\n", []) == []


def test_mix_is_the_issue_s_commands() -> None:
    assert set(MIX) == {"APPEND", "STORE", "FETCH", "EXPUNGE", "COPY", "MOVE"}
    assert sum(MIX.values()) == 100


def test_processes_combine_worst_latency_and_summed_rate() -> None:
    a = {
        "seconds": 10.0,
        "counts": {"APPEND": 100, "FETCH": 50},
        "errors": {},
        "latency_ms": {"APPEND": {"p50": 5.0, "p99": 40.0}, "FETCH": {"p50": 1.0, "p99": 9.0}},
        "all_ms": {"p50": 4.0, "p99": 35.0, "max": 50.0},
    }
    b = {
        "seconds": 10.0,
        "counts": {"APPEND": 60},
        "errors": {"MOVE": 2},
        "latency_ms": {"APPEND": {"p50": 7.0, "p99": 30.0}},
        "all_ms": {"p50": 7.0, "p99": 30.0, "max": 80.0},
        "broken_connections": 1,
    }
    values, notes = combine([a, b])
    assert values["cmds"] == 21.0
    assert values["p99"] == 35.0 and values["p50"] == 7.0 and values["max"] == 80.0
    assert values["p99.APPEND"] == 40.0 and values["p50.APPEND"] == 7.0
    assert values["p99.FETCH"] == 9.0
    assert "errors: MOVE 2" in notes and "1 connections broke" in notes


def test_arguments() -> None:
    a = parse_args(["--port", "1", "--user", "u", "--password", "p", "--mailbox-size", "9"])
    assert a.sessions == 50 and a.host == "127.0.0.1"
