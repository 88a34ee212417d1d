"""The ha variant (compose.ha.yaml): three NATS nodes, R3 streams; mail is still accepted
and delivered with one NATS node killed (issue 17). A module of its own, so the default
stack of test_stack.py is torn down before this one starts on the shared 2 cores."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

from stack import Stack


def _send_all(stack: Stack, subjects: list[str], workers: int = 6) -> dict[str, int]:
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(subjects, pool.map(stack.send, subjects), strict=True))


def test_ha_survives_killing_one_nats_node(ha_stack: Stack) -> None:
    first = [f"ha-a-{i:02d}" for i in range(20)]
    assert set(_send_all(ha_stack, first).values()) == {250}
    node = ha_stack.containers("nats-2")[0]
    subprocess.run(["docker", "kill", node], check=True, capture_output=True)
    # while the streams elect new leaders the filters answer 451; a sender retries
    second = [f"ha-b-{i:02d}" for i in range(20)]
    with ThreadPoolExecutor(6) as pool:
        codes = dict(zip(second, pool.map(ha_stack.send_until_accepted, second), strict=True))
    assert set(codes.values()) == {250}, codes
    got = ha_stack.wait_delivered(set(first + second))
    mine = sorted(s for s in got if s.startswith("ha-"))
    assert mine == sorted(first + second)
