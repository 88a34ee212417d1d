"""W4's load generator: commands stay on pre-loaded UIDs, the window counts, results add up."""

from __future__ import annotations

import random

from bench.loadgen.imap_mix import MIX, Tally, command_for, parse_args
from bench.stats import latency_bucket
from bench.workloads.w4_imap import KINDS, combine


def test_commands_use_preloaded_uids_and_never_delete_them() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        kind = rng.choice(list(MIX))
        cmd = command_for(kind, rng, 10_000)
        assert b"\r" not in cmd and b"\n" not in cmd
        if kind.startswith("FETCH") or kind == "STORE":
            uids = cmd.split()[2]
            lo, _, hi = uids.partition(b":")
            assert 1 <= int(lo) <= int(hi or lo) <= 10_000
        if kind == "STORE":
            assert b"Deleted" not in cmd
        if kind == "APPEND":
            assert cmd.startswith(b"APPEND INBOX (\\Deleted) ")


def test_envelope_fetch_is_a_range_of_fifty() -> None:
    cmd = command_for("FETCH-ENVELOPE", random.Random(1), 10_000)
    lo, hi = (int(x) for x in cmd.split()[2].split(b":"))
    assert hi - lo == 49
    assert cmd.endswith(b"(UID FLAGS ENVELOPE)")


def test_tally_counts_only_inside_the_window() -> None:
    t = Tally(start=10.0, end=20.0)
    t.record("STORE", 9.0, 9.5)  # warm-up
    t.record("STORE", 9.5, 10.5)
    t.record("STORE", 19.0, 20.0)  # ends at the window's end: out
    t.error("SEARCH", 15.0)
    assert t.counts == {"STORE": 1}
    assert t.errors == {"SEARCH": 1}
    assert t.latencies["STORE"] == [1.0]
    assert t.hists["STORE"] == {latency_bucket(1.0): 1}  # the window's only
    assert t.done == 4  # answered commands at any time, errors and warm-up included


def test_processes_add_up() -> None:
    one = {
        "seconds": 10.0,
        "visits": 5,
        "counts": {"LOGIN": 10, "STORE": 40},
        "errors": {"SEARCH": 1},
        "latency_ms": {"STORE": {"p50": 2.0, "p95": 5.0}},
    }
    two = {
        "seconds": 10.0,
        "visits": 7,
        "counts": {"LOGIN": 20, "STORE": 60},
        "errors": {},
        "latency_ms": {"STORE": {"p50": 4.0, "p95": 9.0}},
    }
    values, notes = combine([one, two])
    assert values["cmds"] == 13.0
    assert values["rate.STORE"] == 10.0
    assert values["rate.LOGIN"] == 3.0
    assert values["rate.APPEND"] == 0.0
    assert values["p50.STORE"] == 4.0
    assert set(KINDS) >= {"LOGIN", "SELECT", "LOGOUT", *MIX}
    assert "errors: SEARCH 1" in notes and "12 visits" in notes


def test_arguments() -> None:
    a = parse_args(["--port", "1", "--user", "u", "--password", "p", "--mailbox-size", "9"])
    assert (a.host, a.sessions, a.mailbox_size) == ("127.0.0.1", 12, 9)
