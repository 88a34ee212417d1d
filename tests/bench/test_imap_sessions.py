"""W4b's load generator: commands stay on pre-loaded UIDs, each session keeps one account
and one login, leftovers are expunged; the workload's figures from canned results."""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from bench.corpus import SMALL_MAX, SMALL_MIN, mixed_size
from bench.loadgen.imap_sessions import KEYWORDS, KINDS, MIX, SessionGenerator, command_for
from bench.loadgen.imap_sessions import parse_args as session_args
from bench.stats import latency_bucket
from bench.workloads.w4b_sessions import account, phase_values, split

UIDS = re.compile(rb"^UID (?:FETCH|STORE) (\d+)(?::(\d+|\*))? ")


def test_commands_use_preloaded_uids_and_never_delete_them() -> None:
    rng = random.Random(7)
    seen = set()
    for _ in range(3000):
        kind = rng.choice(list(MIX))
        seen.add(kind)
        cmd = command_for(kind, rng, 200)
        assert b"\r" not in cmd and b"\n" not in cmd
        m = UIDS.match(cmd)
        if kind.startswith(("FETCH", "STORE")):
            assert m is not None, cmd
            lo, hi = int(m.group(1)), m.group(2)
            assert 1 <= lo <= 200
            if hi not in (None, b"*"):
                assert lo <= int(hi) <= 200
        if kind.startswith("STORE"):
            assert b"Deleted" not in cmd
        if kind == "STORE-KEYWORD":
            assert any(k in cmd for k in KEYWORDS) and b"\\" not in cmd
        if kind == "APPEND":
            assert cmd.startswith(b"APPEND INBOX (\\Deleted) ")
    assert seen == set(MIX)


def test_the_mix_is_the_issues_and_adds_up_to_a_hundred() -> None:
    assert sum(MIX.values()) == 100
    for word in ("LIST", "STATUS", "SELECT", "FETCH-FLAGS", "FETCH-ENVELOPE", "FETCH-HEADERS"):
        assert word in MIX
    assert {"FETCH-BODY", "STORE-FLAGS", "STORE-KEYWORD", "APPEND", "EXPUNGE"} <= set(MIX)
    assert KINDS[0] == "LOGIN"
    with pytest.raises(ValueError):
        command_for("NOOP", random.Random(1), 200)


def test_mixed_sizes_are_deterministic_and_between_1_and_50_kib() -> None:
    sizes = [mixed_size(i) for i in range(2000)]
    assert sizes == [mixed_size(i) for i in range(2000)]
    assert all(SMALL_MIN <= s <= SMALL_MAX for s in sizes)
    assert min(sizes) < 2 * 1024 and max(sizes) > 40 * 1024
    assert 5 * 1024 < sorted(sizes)[1000] < 10 * 1024  # log-uniform: median ≈ 7 KiB


def test_each_process_gets_its_own_accounts() -> None:
    assert split(50, 2) == [(0, 25), (25, 25)]
    assert split(11, 3) == [(0, 4), (4, 4), (8, 3)]
    assert split(1, 2) == [(0, 1)]
    spans = [range(a, a + n) for a, n in split(50, 4)]
    assert sorted(i for s in spans for i in s) == list(range(50))
    assert account(3) == "own3@bench.test"


def test_arguments_need_a_per_session_account() -> None:
    a = session_args(
        ["--port", "1", "--user-format", "u{n}@x", "--password", "p", "--mailbox-size", "9"]
    )
    assert (a.first, a.sessions, a.duration) == (0, 10, 60.0)
    with pytest.raises(SystemExit):
        session_args(
            ["--port", "1", "--user-format", "u@x", "--password", "p", "--mailbox-size", "9"]
        )


def _out(counts: dict[str, int], hist: dict[str, dict[str, int]], logins: dict[str, int]) -> dict:
    return {
        "seconds": 10.0,
        "counts": counts,
        "errors": {},
        "latency_hist": hist,
        "login_hist": logins,
        "logins": sum(logins.values()),
        "commands_done": sum(counts.values()) + 5,
        "broken_connections": 0,
    }


def test_phase_values_merge_the_processes_histograms() -> None:
    fast, slow = str(latency_bucket(0.001)), str(latency_bucket(0.100))
    # Process one: 98 fast STOREs; process two: 2 slow ones. p99 of the whole is slow,
    # which no median or mean of the processes' own p99s would give.
    one = _out({"STORE-FLAGS": 98}, {"STORE-FLAGS": {fast: 98}}, {fast: 3})
    two = _out({"STORE-FLAGS": 2, "LIST": 10}, {"STORE-FLAGS": {slow: 2}}, {slow: 2})
    values, notes = phase_values(50, [one, two], server_cpu_s=1.2)
    assert values["cmds@50"] == 11.0
    assert values["cpu_ms@50"] == pytest.approx(1000 * 1.2 / 120)
    assert values["p50.STORE-FLAGS@50"] == pytest.approx(1.0, rel=0.02)
    assert values["p99.STORE-FLAGS@50"] == pytest.approx(100.0, rel=0.02)
    assert values["p50.LOGIN@50"] == pytest.approx(1.0, rel=0.02)
    assert values["p99.LOGIN@50"] == pytest.approx(100.0, rel=0.02)
    assert "p50.APPEND@50" not in values  # none measured: no figure, not zero
    assert notes == ["50 sessions: 120 commands, 5 logins"]


class FakeImap:
    """An IMAP server that says OK to everything and records each connection's commands
    (LITERAL+ literals are read and skipped)."""

    def __init__(self) -> None:
        self.sessions: list[list[bytes]] = []

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen: list[bytes] = []
        self.sessions.append(seen)
        w.write(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] fake\r\n")
        while line := await r.readline():
            tag, _, cmd = line.rstrip(b"\r\n").partition(b" ")
            m = re.search(rb"\{(\d+)\+\}$", cmd)
            if m:
                await r.readexactly(int(m.group(1)) + 2)
            seen.append(cmd)
            if cmd.startswith(b"SELECT"):
                w.write(b"* 40 EXISTS\r\n")
            w.write(tag + b" OK done\r\n")
            await w.drain()
            if cmd == b"LOGOUT":
                break
        w.close()


async def _run_against_fake(sessions: int, first: int) -> tuple[dict[str, object], FakeImap]:
    fake = FakeImap()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    args = session_args(
        [
            *("--port", str(port), "--user-format", "own{n}@bench.test", "--password", "pw"),
            *("--first", str(first), "--sessions", str(sessions), "--mailbox-size", "40"),
            *("--duration", "0.3", "--warmup", "0"),
        ]
    )
    async with server:
        out = await SessionGenerator(args).run()
    return out, fake


def test_sessions_stay_logged_in_on_their_own_accounts_and_clean_up() -> None:
    out, fake = asyncio.run(_run_against_fake(sessions=3, first=5))
    assert len(fake.sessions) == 3  # one connection each, never re-opened
    users = sorted(s[0].split()[1] for s in fake.sessions)
    assert users == [b'"own5@bench.test"', b'"own6@bench.test"', b'"own7@bench.test"']
    for cmds in fake.sessions:
        assert [c.split()[0] for c in cmds].count(b"LOGIN") == 1
        assert cmds[1] == b'SELECT "INBOX"'
        assert cmds[-2:] == [b"EXPUNGE", b"LOGOUT"]  # appended leftovers go before LOGOUT
    assert out["logins"] == 3 and sum(out["login_hist"].values()) == 3  # type: ignore[attr-defined]
    counts = out["counts"]
    assert isinstance(counts, dict) and set(counts) <= set(KINDS)
    hist = out["latency_hist"]
    assert isinstance(hist, dict)
    for kind, n in counts.items():
        if kind != "LOGIN":
            assert sum(hist[kind].values()) == n
    sent = sum(len(s) for s in fake.sessions)
    # every command answered counts as done, except the untimed EXPUNGE and LOGOUT at the end
    assert out["commands_done"] == sent - 2 * 3
