"""What every NATS-facing ``mailctl`` command shares: the ``--nats`` option, connecting
with one clear line on failure, the watched directory, and error reporting."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click

from mailcore.bus import credentials, names
from mailcore.bus.connect import Bus, connect
from mailcore.bus.setup import ensure_kv
from mailcore.config import ClusterSettings, CommonSettings, load_settings
from mailcore.directory import Directory, DirectoryError
from mailcore.logging import setup_logging

T = TypeVar("T")
CONNECT_TIMEOUT = 5.0
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 1."""
    click.echo(f"mailctl: {message}", err=True)
    sys.exit(1)


def nats_option(fn: F) -> F:
    return click.option(
        "--nats",
        "nats_url",
        # the same resolution as `mailctl up`: POSTERN_NATS_URL, else POSTERN_NATS_PORT
        default=lambda: load_settings(ClusterSettings).nats_url,
        show_default="POSTERN_NATS_URL, else nats://127.0.0.1:POSTERN_NATS_PORT",
        help="NATS server URL; credentials from POSTERN_NATS_USER and POSTERN_NATS_PASSWORD"
        "(_FILE), else the mailctl user of the mailctl up in POSTERN_DATA",
    )(fn)


async def open_bus(url: str) -> Bus:
    s = load_settings(CommonSettings)
    try:
        auth = credentials.from_settings(s, local_admin=True)
    except credentials.CredentialsError as exc:
        raise CtlError(str(exc)) from None
    try:
        # nats-py retries a dead server for ever when reconnects are on: bound the wait.
        return await asyncio.wait_for(
            connect(
                url,
                "mailctl",
                auth=auth,
                wait=3,
                connect_timeout=2,
            ),
            CONNECT_TIMEOUT,
        )
    except TimeoutError:
        raise CtlError(f"cannot reach NATS at {url}: no answer in {CONNECT_TIMEOUT:.0f}s") from None
    except Exception as exc:
        raise CtlError(f"cannot reach NATS at {url}: {type(exc).__name__}: {exc}") from None


class CtlError(Exception):
    """A failure to report as one line."""


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine; every expected failure becomes one line and exit 1."""
    setup_logging("mailctl", "error", "console")
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except (CtlError, DirectoryError) as exc:
        fail(str(exc))
    except TimeoutError:
        fail("NATS did not answer in time")


def with_directory(url: str, fn: Callable[[Directory], Awaitable[T]]) -> T:
    """Open the watched directory over NATS, run ``fn``, close everything."""

    async def go() -> T:
        bus = await open_bus(url)
        try:
            s = load_settings(CommonSettings)
            await ensure_kv(bus.js, names.KV_DIRECTORY, history=5, replicas=s.stream_replicas)
            await ensure_kv(
                bus.js,
                names.KV_CREDENTIALS,
                history=1,
                replicas=s.stream_replicas,
                max_bytes=s.credentials_max_bytes,
            )
            directory = await Directory.open(bus.js)
            try:
                return await fn(directory)
            finally:
                await directory.close()
        finally:
            await bus.close()

    return run(go)
