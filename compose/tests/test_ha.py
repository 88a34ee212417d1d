"""The ha variant (compose.ha.yaml): three NATS nodes, R3 streams; mail is still accepted
and delivered with one NATS node killed (issue 17). A module of its own, so the default
stack of test_stack.py is torn down before this one starts on the shared 2 cores."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

from stack import Stack

from mailcore.bus.setup import DECLARED


def _send_all(stack: Stack, subjects: list[str], workers: int = 6) -> dict[str, int]:
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(subjects, pool.map(stack.send, subjects), strict=True))


JSZ = (
    "import urllib.request; print(urllib.request.urlopen("
    "'http://127.0.0.1:8222/jsz?streams=true&config=true').read().decode())"
)


def _replicas(stack: Stack) -> dict[str, int]:
    """Every stream's replica count, from the first node's monitoring port."""
    node = stack.containers("nats")[0]
    out = subprocess.run(
        ["docker", "exec", node, "python3", "-c", JSZ], capture_output=True, text=True, check=True
    ).stdout
    return {
        stream["name"]: stream["config"]["num_replicas"]
        for account in json.loads(out).get("account_details") or []
        for stream in account.get("stream_detail") or []
    }


def test_ha_survives_killing_one_nats_node(ha_stack: Stack) -> None:
    # R3 for every stream the mail path declares, or the node killed below may hold the
    # only copy of one the filters write (natsrun --declare made them R1 once: no mail,
    # one run in a few). The mirror's own buckets (MIRROR_ROLE, …), made on first use,
    # are R1 still: docs/operations.md, ha.
    replicas = _replicas(ha_stack)
    assert {name: replicas.get(name) for name in DECLARED} == dict.fromkeys(DECLARED, 3), replicas
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
