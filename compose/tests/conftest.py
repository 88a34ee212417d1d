from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from stack import SCALE, Stack, remove_stale


@pytest.fixture(scope="session", autouse=True)
def _no_stale_stacks() -> None:
    """Stacks an interrupted earlier run left behind go first (their ports, subnets, CPU)."""
    remove_stale()


def _accounts(stack: Stack) -> None:
    stack.mailctl("domain", "add", "compose.test")
    stack.mailctl("user", "add", "alice@compose.test", "--password-stdin", stdin="secret-pw\n")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The default topology: three filter replicas, two relays, two webmail nodes."""
    s = Stack(Path(tmp_path_factory.mktemp("compose")))
    try:
        s.up(*SCALE)
        _accounts(s)
        yield s
    finally:
        s.down()


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The ha variant: three NATS nodes, R3 streams."""
    s = Stack(
        Path(tmp_path_factory.mktemp("compose-ha")),
        files=("compose.yaml", "compose.ha.yaml"),
        profiles=("ha",),
    )
    try:
        s.up()
        _accounts(s)
        yield s
    finally:
        s.down()
